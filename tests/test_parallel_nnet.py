"""The loop with the project's real models, EgsReader, NG-SGD and model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from steps_py.nnet.egs import EgsParams, EgsReader, write_egs
from steps_py.nnet.model_io import load_acoustic_model
from steps_py.parallel.train import build_parser, parse_args, run

P, D = 5, 6


def _egs(root: Path, model_type: str) -> Path:
    """Learnable random corpus: the pdf of a frame is the argmax of a fixed projection."""
    rng = np.random.default_rng(0)
    proj = rng.standard_normal((D, P))
    feats, alis = {}, {}
    for i in range(16):
        x = rng.standard_normal((40 + 3 * i, D)).astype(np.float32)
        feats[f"u{i:02d}"], alis[f"u{i:02d}"] = x, (x @ proj).argmax(1).astype(np.int32)
    utts = sorted(feats)
    params = EgsParams(
        model_type=model_type,
        num_shards=2,
        seed=1,
        context=2,
        chunk=8,
        left_context=4,
        target_delay=1,
    )
    write_egs(
        root / model_type,
        (utts[4:], feats.__getitem__, alis),
        P,
        params,
        (utts[:4], feats.__getitem__, alis),
    )
    return root / model_type


@pytest.mark.parametrize(
    "model_type,cfg,bs",
    [
        ("dnn", "hidden_layers=2,hidden_dim=32", 32),
        ("lstm", "lstm_layers=1,cells=16,proj=8", 4),
    ],
)
def test_nnet_models_train_and_save_loadable_models(
    tmp_path: Path, model_type: str, cfg: str, bs: int
) -> None:
    egs = _egs(tmp_path, model_type)
    exp = tmp_path / "exp"
    argv = [
        "--egs",
        str(egs),
        "--exp-dir",
        str(exp),
        "--model-config",
        cfg,
        "--epochs",
        "2",
        "--batch-size",
        str(bs),
        "--simulate",
        "2",
        "--sync",
        "bmuf-nbm",
        "--block-minibatches",
        "2",
        "--ema-decays",
        "0.9",
        "--ema-half-life-frames",
        "",
        "--optimizer",
        "ngsgd",
        "--lr-initial",
        "0.01",
        "--lr-final",
        "0.002",
        "--threads",
        "1",
        "--no-tensorboard",
    ]
    s = run(parse_args(build_parser(), argv))
    assert s["model"] == model_type and s["workers"] == 2
    h = s["history"]
    assert (
        h[-1]["train_loss"] < h[0]["train_loss"] or h[-1]["dev_ce_global"] < h[0]["dev_ce_global"]
    )
    model, mcfg, priors = load_acoustic_model(exp / "final/ema-0.9.safetensors")
    assert mcfg["type"] == model_type and mcfg["num_pdfs"] == P
    _, _, counts = load_acoustic_model(exp / "final/ema-0.9.safetensors", priors="counts")
    assert np.allclose(counts, np.load(egs / "priors.npy"))
    # decoding priors: the model's own mean posterior over one epoch of the training examples
    # (fewer frames than --prior-frames here), as the single reader of the run's seed gives them
    reader = EgsReader(egs, rank=0, world_size=1, batch_size=bs, seed=1)
    with torch.no_grad():
        logits = torch.cat([model(x).reshape(-1, P)[y.reshape(-1) != -100] for x, y in reader])
    mean = torch.softmax(logits.double(), -1).mean(0).numpy()
    assert s["final_priors"]["ema-0.9"]["frames"] == logits.shape[0] > 0
    assert np.allclose(priors, np.log(mean), atol=1e-5)
    assert not np.allclose(priors, counts, atol=1e-2)
    lp = model.log_posteriors(torch.randn(30, D))
    assert lp.shape == (30, P)
    g, _, _ = load_acoustic_model(exp / "final/global.safetensors")
    assert any(
        not torch.equal(a, b)
        for a, b in zip(g.state_dict().values(), model.state_dict().values(), strict=True)
    )
