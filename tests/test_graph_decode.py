"""HCLG construction, WFST decoding with known answers, and decode-dir LM-weight selection."""

from __future__ import annotations

from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np
import pytest

from steps_py.decode import graph as mkgraph
from steps_py.decode.decode_dir import write_decode_dir
from steps_py.decode.wfst import GraphError, WfstDecoder
from steps_py.gmm.feats import add_deltas
from steps_py.gmm.model_io import GmmParams, MonoModel, load_gmm, monophone_tree, save_model
from steps_py.gmm.toy import PHONES, WORDS, make_toy_lang, toy_features, toy_utterance


def _pdfs_of(tm: khg.TransitionModel, phone: str) -> list[int]:
    return sorted(khg.get_pdfs_for_phones(tm, [PHONES.index(phone)])[1])


@pytest.fixture(scope="module")
def graph_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("graph")
    lang = make_toy_lang(root / "lang_test")
    topo_text = (lang / "topo").read_text()
    from steps_py.gmm.model_io import read_topology

    topo = read_topology(topo_text)
    tm = khg.TransitionModel(ctx_dep=monophone_tree(topo), hmm_topo=topo)
    w, m, v = [], [], []
    for j in range(tm.num_pdfs):  # each pdf: the true Gaussian of its phone in the toy features
        phone = next(p for p in ("SIL", "SPN", "a", "b", "c") if j in _pdfs_of(tm, p))
        w.append(np.ones(1, np.float32))
        m.append(add_deltas(toy_features([(phone, 40)], seed=1)).mean(0)[None].astype(np.float32))
        v.append(np.full((1, 39), 0.25, np.float32))
    model = root / "final.npz"
    save_model(model, MonoModel(topo_text, np.asarray(tm.log_probs), GmmParams(w, m, v)))
    out = root / "graph"
    mkgraph.main(["--lang", str(lang), "--model", str(model), "--out", str(out)])
    return out, model


def _max_ilabel(path: Path) -> int:
    fst = kaldifst.StdVectorFst.read(str(path))
    return max((arc.ilabel for s in range(fst.num_states) for arc in kaldifst.ArcIterator(fst, s)), default=0)


def test_graph_files_and_labels(graph_dir) -> None:
    out, model = graph_dir
    for name in ("HCLG.fst", "HCLG_pdf.fst", "words.txt", "phones.txt", "num_pdfs", "topo", ".done"):
        assert (out / name).is_file(), name
    tm, _ = load_gmm(model)
    assert _max_ilabel(out / "HCLG.fst") <= tm.num_transition_ids  # disambiguation symbols removed
    assert _max_ilabel(out / "HCLG_pdf.fst") <= tm.num_pdfs
    assert int((out / "num_pdfs").read_text()) == tm.num_pdfs


def _fake_loglikes(tm: khg.TransitionModel, phones: list[str], frames_per_state: int = 4) -> np.ndarray:
    rows = []
    for ph in phones:
        for pdf in _pdfs_of(tm, ph)[:3] if ph != "SIL" else _pdfs_of(tm, ph):
            row = np.full(tm.num_pdfs, -30.0, np.float32)
            row[pdf] = 0.0
            rows += [row] * frames_per_state
    return np.stack(rows)


@pytest.mark.parametrize("search", ["faster", "lattice"])
@pytest.mark.parametrize(("phones", "words"), [(["SIL", "c", "a", "b", "SIL"], ["C", "B"]), (["a", "b", "a"], ["A", "B", "A"])])
def test_decode_loglikes_known_words(graph_dir, phones: list[str], words: list[str], search: str) -> None:
    out, model = graph_dir
    tm, _ = load_gmm(model)
    dec = WfstDecoder(out, decoder=search)
    res = dec.decode_loglikes(_fake_loglikes(tm, phones), lm_weights=[1.0, 10.0])
    assert set(res) == {1.0, 10.0}
    for ids in res.values():
        assert dec.words_of(ids) == words
        assert ids == [WORDS.index(x) for x in words]


@pytest.mark.parametrize("search", ["faster", "lattice"])
def test_decode_gmm_on_toy_features(graph_dir, search: str) -> None:
    out, model = graph_dir
    tm, am = load_gmm(model)
    feats, _ = toy_utterance(["B", "A", "C"], np.random.default_rng(4), seed=42)
    res = WfstDecoder(out, decoder=search).decode_gmm(add_deltas(feats), tm, am, lm_weights=[8.0])
    assert [WORDS[i] for i in res[8.0]] == ["B", "A", "C"]


def test_decoder_rejects_bad_input(graph_dir, tmp_path: Path) -> None:
    out, _ = graph_dir
    with pytest.raises(ValueError, match="shape"):
        WfstDecoder(out).decode_loglikes(np.zeros((5, 3), np.float32), [10.0])
    with pytest.raises(GraphError, match="steps_py.decode.graph"):
        WfstDecoder(tmp_path)


def test_graph_is_idempotent(graph_dir, caplog: pytest.LogCaptureFixture) -> None:
    out, model = graph_dir
    before = (out / "HCLG.fst").stat().st_mtime_ns
    mkgraph.main(["--lang", str(out.parent / "lang_test"), "--model", str(model), "--out", str(out)])
    assert (out / "HCLG.fst").stat().st_mtime_ns == before


def test_decode_dir_picks_lm_weight_on_dev_and_reuses_it(tmp_path: Path) -> None:
    ref = {"u1": "打 开 导 航", "u2": "听 歌"}
    dev_hyps = {8.0: {"u1": "打 开", "u2": "听 歌"}, 10.0: {"u1": "打 开 导 航", "u2": "听"}, 12.0: {"u1": "打 开 导 航", "u2": "听 歌"}}
    best, res = write_decode_dir(tmp_path / "dev", ref, dev_hyps)
    assert best == 12.0 and res.errors == 0
    assert (tmp_path / "dev" / "best_lmwt").read_text().strip() == "12"
    assert (tmp_path / "dev" / "cer").read_text().startswith("%CER 0.00 [ 0 / 6")
    for w in (8, 10, 12):
        assert (tmp_path / "dev" / f"hyp_lmwt{w}.txt").is_file()
    test_hyps = {12.0: {"u1": "打 开", "u2": "听 歌"}}
    best_t, res_t = write_decode_dir(tmp_path / "test", ref, test_hyps, lm_weight_from=tmp_path / "dev")
    assert best_t == 12.0 and res_t.errors == 2
    assert (tmp_path / "test" / "hyp.txt").read_text() == "u1 打 开\nu2 听 歌\n"
    with pytest.raises(SystemExit, match="not decoded"):
        write_decode_dir(tmp_path / "test2", ref, {9.0: test_hyps[12.0]}, lm_weight_from=tmp_path / "dev")
