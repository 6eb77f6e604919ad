"""A kaldifst ``StdVectorFst`` as flat numpy arrays and back, through OpenFst's binary file.

kaldifst builds and reads FSTs one arc at a time from Python (``add_arc``, ``ArcIterator``:
a few microseconds per arc) or compiles text; it has no bulk constructor and no array view.
A triphone CLG has millions of arcs, so the graph builder (``steps_py.decode.cd_graph``)
moves whole FSTs through OpenFst's own binary ``vector`` format instead, which numpy packs
and unpacks without a loop over arcs: kaldifst writes the file and numpy splits it into
arrays, or numpy writes arrays in the format and kaldifst reads them. The format is the one
``lattice_io`` documents (``FstHeader``; per state its final weight, ``int64`` arc count
and arcs ``int32 ilabel, int32 olabel, float32 weight, int32 nextstate``) for the
``standard`` (tropical) arc type.

``FstArrays`` holds ``start``, ``starts[n + 1]`` (the arcs of state s are rows
``starts[s]:starts[s + 1]``), ``arcs[m, 4]`` int32 (ilabel, olabel, the weight's float32
bits, nextstate), ``finals[n]`` float32 (inf: not final) and ``props``, the OpenFst
property bits: those kaldifst holds for the FST in memory (``to_arrays``), and those the
file claims and kaldifst takes over (``from_arrays``).
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import kaldifst
import numpy as np

FST_MAGIC = 2125659606
ALL_PROPERTIES = (1 << 64) - 1
_HEAD = struct.Struct("<iiQqqq")  # version, flags, properties, start, num_states, num_arcs


class FstFormatError(ValueError):
    """An FST could not go through its file: kaldifst could not write or read it, or what
    it wrote is not the standard vector FST expected."""


@dataclass
class FstArrays:
    start: int
    starts: np.ndarray
    arcs: np.ndarray
    finals: np.ndarray
    props: int

    @property
    def num_states(self) -> int:
        return len(self.finals)

    @property
    def weights(self) -> np.ndarray:
        """The arc weights as float32 (a view of column 2)."""
        return self.arcs[:, 2].view(np.float32)

    def arc_states(self) -> np.ndarray:
        """The source state of every arc."""
        return np.repeat(np.arange(self.num_states), np.diff(self.starts))


def _string(s: str) -> bytes:
    b = s.encode("ascii")
    return struct.pack("<i", len(b)) + b


def _header(props: int, start: int, num_states: int) -> bytes:
    # OpenFst's VectorFst::Write leaves the header's arc count at 0
    head = _HEAD.pack(2, 0, props, start, num_states, 0)
    return struct.pack("<i", FST_MAGIC) + _string("vector") + _string("standard") + head


def _header_size(buf: bytes, num_states: int) -> int:
    """The length of the header of a standard vector FST file of `num_states` states."""
    magic, n = struct.unpack_from("<ii", buf, 0)
    fst_type = buf[8 : 8 + n]
    (m,) = struct.unpack_from("<i", buf, 8 + n)
    arc_type = buf[12 + n : 12 + n + m]
    if magic != FST_MAGIC or fst_type != b"vector" or arc_type != b"standard":
        raise FstFormatError(f"not a standard vector FST: {fst_type!r}/{arc_type!r}")
    _, flags, _, _, states, _ = _HEAD.unpack_from(buf, 12 + n + m)
    if flags or states != num_states:
        raise FstFormatError(f"unexpected FST header: flags {flags}, {states} states")
    return 12 + n + m + _HEAD.size


def _positions(starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Word offsets in the body of each state's record (final weight, arc count), and which
    words of the body are arcs (the rest: three per state)."""
    n = len(starts) - 1
    state_at = 3 * np.arange(n, dtype=np.int64) + 4 * starts[:-1]
    is_arc = np.ones(3 * n + 4 * int(starts[-1]), bool)
    for k in range(3):
        is_arc[state_at + k] = False
    return state_at, is_arc


def _scratch_file(nbytes: int) -> str:
    """A new file for an FST of about `nbytes`: in /dev/shm (memory) when it has room to
    spare, else in the temporary directory (TMPDIR)."""
    shm = Path("/dev/shm")
    roomy = shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 * nbytes
    fd, name = tempfile.mkstemp(suffix=".fst", dir=shm if roomy else None)
    os.close(fd)
    return name


def to_arrays(fst: kaldifst.StdVectorFst, starts: np.ndarray | None = None) -> FstArrays:
    """The arrays of `fst` (written to a scratch file by kaldifst, read back here).

    `starts`, if given, are the arc offsets of its states, e.g. of the arrays it was read
    from (kaldifst's arcsort reorders arcs within states only); else kaldifst counts them.
    """
    n = fst.num_states
    if starts is None:
        counts = np.fromiter(map(fst.num_arcs, range(n)), np.int64, n)
        starts = np.concatenate([[0], np.cumsum(counts)])
    counts = np.diff(starts)
    name = _scratch_file(4 * (3 * n + 4 * int(starts[-1])))
    try:
        if not fst.write(name):
            raise FstFormatError(f"kaldifst could not write an FST to {name} (disk full?)")
        with open(name, "rb") as f:
            head = _header_size(f.read(256), n)
        words = np.fromfile(name, dtype=np.int32, offset=head)
    finally:
        os.unlink(name)
    if len(words) != 3 * n + 4 * starts[-1]:
        raise FstFormatError("the FST file does not hold the arcs kaldifst counts")
    state_at, is_arc = _positions(starts)
    if (words[state_at + 1] != counts).any():
        raise FstFormatError("the FST file does not hold the arcs kaldifst counts")
    finals = words[state_at].view(np.float32)
    arcs = words[is_arc].reshape(-1, 4)
    start = fst.start if n else -1
    return FstArrays(start, starts, arcs, finals, fst.properties(ALL_PROPERTIES, False))


def from_arrays(a: FstArrays) -> kaldifst.StdVectorFst:
    """A kaldifst FST with exactly these states, arcs (in this order) and property bits."""
    n = a.num_states
    counts = np.diff(a.starts)
    state_at, is_arc = _positions(a.starts)
    words = np.empty(len(is_arc), np.int32)
    words[state_at] = np.asarray(a.finals, np.float32).view(np.int32)
    words[state_at + 1] = (counts & 0xFFFFFFFF).astype(np.uint32).view(np.int32)
    words[state_at + 2] = counts >> 32
    words[is_arc] = np.ascontiguousarray(a.arcs, np.int32).reshape(-1)
    name = _scratch_file(4 * len(words))
    try:
        with open(name, "wb") as f:
            f.write(_header(a.props, a.start if n else -1, n))
            words.tofile(f)
        fst = kaldifst.StdVectorFst.read(name)
    finally:
        os.unlink(name)
    if fst is None:
        raise FstFormatError(f"kaldifst could not read the FST written to {name}")
    return fst
