"""Synchronization algorithms as small objects with one method called at block end.

Definitions follow DESIGN.md "Synchronization algorithms". N workers; in block t each
worker starts from B(t-1), runs tau local updates and ends with W_i(t).

* A(t) = mean_i W_i(t) (one all-reduce of the flat state vector).
* `ma`:  G(t) = A(t), B(t) = G(t).
* `bmuf-cbm` / `bmuf-nbm` (Chen & Huo 2016):
  D(t) = A(t) - B(t-1); Delta(t) = eta * Delta(t-1) + zeta * D(t);
  G(t) = G(t-1) + Delta(t); CBM: B(t) = G(t); NBM: B(t) = G(t) + eta * Delta(t).
  G and the Nesterov look-ahead are kept apart (fairseq folds them together).
  Defaults zeta = 1, eta = 1 - 1/N. During `warmup_blocks` blocks: plain averaging
  (G = B = A, Delta stays 0).
* `ddp`: gradients averaged every step (tau = 1); G = the (identical) worker model.
* `none`: one worker, no communication; G = the worker model after every step.

Every object holds its own state (`state_dict()` for checkpoints) and is identical on
every rank, because all ranks see the same all-reduced A(t).

The training loop calls four hooks and knows nothing else of the algorithm:
`block_minibatches(K)` (1 for `none`/`ddp`: they synchronize after every step),
`wrap(model, group)` (torch DistributedDataParallel for `ddp` under torchrun, else the
model), `after_backward(group, flats)` (the flat gradient all-reduce of simulated `ddp`,
a no-op for the others) and `on_block_end(group, worker_flats, frames) -> B(t)`.
`InterferingEma` wraps any of them for the ablation B(t) = E(t).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from steps_py.model_tag import TagKind
from steps_py.parallel.ema import EmaSet
from steps_py.parallel.flat import FlatState
from steps_py.parallel.group import Group

SYNC_CHOICES = ("none", "ddp", "ma", "bmuf-cbm", "bmuf-nbm")


class Sync(ABC):
    """Base: holds G (global model) and B (start of the next block)."""

    name = "base"

    def __init__(self) -> None:
        self.global_flat: torch.Tensor | None = None
        self.start_flat: torch.Tensor | None = None
        self.blocks = 0

    def init(self, start: torch.Tensor) -> None:
        """G(0) = B(0) = the initial (broadcast) model."""
        self.global_flat = start.clone()
        self.start_flat = start.clone()

    def block_minibatches(self, k: int) -> int:
        """Local minibatches between two synchronizations, given the block size asked for."""
        return k

    def wrap(self, model: nn.Module, group: Group) -> nn.Module:
        """The module a worker's forward/backward goes through (the model itself by default)."""
        return model

    def after_backward(self, group: Group, flats: list[FlatState]) -> None:  # noqa: B027
        """Called once per step after every local worker's backward, before the updates."""

    @abstractmethod
    def on_block_end(
        self, group: Group, worker_flats: list[torch.Tensor], frames: float
    ) -> torch.Tensor:
        """Combine the local workers' final states; return B(t), the next block's start."""

    def override_start(self, start: torch.Tensor) -> None:
        """Replace B(t) (used only by the interfering-EMA ablation: B(t) = E(t))."""
        self.start_flat = start.clone()

    def state_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "blocks": self.blocks,
            "global": self.global_flat,
            "start": self.start_flat,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        if state["name"] != self.name:
            raise ValueError(f"checkpoint was written with --sync {state['name']}, not {self.name}")
        self.blocks = int(state["blocks"])  # type: ignore[arg-type]
        self.global_flat = state["global"].clone()  # type: ignore[union-attr]
        self.start_flat = state["start"].clone()  # type: ignore[union-attr]


class NoSync(Sync):
    """Single worker: G is the worker's model after each step."""

    name = "none"

    def block_minibatches(self, k: int) -> int:
        return 1

    def on_block_end(
        self, group: Group, worker_flats: list[torch.Tensor], frames: float
    ) -> torch.Tensor:
        if group.world_size != 1:
            raise ValueError("--sync none needs exactly one worker")
        self.blocks += 1
        self.global_flat = worker_flats[0]  # G is the worker model itself (no copy)
        self.start_flat = self.global_flat
        return self.start_flat


class GradientAveraging(NoSync):
    """Synchronous SGD: per-step gradient all-reduce; models stay identical.

    Under torchrun with `impl="torch"` the all-reduce is torch's DistributedDataParallel
    (bucketed, overlapped with backward); otherwise one all-reduce of the flat gradient
    after the workers' backward passes (always so in simulation).
    """

    name = "ddp"

    def __init__(self, impl: str = "torch") -> None:
        super().__init__()
        self.impl = impl
        self.torch_ddp = False

    def wrap(self, model: nn.Module, group: Group) -> nn.Module:
        if not (group.is_real and self.impl == "torch"):
            return model
        from torch.nn.parallel import DistributedDataParallel

        self.torch_ddp = True
        return DistributedDataParallel(model, broadcast_buffers=False)

    def after_backward(self, group: Group, flats: list[FlatState]) -> None:
        if self.torch_ddp:
            return
        g = group.all_reduce_mean([f.grads() for f in flats])
        for f in flats:
            f.set_grads(g)

    def on_block_end(
        self, group: Group, worker_flats: list[torch.Tensor], frames: float
    ) -> torch.Tensor:
        self.blocks += 1
        self.global_flat = worker_flats[0]  # identical on every worker (no copy)
        self.start_flat = self.global_flat
        return self.start_flat


class ModelAveraging(Sync):
    """MA: G(t) = B(t) = A(t)."""

    name = "ma"

    def on_block_end(
        self, group: Group, worker_flats: list[torch.Tensor], frames: float
    ) -> torch.Tensor:
        self.blocks += 1
        avg = group.all_reduce_mean(worker_flats)
        self.global_flat = avg
        self.start_flat = avg
        return avg


class Bmuf(Sync):
    """Blockwise model-update filtering with classical (CBM) or Nesterov (NBM) momentum."""

    def __init__(
        self,
        world_size: int,
        nesterov: bool,
        block_momentum: float | None = None,
        block_lr: float = 1.0,
        warmup_blocks: int = 0,
    ) -> None:
        super().__init__()
        self.name = "bmuf-nbm" if nesterov else "bmuf-cbm"
        self.nesterov = nesterov
        self.eta = (1.0 - 1.0 / world_size) if block_momentum is None else block_momentum
        self.zeta = block_lr
        self.warmup_blocks = warmup_blocks
        self.delta: torch.Tensor | None = None
        if not 0.0 <= self.eta < 1.0:
            raise ValueError(f"--bmuf-momentum must be in [0, 1), got {self.eta}")
        if self.zeta <= 0:
            raise ValueError(f"--bmuf-lr must be > 0, got {self.zeta}")

    def init(self, start: torch.Tensor) -> None:
        super().init(start)
        self.delta = torch.zeros_like(start)

    def on_block_end(
        self, group: Group, worker_flats: list[torch.Tensor], frames: float
    ) -> torch.Tensor:
        assert self.global_flat is not None and self.start_flat is not None
        assert self.delta is not None
        self.blocks += 1
        avg = group.all_reduce_mean(worker_flats)
        if self.blocks <= self.warmup_blocks:
            self.global_flat = avg
            self.start_flat = avg
            return avg
        d = avg.sub_(self.start_flat)  # D(t) = A(t) - B(t-1)
        self.delta.mul_(self.eta).add_(d, alpha=self.zeta)  # Delta(t)
        self.global_flat = self.global_flat + self.delta  # G(t)
        if self.nesterov:
            self.start_flat = self.global_flat + self.eta * self.delta
        else:
            self.start_flat = self.global_flat.clone()
        return self.start_flat

    def state_dict(self) -> dict[str, object]:
        s = super().state_dict()
        s.update(delta=self.delta, eta=self.eta, zeta=self.zeta)
        return s

    def load_state_dict(self, state: dict[str, object]) -> None:
        super().load_state_dict(state)
        self.delta = state["delta"].clone()  # type: ignore[union-attr]


class InterferingEma(Sync):
    """Ablation only: the EMA is broadcast as the next start, B(t) = E(t) (the paper does not).

    Wraps the real sync object; its EMA (one, `emas`) exists identically on every rank.
    G(t) stays the wrapped algorithm's global model, copied before the workers are
    overwritten with E(t) (for `none`/`ddp` G is otherwise the worker's live buffer).
    """

    def __init__(self, inner: Sync, emas: EmaSet) -> None:
        super().__init__()
        if len(emas) != 1:
            raise ValueError(f"the interfering ablation broadcasts one EMA, got {len(emas)}")
        self.inner, self.emas = inner, emas
        self.name = inner.name

    @property
    def label(self) -> str:
        return str(self.emas.specs[0].tag.as_kind(TagKind.INTERFERING))

    def init(self, start: torch.Tensor) -> None:
        self.inner.init(start)
        self.emas.init(start)
        self.global_flat, self.start_flat = self.inner.global_flat, self.inner.start_flat

    def block_minibatches(self, k: int) -> int:
        return self.inner.block_minibatches(k)

    def wrap(self, model: nn.Module, group: Group) -> nn.Module:
        return self.inner.wrap(model, group)

    def after_backward(self, group: Group, flats: list[FlatState]) -> None:
        self.inner.after_backward(group, flats)

    def on_block_end(
        self, group: Group, worker_flats: list[torch.Tensor], frames: float
    ) -> torch.Tensor:
        self.inner.on_block_end(group, worker_flats, frames)
        assert self.inner.global_flat is not None
        self.global_flat = self.inner.global_flat.clone()
        self.emas.update(self.global_flat, frames)
        start = self.emas.model(0).clone()
        self.inner.override_start(start)
        self.start_flat = start
        self.blocks = self.inner.blocks
        return start

    def state_dict(self) -> dict[str, object]:
        return {
            "inner": self.inner.state_dict(),
            "ema": self.emas.state_dict(),
            "global": self.global_flat,
            "name": self.name,
            "interfering": True,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        if "interfering" not in state:
            raise ValueError("checkpoint was written without --ema-interfering")
        self.inner.load_state_dict(state["inner"])  # type: ignore[arg-type]
        self.emas.load_state_dict(state["ema"])  # type: ignore[arg-type]
        self.global_flat = state["global"].clone()  # type: ignore[union-attr]
        self.start_flat = self.inner.start_flat
        self.blocks = self.inner.blocks


def make_sync(
    name: str,
    world_size: int,
    block_momentum: float | None = None,
    block_lr: float = 1.0,
    warmup_blocks: int = 0,
    ddp_impl: str = "torch",
) -> Sync:
    if name == "none":
        if world_size != 1:
            raise ValueError(
                f"--sync none runs one worker; got {world_size} (use ma, bmuf-* or ddp)"
            )
        return NoSync()
    if name == "ddp":
        return GradientAveraging(ddp_impl)
    if name == "ma":
        return ModelAveraging()
    if name in ("bmuf-cbm", "bmuf-nbm"):
        return Bmuf(
            world_size,
            nesterov=name == "bmuf-nbm",
            block_momentum=block_momentum,
            block_lr=block_lr,
            warmup_blocks=warmup_blocks,
        )
    raise ValueError(f"unknown --sync {name!r}; choose one of {', '.join(SYNC_CHOICES)}")
