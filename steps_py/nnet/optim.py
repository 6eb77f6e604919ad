"""Optimizer factory and learning-rate schedule for the training loop.

* ``make_optimizer(model, name, lr, ...)``: ``"ngsgd"`` (Kaldi-style natural gradient +
  max-change, :class:`steps_py.nnet.ngsgd.NGSGD`), ``"sgd-mc"`` (same without natural
  gradient), ``"sgd"`` (plain ``torch.optim.SGD`` with momentum, the comparison).
* ``lr_at(progress, initial, final)``: exponential decay
  ``lr(p) = initial * (final / initial) ** p``, ``p`` = fraction of training done in [0, 1].
* ``set_lr(optimizer, lr)`` sets every group's lr.
* ``OptimizerConfig`` / ``optimizer_kwargs(opt, lr)``: a worker's optimizer options (the
  trainer's flags, ``steps_py.parallel.options``), as make_optimizer's kwargs.

Usage::

    opt = make_optimizer(model, "ngsgd", lr=0.002, max_change=0.75)
    for step in range(total_steps):
        set_lr(opt, lr_at(step / total_steps, 0.002, 0.0002))
        loss = F.cross_entropy(model(x).reshape(-1, P), y.reshape(-1))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class OptimizerConfig:
    """A worker's local optimizer: its name (one of `OPTIMIZERS`) and options; the learning
    rate is the schedule's (`lr_at`)."""

    name: str
    momentum: float
    max_change: float
    max_change_global: float
    ng_rank_in: int
    ng_rank_out: int
    ng_update_period: int


def optimizer_kwargs(opt: OptimizerConfig, lr: float) -> dict[str, Any]:
    """kwargs for make_optimizer: `opt` at learning rate `lr`."""
    return dict(
        name=opt.name,
        lr=lr,
        momentum=opt.momentum,
        max_change=opt.max_change,
        max_change_global=opt.max_change_global,
        rank_in=opt.ng_rank_in,
        rank_out=opt.ng_rank_out,
        update_period=opt.ng_update_period,
    )
