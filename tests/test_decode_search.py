"""The shared search on the toy graph: lattice best paths equal best-path decodes at the same
scales, the numpy GMM equals Kaldi's decodable, known words come out, and a damaged graph is an
error naming the file before anything is decoded."""

from __future__ import annotations

import shutil
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np
import pytest

from steps_py.decode import gmm as decode_gmm
from steps_py.decode import nnet as decode_nnet
from steps_py.decode.inputs import GraphError, check_graph
from steps_py.decode.scorers import GmmScorer
from steps_py.decode.search import Search, SearchConfig
from steps_py.gmm.feats import add_deltas
from steps_py.gmm.model_io import load_gmm
from tests.toy_decode import build_graph, pdfs_of, tiny_nnet, toy_data
from tests.toy_gmm import WORDS, toy_utterance


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_graph(tmp_path_factory.mktemp("toy"))


def _with_penalty(graph: Path, out: Path, wip: float) -> Path:
    """A copy of the graph dir whose word arcs cost `wip` more (a best-path decode with an
    insertion penalty)."""
    shutil.copytree(graph, out)
    src = kaldifst.StdVectorFst.read(str(graph / "HCLG.fst"))
    dst = kaldifst.StdVectorFst()
    for _ in range(src.num_states):
        dst.add_state()
    dst.start = src.start
    for s in range(src.num_states):
        dst.set_final(s, src.final(s))
        for a in kaldifst.ArcIterator(src, s):
            w = a.weight.value + (wip if a.olabel != 0 else 0.0)
            dst.add_arc(s, kaldifst.StdArc(a.ilabel, a.olabel, w, a.nextstate))
    dst.write(str(out / "HCLG.fst"))
    return out


def _noisy_loglikes(model: Path, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    feats, _ = toy_utterance(["B", "A", "C", "A"], rng, seed=seed)
    ll = GmmScorer(model).loglikes_of(add_deltas(feats))
    return (ll + rng.normal(0.0, 15.0, size=ll.shape)).astype(np.float32)  # confusable


def test_lattice_best_path_equals_best_path_decode_at_each_scale(toy, tmp_path: Path) -> None:
    graph, model = toy
    n = int((graph / "num_pdfs").read_text())
    lat_search = Search(graph, SearchConfig(beam=40.0, lattice_beam=40.0, acoustic_scale=0.1), n)
    grid = [(lw, p) for p in (0.0, 0.5, 1.0) for lw in (7.0, 10.0, 14.0, 17.0)]
    best_path = {
        p: {
            lw: Search(
                _with_penalty(graph, tmp_path / f"g{p}_{lw}", p),
                SearchConfig(beam=40.0, acoustic_scale=1.0 / lw, max_active=100000),
                n,
            )
            for lw in (7.0, 10.0, 14.0, 17.0)
        }
        for p in (0.0, 0.5, 1.0)
    }
    differ = 0
    for seed in range(4):
        ll = _noisy_loglikes(model, seed)
        lat, _ = lat_search.lattice(ll)
        got = lat.best_paths(grid)
        for k, (lw, p) in enumerate(grid):
            want, _ = best_path[p][lw].best_path(ll)
            assert got[k][0] == want, (seed, lw, p)
        differ += len({tuple(w) for w, _, _ in got}) > 1
    assert differ > 0  # the scales do change the answer on these utterances


def test_numpy_gmm_equals_kaldi_decodable(toy) -> None:
    _, model = toy
    tm, am = load_gmm(model)
    feats = add_deltas(toy_utterance(["A", "C"], np.random.default_rng(0), seed=5)[0])
    ll = GmmScorer(model).loglikes_of(feats)
    dec = khg.DecodableAmDiagGmmScaled(
        am=am, tm=tm, feats=np.ascontiguousarray(feats, np.float32), scale=1.0
    )
    tid2pdf = tm.transition_id_to_pdf_array()
    for f in (0, 3, len(feats) - 1):
        for tid in (1, 5, tm.num_transition_ids):
            assert ll[f, tid2pdf[tid]] == pytest.approx(dec.log_likelihood(f, tid), rel=1e-5)


def test_known_words_from_one_hot_scores(toy) -> None:
    graph, model = toy
    tm, _ = load_gmm(model)
    rows = []
    for ph in ["SIL", "c", "a", "b", "SIL"]:
        for pdf in pdfs_of(tm, ph)[:3] if ph != "SIL" else pdfs_of(tm, ph):
            row = np.full(tm.num_pdfs, -30.0, np.float32)
            row[pdf] = 0.0
            rows += [row] * 4
    s = Search(graph, SearchConfig(beam=13.0, lattice_beam=6.0, acoustic_scale=0.1), tm.num_pdfs)
    lat, t = s.lattice(np.stack(rows))
    assert [WORDS[w] for w in lat.best_paths([(10.0, 0.0)])[0][0]] == ["C", "B"]
    assert t.frames == len(rows) and t.search >= 0.0
    words, _ = s.best_path(np.stack(rows))
    assert [WORDS[w] for w in words] == ["C", "B"]
    with pytest.raises(ValueError, match="shape"):
        s.lattice(np.zeros((5, 3), np.float32))


@pytest.mark.parametrize("name", ["HCLG.fst"])
def test_damaged_graph_is_named_before_any_decoding(
    toy, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    graph, model = toy
    bad = tmp_path / "graph"
    shutil.copytree(graph, bad)
    data = toy_data(tmp_path / "dev", n=2)
    full = (graph / name).read_bytes()
    for cut in (len(full) // 2, 20):  # truncated body; truncated header
        (bad / name).write_bytes(full[:cut])
        with pytest.raises(GraphError, match=f"{bad / name} is (truncated|not a complete)"):
            check_graph(bad)
        out = tmp_path / f"decode_{cut}"
        assert (
            decode_gmm.main(
                [
                    "--model",
                    str(model),
                    "--graph",
                    str(bad),
                    "--data",
                    str(data),
                    "--out",
                    str(out),
                    "--nj",
                    "1",
                ]
            )
            == 1
        )
        err = capsys.readouterr().err
        assert str(bad / name) in err and "Traceback" not in err and "--force" in err
        assert not (out / ".done").exists() and not list(out.glob("lat.*.gz"))
    nn = tiny_nnet(tmp_path / "m.safetensors", int((graph / "num_pdfs").read_text()))
    assert (
        decode_nnet.main(
            [
                "--model",
                str(nn),
                "--graph",
                str(bad),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "nn"),
                "--nj",
                "1",
            ]
        )
        == 1
    )
    assert f"{bad / name}" in capsys.readouterr().err
    (bad / "words.txt").unlink()
    with pytest.raises(GraphError, match="lacks words.txt"):
        check_graph(bad)


def test_a_graph_with_bytes_replaced_mid_file_is_a_graph_error_naming_it(
    toy, tmp_path: Path
) -> None:
    """OpenFst reads absurd counts from overwritten bytes (vector::reserve, bad_alloc): one
    GraphError naming the file, never a bare ValueError or MemoryError."""
    graph, _ = toy
    bad = tmp_path / "graph"
    shutil.copytree(graph, bad)
    full = (graph / "HCLG.fst").read_bytes()
    damaged = 0
    for off in range(60, len(full) - 8, 7):
        b = bytearray(full)
        b[off : off + 8] = b"\xff" * 8
        (bad / "HCLG.fst").write_bytes(bytes(b))
        try:
            check_graph(bad)
        except GraphError as e:
            assert str(bad / "HCLG.fst") in str(e) and "decode.graph" in str(e)
            damaged += "is damaged (OpenFst:" in str(e)
    assert damaged > 0  # some overwrites are of the kind that used to escape as ValueError
