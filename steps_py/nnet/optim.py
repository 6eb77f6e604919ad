"""Optimizer factory and learning-rate schedule for the training loop.

* ``make_optimizer(model, name, lr, ...)``: ``"ngsgd"`` (Kaldi-style natural gradient +
  max-change, :class:`steps_py.nnet.ngsgd.NGSGD`), ``"sgd-mc"`` (same without natural
  gradient), ``"sgd"`` (plain ``torch.optim.SGD`` with momentum, the comparison).
* ``lr_at(progress, initial, final)``: exponential decay
  ``lr(p) = initial * (final / initial) ** p``, ``p`` = fraction of training done in [0, 1].
* ``set_lr(optimizer, lr)`` sets every group's lr.
* ``add_optimizer_args(parser)`` / ``optimizer_kwargs(args)``: the CLI options, for the loop.

Usage::

    opt = make_optimizer(model, "ngsgd", lr=0.002, max_change=0.75)
    for step in range(total_steps):
        set_lr(opt, lr_at(step / total_steps, 0.002, 0.0002))
        loss = F.cross_entropy(model(x).reshape(-1, P), y.reshape(-1))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn

from steps_py.nnet.ngsgd import NGSGD

OPTIMIZERS = ("ngsgd", "sgd-mc", "sgd")


def lr_at(progress: float, initial: float, final: float) -> float:
    """Exponentially decaying lr: initial at progress 0, final at progress 1 (clamped)."""
    if initial <= 0 or final <= 0:
        raise ValueError(f"learning rates must be > 0, got initial={initial} final={final}")
    p = min(max(progress, 0.0), 1.0)
    return initial * (final / initial) ** p


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def make_optimizer(
    model: nn.Module,
    name: str = "ngsgd",
    lr: float = 0.002,
    momentum: float = 0.0,
    max_change: float = 0.75,
    max_change_global: float = 2.0,
    rank_in: int = 20,
    rank_out: int = 80,
    update_period: int = 4,
    num_samples_history: float = 2000.0,
    alpha: float = 4.0,
) -> torch.optim.Optimizer:
    """Build the local optimizer of a worker (see module docstring for the names)."""
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    if name in ("ngsgd", "sgd-mc"):
        return NGSGD(
            model,
            lr=lr,
            momentum=momentum,
            max_change=max_change,
            max_change_global=max_change_global,
            natural_gradient=(name == "ngsgd"),
            rank_in=rank_in,
            rank_out=rank_out,
            update_period=update_period,
            num_samples_history=num_samples_history,
            alpha=alpha,
        )
    raise ValueError(f"unknown optimizer '{name}': choose one of {', '.join(OPTIMIZERS)}")


def add_optimizer_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("local optimizer")
    g.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="ngsgd",
        help="local optimizer (default %(default)s)",
    )
    g.add_argument(
        "--lr-initial",
        type=float,
        default=0.002,
        help="initial learning rate (default %(default)s)",
    )
    g.add_argument(
        "--lr-final", type=float, default=0.0002, help="final learning rate (default %(default)s)"
    )
    g.add_argument("--momentum", type=float, default=0.0, help="momentum (default %(default)s)")
    g.add_argument(
        "--max-change",
        type=float,
        default=0.75,
        help="per-layer max Frobenius norm of an update, 0 = off (default %(default)s)",
    )
    g.add_argument(
        "--max-change-global",
        type=float,
        default=2.0,
        help="max norm of the whole update, 0 = off (default %(default)s)",
    )
    g.add_argument(
        "--ng-rank-in", type=int, default=20, help="NG input-side rank (default %(default)s)"
    )
    g.add_argument(
        "--ng-rank-out", type=int, default=80, help="NG output-side rank (default %(default)s)"
    )
    g.add_argument(
        "--ng-update-period",
        type=int,
        default=4,
        help="re-estimate the Fisher matrices every N minibatches (default %(default)s)",
    )


def optimizer_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """kwargs for make_optimizer from add_optimizer_args' options (lr = --lr-initial)."""
    return dict(
        name=args.optimizer,
        lr=args.lr_initial,
        momentum=args.momentum,
        max_change=args.max_change,
        max_change_global=args.max_change_global,
        rank_in=args.ng_rank_in,
        rank_out=args.ng_rank_out,
        update_period=args.ng_update_period,
    )
