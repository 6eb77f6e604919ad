"""The local workers of one process: model copy, optimizer, data shard, RNG; one local step.

A real process (torchrun) owns one worker; `--simulate N` owns all N and runs them one
after another. Each worker's torch RNG state is swapped in around its own computation, so
a simulated worker draws exactly what a real process would.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from steps_py.parallel.backend import Backend, Reader
from steps_py.parallel.errors import DimsError
from steps_py.parallel.flat import FlatState
from steps_py.parallel.group import Group
from steps_py.parallel.metrics import frame_loss


class DivergedError(RuntimeError):
    """A non-finite training loss."""


@dataclass
class Worker:
    rank: int
    model: nn.Module
    flat: FlatState
    opt: torch.optim.Optimizer
    reader: Reader
    rng: torch.Tensor
    device: torch.device
    cuda_rng: torch.Tensor | None = None
    fwd: nn.Module | None = None  # what forward/backward go through (the DDP wrapper or model)
    it: Any = None
    loss_sum: float = 0.0
    frames: int = 0
    # max-change activity since the epoch started: minibatches, minibatches where the global
    # limit applied, layer updates, layer updates scaled down (NG-SGD and sgd-mc only)
    max_change_counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])

    def start_epoch(self, epoch: int) -> None:
        self.reader.set_epoch(epoch)
        self.it = iter(self.reader)

    def state_dict(self) -> dict[str, Any]:
        st = {
            "optimizer": self.opt.state_dict(),
            "reader": self.reader.state_dict(),
            "rng": self.rng,
            "max_change_counts": list(self.max_change_counts),
        }
        if self.cuda_rng is not None:
            st["cuda_rng"] = self.cuda_rng
        return st

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.opt.load_state_dict(st["optimizer"])
        self.reader.load_state_dict(st["reader"])
        self.rng = st["rng"]
        self.max_change_counts = list(st.get("max_change_counts", [0, 0, 0, 0]))
        if "cuda_rng" in st and self.cuda_rng is not None:
            self.cuda_rng = st["cuda_rng"].cpu()

    def _swap_in_rng(self) -> None:
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng)

    def _swap_out_rng(self) -> None:
        self.rng = torch.get_rng_state()
        if self.cuda_rng is not None:
            self.cuda_rng = torch.cuda.get_rng_state()

    def forward_backward(self, lr: float, where: str) -> None:
        """One minibatch: loss and gradients (no update); `where` names it in errors."""
        self._swap_in_rng()
        try:
            x, y = next(self.it)
        except StopIteration:
            raise DivergedError(f"worker {self.rank}: data ran out at {where}") from None
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        for g in self.opt.param_groups:
            g["lr"] = lr
        loss, frames = frame_loss((self.fwd or self.model)(x), y)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise DivergedError(
                f"non-finite training loss ({value}) on worker {self.rank} at {where}"
            )
        loss.backward()
        self.loss_sum += value * frames
        self.frames += frames
        self._swap_out_rng()

    def update(self) -> None:
        self._swap_in_rng()
        self.opt.step()
        self._count_max_change()
        self.opt.zero_grad(set_to_none=True)
        self._swap_out_rng()

    def _count_max_change(self) -> None:
        layers = getattr(self.opt, "num_layer_updates", None)
        if layers is None:  # an optimizer without max-change (sgd, adam)
            return
        c = self.max_change_counts
        c[0] += 1
        c[1] += int(self.opt.global_max_change_applied)  # type: ignore[attr-defined]
        c[2] += layers
        c[3] += self.opt.num_max_change_applied  # type: ignore[attr-defined]


def build_workers(
    backend: Backend,
    base: nn.Module,
    group: Group,
    egs: Path,
    batch_size: int,
    seed: int,
    device: torch.device,
    opt_kwargs: dict[str, Any],
) -> list[Worker]:
    """This process's workers, each a copy of `base` with its own optimizer, shard and RNG."""
    workers = []
    for r in group.local_ranks:
        model = copy.deepcopy(base)
        flat = FlatState(model, share=True)  # before the optimizer sees the parameters
        reader = backend.make_reader(egs, r, group.world_size, batch_size, seed, "train")
        torch.manual_seed(seed * 7919 + 17 * r + 1)
        cuda_rng = torch.cuda.get_rng_state() if device.type == "cuda" else None
        opt = backend.make_optimizer(model, **opt_kwargs)
        workers.append(Worker(r, model, flat, opt, reader, torch.get_rng_state(), device, cuda_rng))
    return workers


def check_model_dims(worker: Worker, num_pdfs: int, egs: Path) -> None:
    """The model takes the examples' input and has the egs' number of outputs (else DimsError)."""
    state = worker.reader.state_dict()
    x, _ = next(iter(worker.reader))
    worker.reader.load_state_dict(state)
    try:
        with torch.no_grad():
            out = worker.model(x.to(worker.device))
    except RuntimeError as e:
        raise DimsError(
            f"the model does not accept the examples in {egs} (input shape {tuple(x.shape)}): "
            f"{str(e).splitlines()[0]}; check --model-config against {egs}/info.json"
        ) from None
    if num_pdfs and out.shape[-1] != num_pdfs:
        raise DimsError(
            f"model outputs {out.shape[-1]} classes but {egs} has {num_pdfs} pdfs; "
            "fix --model-config"
        )
