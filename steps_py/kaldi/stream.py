"""Kaldi's basic I/O (``src/base/io-funcs.cc``, ``io-funcs-inl.h``, ``matrix/kaldi-vector.cc``).

A Kaldi object file is text, or binary when it starts with ``\\0B``. Both modes share the
token syntax (a token is written as ``<token> `` followed by one space); they differ in
basic types and containers:

* int32 / uint32: binary ``<size byte: 4 or -4><little-endian bytes>``, text ``123 ``;
* float: binary ``<4><float32>`` (``<8><float64>`` is read too), text ``%g`` with 7
  significant digits (Kaldi sets ``precision(7)`` on every output stream), then a space;
* integer vectors (``WriteIntegerVector``): binary ``<4><int32 n><n int32>``, text
  ``[ 1 2 3 ]\\n``;
* ``Vector<float>``: binary ``FV <int32 n><n float32>`` (``DV`` for double), text
  `` [ 1 2 3 ]\\n``;
* ``Matrix<float>``: binary ``FM <int32 rows><int32 cols><data>`` (``DM`` double), text
  `` [\\n  1 2 \\n  3 4 ]\\n`` (`` [ ]\\n`` when empty).

Written by hand because none of the listed packages exposes these object-level routines:
kaldi-native-io reads and writes tables of matrices/vectors but not a model file's tokens,
and kaldi-hmm-gmm binds TransitionModel/AmDiagGmm without Read/Write. Text output uses the
same formatting as Kaldi's C++ streams, so a text file read and written back is byte for
byte the file Kaldi wrote; binary output is bit for bit Kaldi's.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from steps_py.cli import StepError

_WS = b" \t\n\r\v\f"


class KaldiFormatError(StepError):
    """A Kaldi file does not parse; the message names the file, the byte offset and what was expected."""


def read_bytes(path: Path) -> bytes:
    """The bytes of `path`, gunzipped when it is a gzip file (Kaldi's ``ali.*.gz``)."""
    path = Path(path)
    if not path.is_file():
        raise KaldiFormatError(f"{path} not found")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise KaldiFormatError(
                f"{path}: corrupt gzip data ({e}); re-copy or re-create the file"
            ) from None
    return data


def format_float(x: float) -> str:
    """A float as Kaldi's text streams print it (``os << f`` with precision 7)."""
    return f"{float(x):.7g}"


class KaldiInput:
    """A cursor over the bytes of a Kaldi object stream (one object file or one archive).

    `binary` is detected from the ``\\0B`` header at `pos` unless given.
    """

    def __init__(
        self, data: bytes, name: str = "<bytes>", pos: int = 0, binary: bool | None = None
    ):
        self.data = data
        self.name = name
        self.pos = pos
        if binary is None:
            binary = self.read_header()
        self.binary = binary

    # ---- positions and errors
    def error(self, what: str) -> KaldiFormatError:
        return KaldiFormatError(f"{self.name}: byte {self.pos}: {what}")

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def read_header(self) -> bool:
        """Consume a ``\\0B`` binary header if there is one; return whether there was."""
        if self.data[self.pos : self.pos + 2] == b"\0B":
            self.pos += 2
            return True
        return False

    def skip_ws(self) -> None:
        d, n, p = self.data, len(self.data), self.pos
        while p < n and d[p] in _WS:
            p += 1
        self.pos = p

    def _word(self) -> bytes:
        self.skip_ws()
        d, n, start = self.data, len(self.data), self.pos
        p = start
        while p < n and d[p] not in _WS:
            p += 1
        if p == start:
            raise self.error("unexpected end of file")
        self.pos = p
        return d[start:p]

    # ---- tokens
    def peek(self) -> str:
        """The next character (after whitespace in text mode), '' at the end."""
        if not self.binary:
            self.skip_ws()
        return chr(self.data[self.pos]) if self.pos < len(self.data) else ""

    def peek_token(self) -> str:
        """The next whitespace-delimited token, not consumed ('' at the end)."""
        pos = self.pos
        try:
            return self.read_token()
        except KaldiFormatError:
            return ""
        finally:
            self.pos = pos

    def read_token(self) -> str:
        tok = self._word()
        if self.pos < len(self.data):
            self.pos += 1  # the one space that terminates a token
        return tok.decode("utf-8", errors="replace")

    def expect_token(self, token: str) -> None:
        start = self.pos
        got = self.read_token()
        if got != token:
            self.pos = start
            raise self.error(f"expected token {token!r}, got {got[:40]!r}")

    # ---- basic types
    def _size_byte(self, allowed: tuple[int, ...], what: str) -> int:
        if self.pos >= len(self.data):
            raise self.error(f"unexpected end of file reading {what}")
        c = struct.unpack_from("b", self.data, self.pos)[0]
        if c not in allowed:
            raise self.error(f"expected {what} (size byte {allowed}), got size byte {c}")
        self.pos += 1
        return c

    def _unpack(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise self.error("unexpected end of file")
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def read_int32(self) -> int:
        if self.binary:
            self._size_byte((4,), "int32")
            return int(self._unpack("<i")[0])
        w = self._word()
        try:
            return int(w)
        except ValueError:
            raise self.error(f"expected an integer, got {w[:40]!r}") from None

    def read_uint32(self) -> int:
        if self.binary:
            self._size_byte((-4,), "uint32")
            return int(self._unpack("<I")[0])
        return self.read_int32()

    def read_float(self) -> float:
        if self.binary:
            c = self._size_byte((4, 8), "float")
            return float(self._unpack("<f" if c == 4 else "<d")[0])
        w = self._word()
        try:
            return float(w)
        except ValueError:
            raise self.error(f"expected a number, got {w[:40]!r}") from None

    # ---- containers
    def _bracketed(self) -> bytes:
        """Text ``[ a b c ]``: the bytes between the brackets (the brackets consumed)."""
        self.skip_ws()
        if self.data[self.pos : self.pos + 1] != b"[":
            raise self.error(f"expected '[', got {self.data[self.pos : self.pos + 20]!r}")
        end = self.data.find(b"]", self.pos)
        if end < 0:
            raise self.error("'[' without a closing ']'")
        inner = self.data[self.pos + 1 : end]
        self.pos = end + 1
        return inner

    def _bracketed_words(self) -> list[bytes]:
        """Text ``[ a b c ]``: the words between the brackets (the brackets consumed)."""
        return self._bracketed().split()

    def read_int_vector(self) -> np.ndarray:
        """``ReadIntegerVector<int32>``."""
        if self.binary:
            self._size_byte((4,), "int32 vector")
            n = int(self._unpack("<i")[0])
            return self._array("<i4", n).astype(np.int32)
        try:
            return np.array([int(w) for w in self._bracketed_words()], dtype=np.int32)
        except ValueError:
            raise self.error("non-integer in an integer vector") from None

    def _array(self, dtype: str, count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        if count < 0 or self.pos + size > len(self.data):
            raise self.error(f"truncated data ({count} values of {dtype})")
        a = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += size
        return a

    def read_vector(self) -> np.ndarray:
        """``Vector<Real>::Read``: float32 for FV / text, float64 for DV."""
        if self.binary:
            tok = self.read_token()
            if tok not in ("FV", "DV"):
                raise self.error(f"expected a vector (FV or DV), got {tok[:40]!r}")
            n = self.read_int32()
            return self._array("<f4" if tok == "FV" else "<f8", n).copy()
        try:
            return np.array([float(w) for w in self._bracketed_words()], dtype=np.float32)
        except ValueError:
            raise self.error("non-number in a vector") from None

    def read_matrix(self) -> np.ndarray:
        """``Matrix<Real>::Read``: float32 for FM / text, float64 for DM (compressed: refused)."""
        if self.binary:
            tok = self.read_token()
            if tok.startswith("CM"):
                raise self.error(
                    "compressed matrices are not supported here; copy with "
                    "`copy-matrix` (or `copy-feats`) without compression first"
                )
            if tok not in ("FM", "DM"):
                raise self.error(f"expected a matrix (FM or DM), got {tok[:40]!r}")
            rows, cols = self.read_int32(), self.read_int32()
            a = self._array("<f4" if tok == "FM" else "<f8", rows * cols)
            return a.reshape(rows, cols).copy()
        lines = [ln.split() for ln in self._bracketed().splitlines()]
        rows = [ln for ln in lines if ln]
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        if len({len(r) for r in rows}) != 1:
            raise self.error("matrix rows of different lengths")
        try:
            return np.array([[float(w) for w in r] for r in rows], dtype=np.float32)
        except ValueError:
            raise self.error("non-number in a matrix") from None


class KaldiOutput:
    """Builds the bytes of a Kaldi object stream exactly as Kaldi's Write() methods do."""

    def __init__(self, binary: bool, header: bool = True):
        self.binary = binary
        self.parts: list[bytes] = [b"\0B"] if binary and header else []

    def getvalue(self) -> bytes:
        return b"".join(self.parts)

    def text(self, s: str) -> None:
        self.parts.append(s.encode("utf-8"))

    def newline(self) -> None:
        """The ``if (!binary) os << "\\n"`` that Kaldi's writers put between fields."""
        if not self.binary:
            self.parts.append(b"\n")

    def token(self, tok: str) -> None:
        if not tok or any(c.isspace() for c in tok):
            raise ValueError(f"invalid Kaldi token {tok!r}")
        self.text(tok + " ")

    def int32(self, v: int) -> None:
        if self.binary:
            self.parts.append(b"\x04" + struct.pack("<i", int(v)))
        else:
            self.text(f"{int(v)} ")

    def uint32(self, v: int) -> None:
        if self.binary:
            self.parts.append(b"\xfc" + struct.pack("<I", int(v)))
        else:
            self.text(f"{int(v)} ")

    def float32(self, v: float) -> None:
        if self.binary:
            self.parts.append(b"\x04" + struct.pack("<f", float(v)))
        else:
            self.text(format_float(np.float32(v)) + " ")

    def int_vector(self, v: np.ndarray | list[int]) -> None:
        a = np.asarray(v, dtype="<i4")
        if self.binary:
            self.parts.append(b"\x04" + struct.pack("<i", len(a)) + a.tobytes())
        else:
            self.text("[ " + "".join(f"{int(x)} " for x in a) + "]\n")

    def vector(self, v: np.ndarray, double: bool = False) -> None:
        a = np.asarray(v, dtype="<f8" if double else "<f4").reshape(-1)
        if self.binary:
            self.token("DV" if double else "FV")
            self.int32(len(a))
            self.parts.append(a.tobytes())
        else:
            self.text(" [ " + "".join(format_float(x) + " " for x in a) + "]\n")

    def matrix(self, m: np.ndarray, double: bool = False) -> None:
        a = np.asarray(m, dtype="<f8" if double else "<f4")
        if a.ndim != 2:
            raise ValueError(f"a matrix must be 2-d, got shape {a.shape}")
        if self.binary:
            self.token("DM" if double else "FM")
            self.int32(a.shape[0])
            self.int32(a.shape[1])
            self.parts.append(np.ascontiguousarray(a).tobytes())
        elif a.size == 0:
            self.text(" [ ]\n")
        else:
            rows = "".join("\n  " + "".join(format_float(x) + " " for x in row) for row in a)
            self.text(" [" + rows + "]\n")
