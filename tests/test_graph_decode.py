"""HCLG construction (decoding on it: tests/test_decode_search.py and tests/test_decode_cli.py)."""

from __future__ import annotations

from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np
import pytest

from steps_py.decode import graph as mkgraph
from steps_py.gmm.feats import add_deltas
from steps_py.gmm.model_io import GmmParams, MonoModel, load_gmm, monophone_tree, save_model
from steps_py.gmm.toy import PHONES, make_toy_lang, toy_features


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


def test_graph_is_idempotent(graph_dir, caplog: pytest.LogCaptureFixture) -> None:
    out, model = graph_dir
    before = (out / "HCLG.fst").stat().st_mtime_ns
    mkgraph.main(["--lang", str(out.parent / "lang_test"), "--model", str(model), "--out", str(out)])
    assert (out / "HCLG.fst").stat().st_mtime_ns == before
