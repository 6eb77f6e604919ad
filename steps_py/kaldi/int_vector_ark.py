"""Archives of int32 vectors: Kaldi's alignment files (``ali.*.gz``, ``train.ali``, ``pdf.ark``).

An archive is a sequence of ``<key> <object>`` entries (``util/kaldi-table.h``); an int32
vector object (``BasicVectorHolder<int32>``, ``util/kaldi-holder-inl.h``) is

* binary: ``\\0B`` then the size and every element as basic types
  (``\\x04<int32>`` each, i.e. five bytes per element);
* text: the elements, each followed by a space, then a newline.

Entries of one archive may mix the two forms (Kaldi decides per object). Files ending in
``.gz`` (or starting with the gzip magic) are gunzipped, as Kaldi's ``ark:gunzip -c f|``
rspecifier does.

The one reader and writer of int32-vector tables (alignments): archives, gzipped or not
(``read_int32_vector_archive(s)``, Kaldi's exp dirs) and ark+scp pairs
(``read_int32_vectors`` / ``write_int32_vectors``, our alignment dirs, through
kaldi-native-io). kaldi-native-io 1.23 reads a gzipped archive too, as
``ark:gunzip -c ali.1.gz|`` (not as ``ark:ali.1.gz``), but a pipe that fails (a missing or
damaged file) gives an empty or short table with only a warning on stderr; archives are
therefore parsed here, so a damaged one is an error naming the file and entry. The tests
check that both read the same entries from Kaldi's own files and write the same bytes.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import kaldi_native_io as kio
import numpy as np

from steps_py.fileio import atomic_path, atomic_write_text, temp_sibling
from steps_py.kaldi.stream import KaldiFormatError, read_bytes

_ELEM = np.dtype([("size", "i1"), ("value", "<i4")])
_WS = b" \t\n\r\v\f"


def iter_int32_vector_archive(
    data: bytes, name: str = "<archive>"
) -> Iterator[tuple[str, np.ndarray]]:
    """(key, int32 array) for every entry of an archive held in `data`."""
    n, pos = len(data), 0
    while True:
        while pos < n and data[pos] in _WS:
            pos += 1
        if pos >= n:
            return
        end = pos
        while end < n and data[end] not in _WS:
            end += 1
        key = data[pos:end].decode("utf-8", errors="replace")
        pos = end
        if pos < n and data[pos] in b" \t":
            pos += 1
        if data[pos : pos + 2] == b"\0B":
            pos += 2
            if data[pos : pos + 1] != b"\x04" or pos + 5 > n:
                raise KaldiFormatError(
                    f"{name}: entry {key!r}: expected an int32 vector (byte {pos}); "
                    "is this an archive of int32 vectors (an alignment)?"
                )
            count = struct.unpack_from("<i", data, pos + 1)[0]
            pos += 5
            if count < 0 or pos + 5 * count > n:
                raise KaldiFormatError(
                    f"{name}: entry {key!r}: truncated ({count} values announced)"
                )
            elems = np.frombuffer(data, dtype=_ELEM, count=count, offset=pos)
            if count and (elems["size"] != 4).any():
                raise KaldiFormatError(
                    f"{name}: entry {key!r}: not an int32 vector (element size byte "
                    f"{int(elems['size'][elems['size'] != 4][0])})"
                )
            pos += 5 * count
            yield key, elems["value"].astype(np.int32)
        else:
            nl = data.find(b"\n", pos)
            nl = n if nl < 0 else nl
            try:
                values = np.array([int(w) for w in data[pos:nl].split()], dtype=np.int32)
            except ValueError:
                raise KaldiFormatError(
                    f"{name}: entry {key!r}: text entry with a non-integer "
                    f"({data[pos : min(nl, pos + 40)]!r})"
                ) from None
            pos = nl + 1
            yield key, values


def read_int32_vector_archive(path: Path) -> dict[str, np.ndarray]:
    """All entries of one archive file (gzipped or not); a repeated key is an error."""
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    for key, vec in iter_int32_vector_archive(read_bytes(path), str(path)):
        if key in out:
            raise KaldiFormatError(f"{path}: key {key!r} appears twice")
        out[key] = vec
    return out


def read_int32_vector_archives(paths: Iterable[Path]) -> dict[str, np.ndarray]:
    """Entries of several archives (``ali.1.gz ali.2.gz ...``); a key in two of them is an error."""
    out: dict[str, np.ndarray] = {}
    where: dict[str, Path] = {}
    for p in paths:
        for key, vec in read_int32_vector_archive(p).items():
            if key in out:
                raise KaldiFormatError(f"utterance {key!r} is in both {where[key]} and {p}")
            out[key], where[key] = vec, Path(p)
    return out


def int32_vector_archive_bytes(
    vectors: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]], binary: bool = True
) -> bytes:
    """The bytes Kaldi's ``Int32VectorWriter`` writes for these entries (in the given order)."""
    items = vectors.items() if isinstance(vectors, Mapping) else vectors
    parts: list[bytes] = []
    for key, vec in items:
        if not key or any(c.isspace() for c in key):
            raise KaldiFormatError(
                f"invalid archive key {key!r} (keys are non-empty, without spaces)"
            )
        v = np.asarray(vec)
        if v.ndim != 1 or (len(v) and not np.issubdtype(v.dtype, np.integer)):
            raise KaldiFormatError(
                f"entry {key!r}: expected a 1-d integer vector, got {v.dtype} {v.shape}"
            )
        if binary:
            elems = np.empty(len(v), dtype=_ELEM)
            elems["size"] = 4
            elems["value"] = v
            parts.append(
                key.encode("utf-8") + b" \0B\x04" + struct.pack("<i", len(v)) + elems.tobytes()
            )
        else:
            parts.append((key + " " + "".join(f"{int(x)} " for x in v) + "\n").encode("utf-8"))
    return b"".join(parts)


def write_int32_vector_archive(
    path: Path,
    vectors: Mapping[str, np.ndarray],
    binary: bool = True,
    gz: bool | None = None,
    sort: bool = True,
) -> None:
    """Write an archive (gzipped when `gz`, default: when `path` ends in .gz), atomically."""
    path = Path(path)
    keys = sorted(vectors) if sort else list(vectors)
    data = int32_vector_archive_bytes([(k, vectors[k]) for k in keys], binary)
    if gz if gz is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def job_number(path: Path) -> int:
    """The JOB of ``ali.JOB.gz`` (0 when the name has none)."""
    m = re.search(r"\.(\d+)(\.gz)?$", Path(path).name)
    return int(m.group(1)) if m else 0


def write_int32_vectors(out_dir: Path, name: str, vectors: dict[str, np.ndarray]) -> None:
    """Write `<out_dir>/<name>.ark` and `<name>.scp` (keys sorted)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final_ark = (out_dir / f"{name}.ark").resolve()
    tmp_ark = temp_sibling(out_dir / f"{name}.ark")
    tmp_scp = temp_sibling(out_dir / f"{name}.scp")
    w = kio.Int32VectorWriter(f"ark,scp:{tmp_ark},{tmp_scp}")
    for key in sorted(vectors):
        w.write(key, [int(x) for x in vectors[key]])
    w.close()
    lines = []
    for line in tmp_scp.read_text(encoding="utf-8").splitlines():
        key, loc = line.split(maxsplit=1)
        lines.append(f"{key} {final_ark}:{loc.rsplit(':', 1)[1]}\n")
    os.replace(tmp_ark, final_ark)
    atomic_write_text(out_dir / f"{name}.scp", "".join(lines))
    tmp_scp.unlink()


class AlignmentReadError(ValueError):
    """An alignment scp/ark that Kaldi's reader rejects; the message names the file and the fix."""


def read_int32_vectors(scp: Path) -> dict[str, np.ndarray]:
    """{key: int32 array} of a Kaldi int32-vector scp; the one reader of int32-vector scp files
    (``ali.scp``, ``pdf.scp``).

    A missing scp is a FileNotFoundError, a damaged one an `AlignmentReadError`; both name
    the file and the command that rewrites it.
    """
    scp = Path(scp)
    if not scp.is_file():
        raise FileNotFoundError(
            f"{scp} not found: run the alignment step ("
            "`python -m steps_py.gmm.align`) for this set first"
        )
    out: dict[str, np.ndarray] = {}
    try:
        with kio.SequentialInt32VectorReader(f"scp:{scp}") as r:
            for key, vec in r:
                out[key] = np.asarray(vec, dtype=np.int32)
    except RuntimeError as e:
        raise AlignmentReadError(
            f"cannot read {scp} as Kaldi int32 vectors ({str(e).strip()[:200]}); "
            "re-run `python -m steps_py.gmm.align` for this set"
        ) from None
    return out
