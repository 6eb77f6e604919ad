"""NN decoding through the real WfstDecoder on a toy HCLG (steps_py.gmm.toy lang), with real
fbank-format features and CMVN on disk: the decode dir is complete and consistent, and
splitting over 2 spawned jobs gives the same hypotheses as 1 job."""

from __future__ import annotations

import shutil
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldi_native_io as kio
import numpy as np
import torch

from steps_py.decode import nnet
from steps_py.decode.graph import make_hclg
from steps_py.features.cmvn import add_stats, utterance_stats, write_cmvn
from steps_py.gmm.model_io import monophone_tree
from steps_py.gmm.topo import Lang
from steps_py.gmm.toy import make_toy_lang
from steps_py.nnet.model_io import save_acoustic_model
from steps_py.nnet.models import build_model
from steps_py.score.cer import score_files

FEAT_DIM = 5


def _toy_graph(tmp: Path) -> tuple[Path, int]:
    lang_dir = make_toy_lang(tmp / "lang")
    lang = Lang.load(lang_dir)
    topo = lang.topology()
    tree = monophone_tree(topo)
    tm = khg.TransitionModel(ctx_dep=tree, hmm_topo=topo)
    hclg, hclg_pdf = make_hclg(lang, tm, tree)
    g = tmp / "graph"
    g.mkdir()
    hclg.write(str(g / "HCLG.fst"))
    hclg_pdf.write(str(g / "HCLG_pdf.fst"))
    shutil.copy(lang_dir / "words.txt", g / "words.txt")
    shutil.copy(lang_dir / "topo", g / "topo")
    (g / "num_pdfs").write_text(f"{tm.num_pdfs}\n")
    return g, tm.num_pdfs


def _data_dir(d: Path, n: int = 6) -> Path:
    fb = d / "fbank"
    fb.mkdir(parents=True)
    rng = np.random.default_rng(0)
    texts = ["A B", "C", "B A C", "A", "C B", "B"]
    stats: dict[str, np.ndarray] = {}
    utts = [f"spk{i % 2}-u{i}" for i in range(n)]
    with kio.FloatMatrixWriter(f"ark,scp:{fb / 'feats.ark'},{fb / 'feats.scp'}") as w:
        for i, u in enumerate(utts):
            x = rng.normal(size=(40 + 7 * i, FEAT_DIM)).astype(np.float32)
            w[u] = x
            add_stats(stats, u.split("-")[0], utterance_stats(x))
    write_cmvn(stats, fb)
    (d / "text").write_text("".join(f"{u} {texts[i % len(texts)]}\n" for i, u in enumerate(utts)))
    (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in utts))
    return d


def test_decode_real_graph_one_and_two_jobs(tmp_path: Path) -> None:
    graph, num_pdfs = _toy_graph(tmp_path)
    data = _data_dir(tmp_path / "dev")
    torch.manual_seed(0)
    cfg = {"type": "dnn", "feat_dim": FEAT_DIM, "num_pdfs": num_pdfs, "context": 2, "hidden_layers": 1, "hidden_dim": 16}
    model = tmp_path / "m.safetensors"
    save_acoustic_model(model, build_model(cfg), cfg, np.log(np.full(num_pdfs, 1.0 / num_pdfs)))
    outs = {}
    for nj in (1, 2):
        out = tmp_path / f"decode_nj{nj}_dev"
        rc = nnet.main(["--model", str(model), "--graph", str(graph), "--data", str(data), "--out", str(out),
                        "--nj", str(nj), "--lm-weights", "1,10"])
        assert rc == 0
        outs[nj] = out
    one, two = outs[1], outs[2]
    for name in ("hyp_lmwt1.txt", "hyp_lmwt10.txt", "hyp.txt", "cer", "best_lmwt"):
        assert (one / name).read_text() == (two / name).read_text(), name
    hyp_lines = (one / "hyp_lmwt1.txt").read_text().splitlines()
    assert [ln.split()[0] for ln in hyp_lines] == sorted(f"spk{i % 2}-u{i}" for i in range(6))
    vocab = {"A", "B", "C", "<UNK>", "!SIL", "<SPOKEN_NOISE>"}
    assert all(set(ln.split()[1:]) <= vocab for ln in hyp_lines)
    best = (one / "best_lmwt").read_text().strip()
    assert best in ("1", "10")
    assert (one / "cer").read_text().strip() == score_files(one / "ref.txt", one / f"hyp_lmwt{best}.txt").line()
    assert (one / ".done").is_file() and "spk0" in (one / "scoring" / "per_spk").read_text()
