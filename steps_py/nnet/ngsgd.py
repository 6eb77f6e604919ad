"""Natural-gradient SGD in the style of Kaldi nnet3's ``OnlineNaturalGradient``.

Kaldi (Povey, Zhang & Khudanpur, 2015; ``src/nnet3/natural-gradient-online.{h,cc}``)
replaces the minibatch gradient ``G^T X`` of an affine layer ``y = W x + b`` by
``G~^T X~``: the rows of the input ``X`` (with a 1 appended for the bias) and of the
output derivative ``G`` are each multiplied by the inverse of an online Fisher-matrix
estimate ``F = R^T diag(d) R + rho I`` (``R``: ``rank`` orthonormal rows), smoothed as
``F + alpha/D tr(F) I``, and rescaled so each keeps its Frobenius norm. ``F`` is
re-estimated every ``update_period`` minibatches by one step of a power iteration on
``(1-eta) F + eta/N X^T X`` with ``eta = 1 - exp(-N / num_samples_history)``. The
estimate used for a minibatch never includes that minibatch (no bias). Nothing here is
available in a listed package, hence written here.

What this module does with PyTorch:

* ``nn.Linear`` layers (exactly Kaldi's scheme): the optimizer replaces the module's
  ``forward`` (instance attribute, model code unchanged) by one that runs a custom autograd
  function: its backward gets ``X`` (saved input) and ``G`` (output derivative) and returns
  ``G~^T X~`` as the weight gradient (first ``in`` columns) and bias gradient (last column)
  instead of ``G^T X``. So ``p.grad`` already holds the natural gradient after
  ``loss.backward()`` (DDP / gradient all-reduce would average preconditioned gradients),
  and no plain weight gradient is computed. Without grad (eval, ``torch.no_grad``) the
  layer runs plain ``F.linear``.
* ``nn.LSTM`` (hooks inside the fused LSTM are impractical): each matrix
  ``weight_ih_l<k>`` / ``weight_hh_l<k>`` (with its bias appended as an extra column) and
  ``weight_hr_l<k>`` gets its summed gradient ``Gamma`` (out x in) preconditioned from both
  sides in ``step()``: the rows of ``Gamma`` are the "samples" of an input-side Fisher
  estimate (rank ``rank_in``), the columns of the result those of an output-side one
  (rank ``rank_out``). This differs from Kaldi, whose LSTMs are built of affine
  components preconditioned per frame: here the Fisher estimates are of gradient rows /
  columns summed over the minibatch, not of per-frame inputs/derivatives, and their
  forgetting factor is ``eta = 1 - exp(-1 / grad_history)`` per minibatch.
* Max-change (Kaldi ``max-change``): each layer's update ``lr * g`` is scaled so its
  Frobenius norm is <= ``max_change`` (default 0.75), then the whole update so its norm
  is <= ``max_change_global`` (Kaldi ``max-param-change``, default 2.0). Optional momentum
  is applied to the max-change-limited update.

Where the time goes (``benchmarks/bench_local_learner.py --breakdown`` measures it): on
a CPU the step is dominated by the products, the layers' own (forward, input and weight
gradient) and NG-SGD's four per layer and minibatch (``H = X A^T`` and ``X - H B`` on
each side, see ``OnlineNaturalGradient``); the re-estimation adds, every
``update_period`` minibatches, three ``[rank, D]`` products per estimate and a
``[rank x rank]`` eigenproblem (LAPACK's, which at rank 80 costs about as much as those
products). The small ``[rank x rank]`` operations and the Python around them are minor.
The [rank x rank] work is done on the CPU in numpy as Kaldi does it there (a GPU would
gain nothing on matrices that small); the output side is preconditioned first in
backward while ``G`` is in cache.

Usage::

    opt = NGSGD(model, lr=0.002, max_change=0.75)
    loss = F.cross_entropy(model(x), y); opt.zero_grad(); loss.backward(); opt.step()
    opt.set_lr(0.001)
    torch.save(opt.state_dict(), "opt.pt")   # Fisher estimates are plain tensors
"""

from __future__ import annotations

import math
import types
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def init_orthonormal_special(rank: int, dim: int) -> Tensor:
    """Rows r = 0..rank-1 with equal entries at columns r, r+rank, ... (orthonormal, no zero columns)."""
    m = torch.zeros(rank, dim, dtype=torch.float32)
    for r in range(rank):
        cols = torch.arange(r, dim, rank)
        m[r, cols] = 1.0 / math.sqrt(len(cols))
    return m


class _Scaled:
    """The scaled copies of one state's ``R`` that ``OnlineNaturalGradient`` multiplies with.

    ``a = S R`` and ``b = S^{-1} E R`` ([rank, D], float32; ``ax``/``ab`` and ``bx``/``bb``
    their first ``dim`` columns and last column for an affine input), and in float64
    (numpy) ``d64`` = d and ``sw64`` = sqrt(2e - e^2) for the re-estimation. An object
    stands for one state: the preconditioner replaces it whenever the state changes.
    """

    __slots__ = ("r", "d", "rho", "affine", "a", "ax", "ab", "bx", "bb", "d64", "sw64")

    def __init__(
        self,
        r: Tensor,
        d: Tensor,
        rho: float,
        alpha: float,
        affine: bool,
        dim: int,
        d_np: np.ndarray | None = None,
    ) -> None:
        self.r, self.d, self.rho, self.affine = r, d, rho, affine
        dn = (d.to("cpu", torch.float32).numpy() if d_np is None else d_np).astype(np.float64)
        beta = rho * (1 + alpha) + alpha * float(dn.sum()) / r.shape[1]
        e = 1.0 / (beta / dn + 1.0)
        sw = np.sqrt(2.0 * e - e * e)
        scales = (
            torch.from_numpy(np.stack([sw, np.sqrt(e / (2.0 - e))]).astype(np.float32))
            .to(r.device)
            .unsqueeze(2)
        )
        self.a = r * scales[0]
        b = r * scales[1]
        self.d64, self.sw64 = dn, sw
        if affine:
            self.ax, self.ab, self.bx, self.bb = (
                self.a[:, :dim],
                self.a[:, dim],
                b[:, :dim],
                b[:, dim],
            )
        else:
            self.ax, self.ab, self.bx, self.bb = self.a, None, b, None


class OnlineNaturalGradient:
    """Online low-rank-plus-identity Fisher estimate; ``precondition(X)`` returns ``X~``.

    ``X`` is ``[N, D]`` (one row per sample). The returned matrix is ``gamma * X G^{-1}`` with
    ``G = R^T diag(d) R + beta I``, ``beta = rho (1 + alpha) + alpha/D sum(d)`` (the smoothed
    Fisher estimate), and ``gamma`` chosen so that ``||X~||_F = ||X||_F``.

    The state (``R``, ``d``, ``rho``, ``t``, ``skipped``) lives in ``self.state``, a dict of
    tensors, so an optimizer can keep it in its ``state_dict``. The two counters are kept
    as Python ints while running and written into their tensors by ``sync_state()``
    (``NGSGD.state_dict()`` calls it), which saves two tensor operations per minibatch.

    How it is computed (Kaldi's maths; fewer and cheaper operations, as Kaldi keeps the
    scaled ``W = E^{1/2} R`` for the same reason): with ``E = diag(e)``,
    ``e_i = 1 / (beta/d_i + 1)``, ``G^{-1} = (I - R^T E R) / beta``, and
    ``S = diag(sqrt(2e - e^2))``, two scaled copies of ``R`` are kept, ``A = S R`` and
    ``B = S^{-1} E R``. Then ``H = X A^T`` gives ``X - X R^T E R = X - H B`` and
    ``||X - H B||^2 = ||X||^2 - ||H||^2`` (as ``R R^T = I``): a minibatch costs two products,
    two dot products and no elementwise pass. The re-estimation uses ``H`` with ``S^{-1}``
    folded into its ``[rank x rank]`` matrices, which are worked on on the CPU (numpy in
    float64, the eigenproblem with ``torch.linalg.eigh`` in float64 too), as Kaldi does.
    """

    def __init__(
        self,
        rank: int,
        alpha: float = 4.0,
        num_samples_history: float = 2000.0,
        update_period: int = 4,
        epsilon: float = 1e-10,
        delta: float = 5e-4,
        num_initial_updates: int = 10,
        state: dict[str, Tensor] | None = None,
    ) -> None:
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.rank = rank
        self.alpha = alpha
        self.num_samples_history = num_samples_history
        self.update_period = max(1, update_period)
        self.epsilon = epsilon
        self.delta = delta
        self.num_initial_updates = num_initial_updates
        self.state = state if state is not None else {}
        self._ones_n = torch.zeros(0)

    @property
    def state(self) -> dict[str, Tensor]:
        return self._state

    @state.setter
    def state(self, value: dict[str, Tensor]) -> None:
        self._state = value
        self._cache: _Scaled | None = None
        self._counts: list[int] | None = None  # [t, skipped] while running, else in the tensors

    # ---- public -------------------------------------------------------------------
    def fisher(self) -> tuple[Tensor, Tensor, float]:
        """(R [rank, D], d [rank], rho) of the current estimate F = R^T diag(d) R + rho I."""
        s = self.state
        return s["R"], s["d"], float(s["rho"])

    def smoothed_fisher_matrix(self) -> Tensor:
        """The dense matrix whose inverse ``precondition`` applies (for tests): R^T d R + beta I."""
        r, d, rho = self.fisher()
        dim = r.shape[1]
        beta = rho * (1 + self.alpha) + self.alpha * float(d.sum()) / dim
        return r.double().T @ torch.diag(d.double()) @ r.double() + beta * torch.eye(
            dim, dtype=torch.float64
        )

    def sync_state(self) -> None:
        """Write the running counters into ``state["t"]`` / ``state["skipped"]``."""
        if self._counts is not None and "t" in self._state:
            self._state["t"].fill_(self._counts[0])
            self._state["skipped"].fill_(self._counts[1])

    def precondition(
        self, x: Tensor, num_samples: float | None = None, update: bool | None = None
    ) -> Tensor:
        """Return the preconditioned copy of ``x`` [N, D]; maybe update the Fisher estimate.

        ``num_samples`` (default N) sets the forgetting factor of the update;
        ``update`` forces (True) or forbids (False) an update instead of the schedule.
        """
        n, dim = x.shape
        if dim == 1 or n == 0:
            return x.clone()
        return self._precondition(x.float(), False, num_samples, update)[0]

    def precondition_affine(
        self, x: Tensor, num_samples: float | None = None, update: bool | None = None
    ) -> tuple[Tensor, Tensor]:
        """Precondition ``[x 1]`` (an affine layer's input with its bias column) without building it.

        Returns the first ``D`` columns [N, D] and the last column [N] of the preconditioned
        ``[x 1]``; the estimate is of dimension ``D + 1``. Equal to
        ``precondition(torch.cat([x, ones], 1))`` split in two, but the products keep ``x``'s
        width (an odd width like 513 makes the weight-gradient product markedly slower) and
        no ``[N, D+1]`` copy is made.
        """
        if x.shape[0] == 0:
            return x.clone(), x.new_ones(0)
        x_hat, col = self._precondition(x.float(), True, num_samples, update)
        assert col is not None
        return x_hat, col

    # ---- internals ----------------------------------------------------------------
    def _precondition(
        self, x: Tensor, affine: bool, num_samples: float | None, update: bool | None
    ) -> tuple[Tensor, Tensor | None]:
        n = float(num_samples if num_samples is not None else x.shape[0])
        if "R" not in self._state:
            self._init(x, affine, n)
        counts = self._counts
        if counts is None:
            s = self._state
            counts = self._counts = [int(s["t"]), int(s["skipped"])]
        if update is None:
            update = counts[1] >= self.update_period - 1 or counts[0] < self.num_initial_updates
        x_hat, col, h, tr_x = self._apply(x, affine)
        if update:
            self._update(x, affine, h, tr_x, n)
            counts[0] += 1
            counts[1] = 0
        else:
            counts[1] += 1
        return x_hat, col

    def _rank_for(self, dim: int) -> int:
        return min(self.rank, dim - 1)

    def _init(self, x: Tensor, affine: bool, n: float) -> None:
        """Kaldi's Init: a special orthonormal start, d = rho = epsilon, 3 updates on the first X."""
        dim = x.shape[1] + int(affine)
        rank = self._rank_for(dim)
        self._state.update(
            R=init_orthonormal_special(rank, dim).to(x.device),
            d=torch.full((rank,), self.epsilon, dtype=torch.float32, device=x.device),
            rho=torch.tensor(self.epsilon, dtype=torch.float64),
            t=torch.tensor(0, dtype=torch.int64),
            skipped=torch.tensor(0, dtype=torch.int64),
        )
        self._counts = [0, 0]
        for _ in range(3):
            _, _, h, tr_x = self._apply(x, affine)
            self._update(x, affine, h, tr_x, n)

    def _scaled(self, affine: bool, dim: int) -> _Scaled:
        """The scaled copies ``A = S R``, ``B = S^{-1} E R`` of the current state (cached until it changes)."""
        s = self._state
        c = self._cache
        if c is None or c.r is not s["R"] or c.d is not s["d"] or c.affine != affine:
            c = self._cache = _Scaled(s["R"], s["d"], float(s["rho"]), self.alpha, affine, dim)
        return c

    def _ones(self, n: int, like: Tensor) -> Tensor:
        if self._ones_n.shape[0] != n or self._ones_n.device != like.device:
            self._ones_n = torch.ones(n, dtype=torch.float32, device=like.device)
        return self._ones_n

    def _apply(self, x: Tensor, affine: bool) -> tuple[Tensor, Tensor | None, Tensor, float]:
        """(X~ [N, D], last column of [X 1]~ or None, H = X A^T, tr(X^T X)) for the current state.

        ``affine``: ``x`` stands for ``[x 1]``, whose last column is handled on its own.
        This runs for every layer on every minibatch, so it keeps to few tensor operations.
        """
        n, dim = x.shape
        c = self._scaled(affine, dim)
        # H^T = A X^T [rank, N]: MKL is faster at this shape than at X A^T for small ranks,
        # and the re-estimation wants H^T anyway
        h = (torch.mm(c.ax, x.T) if c.ab is None else torch.addmm(c.ab.unsqueeze(1), c.ax, x.T)).T
        xf = x.reshape(-1)
        tr_x = float(torch.dot(xf, xf)) + (n if affine else 0)
        # ||X - X R^T E R||^2 = ||X||^2 - ||H||^2 (Kaldi's identity, R R^T = I): saves a pass
        # over X~. Near-cancellation falls back to the direct norm.
        tr_hat = tr_x - float(torch.linalg.vector_norm(h)) ** 2
        if tr_hat >= 1e-3 * tr_x:
            gamma = math.sqrt(tr_x / tr_hat)
            # X~ = gamma (X - H B): the scale rides on the copy that addmm makes anyway
            x_hat = torch.addmm(x, h, c.bx, beta=gamma, alpha=-gamma)
            col = (
                None
                if c.bb is None
                else torch.addmv(self._ones(n, x), h, c.bb, beta=gamma, alpha=-gamma)
            )
        else:
            x_hat = torch.addmm(x, h, c.bx, alpha=-1.0)
            col = None if c.bb is None else torch.addmv(self._ones(n, x), h, c.bb, alpha=-1.0)
            tr_hat = float(torch.linalg.vector_norm(x_hat) ** 2) + (
                float(col @ col) if col is not None else 0.0
            )
            gamma = 1.0 if tr_hat == 0.0 else math.sqrt(tr_x / tr_hat)
            x_hat.mul_(gamma)
            if col is not None:
                col.mul_(gamma)
        if not math.isfinite(gamma):
            raise FloatingPointError("natural-gradient preconditioning produced a non-finite scale")
        return x_hat, col, h, tr_x

    def _update(self, x: Tensor, affine: bool, h: Tensor, tr_x: float, n: float) -> None:
        """One power-iteration step towards T = (1-eta) F + eta/N X^T X, keeping tr(F) = tr(T).

        ``h`` = X A^T of the current state. The [rank, D] products run where the data is;
        the [rank x rank] part on the CPU in float64 (Kaldi decomposes in float32; see below).
        """
        c = self._scaled(affine, x.shape[1])
        rho, dn, sw = c.rho, c.d64, c.sw64
        rank, dim = c.r.shape
        eta = 1.0 - math.exp(-n / self.num_samples_history)
        # Y = R T = (1-eta) (diag(d) + rho I) R + eta/N R X^T X (X = [x 1] when affine), as
        # Y' = S Y = (1-eta) (diag(d) + rho I) A + eta/N H^T X
        coef = torch.from_numpy(((1.0 - eta) * (dn + rho)).astype(np.float32)).to(c.r.device)
        y = c.a * coef.unsqueeze(1)
        if affine:
            y[:, :-1].addmm_(h.T, x, alpha=eta / n)
            y[:, -1].add_(h.sum(0), alpha=eta / n)
        else:
            y.addmm_(h.T, x, alpha=eta / n)
        # Z = Y Y^T = S^-1 Y' Y'^T S^-1 (the product in float32), scaled by 1/max(1, tr Z) (the
        # scale keeps the data's fourth power in range) and decomposed in float64: LAPACK's
        # float32 eigenvectors, relative to the smallest eigenvalue, left R R^T up to 8e-3
        # from I over ordinary updates (small minibatches, a wide spectrum), where an
        # independent reference of Kaldi's arithmetic stays near 3e-6: the rows of
        # R' = C^{-1/2} U^T Y are orthonormal only as far as U and C are exact (float64:
        # below 2e-5, tests/test_nnet_ngsgd.py). At rank 80 that costs about 0.5 ms more per
        # update than float32. eigh reads the lower triangle only (as Kaldi's packed
        # SpMatrix), so Z needs no symmetrization
        inv_sw = 1.0 / sw
        z = torch.mm(y, y.T).to("cpu", torch.float64).numpy() * np.outer(inv_sw, inv_sw)
        z_scale = max(1.0, float(np.trace(z)))
        if not math.isfinite(z_scale):  # eigh would fail deep in LAPACK: name the cause
            raise FloatingPointError(
                "natural gradient: the Fisher-matrix estimate is not finite (the layer's "
                "inputs or output derivatives overflowed): training diverged"
            )
        c_t, u_t = _eigh_one_thread(torch.from_numpy(z / z_scale))
        cv = c_t.numpy()[::-1] * z_scale  # descending
        u = u_t.numpy()[:, ::-1]
        must_reorthogonalize = bool(cv[0] > 1e6 * cv[-1])
        c_floor = max((rho * (1.0 - eta)) ** 2, 1e-30)
        if cv[-1] < c_floor:
            must_reorthogonalize = True
            cv = np.maximum(cv, c_floor)
        sqrt_c = np.sqrt(cv)
        # R' = C^{-1/2} U^T Y = C^{-1/2} U^T S^-1 Y': orthonormal rows
        m = (u.T / sqrt_c[:, None]) * inv_sw[None, :]
        r_new = torch.mm(torch.from_numpy(m.astype(np.float32)).to(y.device), y)
        tr_t = eta / n * tr_x + (1.0 - eta) * (dim * rho + float(dn.sum()))
        rho_new = (tr_t - float(sqrt_c.sum())) / (dim - rank)
        # current Kaldi floors both rho and D at max(epsilon, delta * max sqrt(c))
        floor_val = max(self.epsilon, self.delta * float(sqrt_c[0]))
        rho_new = max(rho_new, floor_val)
        d_new = np.maximum(sqrt_c - rho_new, floor_val).astype(np.float32)
        if must_reorthogonalize:  # as Kaldi: ill-conditioned or floored C breaks R R^T = I
            r_new = _reorthogonalize(r_new)
        d_t = torch.from_numpy(d_new).to(c.r.device)
        s = self._state
        s["R"], s["d"] = r_new, d_t
        s["rho"] = torch.tensor(rho_new, dtype=torch.float64)
        self._cache = _Scaled(r_new, d_t, rho_new, self.alpha, affine, x.shape[1], d_new)


def _eigh_one_thread(z: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh`` on one thread: LAPACK's threads only slow a matrix this small down."""
    threads = torch.get_num_threads()
    if threads == 1:
        return torch.linalg.eigh(z)
    torch.set_num_threads(1)
    try:
        return torch.linalg.eigh(z)
    finally:
        torch.set_num_threads(threads)


def _reorthogonalize(r: Tensor, threshold: float = 1e-3) -> Tensor:
    """Rows of ``r`` made orthonormal as Kaldi's ReorthogonalizeRt1 does (Cholesky: Gram-Schmidt order).

    Left alone when ``R R^T`` is already within ``threshold`` of I (Kaldi's ``IsUnit``
    check); else ``R <- L^{-1} R`` with ``R R^T = L L^T`` (float64 Cholesky). Where that
    fails (rows nearly dependent), a QR factorization gives orthonormal rows instead of
    Kaldi's reset to ``[I 0]``, which would throw the estimate away.
    """
    o = torch.mm(r, r.T).to("cpu", torch.float64)
    eye = torch.eye(o.shape[0], dtype=torch.float64)
    if float((o - eye).abs().max()) <= threshold:
        return r
    low, info = torch.linalg.cholesky_ex(o)
    if int(info) == 0 and float(low.diagonal().min()) > 1e-4 * float(low.diagonal().max()):
        inv = torch.linalg.solve_triangular(low, eye, upper=False)
        return torch.mm(inv.to(r.dtype).to(r.device), r)
    q, _ = torch.linalg.qr(r.double().T)
    return q.T.to(r.dtype).contiguous()


# ---------------------------------------------------------------------------------
def _layer_groups(model: nn.Module) -> list[dict[str, Any]]:
    """One parameter group per layer (Linear, LSTM layer, or other module's own params)."""
    groups: list[dict[str, Any]] = []
    seen: set[int] = set()
    for name, mod in model.named_modules():
        own = [
            (n, p)
            for n, p in mod.named_parameters(recurse=False)
            if p.requires_grad and id(p) not in seen
        ]
        if not own:
            continue
        if isinstance(mod, nn.LSTM):
            by_layer: dict[str, list[tuple[str, nn.Parameter]]] = {}
            for n, p in own:
                key = n[n.index("_l") + 1 :] if "_l" in n else n  # "l0", "l1_reverse", ...
                by_layer.setdefault(key, []).append((n, p))
            for key, plist in by_layer.items():
                groups.append(
                    {
                        "params": [p for _, p in plist],
                        "name": f"{name}.{key}",
                        "kind": "lstm",
                        "param_names": [n for n, _ in plist],
                    }
                )
        elif isinstance(mod, nn.Linear):
            groups.append(
                {
                    "params": [p for _, p in own],
                    "name": name or "linear",
                    "kind": "linear",
                    "param_names": [n for n, _ in own],
                }
            )
        else:
            groups.append(
                {
                    "params": [p for _, p in own],
                    "name": name or "model",
                    "kind": "other",
                    "param_names": [n for n, _ in own],
                }
            )
        seen.update(id(p) for _, p in own)
    return groups


class _NGLinearFunction(torch.autograd.Function):
    """``F.linear`` whose backward returns the natural gradient for weight and bias directly.

    Computing ``G~^T X~`` here (instead of replacing autograd's ``G^T X`` in a hook)
    saves the plain weight-gradient product, which would be thrown away. ``G~`` is made
    first, while ``G`` (just written by the layer above) is still in cache.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, pre: _LinearPreconditioner
    ) -> Tensor:
        ctx.pre = pre
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        pre = ctx.pre
        need_w = ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2])
        g_hat = pre.ng_out.precondition(g.reshape(-1, g.shape[-1])) if need_w else None
        gx = g.matmul(weight) if ctx.needs_input_grad[0] else None
        gw = gb = None
        if g_hat is not None:
            x_hat, col = pre.ng_in.precondition_affine(x.reshape(-1, x.shape[-1]))
            g_hat_t = g_hat.T  # G~^T [X 1]~, split into weight and bias gradient
            gw = g_hat_t @ x_hat
            if gw.dtype != weight.dtype:
                gw = gw.to(weight.dtype)
            if ctx.has_bias:
                gb = g_hat_t @ col
                if gb.dtype != weight.dtype:
                    gb = gb.to(weight.dtype)
        return gx, gw, gb, None


def _ng_linear_forward(self: nn.Linear, x: Tensor) -> Tensor:
    """Replacement ``forward`` of an nn.Linear under NG-SGD (plain when no grad is needed)."""
    pre = self.__dict__.get("_ng_pre")
    if (
        pre is None
        or not pre.enabled
        or not torch.is_grad_enabled()
        or not self.weight.requires_grad
    ):
        return F.linear(x, self.weight, self.bias)
    return _NGLinearFunction.apply(x, self.weight, self.bias, pre)


class _LinearPreconditioner:
    """Natural gradient of one nn.Linear: G~^T X~ from its input X and output derivative G.

    Installed by replacing the module's ``forward`` (an instance attribute) with one that
    uses ``_NGLinearFunction``; a deep copy of the module (e.g. an EMA copy) gets no
    preconditioner (``__deepcopy__`` returns None) and so behaves as a plain Linear.
    """

    def __init__(
        self, module: nn.Linear, ng_in: OnlineNaturalGradient, ng_out: OnlineNaturalGradient
    ) -> None:
        self.module = module
        self.ng_in = ng_in
        self.ng_out = ng_out
        self.enabled = True
        module._ng_pre = self  # type: ignore[assignment]
        module.forward = types.MethodType(_ng_linear_forward, module)  # type: ignore[method-assign]

    def __deepcopy__(self, memo: dict[int, Any]) -> None:
        return None

    def remove(self) -> None:
        self.module.__dict__.pop("forward", None)
        self.module.__dict__.pop("_ng_pre", None)


class NGSGD(torch.optim.Optimizer):
    """SGD with Kaldi-style natural gradient, per-layer and global max-change, and momentum.

    ``natural_gradient=False`` gives SGD with max-change only (same code path otherwise).
    Parameter groups are layers (see ``_layer_groups``); every group shares the lr.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 0.002,
        momentum: float = 0.0,
        max_change: float = 0.75,
        max_change_global: float = 2.0,
        natural_gradient: bool = True,
        rank_in: int = 20,
        rank_out: int = 80,
        alpha: float = 4.0,
        num_samples_history: float = 2000.0,
        update_period: int = 4,
        grad_history: float = 10.0,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        groups = _layer_groups(model)
        if not groups:
            raise ValueError("model has no trainable parameters")
        defaults = dict(lr=lr, momentum=momentum, max_change=max_change)
        super().__init__(groups, defaults)
        self.max_change_global = max_change_global
        # what the last step did (Kaldi logs how often max-change was active): layers whose
        # update was scaled down, layers updated, and whether the global limit applied
        self.num_max_change_applied = 0
        self.num_layer_updates = 0
        self.global_max_change_applied = False
        self.natural_gradient = natural_gradient
        self.ng_opts = dict(
            alpha=alpha, num_samples_history=num_samples_history, update_period=update_period
        )
        self.rank_in, self.rank_out = rank_in, rank_out
        self.grad_history = grad_history
        self._linear: list[_LinearPreconditioner] = []
        self._lstm: dict[int, tuple[OnlineNaturalGradient, OnlineNaturalGradient]] = {}
        if natural_gradient:
            self._attach(model)

    # ---- natural-gradient plumbing ---------------------------------------------
    def _ng(self, p: Tensor, side: str, rank: int, **kw: Any) -> OnlineNaturalGradient:
        st = self.state[p]
        sub = st.setdefault(f"ng_{side}", {})
        opts = {**self.ng_opts, **kw}
        return OnlineNaturalGradient(rank, state=sub, **opts)

    def _attach(self, model: nn.Module) -> None:
        for mod in model.modules():
            if isinstance(mod, nn.Linear) and mod.weight.requires_grad:
                w = mod.weight
                self._linear.append(
                    _LinearPreconditioner(
                        mod, self._ng(w, "in", self.rank_in), self._ng(w, "out", self.rank_out)
                    )
                )
            elif isinstance(mod, nn.LSTM):
                for n, p in mod.named_parameters():
                    if n.startswith("weight_") and p.requires_grad:
                        # per-minibatch forgetting: the update sees 1 "sample" per step
                        kw = dict(num_samples_history=self.grad_history)
                        self._lstm[id(p)] = (
                            self._ng(p, "in", self.rank_in, **kw),
                            self._ng(p, "out", self.rank_out, **kw),
                        )
        self._lstm_bias: dict[int, Tensor] = {}
        for mod in model.modules():
            if isinstance(mod, nn.LSTM):
                for n, p in mod.named_parameters():
                    if n.startswith("weight_ih") or n.startswith("weight_hh"):
                        bname = "bias" + n[len("weight") :]
                        b = getattr(mod, bname, None)
                        if b is not None and b.requires_grad:
                            self._lstm_bias[id(p)] = b

    def _estimates(self) -> list[OnlineNaturalGradient]:
        return [ng for lp in self._linear for ng in (lp.ng_in, lp.ng_out)] + [
            ng for pair in self._lstm.values() for ng in pair
        ]

    def state_dict(self) -> dict[str, Any]:
        for ng in self._estimates():  # the running counters into their tensors first
            ng.sync_state()
        return super().state_dict()

    def detach_hooks(self) -> None:
        """Give the Linear layers their plain forward back (natural gradient off from now on)."""
        for lp in self._linear:
            lp.remove()
        self._linear = []

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # torch's Optimizer.load_state_dict casts floating state to the parameter's dtype;
        # the Fisher estimates keep some float64 scalars (rho), so put the saved dtypes back
        # or a resumed run would differ from an uninterrupted one in the last bits.
        saved = state_dict["state"]
        super().load_state_dict(state_dict)
        params = [p for g in self.param_groups for p in g["params"]]
        for idx, st in saved.items():
            _restore_dtypes(self.state[params[int(idx)]], st)
        for lp in self._linear:  # rebind the Fisher estimates to the loaded state
            w = lp.module.weight
            lp.ng_in.state = self.state[w].setdefault("ng_in", {})
            lp.ng_out.state = self.state[w].setdefault("ng_out", {})
        for group in self.param_groups:
            for p in group["params"]:
                if id(p) in self._lstm:
                    ng_in, ng_out = self._lstm[id(p)]
                    ng_in.state = self.state[p].setdefault("ng_in", {})
                    ng_out.state = self.state[p].setdefault("ng_out", {})

    def _precondition_lstm(self) -> None:
        for group in self.param_groups:
            if group["kind"] != "lstm":
                continue
            for p in group["params"]:
                if id(p) not in self._lstm or p.grad is None:
                    continue
                ng_in, ng_out = self._lstm[id(p)]
                b = self._lstm_bias.get(id(p))
                gam = (
                    p.grad
                    if b is None or b.grad is None
                    else torch.cat([p.grad, b.grad.unsqueeze(1)], 1)
                )
                g1 = ng_in.precondition(gam.float(), num_samples=1.0)
                g2 = ng_out.precondition(g1.T.contiguous(), num_samples=1.0).T
                if b is None or b.grad is None:
                    p.grad.copy_(g2)
                else:
                    p.grad.copy_(g2[:, :-1])
                    b.grad.copy_(g2[:, -1])

    # ---- the step ---------------------------------------------------------------
    def set_lr(self, lr: float) -> None:
        for group in self.param_groups:
            group["lr"] = lr

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # noqa: D102
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.natural_gradient and self._lstm:
            self._precondition_lstm()
        all_grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        sq_norms = [_sq_norm(g) for g in all_grads]
        scales: list[float] = []
        sq_total = 0.0
        k = 0
        for group in self.param_groups:
            n_g = sum(1 for p in group["params"] if p.grad is not None)
            if n_g == 0:
                scales.append(0.0)
                continue
            norm = math.sqrt(sum(sq_norms[k : k + n_g])) * group["lr"]
            k += n_g
            if not math.isfinite(norm):
                raise FloatingPointError(f"non-finite gradient in layer '{group['name']}'")
            sc = 1.0
            if group["max_change"] and group["max_change"] > 0 and norm > group["max_change"]:
                sc = group["max_change"] / norm
            scales.append(sc)
            sq_total += (norm * sc) ** 2
        total = math.sqrt(sq_total)
        gsc = 1.0
        if self.max_change_global and self.max_change_global > 0 and total > self.max_change_global:
            gsc = self.max_change_global / total
        self.last_update_norm = total * gsc
        self.num_max_change_applied = sum(1 for s in scales if 0 < s < 1.0)
        self.num_layer_updates = sum(1 for s in scales if s > 0)
        self.global_max_change_applied = gsc < 1.0
        for group, sc in zip(self.param_groups, scales, strict=True):
            if sc == 0.0:
                continue
            step_size = group["lr"] * sc * gsc
            mom = group["momentum"]
            params = [p for p in group["params"] if p.grad is not None]
            if mom == 0:
                torch._foreach_add_(params, [p.grad for p in params], alpha=-step_size)
                continue
            for p in params:
                if mom > 0:
                    buf = self.state[p].get("momentum_buffer")
                    if buf is None:
                        buf = torch.zeros_like(p)
                        self.state[p]["momentum_buffer"] = buf
                    buf.mul_(mom).add_(p.grad, alpha=step_size)
                    p.sub_(buf)
        return loss


def _sq_norm(g: Tensor) -> float:
    """||g||^2: a BLAS dot product (faster on CPU than torch's norm kernels), in float64 if that overflows."""
    if g.dtype in (torch.float32, torch.float64) and g.is_contiguous():
        v = float(torch.dot(g.view(-1), g.view(-1)))
        if math.isfinite(v):
            return v
    return float(torch.linalg.vector_norm(g, dtype=torch.float64)) ** 2


def _restore_dtypes(loaded: dict[str, Any], saved: dict[str, Any]) -> None:
    for k, v in saved.items():
        if isinstance(v, dict) and isinstance(loaded.get(k), dict):
            _restore_dtypes(loaded[k], v)
        elif (
            isinstance(v, torch.Tensor)
            and isinstance(loaded.get(k), torch.Tensor)
            and loaded[k].dtype != v.dtype
        ):
            loaded[k] = v.to(device=loaded[k].device, copy=True)
