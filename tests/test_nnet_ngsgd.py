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
    fisher = r.double().T @ torch.diag(d.double()) @ r.double() + rho * torch.eye(
        dim, dtype=torch.float64
    )
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
    opt = make_optimizer(
        model, name, lr=lr, max_change=0.0, max_change_global=0.0, rank_in=10, rank_out=3
    )
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
    cfg = {
        "type": "lstm",
        "feat_dim": 6,
        "num_pdfs": 7,
        "left_context": 3,
        "chunk": 4,
        "target_delay": 1,
        "lstm_layers": 2,
        "cells": 8,
        "proj": 4,
    }
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


# ---- the optimized computation against a dense float64 reference of Kaldi's algorithm ----
class _Reference:
    """Kaldi's OnlineNaturalGradient (natural-gradient-online.cc) written out densely in float64.

    Preconditioning by the explicit inverse of the smoothed Fisher matrix, one power
    iteration with an explicit eigendecomposition, floors of C, rho and D, and Kaldi's
    re-orthogonalization (skipped while R R^T is within 1e-3 of I, else Gram-Schmidt).
    """

    def __init__(
        self, rank: int, alpha: float = 4.0, history: float = 2000.0, period: int = 4
    ) -> None:
        self.rank, self.alpha, self.history, self.period = rank, alpha, history, period
        self.eps, self.delta = 1e-10, 5e-4
        self.r: torch.Tensor | None = None

    def precondition(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        n, dim = x.shape
        if self.r is None:
            rank = min(self.rank, dim - 1)
            self.r = torch.zeros(rank, dim, dtype=torch.float64)
            for i in range(rank):
                cols = torch.arange(i, dim, rank)
                self.r[i, cols] = 1 / math.sqrt(len(cols))
            self.d, self.rho, self.t, self.skipped = (
                torch.full((rank,), self.eps, dtype=torch.float64),
                self.eps,
                0,
                0,
            )
            for _ in range(3):
                self._update(x)
        beta = self.rho * (1 + self.alpha) + self.alpha * float(self.d.sum()) / dim
        g = self.r.T @ torch.diag(self.d) @ self.r + beta * torch.eye(dim, dtype=torch.float64)
        x_hat = x @ torch.linalg.inv(g)
        x_hat *= x.norm() / x_hat.norm()
        if self.t < 10 or self.skipped >= self.period - 1:
            self._update(x)
            self.t, self.skipped = self.t + 1, 0
        else:
            self.skipped += 1
        return x_hat

    def _update(self, x: torch.Tensor) -> None:
        r, d, rho = self.r, self.d, self.rho
        assert r is not None
        (rank, dim), n = r.shape, x.shape[0]
        eta = 1 - math.exp(-n / self.history)
        y = (1 - eta) * (d + rho)[:, None] * r + eta / n * (r @ x.T) @ x
        c, u = torch.linalg.eigh(y @ y.T)
        c, u = c.flip(0), u.flip(1)
        must = float(c[0]) > 1e6 * float(c[-1])
        if float(c[-1]) < (rho * (1 - eta)) ** 2:
            must, c = True, c.clamp(min=(rho * (1 - eta)) ** 2)
        sqrt_c = c.sqrt()
        r_new = (u.T / sqrt_c[:, None]) @ y
        tr_t = eta / n * float((x * x).sum()) + (1 - eta) * (dim * rho + float(d.sum()))
        floor = max(self.eps, self.delta * float(sqrt_c.max()))
        self.rho = max((tr_t - float(sqrt_c.sum())) / (dim - rank), floor)
        self.d = (sqrt_c - self.rho).clamp(min=floor)
        if (
            must
            and float((r_new @ r_new.T - torch.eye(rank, dtype=torch.float64)).abs().max()) > 1e-3
        ):
            q, tri = torch.linalg.qr(r_new.T)
            r_new = (q * tri.diagonal().sign()).T  # Gram-Schmidt: the rows' order and signs kept
        self.r = r_new


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("rank,affine", [(6, False), (6, True), (20, False)])
def test_matches_dense_float64_reference_over_reestimations(rank: int, affine: bool) -> None:
    """Every minibatch's output equals the reference's to float32 accuracy, through the 10
    initial updates and then re-estimation every other minibatch; so do d and rho."""
    gen = torch.Generator().manual_seed(21 + rank + affine)
    ours, ref = OnlineNaturalGradient(rank, update_period=2), _Reference(rank, period=2)
    for _ in range(16):
        x = _aniso(96, 40, gen) + 0.2
        if affine:
            x_hat, col = ours.precondition_affine(x)
            got = torch.cat([x_hat, col.unsqueeze(1)], 1)
            want = ref.precondition(torch.cat([x, torch.ones(96, 1)], 1))
        else:
            got, want = ours.precondition(x), ref.precondition(x)
        assert _rel(got, want) < 2e-5
    _, d, rho = ours.fisher()
    assert torch.allclose(d.double(), ref.d, rtol=1e-3) and math.isclose(rho, ref.rho, rel_tol=1e-3)


def test_matches_reference_when_reorthogonalization_is_needed() -> None:
    """Inputs with a large common offset (like un-normalized features) make C ill-conditioned:
    the re-orthogonalization runs, R stays orthonormal and the output stays the reference's."""
    gen = torch.Generator().manual_seed(22)
    ours, ref = OnlineNaturalGradient(8, update_period=1), _Reference(8, period=1)
    for _ in range(12):
        x = _aniso(64, 30, gen) * 0.05 + 20.0
        assert _rel(ours.precondition(x), ref.precondition(x)) < 1e-3
    r, _, _ = ours.fisher()
    assert float((r @ r.T - torch.eye(8)).abs().max()) < 2e-3


def test_reorthogonalize_skips_orthonormal_rows_and_fixes_others() -> None:
    from steps_py.nnet.ngsgd import _reorthogonalize

    q = torch.linalg.qr(torch.randn(40, 6, generator=torch.Generator().manual_seed(23)))[
        0
    ].T.contiguous()
    near = q + 1e-5 * torch.randn(6, 40)
    assert _reorthogonalize(near) is near  # within Kaldi's 1e-3 of orthonormal: left alone
    skewed = q + 0.3 * q[[1, 2, 3, 4, 5, 0]]
    fixed = _reorthogonalize(skewed)
    assert torch.allclose(fixed @ fixed.T, torch.eye(6), atol=1e-5)
    # same row space, and Gram-Schmidt order: row i stays in the span of rows 0..i
    assert torch.allclose(
        fixed.T @ fixed, skewed.T @ torch.linalg.solve(skewed @ skewed.T, skewed), atol=1e-4
    )
    assert abs(float(fixed[0] @ skewed[0])) == pytest.approx(float(skewed[0].norm()), rel=1e-5)
    dependent = torch.cat([q[:5], q[4:5] + 1e-7 * q[5:6]])  # Cholesky breaks down: QR instead
    fixed = _reorthogonalize(dependent)
    assert torch.allclose(fixed @ fixed.T, torch.eye(6), atol=1e-5)


def test_ngsgd_gradients_match_reference_over_steps() -> None:
    """An nn.Linear's weight/bias gradients are G~^T [X 1]~ of the float64 reference, step after step."""
    torch.manual_seed(24)
    lin = nn.Linear(12, 9)
    opt = NGSGD(lin, lr=0.05, rank_in=4, rank_out=3, update_period=2)
    ref_in, ref_out = _Reference(4, period=2), _Reference(3, period=2)
    gen = torch.Generator().manual_seed(25)
    for _ in range(14):
        x = _aniso(32, 12, gen)
        g_out = torch.randn(32, 9, generator=gen)
        opt.zero_grad()
        lin(x).backward(g_out)
        full = ref_out.precondition(g_out).T @ ref_in.precondition(
            torch.cat([x, torch.ones(32, 1)], 1)
        )
        assert _rel(lin.weight.grad, full[:, :-1]) < 1e-4
        assert _rel(lin.bias.grad, full[:, -1]) < 1e-4
        opt.step()


def test_resume_continues_bit_exactly_with_the_running_counters(tmp_path) -> None:
    """The schedule's counters run as Python ints; state_dict() writes them out, so a run
    resumed from a checkpoint taken mid-period repeats the uninterrupted one bit for bit."""
    torch.manual_seed(26)
    model = build_model(
        {
            "type": "dnn",
            "feat_dim": 5,
            "num_pdfs": 6,
            "context": 1,
            "hidden_layers": 2,
            "hidden_dim": 16,
        }
    )
    opt = make_optimizer(model, "ngsgd", lr=0.05, rank_in=4, rank_out=5)
    gen = torch.Generator().manual_seed(27)
    data = [
        (torch.randn(20, 15, generator=gen), torch.randint(0, 6, (20,), generator=gen))
        for _ in range(20)
    ]

    def run(m: nn.Module, o: torch.optim.Optimizer, batches: list) -> None:
        for x, y in batches:
            loss = F.cross_entropy(m(x), y)
            o.zero_grad()
            loss.backward()
            o.step()

    run(model, opt, data[:13])  # 10 initial updates, then 3 skipped: the next one updates
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt.pt")
    st = opt.state[model.hidden[0].weight]["ng_in"]
    assert (int(st["t"]), int(st["skipped"])) == (10, 3)
    twin = copy.deepcopy(model)
    twin_opt = make_optimizer(twin, "ngsgd", lr=0.05, rank_in=4, rank_out=5)
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    twin.load_state_dict(ckpt["model"])
    twin_opt.load_state_dict(ckpt["opt"])
    run(model, opt, data[13:])
    run(twin, twin_opt, data[13:])
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


def test_squared_norm_falls_back_to_float64_on_overflow() -> None:
    from steps_py.nnet.ngsgd import _sq_norm

    g = torch.full((1000,), 1e20)
    assert _sq_norm(g) == pytest.approx(1000 * 1e40, rel=1e-6)
    assert _sq_norm(torch.tensor([3.0, 4.0])) == pytest.approx(25.0)


def test_an_overflowing_fisher_estimate_is_named_not_a_lapack_error() -> None:
    # inputs whose fourth powers overflow float32: the estimate cannot be formed; the error says
    # what happened instead of eigh's "failed to converge"
    ng = OnlineNaturalGradient(rank=4, update_period=1)
    ng.precondition(torch.randn(32, 16))
    with pytest.raises(FloatingPointError, match="Fisher-matrix estimate is not finite"):
        ng.precondition(torch.full((32, 16), 1e15), update=True)


def test_r_stays_orthonormal_over_ordinary_updates() -> None:
    """R R^T = I to 1e-5 over ordinary Fisher updates (small minibatches, a spectrum over 6
    decades: a float32 eigendecomposition let it drift by 1e-3 between re-orthogonalizations)."""
    g = torch.Generator().manual_seed(0)
    dim = 200
    basis, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    scales = torch.logspace(0, -3, dim)
    ng = OnlineNaturalGradient(rank=40, update_period=1)
    worst = 0.0
    for _ in range(150):
        ng.precondition((torch.randn(32, dim, generator=g) * scales) @ basis.float().T)
        r = ng.state["R"].double()
        worst = max(worst, float((r @ r.T - torch.eye(40, dtype=torch.float64)).abs().max()))
    assert worst < 1e-5, worst
