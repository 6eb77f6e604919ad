"""What every decode reads besides the acoustic model: the graph dir, its words, the LM-weight
and insertion-penalty grid, and the (LM weight, penalty) a dev decode dir chose.

Graph dir (written by ``python -m steps_py.decode.graph``): ``HCLG.fst`` (input labels:
transition ids), ``words.txt``, ``num_pdfs``, ``topo``. ``check_graph`` checks them all
before any utterance is decoded; a truncated or damaged ``HCLG.fst`` is found from its
header and by reading it once in the parent process (``kaldifst.StdVectorFst.read`` returns
None for it), so the error names the file and the command that rebuilds it.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

from steps_py.cli import StepError
from steps_py.lang.symbols import SymbolTableError, read_symbol_table


class DecodeError(StepError):
    """Inputs of a decode are missing or inconsistent; the message names the files and the fix."""


class GraphError(DecodeError):
    """A graph dir is incomplete or damaged; the message names the file and the rebuild command."""


GRAPH_FILES = ("HCLG.fst", "words.txt", "num_pdfs", "topo")
FST_MAGIC = 2125659606


def _rebuild(graph: Path) -> str:
    return f"rebuild it (python -m steps_py.decode.graph --out {graph} --force)"


def check_fst_file(path: Path) -> int:
    """The state count of an OpenFst binary StdVectorFst such as HCLG.fst, or a GraphError.

    The header is checked first (magic number, FST and arc type); then the graph is read
    with kaldifst, which returns None (and prints a C++ error) for a file cut short.
    """
    graph = path.parent
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError as e:
        raise GraphError(f"{path}: cannot read ({e.strerror}); {_rebuild(graph)}") from None
    bad = f"{path} is not a complete OpenFst graph"
    try:
        magic, n = struct.unpack_from("<ii", head, 0)
        if magic != FST_MAGIC:
            raise GraphError(f"{bad} (no OpenFst magic number); {_rebuild(graph)}")
        fst_type = head[8 : 8 + n].decode("ascii")
        pos = 8 + n
        (n,) = struct.unpack_from("<i", head, pos)
        arc_type = head[pos + 4 : pos + 4 + n].decode("ascii")
        pos += 4 + n
        struct.unpack_from("<iiQqqq", head, pos)
    except (struct.error, UnicodeDecodeError):
        raise GraphError(f"{bad} (truncated or damaged header); {_rebuild(graph)}") from None
    if fst_type != "vector" or arc_type != "standard":
        raise GraphError(
            f"{path}: FST type {fst_type}/{arc_type}, expected vector/standard; {_rebuild(graph)}"
        )
    fst = read_graph_fst(path)
    return int(fst.num_states)


def read_graph_fst(path: Path):  # -> kaldifst.StdVectorFst
    """Read HCLG.fst; a truncated or damaged file is a GraphError naming it."""
    import kaldifst

    try:
        fst = kaldifst.StdVectorFst.read(str(path))
    except (ValueError, MemoryError, RuntimeError, OverflowError) as e:
        # bytes replaced mid-file: OpenFst reads absurd counts (vector::reserve, bad_alloc)
        raise GraphError(
            f"{path} is damaged (OpenFst: {type(e).__name__}: {e}); {_rebuild(path.parent)}"
        ) from None
    if fst is None or fst.num_states == 0 or fst.start < 0:
        raise GraphError(
            f"{path} is truncated or damaged (OpenFst cannot read it, or it has no "
            f"start state); {_rebuild(path.parent)}"
        )
    return fst


@dataclass(frozen=True)
class GraphInfo:
    dir: Path
    num_pdfs: int
    states: int


def check_graph(graph: Path) -> GraphInfo:
    """Check a graph dir before decoding; returns its pdf count and size."""
    graph = Path(graph)
    if not graph.is_dir():
        raise GraphError(
            f"graph dir {graph} does not exist; build it first (python -m steps_py.decode.graph "
            f"--out {graph}; run.sh makes exp/mono/graph and exp/tri1/graph) or pass the right "
            "--graph"
        )
    missing = [n for n in GRAPH_FILES if not (graph / n).is_file()]
    if missing:
        raise GraphError(f"graph dir {graph} lacks {', '.join(missing)}; {_rebuild(graph)}")
    text = (graph / "num_pdfs").read_text(encoding="utf-8").strip()
    if not text.isdigit() or int(text) <= 0:
        raise GraphError(
            f"{graph / 'num_pdfs'}: expected one positive integer, found {text[:40]!r}"
        )
    read_words(graph / "words.txt")
    states = check_fst_file(graph / "HCLG.fst")
    return GraphInfo(graph, int(text), states)


def read_words(path: Path) -> dict[int, str]:
    """words.txt as {id: word}; the one reader of it in decoding (`read_symbol_table` underneath)."""
    try:
        table = read_symbol_table(path)
    except SymbolTableError as e:
        raise GraphError(f"{e}; {_rebuild(Path(path).parent)}") from None
    if not table:
        raise GraphError(f"{path} is empty; {_rebuild(Path(path).parent)}")
    return {i: w for w, i in table}


# ---------------------------------------------------------------- LM weights and penalties


def parse_grid(spec: str, flag: str, positive: bool) -> list[float]:
    """'7:17' (inclusive, step 1), '7:17:2' or '0.0,0.5,1.0' -> sorted unique values."""
    try:
        if ":" in spec:
            parts = [float(x) for x in spec.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop = parts[0], parts[1]
            step = parts[2] if len(parts) > 2 else 1.0
            if step <= 0 or stop < start:
                raise ValueError
            n = int(round((stop - start) / step))
            out = [round(start + i * step, 6) for i in range(n + 1)]
        else:
            out = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise DecodeError(
            f"{flag} {spec!r}: give 'START:STOP[:STEP]' or a comma list, e.g. 7:17 or 0.0,0.5,1.0"
        ) from None
    if not out or (positive and any(w <= 0 for w in out)) or any(w != w for w in out):
        raise DecodeError(
            f"{flag} {spec!r}: values must be {'positive' if positive else 'numbers'}"
        )
    return sorted(set(out))


def parse_lm_weights(spec: str) -> list[float]:
    return parse_grid(spec, "--lm-weights", positive=True)


def parse_penalties(spec: str) -> list[float]:
    return parse_grid(spec, "--word-ins-penalties", positive=False)


def format_weight(w: float) -> str:
    """3.0 -> '3', 0.5 -> '0.5' (file names and Kaldi-style lines)."""
    return f"{w:g}"


def format_penalty(p: float) -> str:
    """Kaldi's score.sh spells penalties 0.0, 0.5, 1.0."""
    return f"{p:.1f}" if round(p, 1) == p else f"{p:g}"


@dataclass(frozen=True)
class Chosen:
    """The (LM weight, insertion penalty) a dev decode dir chose."""

    lm_weight: float
    penalty: float
    source: Path


_TEST_RE = re.compile(r"(^|[_\-.])(test|eval)($|[_\-.])")


def is_test_set(data: Path) -> bool:
    """A data dir named like a test set (test, test_clean, eval2000-style names)."""
    name = Path(data).name
    return _TEST_RE.search(name) is not None or name.startswith(("test", "eval"))
