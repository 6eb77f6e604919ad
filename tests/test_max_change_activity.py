"""How often max-change limited the updates: counted by NG-SGD's step, summed over workers
per epoch by the trainer, logged as Kaldi does, kept across a resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from steps_py.nnet.ngsgd import NGSGD
from tests.conftest import train_toy as _train


def _step(lr: float, max_change: float, max_change_global: float) -> NGSGD:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = NGSGD(
        model,
        lr=lr,
        max_change=max_change,
        max_change_global=max_change_global,
        natural_gradient=False,
    )
    nn.functional.cross_entropy(model(torch.randn(16, 4)), torch.randint(0, 3, (16,))).backward()
    opt.step()
    return opt


def test_counts_follow_the_limits() -> None:
    big = _step(lr=1e4, max_change=0.01, max_change_global=0.001)
    assert big.num_layer_updates == 2
    assert big.num_max_change_applied == 2
    assert big.global_max_change_applied
    small = _step(lr=1e-6, max_change=0.75, max_change_global=2.0)
    assert small.num_layer_updates == 2
    assert small.num_max_change_applied == 0
    assert not small.global_max_change_applied
    # the per-layer limit alone: each layer scaled to 0.01, total sqrt(2) * 0.01 < 1
    per_layer = _step(lr=1e4, max_change=0.01, max_change_global=1.0)
    assert per_layer.num_max_change_applied == 2
    assert not per_layer.global_max_change_applied


@pytest.mark.parametrize(("lr", "expect"), [(50.0, 100.0), (1e-5, 0.0)])
def test_epoch_history_and_log(
    toy_egs: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], lr: float, expect: float
) -> None:
    s = _train(
        toy_egs,
        tmp_path / "exp",
        simulate=2,
        optimizer="sgd-mc",
        lr_initial=lr,
        lr_final=lr,
        max_change=0.5,
        max_change_global=0.6,
    )
    for h in s["history"]:
        assert h["max_change_layer_pct"] == pytest.approx(expect)
        assert h["max_change_global_pct"] == pytest.approx(expect)
    lines = [x for x in capfd.readouterr().err.splitlines() if "max-change active on" in x]
    assert len(lines) == len(s["history"]) == 2
    assert f"max-change active on {expect:.1f} % of layer updates" in lines[0]


def test_without_max_change_nothing_is_reported(toy_egs: Path, tmp_path: Path) -> None:
    s = _train(toy_egs, tmp_path / "exp", optimizer="sgd")
    assert all("max_change_layer_pct" not in h for h in s["history"])


def test_counts_survive_a_resume(toy_egs: Path, tmp_path: Path) -> None:
    opts = dict(
        simulate=2,
        optimizer="ngsgd",
        lr_initial=2.0,
        lr_final=0.1,
        block_minibatches=3,
        checkpoint_every_blocks=2,
    )
    full = _train(toy_egs, tmp_path / "full", **opts)
    _train(toy_egs, tmp_path / "part", stop_after_blocks=4, **opts)
    resumed = _train(toy_egs, tmp_path / "part", resume=True, **opts)
    pcts = [h["max_change_layer_pct"] for h in full["history"]]
    assert any(0.0 < p < 100.0 for p in pcts)  # a mixed epoch: a real count, not a constant
    assert resumed["history"] == full["history"]
