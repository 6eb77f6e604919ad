"""Shared test helpers for decoding: the toy lang's graph with a GMM whose Gaussians are the
toy phones' true means, toy data dirs with MFCC and fbank features on disk, a tiny network."""

from __future__ import annotations

from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldi_native_io as kio
import numpy as np

from steps_py.decode import graph as mkgraph
from steps_py.features.cmvn import write_cmvn
from steps_py.gmm.feats import add_deltas
from steps_py.gmm.model_io import GmmParams, MonoModel, monophone_tree, read_topology, save_model
from tests.toy_gmm import PHONES, make_toy_lang, toy_features, toy_utterance

FEAT_DIM = 13
TEXTS = [["B", "A", "C"], ["A"], ["C", "B"], ["A", "B"], ["C"], ["B", "A"]]


def pdfs_of(tm: khg.TransitionModel, phone: str) -> list[int]:
    return sorted(khg.get_pdfs_for_phones(tm, [PHONES.index(phone)])[1])


def build_graph(root: Path) -> tuple[Path, Path]:
    """(graph dir, GMM model file) for the toy lang."""
    lang = make_toy_lang(root / "lang_test")
    topo_text = (lang / "topo").read_text()
    topo = read_topology(topo_text)
    tm = khg.TransitionModel(ctx_dep=monophone_tree(topo), hmm_topo=topo)
    w, m, v = [], [], []
    for j in range(tm.num_pdfs):  # each pdf: the true Gaussian of its phone in the toy features
        phone = next(p for p in ("SIL", "SPN", "a", "b", "c") if j in pdfs_of(tm, p))
        w.append(np.ones(1, np.float32))
        m.append(add_deltas(toy_features([(phone, 40)], seed=1)).mean(0)[None].astype(np.float32))
        v.append(np.full((1, 3 * FEAT_DIM), 0.25, np.float32))
    model = root / "mono" / "final.npz"
    model.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, MonoModel(topo_text, np.asarray(tm.log_probs), GmmParams(w, m, v)))
    out = root / "graph"
    assert mkgraph.main(["--lang", str(lang), "--model", str(model), "--out", str(out)]) in (
        0,
        None,
    )
    return out, model


def _write_feats(d: Path, kind: str, feats: dict[str, np.ndarray], utt2spk: dict[str, str]) -> None:
    fd = d / kind
    fd.mkdir(parents=True, exist_ok=True)
    with kio.FloatMatrixWriter(f"ark,scp:{fd / 'feats.ark'},{fd / 'feats.scp'}") as w:
        for u in sorted(feats):
            w[u] = feats[u]
    dim = next(iter(feats.values())).shape[1]
    zero = np.zeros((2, dim + 1), np.float64)
    zero[0, dim] = 1.0  # a count of one and zero sums: CMVN subtracts a zero mean
    write_cmvn({s: zero.copy() for s in set(utt2spk.values())}, fd)


def toy_data(d: Path, n: int = 6, seed: int = 3, texts: list[list[str]] | None = None) -> Path:
    """A data dir: text, utt2spk, mfcc/ and fbank/ (the same toy features), zero-mean CMVN."""
    rng = np.random.default_rng(seed)
    texts = texts or TEXTS
    utts = [f"spk{i % 2}-u{i}" for i in range(n)]
    feats = {
        u: toy_utterance(texts[i % len(texts)], rng, seed=seed + i)[0].astype(np.float32)
        for i, u in enumerate(utts)
    }
    utt2spk = {u: u.split("-")[0] for u in utts}
    d.mkdir(parents=True, exist_ok=True)
    (d / "text").write_text(
        "".join(f"{u} {' '.join(texts[i % len(texts)])}\n" for i, u in enumerate(utts))
    )
    (d / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(utt2spk.items())))
    for kind in ("mfcc", "fbank"):
        _write_feats(d, kind, feats, utt2spk)
    return d


def tiny_nnet(path: Path, num_pdfs: int, seed: int = 0) -> Path:
    import torch

    from steps_py.nnet.model_io import save_acoustic_model
    from steps_py.nnet.models import build_model

    torch.manual_seed(seed)
    cfg = {
        "type": "dnn",
        "feat_dim": FEAT_DIM,
        "num_pdfs": num_pdfs,
        "context": 1,
        "hidden_layers": 1,
        "hidden_dim": 16,
    }
    save_acoustic_model(path, build_model(cfg), cfg, np.log(np.full(num_pdfs, 1.0 / num_pdfs)))
    return path
