"""HCLG construction (decoding on it: tests/test_decode_search.py and tests/test_decode_cli.py)."""

from __future__ import annotations

from pathlib import Path

import kaldifst
import pytest

from steps_py.decode import graph as mkgraph
from steps_py.gmm.model_io import load_gmm
from steps_py.lang.fst_build import make_topo, transduce
from tests.toy_decode import build_graph
from tests.toy_gmm import PHONES, WORDS


@pytest.fixture(scope="module")
def graph_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The toy lang (built by steps_py.lang.prepare) and its GMM through steps_py.decode.graph."""
    return build_graph(tmp_path_factory.mktemp("graph"))


def test_toy_lang_comes_from_the_lang_stage(graph_dir) -> None:
    """The toy lang is stage 2's output: gen_topo.pl's topology, L.fst/L_disambig.fst from
    make_lexicon_fst with optional silence, and disambiguation symbols where needed."""
    lang = graph_dir[0].parent / "lang_test"
    ph = {p: i for i, p in enumerate(PHONES)}
    assert (lang / "topo").read_text() == make_topo(
        [ph["a"], ph["b"], ph["c"]], [ph["SIL"], ph["SPN"]]
    )
    assert (lang / "phones" / "disambig.txt").read_text().split() == ["#0", "#1", "#2", "#3"]
    assert (lang / "oov.txt").read_text().strip() == "<UNK>"
    sil = {"L.fst": ["SIL"], "L_disambig.fst": ["SIL", "#3"]}  # #3 marks optional silence there
    for name, s in sil.items():
        L = kaldifst.StdVectorFst.read(str(lang / name))
        kaldifst.arcsort(L, sort_type="ilabel")
        got = transduce(L, [ph[p] for p in (*s, "c", "a", "b", *s, "a")])
        assert got is not None, name
        assert [WORDS[w] for w in got[0]] == ["C", "B", "A"], name
    Ld = kaldifst.StdVectorFst.read(str(lang / "L_disambig.fst"))
    kaldifst.arcsort(Ld, sort_type="ilabel")
    spn = transduce(
        Ld, [ph["SPN"], ph["#2"]]
    )  # <UNK>'s SPN, told apart from <SPOKEN_NOISE>'s by #2
    assert spn is not None and [WORDS[w] for w in spn[0]] == ["<UNK>"]


def _max_ilabel(path: Path) -> int:
    fst = kaldifst.StdVectorFst.read(str(path))
    return max(
        (arc.ilabel for s in range(fst.num_states) for arc in kaldifst.ArcIterator(fst, s)),
        default=0,
    )


def test_graph_files_and_labels(graph_dir) -> None:
    out, model = graph_dir
    for name in (
        "HCLG.fst",
        "HCLG_pdf.fst",
        "words.txt",
        "phones.txt",
        "num_pdfs",
        "topo",
        ".done",
    ):
        assert (out / name).is_file(), name
    tm, _ = load_gmm(model)
    assert _max_ilabel(out / "HCLG.fst") <= tm.num_transition_ids  # disambiguation symbols removed
    assert _max_ilabel(out / "HCLG_pdf.fst") <= tm.num_pdfs
    assert int((out / "num_pdfs").read_text()) == tm.num_pdfs


def test_graph_is_idempotent(graph_dir, caplog: pytest.LogCaptureFixture) -> None:
    out, model = graph_dir
    before = (out / "HCLG.fst").stat().st_mtime_ns
    mkgraph.main(
        ["--lang", str(out.parent / "lang_test"), "--model", str(model), "--out", str(out)]
    )
    assert (out / "HCLG.fst").stat().st_mtime_ns == before
