"""Models derived from the global model G(t) that never feed back: the EMAs and their rivals.

Every averager is updated right after each synchronization t with G(t) (and the number of
training frames t covered, and the number of local minibatch steps done so far), lives
once (on rank 0), is never broadcast and never changes the workers' next start B(t). All
of them are computed from the same G(t) sequence, so one run gives comparable rows:

* `EmaSet` (`ema.py`): the paper's exponential moving averages.
* `IcefallAverage`: icefall's `model_avg` (``update_averaged_model`` in its train.py): a
  running uniform mean since the start, updated every `period` local steps,
  ``avg = G * p / n + avg * (n - p) / n`` with n the steps done so far and p the steps
  since the previous update. Where G changes only at synchronizations (MA, BMUF), the update
  happens at the first synchronization at or after each multiple of `period`.
* `LastModelsCombination`: Kaldi nnet3's final combination (``nnet3-combine``, which averages
  the last models of training and picks how many by the objective on held-out examples):
  keeps the last `max_models` synchronized models and offers the uniform average of the
  last k for every k; the trainer picks k by dev cross entropy (`choose_k`), on the whole
  dev set unless `--dev-max-minibatches` caps it. For MA and BMUF every synchronization's
  G(t) is kept, a short last block of an epoch too. Only for the per-step syncs
  (`none`/`ddp`) is one model kept every `every_steps` steps (a block's worth, as Kaldi
  keeps one per iteration); their final G(T) is kept too (`finish`), so the last model of
  training is always a candidate and k = 1 is G(T) itself.
* `PowerEmaSnapshots` (`posthoc.py`): snapshots for post-hoc EMA reconstruction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from steps_py.model_tag import ModelTag, TagKind
from steps_py.parallel.ema import EmaSet


class Averager(ABC):
    """Reads G(t) after each synchronization; offers models for evaluation and export."""

    @abstractmethod
    def init(self, global_flat: torch.Tensor) -> None:
        """Start from G(0)."""

    @abstractmethod
    def update(self, global_flat: torch.Tensor, frames: float, steps: int) -> None:
        """After synchronization t: G(t), frames it covered, local steps done so far."""

    def models(self) -> list[tuple[str, torch.Tensor]]:
        """(label, flat parameters) of the models to evaluate during training."""
        return []

    def final_outputs(self, global_flat: torch.Tensor) -> dict[str, str]:
        """At the end of training, with G(T): files the averager writes, for summary.json."""
        return {}

    @abstractmethod
    def state_dict(self) -> dict[str, object]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, object]) -> None: ...


class EmaAverager(Averager):
    """`EmaSet` under the common interface."""

    def __init__(self, emas: EmaSet) -> None:
        self.emas = emas

    def init(self, global_flat: torch.Tensor) -> None:
        self.emas.init(global_flat)

    def update(self, global_flat: torch.Tensor, frames: float, steps: int) -> None:
        self.emas.update(global_flat, frames)

    def models(self) -> list[tuple[str, torch.Tensor]]:
        return self.emas.models()

    def state_dict(self) -> dict[str, object]:
        return self.emas.state_dict()

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.emas.load_state_dict(state)


class IcefallAverage(Averager):
    """icefall's running uniform average of the model since the start."""

    label = str(ModelTag(TagKind.ICEFALL))

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError(f"the icefall average period must be >= 1 step, got {period}")
        self.period = period
        self.avg: torch.Tensor | None = None
        self.last_steps = 0  # steps at the previous update
        self.updates = 0

    def init(self, global_flat: torch.Tensor) -> None:
        self.avg = global_flat.detach().clone()
        self.last_steps = 0
        self.updates = 0

    @torch.no_grad()
    def update(self, global_flat: torch.Tensor, frames: float, steps: int) -> None:
        assert self.avg is not None
        if steps // self.period <= self.last_steps // self.period:
            return
        p = steps - self.last_steps
        self.avg.mul_((steps - p) / steps).add_(global_flat, alpha=p / steps)
        self.last_steps = steps
        self.updates += 1

    def models(self) -> list[tuple[str, torch.Tensor]]:
        assert self.avg is not None
        return [(self.label, self.avg)] if self.updates else []

    def state_dict(self) -> dict[str, object]:
        return {
            "period": self.period,
            "avg": self.avg,
            "last_steps": self.last_steps,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        if int(state["period"]) != self.period:  # type: ignore[call-overload]
            raise ValueError(
                f"checkpoint has icefall average period {state['period']}, this run {self.period}"
            )
        self.avg = state["avg"].clone()  # type: ignore[union-attr]
        self.last_steps = int(state["last_steps"])  # type: ignore[call-overload]
        self.updates = int(state["updates"])  # type: ignore[call-overload]


class LastModelsCombination(Averager):
    """Kaldi's final combination: the uniform average of the last k synchronized models."""

    label = str(ModelTag(TagKind.COMBINE))

    def __init__(self, max_models: int, every_steps: int = 1) -> None:
        if max_models < 1:
            raise ValueError(f"the combination needs >= 1 model, got {max_models}")
        self.max_models = max_models
        self.every_steps = max(1, every_steps)
        self.kept: list[torch.Tensor] = []  # oldest first
        self.last_steps = 0

    def init(self, global_flat: torch.Tensor) -> None:
        self.kept = []
        self.last_steps = 0

    @torch.no_grad()
    def update(self, global_flat: torch.Tensor, frames: float, steps: int) -> None:
        if steps - self.last_steps < self.every_steps:
            return
        self.last_steps = steps
        self.kept.append(global_flat.detach().clone())
        if len(self.kept) > self.max_models:
            self.kept.pop(0)

    @torch.no_grad()
    def finish(self, global_flat: torch.Tensor, steps: int) -> None:
        """Keep the run's final G(T) when the spacing left it out (per-step syncs)."""
        if steps != self.last_steps:
            self.every_steps, every = 1, self.every_steps
            self.update(global_flat, 0.0, steps)
            self.every_steps = every

    def average_of_last(self, k: int) -> torch.Tensor:
        if not 1 <= k <= len(self.kept):
            raise ValueError(f"cannot average the last {k} of {len(self.kept)} models")
        acc = self.kept[-1].double()
        for v in self.kept[-k:-1]:
            acc = acc + v.double()
        return (acc / k).to(self.kept[-1].dtype)

    def choose_k(self, dev_loss: Callable[[torch.Tensor], float]) -> tuple[int, list[float]]:
        """The k (1..kept) with the lowest dev loss (ties: the smaller k), and every loss."""
        losses = [dev_loss(self.average_of_last(k)) for k in range(1, len(self.kept) + 1)]
        best = min(range(len(losses)), key=lambda i: (losses[i], i))
        return best + 1, losses

    def state_dict(self) -> dict[str, object]:
        return {
            "max_models": self.max_models,
            "every_steps": self.every_steps,
            "kept": list(self.kept),
            "last_steps": self.last_steps,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        if int(state["max_models"]) != self.max_models:  # type: ignore[call-overload]
            raise ValueError(
                f"checkpoint keeps {state['max_models']} models for the "
                f"combination, this run {self.max_models}"
            )
        self.kept = [v.clone() for v in state["kept"]]  # type: ignore[union-attr]
        self.last_steps = int(state["last_steps"])  # type: ignore[call-overload]


PER_STEP_SYNCS = ("none", "ddp")  # G changes every step: the combination keeps one per block
