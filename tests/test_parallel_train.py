"""The training loop in simulation: resume equality, logs, summary, clear errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from steps_py.parallel.checkpoint import list_checkpoints
from steps_py.parallel.train import TrainingError
from tests.conftest import train_toy as _train


@pytest.fixture(scope="module")
def egs(toy_egs: Path) -> Path:
    return toy_egs


def _final(exp: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.name: load_file(p) for p in sorted((exp / "final").glob("*.safetensors"))}


@pytest.mark.parametrize("sync", ["bmuf-cbm", "ddp"])
def test_stop_and_resume_equals_uninterrupted(egs: Path, tmp_path: Path, sync: str) -> None:
    opts = dict(
        simulate=2,
        sync=sync,
        block_minibatches=3,
        checkpoint_every_blocks=2,
        ema_decays="0.9",
        ema_half_life_frames="2000",
        ema_warmup=True,
    )
    full = _train(egs, tmp_path / "full", **opts)
    part = _train(egs, tmp_path / "part", stop_after_blocks=4, **opts)
    assert part["stopped_at_block"] == 4 and not (tmp_path / "part/final").exists()
    resumed = _train(egs, tmp_path / "part", resume=True, **opts)
    a, b = _final(tmp_path / "full"), _final(tmp_path / "part")
    assert list(a) == [
        "ema-warmup-upto-0.9.safetensors",
        "ema-warmup-upto-hl2000.safetensors",
        "global.safetensors",
    ]
    for name in a:
        for k in a[name]:
            assert torch.equal(a[name][k], b[name][k]), (name, k)
    assert resumed["history"] == full["history"]
    rows_full = list(csv.DictReader((tmp_path / "full/log/train.csv").open()))
    rows_part = list(csv.DictReader((tmp_path / "part/log/train.csv").open()))
    assert [r["global_step"] for r in rows_part] == [r["global_step"] for r in rows_full]
    assert len(list_checkpoints(tmp_path / "part")) <= 2  # --keep-checkpoints default


def test_logs_summary_and_idempotence(egs: Path, tmp_path: Path) -> None:
    exp = tmp_path / "run"
    s = _train(
        egs,
        exp,
        simulate=2,
        sync="ma",
        block_minibatches=4,
        eval_every_blocks=2,
        no_tensorboard=False,
    )
    for key in (
        "model",
        "sync",
        "workers",
        "block_minibatches",
        "epochs",
        "ema_decays",
        "wall_time_s",
        "frames_per_s",
        "history",
    ):
        assert key in s
    assert (s["sync"], s["workers"], s["block_minibatches"]) == ("ma", 2, 4)
    assert json.loads((exp / "summary.json").read_text()) == json.loads(json.dumps(s))
    assert len(s["history"]) == 2
    h = s["history"][-1]
    assert 0.0 <= h["dev_acc_ema-0.99"] <= 1.0 and h["dev_ce_global"] > 0
    assert s["history"][1]["train_loss"] < s["history"][0]["train_loss"]
    rows = list(csv.DictReader((exp / "log/train.csv").open()))
    blocks = [r for r in rows if r["kind"] == "block"]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    per_epoch = (1024 // 2 // 32 + 3) // 4
    assert len(blocks) == 2 * per_epoch and len(epochs) == 2
    assert blocks[1]["dev_ce_ema-0.9"] != "" and blocks[0]["dev_ce_ema-0.9"] == ""
    assert float(blocks[-1]["t_comm"]) > 0 and float(blocks[-1]["t_ema"]) > 0
    assert list((exp / "tensorboard").glob("events.out.tfevents.*"))
    # priors travel with every final model: its own adjusted ones and the count priors
    prior = np.load(egs / "priors.npy")
    for name in ("global", "ema-0.9", "ema-0.99"):
        stored = load_file(exp / f"final/{name}.safetensors")
        assert np.allclose(stored["log_priors_counts"].numpy(), prior)
        adjusted = stored["log_priors"].double()
        assert abs(float(torch.logsumexp(adjusted, 0))) < 1e-4  # a distribution over pdfs
        assert s["final_priors"][name]["frames"] > 0
    assert s["final_priors"]["priors"] == "adjusted"
    with pytest.raises(SystemExit):  # refused by argparse, before any training
        _train(egs, tmp_path / "bad", prior_frames=0)
    assert not (tmp_path / "bad").exists()
    counts_run = _train(egs, tmp_path / "counts", block_minibatches=4, epochs=1, priors="counts")
    assert counts_run["final_priors"] == {"priors": "counts"}
    stored = load_file(tmp_path / "counts/final/global.safetensors")
    assert np.allclose(stored["log_priors"].numpy(), prior) and "log_priors_counts" not in stored
    # a second run skips the finished work
    mtime = (exp / "final/global.safetensors").stat().st_mtime_ns
    again = _train(egs, exp, simulate=2, sync="ma", block_minibatches=4)
    assert again == json.loads((exp / "summary.json").read_text())
    assert (exp / "final/global.safetensors").stat().st_mtime_ns == mtime


def test_non_finite_loss_stops_with_clear_error(egs: Path, tmp_path: Path) -> None:
    # an absurd learning rate makes the loss overflow after a few minibatches
    with pytest.raises(
        TrainingError,
        match=r"non-finite .* epoch 1, minibatch [2-9]; last good "
        r"checkpoint: .*block-0000000[1-8]",
    ):
        _train(
            egs,
            tmp_path / "run",
            simulate=2,
            block_minibatches=1,
            checkpoint_every_blocks=1,
            lr_initial=1e8,
            lr_final=1e8,
            momentum=0.9,
        )
    # what a study records about the diverged run; a rerun clears it
    info = json.loads((tmp_path / "run" / "diverged.json").read_text())
    assert "non-finite" in info["reason"] and info["where"].startswith("epoch 1, minibatch")
    assert info["last_checkpoint"].endswith(tuple(f"block-0000000{i}" for i in range(1, 9)))
    _train(egs, tmp_path / "run", simulate=2, block_minibatches=1, force=True)
    assert not (tmp_path / "run" / "diverged.json").exists()


def test_model_egs_mismatch_errors(egs: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="outputs 5 classes .* 8 pdfs"):
        _train(egs, tmp_path / "a", model_config="num_pdfs=5")
    _train(egs, tmp_path / "b", stop_after_blocks=2)
    with pytest.raises(TrainingError, match="parameters differ"):
        _train(egs, tmp_path / "b", resume=True, model_config="hidden=16")
    with pytest.raises(TrainingError, match="same number of workers"):
        _train(egs, tmp_path / "b", resume=True, simulate=2)
