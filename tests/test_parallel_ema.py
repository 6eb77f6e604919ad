"""EMA: the equations of DESIGN.md, half-life decays, and non-interference in real runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steps_py.parallel.ema import EmaSet, EmaSpec
from tests.conftest import train_toy
from tests.toy_nnet import make_toy_egs


def test_ema_matches_reference_with_and_without_warmup() -> None:
    g = torch.Generator().manual_seed(0)
    gs = [torch.randn(20, generator=g) for _ in range(8)]
    for warmup in (False, True):
        ema = EmaSet([EmaSpec(decay=0.9, warmup=warmup), EmaSpec(decay=0.5, warmup=warmup)])
        ema.init(gs[0])
        ref = [gs[0].double().clone(), gs[0].double().clone()]
        for t, gt in enumerate(gs[1:], start=1):
            ema.update(gt, frames=100.0)
            for i, alpha in enumerate((0.9, 0.5)):
                a = min(alpha, (1 + t) / (10 + t)) if warmup else alpha
                ref[i] = a * ref[i] + (1 - a) * gt.double()
        for i in range(2):
            torch.testing.assert_close(ema.values[i].double(), ref[i], rtol=0, atol=1e-6)
        # with warm-up both alphas are capped at (1+t)/(10+t) < 0.5 for t < 8: equal
        assert torch.allclose(ema.values[0], ema.values[1]) == warmup
    # the warm-up changes the result (early alphas are smaller)
    cold = EmaSet([EmaSpec(decay=0.9)])
    warm = EmaSet([EmaSpec(decay=0.9, warmup=True)])
    for e in (cold, warm):
        e.init(gs[0])
        for gt in gs[1:]:
            e.update(gt, frames=100.0)
    assert not torch.allclose(cold.values[0], warm.values[0])
    assert warm.labels == ["ema-warmup-upto-0.9"]


def test_half_life_gives_half_weight_after_half_life_frames() -> None:
    ema = EmaSet([EmaSpec(decay=0.99), EmaSpec(half_life=4096.0)])
    assert ema.labels == ["ema-0.99", "ema-hl4096"]
    ema.init(torch.zeros(1))
    for _ in range(8):  # 8 updates of 512 frames = one half-life
        ema.update(torch.ones(1), frames=512.0)
    assert float(ema.values[1]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="half-life"):
        EmaSpec(half_life=0.0)


def test_a_short_block_gets_the_decay_of_its_own_frames() -> None:
    """Fix: the short last block of an epoch decays by 0.5 ** (its frames / half-life)."""
    ema = EmaSet([EmaSpec(half_life=1000.0)])
    ema.init(torch.zeros(1))
    ema.update(torch.ones(1), frames=1000.0)  # a full block: alpha 0.5
    assert ema.last_alphas == [pytest.approx(0.5)]
    ema.update(torch.ones(1), frames=250.0)  # a quarter block: alpha 0.5 ** 0.25
    assert ema.last_alphas == [pytest.approx(0.5**0.25)]
    assert float(ema.values[0]) == pytest.approx(1 - 0.5 * 0.5**0.25)


def test_ema_state_roundtrip_and_label_check() -> None:
    a = EmaSet([EmaSpec(decay=0.9)])
    a.init(torch.ones(3))
    a.update(torch.zeros(3), frames=1.0)
    b = EmaSet([EmaSpec(decay=0.9)])
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.values[0], b.values[0]) and b.updates == 1
    with pytest.raises(ValueError, match="same --ema"):
        EmaSet([EmaSpec(decay=0.99)]).load_state_dict(a.state_dict())


def _train(egs: Path, exp: Path, **opts: object) -> dict:
    return train_toy(egs, exp, epochs=1, **opts)


def test_changing_ema_decay_leaves_global_bit_identical(tmp_path: Path) -> None:
    egs = make_toy_egs(tmp_path / "egs", frames=1024, dev_frames=128)
    common = dict(simulate=2, sync="bmuf-nbm", block_minibatches=2)
    _train(egs, tmp_path / "a", ema_decays="0.9", **common)
    _train(egs, tmp_path / "b", ema_decays="0.5,0.999", ema_warmup=True, **common)
    _train(egs, tmp_path / "c", ema_decays="0.5", ema_interfering=True, **common)
    ec = load_file(tmp_path / "c/final/ema-interfering-0.5.safetensors")
    ga = load_file(tmp_path / "a/final/global.safetensors")
    gb = load_file(tmp_path / "b/final/global.safetensors")
    gc = load_file(tmp_path / "c/final/global.safetensors")
    ea = load_file(tmp_path / "a/final/ema-0.9.safetensors")
    eb = load_file(tmp_path / "b/final/ema-warmup-upto-0.5.safetensors")
    weights = [k for k in ga if k != "log_priors"]
    assert all(torch.equal(ga[k], gb[k]) for k in weights)  # non-interfering
    assert any(not torch.equal(ga[k], ea[k]) for k in weights)  # the EMA is its own model
    assert any(not torch.equal(ea[k], eb[k]) for k in weights)
    assert any(not torch.equal(ga[k], gc[k]) for k in weights)  # the ablation does interfere
    assert any(not torch.equal(gc[k], ec[k]) for k in weights)  # its G is not its E
    assert sorted(p.name for p in (tmp_path / "b/final").glob("*.safetensors")) == [
        "ema-warmup-upto-0.5.safetensors",
        "ema-warmup-upto-0.999.safetensors",
        "global.safetensors",
    ]


@pytest.mark.parametrize("sync", ["none", "ddp"])
def test_interfering_ablation_keeps_its_own_global_model(tmp_path: Path, sync: str) -> None:
    """Fix: with none/ddp, G used to alias the worker buffer, so the saved global was E."""
    egs = make_toy_egs(tmp_path / "egs", frames=512, dev_frames=64)
    n = 1 if sync == "none" else 2
    s = _train(egs, tmp_path / "run", simulate=n, sync=sync, ema_decays="0.5", ema_interfering=True)
    g = load_file(tmp_path / "run/final/global.safetensors")
    e = load_file(tmp_path / "run/final/ema-interfering-0.5.safetensors")
    weights = [k for k in g if not k.startswith("log_priors")]
    assert any(not torch.equal(g[k], e[k]) for k in weights)
    assert s["ema_interfering"] and "ema-interfering-0.5.safetensors" in s["final_models"]


# G(0) = 10 is the "random" initial model; G(1..4) = 1, 2, 3, 4, each sync 100 frames of 400.
G_SEQ = [10.0, 1.0, 2.0, 3.0, 4.0]


def _run_scalar(spec: EmaSpec, total: float = 400.0) -> list[float]:
    ema = EmaSet([spec], total_frames=total)
    ema.init(torch.tensor([G_SEQ[0]], dtype=torch.float64))
    out = []
    for g in G_SEQ[1:]:
        ema.update(torch.tensor([g], dtype=torch.float64), frames=100.0)
        out.append(float(ema.model(0)))
    return out


def test_bias_correction_and_start_against_a_hand_computation() -> None:
    # bias correction, alpha 0.5: weights 1/16, 1/8, 1/4, 1/2 on G(1..4) over 15/16; G(0) none
    bc = _run_scalar(EmaSpec(decay=0.5, bias_correction=True))
    assert bc == pytest.approx([1.0, 1.25 / 0.75, 2.125 / 0.875, 3.0625 / 0.9375])
    # start at 50 % of the run: E follows G, then E(2) = G(2), then 0.5 E + 0.5 G
    st = _run_scalar(EmaSpec(decay=0.5, start=0.5))
    assert st == pytest.approx([1.0, 2.0, 2.5, 3.25])
    # both: the bias-corrected mean of G(2..4) only
    both = _run_scalar(EmaSpec(decay=0.5, start=0.5, bias_correction=True))
    assert both == pytest.approx([1.0, 2.0, 2.0 / 0.75, 3.0 / 0.875])
    # the paper's E(0) = G(0) keeps 1/16 of the initial model
    assert _run_scalar(EmaSpec(decay=0.5))[-1] == pytest.approx(10 / 16 + 3.0625)
    # a half-life of 25 % of 400 frames is alpha 0.5 per 100-frame sync
    frac = _run_scalar(EmaSpec(half_life_fraction=0.25, bias_correction=True))
    assert frac == pytest.approx(bc)


def test_ema_labels_say_what_the_model_is() -> None:
    specs = [
        EmaSpec(half_life_fraction=0.05, start=0.1),
        EmaSpec(half_life_fraction=0.005, bias_correction=True),
        EmaSpec(half_life=400000.0, warmup=True),
        EmaSpec(decay=0.9, warmup=True),
    ]
    assert [s.label for s in specs] == [
        "ema-hl5pct-start10pct",
        "ema-hl0.5pct-bc",
        "ema-warmup-upto-hl400000",
        "ema-warmup-upto-0.9",
    ]
    with pytest.raises(ValueError, match="total frames"):
        EmaSet([EmaSpec(half_life_fraction=0.05)])
    with pytest.raises(ValueError, match="start"):
        EmaSpec(decay=0.5, start=1.0)


def test_a_started_bias_corrected_ema_resumes_exactly() -> None:
    spec = EmaSpec(decay=0.5, start=0.5, bias_correction=True)
    a = EmaSet([spec], total_frames=400.0)
    a.init(torch.tensor([G_SEQ[0]], dtype=torch.float64))
    for g in G_SEQ[1:3]:
        a.update(torch.tensor([g], dtype=torch.float64), frames=100.0)
    b = EmaSet([spec], total_frames=400.0)
    b.init(torch.tensor([G_SEQ[0]], dtype=torch.float64))
    b.load_state_dict(a.state_dict())
    for e in (a, b):
        for g in G_SEQ[3:]:
            e.update(torch.tensor([g], dtype=torch.float64), frames=100.0)
    assert float(b.model(0)) == pytest.approx(float(a.model(0))) == pytest.approx(3.0 / 0.875)


def test_a_run_with_started_and_bias_corrected_emas_saves_epoch_models(tmp_path: Path) -> None:
    egs = make_toy_egs(tmp_path / "egs", frames=512, dev_frames=64)
    s = train_toy(
        egs,
        tmp_path / "run",
        epochs=2,
        simulate=2,
        block_minibatches=2,
        ema_decays="",
        ema_half_life_fractions="0.05,0.2",
        ema_start=0.25,
        ema_bias_correction=True,
        save_epoch_models=True,
    )
    names = ["ema-hl5pct-start25pct-bc", "ema-hl20pct-start25pct-bc", "global"]
    assert s["ema_decays"] == [n.removeprefix("ema-") for n in names[:2]]
    assert s["ema_total_frames"] == pytest.approx(s["frames"], rel=0.01)
    for d in ("epoch1", "final"):
        files = sorted(p.stem for p in (tmp_path / "run" / d).glob("*.safetensors"))
        assert files == sorted(names), d
    assert not (tmp_path / "run/epoch2").exists()  # the last epoch's models are final/
    assert [sorted(k for k in h if k.startswith("dev_ce_")) for h in s["history"]] == [
        sorted(f"dev_ce_{n}" for n in names)
    ] * 2
