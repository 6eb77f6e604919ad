"""Natural-gradient preconditioner, NG-SGD optimizer, max-change and lr schedule."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from steps_py.nnet.models import build_model
from steps_py.nnet.ngsgd import NGSGD, OnlineNaturalGradient
from steps_py.nnet.optim import lr_at, make_optimizer, set_lr


def _aniso(n: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    scales = torch.logspace(-1, 1, dim)
    return torch.randn(n, dim, generator=gen) * scales


def test_keeps_frobenius_norm_and_changes_direction() -> None:
    gen = torch.Generator().manual_seed(0)
    ng = OnlineNaturalGradient(rank=8, update_period=2)
    for _ in range(12):
        x = _aniso(64, 30, gen)
        xt = ng.precondition(x)
        assert math.isclose(float(xt.norm()), float(x.norm()), rel_tol=1e-4)
    # badly scaled directions are equalised: the result is not just a copy of x
    cos = float((xt * x).sum() / (xt.norm() * x.norm()))
    assert cos < 0.95


def test_isotropic_input_gives_scalar_multiple_of_identity() -> None:
    gen = torch.Generator().manual_seed(1)
    ng = OnlineNaturalGradient(rank=10, num_samples_history=20000)
    for _ in range(40):
        ng.precondition(torch.randn(2000, 24, generator=gen) * 3.0)
    eig = torch.linalg.eigvalsh(ng.smoothed_fisher_matrix())
    assert float((eig.max() - eig.min()) / eig.mean()) < 0.15
    x = torch.randn(50, 24, generator=gen)
    xt = ng.precondition(x, update=False)
    assert float((xt - x).norm() / x.norm()) < 0.05


def test_full_rank_matches_explicit_inverse_of_smoothed_fisher() -> None:
    gen = torch.Generator().manual_seed(2)
    dim = 12
    ng = OnlineNaturalGradient(rank=dim - 1, num_samples_history=4000, update_period=1)
    for _ in range(60):
        ng.precondition(_aniso(400, dim, gen))
    g = ng.smoothed_fisher_matrix()
    x = _aniso(30, dim, gen).double()
    expected = x @ torch.linalg.inv(g)
    expected *= x.norm() / expected.norm()
    got = ng.precondition(x.float(), update=False).double()
    assert torch.allclose(got, expected, atol=1e-4 * float(x.abs().max()))
    # and the Fisher estimate it keeps approximates the data's second moment
    r, d, rho = ng.fisher()
    fisher = r.double().T @ torch.diag(d.double()) @ r.double() + rho * torch.eye(dim, dtype=torch.float64)
    true = torch.diag(torch.logspace(-1, 1, dim, dtype=torch.float64) ** 2)
    assert float((fisher - true).norm() / true.norm()) < 0.15


def test_affine_input_equals_preconditioning_with_a_ones_column() -> None:
    """precondition_affine(x) (no [x 1] copy) gives the same result and estimate as precondition([x 1])."""
    gen = torch.Generator().manual_seed(11)
    implicit = OnlineNaturalGradient(rank=5, update_period=2)
    explicit = OnlineNaturalGradient(rank=5, update_period=2)
    for _ in range(9):  # initial updates, then every other minibatch
        x = _aniso(48, 17, gen) + 0.5
        x_hat, col = implicit.precondition_affine(x)
        full = explicit.precondition(torch.cat([x, torch.ones(48, 1)], 1))
        assert x_hat.shape == (48, 17) and col.shape == (48,)
        assert torch.allclose(x_hat, full[:, :-1], atol=1e-5)
        assert torch.allclose(col, full[:, -1], atol=1e-5)
    (r1, d1, rho1), (r2, d2, rho2) = implicit.fisher(), explicit.fisher()
    assert r1.shape == r2.shape == (5, 18)
    assert torch.allclose(r1.abs(), r2.abs(), atol=1e-4)  # rows are eigenvectors: sign-free
    assert torch.allclose(d1, d2, rtol=1e-4) and math.isclose(rho1, rho2, rel_tol=1e-4)


def test_linear_hooks_give_preconditioned_gradient() -> None:
    torch.manual_seed(3)
    lin = nn.Linear(6, 5)
    opt = NGSGD(lin, lr=0.1, rank_in=3, rank_out=2)
    twin_in = OnlineNaturalGradient(3)
    twin_out = OnlineNaturalGradient(2)
    for _ in range(3):
        x = torch.randn(20, 6)
        out = lin(x)
        g_out = torch.randn_like(out)
        opt.zero_grad()
        out.backward(g_out)
        x1 = torch.cat([x, torch.ones(20, 1)], 1)
        full = twin_out.precondition(g_out).T @ twin_in.precondition(x1)
        assert torch.allclose(lin.weight.grad, full[:, :-1], atol=1e-5)
        assert torch.allclose(lin.bias.grad, full[:, -1], atol=1e-5)
        plain = g_out.T @ x
        assert not torch.allclose(lin.weight.grad, plain, atol=1e-3)
        opt.step()


def test_no_grad_and_deep_copies_run_plain_linear() -> None:
    lin = nn.Linear(4, 3)
    opt = NGSGD(lin, lr=0.1)
    with torch.no_grad():
        lin(torch.randn(5, 4))
    assert opt.state[lin.weight].get("ng_in", {}) == {}  # no Fisher update without grad
    twin = copy.deepcopy(lin)  # e.g. an EMA copy: no preconditioner travels with it
    x = torch.randn(5, 4)
    g = torch.randn(5, 3)
    twin(x).backward(g)
    assert torch.allclose(twin.weight.grad, g.T @ x, atol=1e-6)
    assert opt.state[lin.weight].get("ng_in", {}) == {}
    lin(x).backward(g)
    assert "R" in opt.state[lin.weight]["ng_in"]
    assert not torch.allclose(lin.weight.grad, g.T @ x, atol=1e-3)


def test_max_change_limits_layer_and_global_update() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 3))
    opt = NGSGD(model, lr=10.0, max_change=0.5, max_change_global=0.6, natural_gradient=False)
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model(torch.randn(16, 8) * 10), torch.randint(0, 3, (16,)))
    loss.backward()
    opt.step()
    deltas = [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]
    layer0 = math.sqrt(float(deltas[0].norm() ** 2 + deltas[1].norm() ** 2))
    layer1 = math.sqrt(float(deltas[2].norm() ** 2 + deltas[3].norm() ** 2))
    assert layer0 <= 0.5 + 1e-5 and layer1 <= 0.5 + 1e-5
    assert math.isclose(math.hypot(layer0, layer1), 0.6, rel_tol=1e-4)


def _toy_problem(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    dim, classes = 20, 5
    scales = torch.logspace(-1.5, 1.0, dim)  # features badly scaled: 0.03 .. 10
    w_true = torch.randn(classes, dim, generator=gen) / scales  # every feature matters
    x = torch.randn(4096, dim, generator=gen) * scales
    y = (x @ w_true.T + 0.5 * torch.randn(4096, classes, generator=gen)).argmax(1)
    return x, y


def _train(name: str, lr: float, x: torch.Tensor, y: torch.Tensor, steps: int = 150) -> float:
    torch.manual_seed(0)
    model = nn.Linear(x.shape[1], 5)
    opt = make_optimizer(model, name, lr=lr, max_change=0.0, max_change_global=0.0, rank_in=10, rank_out=3)
    gen = torch.Generator().manual_seed(5)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        if not torch.isfinite(loss):
            return float("inf")
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y))


def test_ngsgd_converges_on_badly_scaled_problem_and_beats_sgd() -> None:
    x, y = _toy_problem(torch.Generator().manual_seed(6))
    start = float(F.cross_entropy(torch.zeros(len(y), 5), y))
    # best lr of each from the same-sized grid around its optimum (sgd diverges above 0.2)
    best_ng = min(_train("ngsgd", lr, x, y) for lr in (0.05, 0.1, 0.2))
    best_sgd = min(_train("sgd", lr, x, y) for lr in (0.03, 0.1, 0.2))
    assert best_ng < 0.6 * start
    assert best_ng < best_sgd


def test_lstm_step_and_state_dict_round_trip(tmp_path) -> None:
    torch.manual_seed(7)
    cfg = {"type": "lstm", "feat_dim": 6, "num_pdfs": 7, "left_context": 3, "chunk": 4, "target_delay": 1,
           "lstm_layers": 2, "cells": 8, "proj": 4}
    model = build_model(cfg)
    opt = make_optimizer(model, "ngsgd", lr=0.05, rank_in=3, rank_out=5)
    x, y = torch.randn(5, 7, 6), torch.randint(0, 7, (5, 4))
    losses = []
    for _ in range(6):
        loss = F.cross_entropy(model(x).reshape(-1, 7), y.reshape(-1))
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < losses[0]
    path = tmp_path / "opt.pt"
    torch.save(opt.state_dict(), path)
    opt2 = make_optimizer(model, "ngsgd", lr=0.05, rank_in=3, rank_out=5)
    opt2.load_state_dict(torch.load(path, weights_only=True))
    w = model.lstm.weight_ih_l0
    assert torch.equal(opt2.state[w]["ng_in"]["R"], opt.state[w]["ng_in"]["R"])
    assert opt2._lstm[id(w)][0].state is opt2.state[w]["ng_in"]


def test_lr_schedule() -> None:
    assert lr_at(0.0, 0.01, 0.001) == pytest.approx(0.01)
    assert lr_at(1.0, 0.01, 0.001) == pytest.approx(0.001)
    assert lr_at(0.5, 0.01, 0.001) == pytest.approx(math.sqrt(0.01 * 0.001))
    opt = make_optimizer(nn.Linear(2, 2), "sgd", lr=0.1)
    set_lr(opt, 0.05)
    assert all(g["lr"] == 0.05 for g in opt.param_groups)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer(nn.Linear(2, 2), "adam")


def test_fisher_eigenvalues_are_floored_relative_to_the_largest() -> None:
    """As current Kaldi: D and rho are floored at max(epsilon, delta * max sqrt(c)), so a
    direction the data never excites does not get a near-zero (epsilon) eigenvalue."""
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(30, 2))[0].T  # the data spans 2 of 30 dimensions
    ng = OnlineNaturalGradient(rank=6, update_period=1, num_initial_updates=100)
    for _ in range(20):
        ng.precondition(10.0 * torch.randn(64, 2) @ basis)
    _, d, rho = ng.fisher()
    top = float(d.max()) + rho
    assert float(d.min()) >= ng.delta * top * 0.99
    assert rho >= ng.delta * top * 0.99
