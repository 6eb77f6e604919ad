"""MA and BMUF (CBM/NBM) against a reference of the DESIGN.md equations on a toy model."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from steps_py.parallel.flat import FlatState
from steps_py.parallel.group import SimulatedGroup
from steps_py.parallel.sync import Bmuf, ModelAveraging, make_sync

N, TAU, BLOCKS = 2, 3, 5


def _toy_workers(seed: int = 0) -> list[nn.Module]:
    torch.manual_seed(seed)
    base = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    return [copy.deepcopy(base) for _ in range(N)]


def _local_training(models: list[nn.Module], start: torch.Tensor, block: int) -> list[torch.Tensor]:
    """Every worker starts from `start` and runs TAU SGD steps on its own data."""
    out = []
    for i, m in enumerate(models):
        fs = FlatState(m)
        fs.set(start)
        g = torch.Generator().manual_seed(1000 * block + i)
        for _ in range(TAU):
            x = torch.randn(8, 4, generator=g)
            y = torch.randint(0, 3, (8,), generator=g)
            loss = nn.functional.cross_entropy(m(x), y)
            m.zero_grad()
            loss.backward()
            with torch.no_grad():
                for p in m.parameters():
                    p -= 0.3 * p.grad
        out.append(fs.get())
    return out


def test_model_averaging_matches_reference() -> None:
    models = _toy_workers()
    group = SimulatedGroup(world_size=N)
    sync = ModelAveraging()
    start = FlatState(models[0]).get()
    sync.init(start)
    ref_b = start.clone()
    for t in range(1, BLOCKS + 1):
        ws = _local_training(models, ref_b, t)
        b = sync.on_block_end(group, [w.clone() for w in ws], 0.0)
        ref_a = sum(w.double() for w in ws).float() / N  # A(t); MA: G(t) = B(t) = A(t)
        ref_b = ref_a
        torch.testing.assert_close(sync.global_flat, ref_a, rtol=0, atol=1e-7)
        torch.testing.assert_close(b, ref_b, rtol=0, atol=1e-7)
    assert not torch.equal(sync.global_flat, start)


@pytest.mark.parametrize("nesterov", [False, True])
def test_bmuf_matches_reference_with_global_and_lookahead_apart(nesterov: bool) -> None:
    models = _toy_workers(1)
    group = SimulatedGroup(world_size=N)
    sync = make_sync("bmuf-nbm" if nesterov else "bmuf-cbm", N)
    assert isinstance(sync, Bmuf)
    eta, zeta = 1.0 - 1.0 / N, 1.0  # defaults of DESIGN.md
    assert sync.eta == eta and sync.zeta == zeta
    start = FlatState(models[0]).get().double()
    sync.init(start.float())
    # Reference in float64, written straight from the equations.
    g_ref, b_ref, delta_ref = start.clone(), start.clone(), torch.zeros_like(start)
    for t in range(1, BLOCKS + 1):
        ws = _local_training(models, sync.start_flat, t)
        b = sync.on_block_end(group, ws, 0.0)
        a = sum(w.double() for w in ws) / N
        d = a - b_ref
        delta_ref = eta * delta_ref + zeta * d
        g_ref = g_ref + delta_ref
        b_ref = g_ref + eta * delta_ref if nesterov else g_ref.clone()
        torch.testing.assert_close(sync.global_flat.double(), g_ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(b.double(), b_ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(sync.delta.double(), delta_ref, rtol=0, atol=1e-5)
        b_ref = b.double()  # the workers start from what the object broadcast
    gap = (sync.start_flat - sync.global_flat).abs().max().item()
    if nesterov:
        assert gap > 1e-4  # look-ahead B = G + eta * Delta, kept apart from G
        torch.testing.assert_close(sync.start_flat, sync.global_flat + eta * sync.delta)
    else:
        assert gap == 0.0


def test_bmuf_warmup_blocks_are_plain_averaging_and_state_roundtrips() -> None:
    models = _toy_workers(2)
    group = SimulatedGroup(world_size=N)
    sync = make_sync("bmuf-nbm", N, block_momentum=0.75, block_lr=1.5, warmup_blocks=2)
    sync.init(FlatState(models[0]).get())
    for t in (1, 2):
        ws = _local_training(models, sync.start_flat, t)
        b = sync.on_block_end(group, ws, 0.0)
        torch.testing.assert_close(b, (ws[0] + ws[1]) / 2)
        assert torch.equal(sync.global_flat, b)
    ws = _local_training(models, sync.start_flat, 3)
    prev_b = sync.start_flat.clone()
    sync.on_block_end(group, ws, 0.0)
    expect_delta = 1.5 * ((ws[0] + ws[1]) / 2 - prev_b)
    torch.testing.assert_close(sync.delta, expect_delta, rtol=0, atol=1e-6)
    clone = make_sync("bmuf-nbm", N, block_momentum=0.75, block_lr=1.5, warmup_blocks=2)
    clone.load_state_dict(sync.state_dict())
    ws = _local_training(models, sync.start_flat, 4)
    assert torch.equal(clone.on_block_end(group, ws, 0.0), sync.on_block_end(group, ws, 0.0))


def test_make_sync_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="one worker"):
        make_sync("none", 2)
    with pytest.raises(ValueError, match="bmuf-momentum"):
        make_sync("bmuf-cbm", 2, block_momentum=1.0)
    with pytest.raises(ValueError, match="unknown"):
        make_sync("easgd", 2)
    with pytest.raises(ValueError, match="--sync ma"):
        make_sync("bmuf-cbm", 2).load_state_dict(ModelAveraging().state_dict())


def test_simulated_group_sums_in_rank_order() -> None:
    g = SimulatedGroup(world_size=3)
    ts = [torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]), torch.tensor([5.0, 9.0])]
    assert torch.equal(g.all_reduce_mean(ts), torch.tensor([3.0, 5.0]))
    assert torch.equal(ts[0], torch.tensor([1.0, 2.0]))  # inputs untouched
    assert g.all_reduce_min_int([4, 2, 7]) == 2
    with pytest.raises(ValueError):
        g.all_reduce_sum(ts[:2])
