"""The non-interfering EMA of the global model (Tian et al. 2017, DESIGN.md).

After each synchronization t: E(t) = alpha_t * E(t-1) + (1 - alpha_t) * G(t), E(0) = G(0).
Several decays can run at once, each its own final model. alpha is given directly
(`--ema-decays`) or as a half-life in training frames (`--ema-half-life-frames`):
alpha = 0.5 ** (frames_per_update / half_life), so runs with different N and block
sizes are comparable. Optional warm-up: alpha_t = min(alpha, (1 + t) / (10 + t)).

The EMA only reads G: it is never broadcast, never read by workers and never changes
the next block's start B(t) (except in the explicit `--ema-interfering` ablation,
which the training loop implements, not this class).
"""

from __future__ import annotations

import torch


def parse_floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


class EmaSet:
    """Several EMAs of one flat vector, each with its own decay."""

    def __init__(self, labels: list[str], alphas: list[float], warmup: bool = False) -> None:
        if len(labels) != len(alphas):
            raise ValueError("one label per EMA decay")
        for a in alphas:
            if not 0.0 <= a < 1.0:
                raise ValueError(f"EMA decay must be in [0, 1), got {a}")
        self.labels = labels
        self.alphas = alphas
        self.warmup = warmup
        self.updates = 0
        self.values: list[torch.Tensor] = []

    @classmethod
    def from_args(cls, decays: list[float], half_lives: list[float], frames_per_update: float,
                  warmup: bool) -> EmaSet:
        labels = [f"{d:g}" for d in decays]
        alphas = list(decays)
        for h in half_lives:
            if h <= 0:
                raise ValueError(f"--ema-half-life-frames must be > 0, got {h}")
            labels.append(f"hl{h:g}")
            alphas.append(0.5 ** (frames_per_update / h))
        return cls(labels, alphas, warmup)

    def __len__(self) -> int:
        return len(self.labels)

    def init(self, global_flat: torch.Tensor) -> None:
        """E(0) = G(0)."""
        self.values = [global_flat.detach().clone() for _ in self.labels]
        self.updates = 0

    def alpha_at(self, i: int, t: int) -> float:
        a = self.alphas[i]
        return min(a, (1.0 + t) / (10.0 + t)) if self.warmup else a

    @torch.no_grad()
    def update(self, global_flat: torch.Tensor) -> None:
        """One EMA step from G(t); t counts updates from 1."""
        t = self.updates + 1
        for i, e in enumerate(self.values):
            a = self.alpha_at(i, t)
            e.lerp_(global_flat, 1.0 - a)  # = a * e + (1 - a) * G, one pass
        self.updates = t

    def state_dict(self) -> dict[str, object]:
        return {"labels": list(self.labels), "alphas": list(self.alphas), "updates": self.updates,
                "values": list(self.values)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        if list(state["labels"]) != self.labels:  # type: ignore[call-overload]
            raise ValueError(
                f"checkpoint holds EMAs {state['labels']}, this run asks for {self.labels}; "
                "use the same --ema-decays/--ema-half-life-frames to resume")
        self.updates = int(state["updates"])  # type: ignore[call-overload]
        self.values = [v.clone() for v in state["values"]]  # type: ignore[union-attr]
