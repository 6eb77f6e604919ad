"""Archives of int32 vectors: Kaldi's alignment files (``ali.*.gz``, ``train.ali``, ``pdf.ark``).

An archive is a sequence of ``<key> <object>`` entries (``util/kaldi-table.h``); an int32
vector object (``BasicVectorHolder<int32>``, ``util/kaldi-holder-inl.h``) is

* binary: ``\\0B`` then the size and every element as basic types
  (``\\x04<int32>`` each, i.e. five bytes per element);
* text: the elements, each followed by a space, then a newline.

Entries of one archive may mix the two forms (Kaldi decides per object). Files ending in
``.gz`` (or starting with the gzip magic) are gunzipped, as Kaldi's ``ark:gunzip -c f|``
rspecifier does. kaldi-native-io reads and writes such archives too, but not gzipped ones
and only through its C++ streams (no pipes), so alignment dirs are read here; the tests
check that both write the same bytes.
"""

from __future__ import annotations

import gzip
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from steps_py.fileio import atomic_path
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
