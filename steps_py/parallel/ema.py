"""The non-interfering EMA of the global model (Tian et al. 2017, docs/DESIGN.md).

After each synchronization t: E(t) = alpha_t * E(t-1) + (1 - alpha_t) * G(t), E(0) = G(0).
Several EMAs run at once, each its own final model. Each is given by a fixed decay per
synchronization (`--ema-decays 0.99`), by a half-life in training frames
(`--ema-half-life-frames 100000`) or by a half-life as a fraction of the run's training
frames (`--ema-half-life-fractions 0.05`, so runs of any length compare):
alpha_t = 0.5 ** (frames_t / half_life), where frames_t is the number of training frames
(all workers) that synchronization t covers, so runs with different N and block sizes are
comparable and a short last block of an epoch gets a weaker decay (the EMA scaling rule of
Busbridge et al. 2023). An EMA may have a warm-up, alpha_t = min(alpha_t, (1 + t) / (10 + t));
its label says that its decay or half-life is only an upper bound (`ema-warmup-upto-hl400000`).

The random initial model G(0) need not weigh on the final EMA (docs/DESIGN.md):

* EMA start (`--ema-start F`): until F x the run's frames are trained, E follows G (E = G);
  at the first synchronization at or after that point E is set to G and averaging starts
  (t counts from there, also for the warm-up). Label suffix `-start<F>`.
* Bias correction (`--ema-bias-correction`, Adam's): E(0) = 0 and the model is
  E_hat(t) = E(t) / (1 - prod_s alpha_s), a weighted mean of G(1..t) whose weights sum to
  1; G(0) has no weight at all. With a start as well, both count from the start.
  Label suffix `-bc`.

The EMA only reads G: it is never broadcast, never read by workers and never changes the
next block's start B(t). The `--ema-interfering` ablation (B(t) = E(t)) is a wrapper around
the sync object (`sync.InterferingEma`), not a mode of this class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from steps_py.model_tag import ModelTag


@dataclass(frozen=True)
class EmaSpec:
    """One EMA: a fixed decay per update, a half-life in frames, or a half-life as a fraction
    of the run's frames; optional warm-up, start (a fraction of the run) and bias correction."""

    decay: float | None = None
    half_life: float | None = None
    warmup: bool = False
    half_life_fraction: float | None = None
    start: float = 0.0
    bias_correction: bool = False

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.decay, self.half_life, self.half_life_fraction)]
        if sum(given) != 1:
            raise ValueError(
                "an EMA has exactly one of a decay, a half-life or a half-life fraction"
            )
        if self.decay is not None and not 0.0 <= self.decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {self.decay}")
        if self.half_life is not None and not self.half_life > 0:
            raise ValueError(f"EMA half-life must be > 0 frames, got {self.half_life}")
        if self.half_life_fraction is not None and not self.half_life_fraction > 0:
            raise ValueError(
                f"EMA half-life fraction must be > 0 (of the run), got {self.half_life_fraction}"
            )
        if not 0.0 <= self.start < 1.0:
            raise ValueError(f"EMA start must be a fraction of the run in [0, 1), got {self.start}")

    @property
    def tag(self) -> ModelTag:
        return ModelTag.ema(
            decay=self.decay,
            half_life=self.half_life,
            half_life_fraction=self.half_life_fraction,
            warmup=self.warmup,
            start=self.start,
            bias_correction=self.bias_correction,
        )

    @property
    def label(self) -> str:
        return str(self.tag)

    def half_life_frames(self, total_frames: float | None) -> float | None:
        """The half-life in frames (None for a fixed decay); a fraction needs the run's frames."""
        if self.half_life_fraction is None:
            return self.half_life
        if not total_frames:
            raise ValueError(f"{self.label}: a half-life fraction needs the run's total frames")
        return self.half_life_fraction * total_frames

    def alpha(self, t: int, frames: float, total_frames: float | None = None) -> float:
        """The decay of update t (counted from 1) that covers `frames` training frames."""
        hl = self.half_life_frames(total_frames)
        a = self.decay if hl is None else 0.5 ** (frames / hl)
        return min(a, (1.0 + t) / (10.0 + t)) if self.warmup else a  # type: ignore[type-var]


def ema_specs(
    decays: list[float],
    half_lives: list[float],
    warmup_half_lives: list[float] = (),  # type: ignore[assignment]
    warmup_all: bool = False,
    half_life_fractions: list[float] = (),  # type: ignore[assignment]
    start: float = 0.0,
    bias_correction: bool = False,
) -> list[EmaSpec]:
    """The EMAs asked for on the command line, in a fixed order (decays, half-lives,
    half-life fractions, warm-up); `start` and `bias_correction` apply to all of them."""
    common = {"start": start, "bias_correction": bias_correction}
    specs = [EmaSpec(decay=d, warmup=warmup_all, **common) for d in decays]  # type: ignore[arg-type]
    specs += [EmaSpec(half_life=h, warmup=warmup_all, **common) for h in half_lives]  # type: ignore[arg-type]
    specs += [
        EmaSpec(half_life_fraction=f, warmup=warmup_all, **common)  # type: ignore[arg-type]
        for f in half_life_fractions
    ]
    specs += [EmaSpec(half_life=h, warmup=True, **common) for h in warmup_half_lives]  # type: ignore[arg-type]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"the same EMA is asked for twice: {labels}")
    return specs


class EmaSet:
    """Several EMAs of one flat vector (an `Averager`, see `averagers.py`).

    `total_frames`: the run's training frames (all workers), which half-life fractions and
    starts are fractions of. `values[i]` is EMA i's running sum E(t); `model(i)` the model
    (E(t), or G while it has not started, or E(t) / weight with bias correction).
    """

    def __init__(self, specs: list[EmaSpec], total_frames: float | None = None) -> None:
        self.specs = list(specs)
        self.total_frames = total_frames
        for s in self.specs:
            s.half_life_frames(total_frames)  # a fraction without the run's frames: error now
            if s.start and not total_frames:
                raise ValueError(f"{s.label}: an EMA start needs the run's total frames")
        self.updates = 0
        self.frames = 0.0  # training frames of every synchronization so far
        self.values: list[torch.Tensor] = []
        self.steps = [0] * len(self.specs)  # updates since each EMA started
        self.weights = [1.0] * len(self.specs)  # 1 - prod alpha since the start (bias corr.)
        self.last_alphas: list[float] = []
        self.g0: torch.Tensor | None = None

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.specs]

    def __len__(self) -> int:
        return len(self.specs)

    def init(self, global_flat: torch.Tensor) -> None:
        """E(0) = G(0) (E(0) = 0 with bias correction, whose model is G until an update)."""
        self.values = [
            torch.zeros_like(global_flat) if self._corrects(i) else global_flat.detach().clone()
            for i in range(len(self.specs))
        ]
        self.g0 = global_flat  # the model of a bias-corrected EMA before its first update
        self.updates, self.frames = 0, 0.0
        self.steps = [0] * len(self.specs)
        self.weights = [0.0 if self._corrects(i) else 1.0 for i in range(len(self.specs))]

    def _corrects(self, i: int) -> bool:
        return self.specs[i].bias_correction and not self.specs[i].start

    def _started(self, i: int, frames_after: float) -> bool:
        s = self.specs[i]
        return not s.start or frames_after >= s.start * self.total_frames  # type: ignore[operator]

    @torch.no_grad()
    def update(self, global_flat: torch.Tensor, frames: float) -> None:
        """One EMA step from G(t), which covers `frames` training frames; t counts from 1."""
        self.frames += frames
        self.last_alphas = []
        for i, s in enumerate(self.specs):
            e = self.values[i]
            if not self._started(i, self.frames):
                e.copy_(global_flat)  # E follows G until averaging starts
                self.last_alphas.append(0.0)
                continue
            if s.start and self.steps[i] == 0:  # averaging starts here: E = G (or 0)
                e.zero_() if s.bias_correction else e.copy_(global_flat)
                self.weights[i] = 0.0 if s.bias_correction else 1.0
            self.steps[i] += 1
            a = s.alpha(self.steps[i], frames, self.total_frames)
            if s.start and self.steps[i] == 1 and not s.bias_correction:
                a = 1.0  # E(t0) = G(t0): the start's own model is already in E
            e.lerp_(global_flat, 1.0 - a)  # = a * e + (1 - a) * G, one pass
            self.weights[i] = a * self.weights[i] + (1.0 - a)
            self.last_alphas.append(a)
        self.updates += 1

    def model(self, i: int) -> torch.Tensor:
        """EMA i's model now (bias-corrected where asked)."""
        if self.specs[i].bias_correction and self.weights[i] != 1.0:
            return self.values[i] / self.weights[i] if self.weights[i] > 0 else self.g0
        return self.values[i]

    def models(self) -> list[tuple[str, torch.Tensor]]:
        return [(label, self.model(i)) for i, label in enumerate(self.labels)]

    def state_dict(self) -> dict[str, object]:
        return {
            "labels": self.labels,
            "updates": self.updates,
            "values": list(self.values),
            "frames": self.frames,
            "steps": list(self.steps),
            "weights": list(self.weights),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        if list(state["labels"]) != self.labels:  # type: ignore[call-overload]
            raise ValueError(
                f"checkpoint holds EMAs {state['labels']}, this run asks for {self.labels}; "
                "use the same --ema-* options to resume"
            )
        self.updates = int(state["updates"])  # type: ignore[call-overload]
        self.values = [v.clone() for v in state["values"]]  # type: ignore[union-attr]
        n = len(self.specs)  # checkpoints made before starts and bias correction existed
        self.frames = float(state.get("frames", 0.0))  # type: ignore[arg-type]
        self.steps = [int(x) for x in state.get("steps", [self.updates] * n)]  # type: ignore[union-attr]
        self.weights = [float(x) for x in state.get("weights", [1.0] * n)]  # type: ignore[union-attr]
