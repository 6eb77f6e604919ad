"""The averagers beside the EMA, each against a hand-computed reference, and post-hoc EMA."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from steps_py.parallel.averagers import IcefallAverage, LastModelsCombination
from steps_py.parallel.ema import EmaSpec
from steps_py.parallel.posthoc import (
    PowerEmaSnapshots,
    exp_ema_weights,
    power_ema_weights,
    reconstruct,
    sigma_rel_to_gamma,
)
from tests.conftest import train_toy
from tests.toy_nnet import ToyMlp, make_toy_egs


def _sequence(n: int, dim: int = 7, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(dim, generator=g, dtype=torch.float64) for _ in range(n)]


def test_icefall_average_is_the_uniform_mean_of_its_snapshots() -> None:
    """icefall's update avg = G p/n + avg (n-p)/n, every `period` steps (here: 3 steps per
    sync, period 6, so every second sync) equals the plain mean of G at steps 6, 12, 18, ..."""
    gs = _sequence(13)
    avg = IcefallAverage(period=6)
    avg.init(gs[0])
    assert avg.models() == []  # nothing averaged before the first period
    for t, g in enumerate(gs[1:], start=1):
        avg.update(g, frames=10.0, steps=3 * t)
    snaps = [gs[t] for t in range(1, 13) if (3 * t) % 6 == 0]
    ((label, value),) = avg.models()
    assert label == "icefall-avg" and avg.updates == len(snaps) == 6
    torch.testing.assert_close(value, torch.stack(snaps).mean(0), rtol=0, atol=1e-12)


def test_icefall_average_with_syncs_that_straddle_the_period() -> None:
    """Syncs every 4 steps, period 6: updates at steps 8, 12, 16, 20, 24 with p = 8, 4, 4, 4, 4:
    each G weighted by the steps since the previous update."""
    gs = _sequence(7, seed=1)
    avg = IcefallAverage(period=6)
    avg.init(gs[0])
    for t, g in enumerate(gs[1:], start=1):
        avg.update(g, frames=1.0, steps=4 * t)
    # steps 4 (no: 4 // 6 == 0), 8, 12, 16 (16 // 6 = 2 == 12 // 6: no), 20, 24
    w = {2: 8, 3: 4, 5: 8, 6: 4}
    ref = sum(gs[t] * p for t, p in w.items()) / 24
    torch.testing.assert_close(avg.models()[0][1], ref, rtol=0, atol=1e-12)


def test_combination_of_the_last_k_models_and_the_choice_of_k() -> None:
    gs = _sequence(9, seed=2)
    comb = LastModelsCombination(max_models=4)
    comb.init(gs[0])
    for t, g in enumerate(gs[1:], start=1):
        comb.update(g, frames=1.0, steps=t)
    assert len(comb.kept) == 4
    for k in range(1, 5):
        torch.testing.assert_close(
            comb.average_of_last(k), torch.stack(gs[-k:]).mean(0), rtol=0, atol=1e-12
        )
    target = torch.stack(gs[-3:]).mean(0)  # a "dev loss" minimised by the last 3
    k, losses = comb.choose_k(lambda v: float((v - target).norm()))
    assert k == 3 and len(losses) == 4 and losses[2] == pytest.approx(0.0, abs=1e-12)
    sparse = LastModelsCombination(max_models=10, every_steps=4)  # none/ddp: one per 4 steps
    sparse.init(gs[0])
    for t, g in enumerate(gs[1:], start=1):
        sparse.update(g, frames=1.0, steps=t)
    assert [v.tolist() for v in sparse.kept] == [gs[4].tolist(), gs[8].tolist()]


def test_power_ema_profiles() -> None:
    # sigma_rel 0.05 and 0.10 are EDM2's choices; gamma solves its closed form
    for s in (0.05, 0.10):
        g = sigma_rel_to_gamma(s)
        assert (g + 1) / ((g + 2) ** 2 * (g + 3)) == pytest.approx(s * s)
    w = power_ema_weights(sigma_rel_to_gamma(0.1), upto=50, length=60)
    assert w.sum() == pytest.approx(1.0) and w[0] == 0 and (w[51:] == 0).all()
    assert np.all(np.diff(w[1:51]) > 0)  # weights grow towards the present
    frames = [100.0] * 20
    e = exp_ema_weights(EmaSpec(half_life=300.0), frames)
    assert e.sum() == pytest.approx(1.0) and e[-1] == pytest.approx(1 - 0.5 ** (1 / 3))


def test_posthoc_weights_match_the_tracked_recursion(tmp_path: Path) -> None:
    """The snapshot weights are exact: a reconstruction target that IS a snapshot comes back."""
    gs = _sequence(41, dim=5, seed=3)
    snaps = PowerEmaSnapshots(tmp_path / "ph", [0.05, 0.10], every=8)
    snaps.init(gs[0].float())
    for g in gs[1:]:
        snaps.update(g.float(), frames=50.0, steps=0)
    snaps.finish(gs[-1].float())
    manifest = json.loads((tmp_path / "ph/manifest.json").read_text())
    for s in manifest["snapshots"]:
        if s["kind"] != "power":
            continue
        v = load_file(tmp_path / "ph" / s["file"])["flat"].double()
        w = power_ema_weights(s["gamma"], s["t"], len(gs))
        ref = sum(float(wi) * gi for wi, gi in zip(w, gs, strict=True))
        torch.testing.assert_close(v, ref, rtol=0, atol=1e-5)


def test_posthoc_reconstruction_of_a_tracked_ema_in_a_real_run(tmp_path: Path) -> None:
    """Train with post-hoc snapshots and a tracked EMA; the reconstructed EMA of the same
    half-life is close to the tracked one (much closer than the global model is)."""
    egs_dir = tmp_path / "egs"
    make_toy_egs(egs_dir, frames=2048, dev_frames=128)
    exp = tmp_path / "run"
    train_toy(
        egs_dir,
        exp,
        simulate=2,
        block_minibatches=1,
        epochs=3,
        ema_decays="",
        ema_half_life_frames="1500",
        posthoc_snapshots=24,
    )
    tracked = load_file(exp / "final/ema-hl1500.safetensors")
    glob = load_file(exp / "final/global.safetensors")
    rec, info = reconstruct(exp / "posthoc", EmaSpec(half_life=1500.0))
    names = [n for n, _ in ToyMlp(16, 8).named_parameters()]  # the flat vector's order
    flat_t = torch.cat([tracked[k].reshape(-1) for k in names])
    flat_g = torch.cat([glob[k].reshape(-1) for k in names])
    assert rec.numel() == flat_t.numel()
    err, ref = float((rec - flat_t).abs().max()), float((flat_g - flat_t).abs().max())
    assert err < 0.2 * ref, (err, ref, info)
    assert info["weight_residual"] < 0.2 * info["weight_norm"]


def test_the_combination_keeps_the_final_model_of_a_short_block() -> None:
    """Fix: a sync fewer than K steps after the last kept model (the short last block of an
    epoch) was dropped for MA/BMUF too, so G(T) was never combined; the spacing is for
    per-step syncs only, and their final G(T) is kept as well."""
    from steps_py.parallel.averager_set import build_averagers
    from steps_py.parallel.config import AveragerConfig

    gs = _sequence(11, seed=3)
    block = LastModelsCombination(max_models=10)  # MA/BMUF: syncs at steps 4, 8, 10
    block.init(gs[0])
    for steps in (4, 8, 10):
        block.update(gs[steps], frames=1.0, steps=steps)
    block.finish(gs[10], 10)  # nothing to add: G(10) is kept already
    assert [v.tolist() for v in block.kept] == [gs[4].tolist(), gs[8].tolist(), gs[10].tolist()]
    torch.testing.assert_close(block.average_of_last(1), gs[10], rtol=0, atol=0)
    per_step = LastModelsCombination(max_models=10, every_steps=4)  # none/ddp: every step
    per_step.init(gs[0])
    for steps in range(1, 11):
        per_step.update(gs[steps], frames=1.0, steps=steps)
    per_step.finish(gs[10], 10)
    assert [v.tolist() for v in per_step.kept] == [gs[4].tolist(), gs[8].tolist(), gs[10].tolist()]
    config = AveragerConfig(
        ema_specs=(),
        ema_interfering=False,
        icefall_average_period=0,
        combine_max_models=5,
        posthoc_snapshots=0,
        posthoc_sigma_rels=(),
    )
    for sync, every in (("ma", 1), ("bmuf-nbm", 1), ("ddp", 4), ("none", 4)):
        comb = build_averagers(config, sync, Path("."), 4, 10, 1000.0)["combine"]
        assert isinstance(comb, LastModelsCombination) and comb.every_steps == every
