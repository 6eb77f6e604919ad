"""The non-interfering EMA of the global model (Tian et al. 2017, docs/DESIGN.md).

After each synchronization t: E(t) = alpha_t * E(t-1) + (1 - alpha_t) * G(t), E(0) = G(0).
Several EMAs run at once, each its own final model. Each is given either by a fixed decay
per synchronization (`--ema-decays 0.99`) or by a half-life in training frames
(`--ema-half-life-frames 100000`): alpha_t = 0.5 ** (frames_t / half_life), where frames_t
is the number of training frames (all workers) that synchronization t covers, so runs with
different N and block sizes are comparable and a short last block of an epoch gets a
weaker decay (the EMA scaling rule of Busbridge et al. 2023). An EMA may have a warm-up,
alpha_t = min(alpha_t, (1 + t) / (10 + t)).

The EMA only reads G: it is never broadcast, never read by workers and never changes the
next block's start B(t). The `--ema-interfering` ablation (B(t) = E(t)) is a wrapper around
the sync object (`sync.InterferingEma`), not a mode of this class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EmaSpec:
    """One EMA: a fixed decay per update, or a half-life in frames; optional warm-up."""

    decay: float | None = None
    half_life: float | None = None
    warmup: bool = False

    def __post_init__(self) -> None:
        if (self.decay is None) == (self.half_life is None):
            raise ValueError("an EMA has either a decay or a half-life")
        if self.decay is not None and not 0.0 <= self.decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {self.decay}")
        if self.half_life is not None and not self.half_life > 0:
            raise ValueError(f"EMA half-life must be > 0 frames, got {self.half_life}")

    @property
    def label(self) -> str:
        if self.decay is not None:
            base = f"{self.decay:g}"
        else:  # integral half-lives in full (hl1600000, not hl1.6e+06)
            h = float(self.half_life)  # type: ignore[arg-type]
            base = f"hl{int(h)}" if h.is_integer() else f"hl{h:g}"
        return f"ema-{base}" + ("-warmup" if self.warmup else "")

    def alpha(self, t: int, frames: float) -> float:
        """The decay of update t (counted from 1) that covers `frames` training frames."""
        a = self.decay if self.decay is not None else 0.5 ** (frames / self.half_life)  # type: ignore[operator]
        return min(a, (1.0 + t) / (10.0 + t)) if self.warmup else a


def ema_specs(
    decays: list[float],
    half_lives: list[float],
    warmup_half_lives: list[float] = (),  # type: ignore[assignment]
    warmup_all: bool = False,
) -> list[EmaSpec]:
    """The EMAs asked for on the command line, in a fixed order (decays, half-lives, warm-up)."""
    specs = [EmaSpec(decay=d, warmup=warmup_all) for d in decays]
    specs += [EmaSpec(half_life=h, warmup=warmup_all) for h in half_lives]
    specs += [EmaSpec(half_life=h, warmup=True) for h in warmup_half_lives]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"the same EMA is asked for twice: {labels}")
    return specs


class EmaSet:
    """Several EMAs of one flat vector (an `Averager`, see `averagers.py`)."""

    def __init__(self, specs: list[EmaSpec]) -> None:
        self.specs = list(specs)
        self.updates = 0
        self.values: list[torch.Tensor] = []
        self.last_alphas: list[float] = []

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.specs]

    def __len__(self) -> int:
        return len(self.specs)

    def init(self, global_flat: torch.Tensor) -> None:
        """E(0) = G(0)."""
        self.values = [global_flat.detach().clone() for _ in self.specs]
        self.updates = 0

    @torch.no_grad()
    def update(self, global_flat: torch.Tensor, frames: float) -> None:
        """One EMA step from G(t), which covers `frames` training frames; t counts from 1."""
        t = self.updates + 1
        self.last_alphas = [s.alpha(t, frames) for s in self.specs]
        for e, a in zip(self.values, self.last_alphas, strict=True):
            e.lerp_(global_flat, 1.0 - a)  # = a * e + (1 - a) * G, one pass
        self.updates = t

    def models(self) -> list[tuple[str, torch.Tensor]]:
        return list(zip(self.labels, self.values, strict=True))

    def state_dict(self) -> dict[str, object]:
        return {"labels": self.labels, "updates": self.updates, "values": list(self.values)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        if list(state["labels"]) != self.labels:  # type: ignore[call-overload]
            raise ValueError(
                f"checkpoint holds EMAs {state['labels']}, this run asks for {self.labels}; "
                "use the same --ema-* options to resume"
            )
        self.updates = int(state["updates"])  # type: ignore[call-overload]
        self.values = [v.clone() for v in state["values"]]  # type: ignore[union-attr]
