"""Kaldi lattice files: CompactLattice archives (`lat.<job>.gz`) in Kaldi's binary format.

Neither kaldifst nor kaldi-native-io reads or writes CompactLattice (kaldifst has only the
state-level ``Lattice``, and only to a file), so the format is written here, from Kaldi's
``src/lat/kaldi-lattice.cc`` (``CompactLatticeHolder::Write``/``Read``) and OpenFst's
``FstHeader`` and ``VectorFst::Write``:

* an archive entry is ``<utt-id> <space>`` followed by the FST itself; unlike other Kaldi
  objects there is no ``\\0B`` binary marker: the reader recognises a binary lattice by
  the first byte of the OpenFst magic number (214) and a text one by a space/newline;
* the FST is OpenFst's binary ``vector`` format, all little-endian: the header
  ``int32 magic 2125659606``, ``string fst_type "vector"``, ``string arc_type``,
  ``int32 version 2``, ``int32 flags 0``, ``uint64 properties``, ``int64 start``,
  ``int64 num_states``, ``int64 num_arcs`` (left 0 by OpenFst's VectorFst writer; a string
  is ``int32 length`` + bytes); then
  for each state its final weight, ``int64 num_arcs`` and each arc as ``int32 ilabel``,
  ``int32 olabel``, weight, ``int32 nextstate``;
* ``arc_type`` is ``compactlattice44`` for a CompactLattice: its weight is a
  ``LatticeWeight`` (``float32 graph_cost, float32 acoustic_cost``) followed by the
  string of transition ids (``int32 length`` + ``int32`` each); the non-final weight is
  ``(+inf, +inf)`` with an empty string. ``lattice4`` (state-level Lattice) has the
  ``LatticeWeight`` alone;
* ``properties``: we write ``kExpanded | kMutable | kAcceptor`` (0x10003), i.e. nothing
  else claimed; OpenFst computes any other property it needs when it reads the file.

A CompactLattice is an acceptor: ilabel == olabel == the word id. Costs are negated log
probabilities; Kaldi's convention for lattices on disk (and ours) is acoustic costs NOT
scaled by the decoding acoustic scale.

The archive is gzip-compressed with a zero timestamp and no file name, so the same
lattices give the same bytes (`gunzip -c lat.1.gz | lattice-copy ark:- ark,t:-` reads it).
"""

from __future__ import annotations

import gzip
import io
import math
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

from steps_py.decode.lattice import CompactLattice
from steps_py.fileio import atomic_path

FST_MAGIC = 2125659606
K_EXPANDED, K_MUTABLE, K_ACCEPTOR = 0x1, 0x2, 0x10000
COMPACT_LATTICE_PROPERTIES = K_EXPANDED | K_MUTABLE | K_ACCEPTOR
INF = math.inf

_HEAD = struct.Struct("<iiQqqq")  # version, flags, properties, start, num_states, num_arcs
_ARC = struct.Struct("<iiffi")  # lattice4 arc: ilabel, olabel, graph, acoustic, nextstate
_CARC_HEAD = struct.Struct("<iiffi")  # compact arc up to the string length
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_FF = struct.Struct("<ff")


class LatticeFormatError(ValueError):
    """A lattice file or archive is not in Kaldi's format; the message names it."""


def _string(s: str) -> bytes:
    b = s.encode("ascii")
    return _I32.pack(len(b)) + b


def _header(arc_type: str, properties: int, start: int, num_states: int) -> bytes:
    # OpenFst's VectorFst::Write leaves the header's arc count at 0; so do we
    return (
        _I32.pack(FST_MAGIC)
        + _string("vector")
        + _string(arc_type)
        + _HEAD.pack(2, 0, properties, start, num_states, 0)
    )


def compact_lattice_bytes(lat: CompactLattice) -> bytes:
    """One CompactLattice in Kaldi/OpenFst binary form (what follows `<utt> ` in an archive)."""
    out = [
        _header(
            "compactlattice44",
            COMPACT_LATTICE_PROPERTIES,
            lat.start if lat.num_states else -1,
            lat.num_states,
        )
    ]
    for s in range(lat.num_states):
        fin = lat.finals[s]
        if fin is None:
            out.append(_FF.pack(INF, INF) + _I32.pack(0))
        else:
            g, a, ali = fin
            out.append(_FF.pack(g, a) + _I32.pack(len(ali)) + struct.pack(f"<{len(ali)}i", *ali))
        arcs = lat.arcs[s]
        out.append(_I64.pack(len(arcs)))
        for word, nxt, g, a, ali in arcs:
            out.append(
                _CARC_HEAD.pack(word, word, g, a, len(ali))
                + struct.pack(f"<{len(ali)}i", *ali)
                + _I32.pack(nxt)
            )
    return b"".join(out)


def lattice_bytes(
    num_states: int,
    start: int,
    finals: list[tuple[float, float] | None],
    arcs: list[list[tuple[int, int, float, float, int]]],
    properties: int,
) -> bytes:
    """A state-level Lattice (`lattice4`) in binary form; arcs are (ilabel, olabel, graph,
    acoustic, nextstate). Used to check this writer against OpenFst's own (kaldifst)."""
    out = [_header("lattice4", properties, start, num_states)]
    for s in range(num_states):
        fin = finals[s]
        out.append(_FF.pack(*(fin if fin is not None else (INF, INF))))
        out.append(_I64.pack(len(arcs[s])))
        for arc in arcs[s]:
            out.append(_ARC.pack(*arc))
    return b"".join(out)


class _Reader:
    def __init__(self, buf: bytes, pos: int, name: str) -> None:
        self.buf, self.pos, self.name = buf, pos, name

    def take(self, st: struct.Struct) -> tuple:
        if self.pos + st.size > len(self.buf):
            raise LatticeFormatError(f"{self.name}: truncated lattice at byte {self.pos}")
        v = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return v

    def ints(self, n: int) -> tuple[int, ...]:
        if n < 0 or self.pos + 4 * n > len(self.buf):
            raise LatticeFormatError(f"{self.name}: bad transition-id string at byte {self.pos}")
        v = struct.unpack_from(f"<{n}i", self.buf, self.pos)
        self.pos += 4 * n
        return v

    def string(self) -> str:
        (n,) = self.take(_I32)
        if n < 0 or n > 256 or self.pos + n > len(self.buf):
            raise LatticeFormatError(f"{self.name}: bad FST header string at byte {self.pos}")
        s = self.buf[self.pos : self.pos + n].decode("ascii", "replace")
        self.pos += n
        return s


def read_compact_lattice(
    buf: bytes, pos: int = 0, name: str = "<lattice>"
) -> tuple[CompactLattice, int]:
    """Parse one binary CompactLattice starting at `pos`; returns it and the end position."""
    r = _Reader(buf, pos, name)
    (magic,) = r.take(_I32)
    if magic != FST_MAGIC:
        raise LatticeFormatError(
            f"{name}: no OpenFst magic number at byte {pos}; not a binary Kaldi lattice"
        )
    fst_type, arc_type = r.string(), r.string()
    if fst_type != "vector" or arc_type != "compactlattice44":
        raise LatticeFormatError(
            f"{name}: FST of type {fst_type}/{arc_type}, expected vector/compactlattice44"
        )
    _version, _flags, _props, start, num_states, _num_arcs = r.take(_HEAD)
    if num_states < 0:
        raise LatticeFormatError(
            f"{name}: lattice without a state count (streamed FSTs are not supported)"
        )
    finals: list[tuple[float, float, tuple[int, ...]] | None] = []
    arcs: list[list[tuple[int, int, float, float, tuple[int, ...]]]] = []
    for _ in range(num_states):
        g, a = r.take(_FF)
        (n,) = r.take(_I32)
        ali = r.ints(n)
        finals.append(None if g == INF and a == INF else (g, a, ali))
        (narcs,) = r.take(_I64)
        out = []
        for _ in range(narcs):
            il, _ol, g, a, n = r.take(_CARC_HEAD)
            ali = r.ints(n)
            (nxt,) = r.take(_I32)
            out.append((il, nxt, g, a, ali))
        arcs.append(out)
    return CompactLattice(start=max(start, 0), arcs=arcs, finals=finals), r.pos


def write_lattice_archive(path: Path, items: Iterable[tuple[str, CompactLattice]]) -> None:
    """Write `<utt> <lattice>` entries as a gzip'd binary Kaldi archive (reproducible bytes)."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        for utt, lat in items:
            if not utt or any(c.isspace() for c in utt):
                raise ValueError(f"utterance id {utt!r} cannot be an archive key")
            gz.write(utt.encode("utf-8") + b" " + compact_lattice_bytes(lat))
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(raw.getvalue())


def read_lattice_archive(path: Path) -> Iterator[tuple[str, CompactLattice]]:
    """Entries of a (gzip'd or plain) binary CompactLattice archive, in file order."""
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise LatticeFormatError(
                f"{path}: corrupt gzip data ({e}); decode again with --force"
            ) from None
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos)
        if sp < 0:
            raise LatticeFormatError(
                f"{path}: truncated archive at byte {pos} (a key without a lattice)"
            )
        key = data[pos:sp].decode("utf-8")
        if sp + 1 >= len(data) or data[sp + 1] != 214:
            raise LatticeFormatError(
                f"{path}: entry {key!r} is not a binary lattice (text archives "
                "are not read here; write them with lattice-copy ark:- ark:-)"
            )
        lat, pos = read_compact_lattice(data, sp + 1, f"{path}[{key}]")
        yield key, lat
