"""Training metrics: wall-time split, dev evaluation, log/train.csv and tensorboard.

`TimeSplit` accumulates seconds per category: compute (forward, backward, optimizer,
data), wait (real processes: barrier before a block's all-reduce = load imbalance), comm
(all-reduce, flat copies, sync arithmetic), ema, eval, checkpoint.
`evaluate` gives frame-level cross entropy and accuracy of a model on dev minibatches.
`MetricsLog` appends one CSV row per block/epoch (header fixed at start; a resumed run
appends to the same file) and mirrors every number to tensorboard, against training frames
(all workers), so runs with different N and block sizes line up.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from steps_py.fileio import atomic_write_text

IGNORE_LABEL = -100


class TimeSplit:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def measure(self, what: str, device: torch.device | None = None):  # noqa: ANN201
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if device is not None and device.type == "cuda":
                torch.cuda.synchronize(device)
            self.seconds[what] += time.perf_counter() - t0

    def as_dict(self) -> dict[str, float]:
        return dict(self.seconds)


def frame_loss(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean frame CE over labelled frames (label -100 = padding) and the frame count."""
    logits = logits.reshape(-1, logits.shape[-1])
    y = y.reshape(-1).long()
    n = int((y != IGNORE_LABEL).sum())
    loss = F.cross_entropy(logits, y, ignore_index=IGNORE_LABEL, reduction="sum")
    return loss / max(n, 1), n


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    max_batches: int = 0,
) -> dict[str, float]:
    """Dev CE (nats/frame) and frame accuracy of `model` (put in eval mode, then restored)."""
    was_training = model.training
    model.eval()
    ce, correct, frames = 0.0, 0, 0
    for i, (x, y) in enumerate(batches):
        if max_batches and i >= max_batches:
            break
        x, y = x.to(device), y.to(device)
        logits = model(x)
        logits = logits.reshape(-1, logits.shape[-1])
        y = y.reshape(-1).long()
        mask = y != IGNORE_LABEL
        ce += float(F.cross_entropy(logits, y, ignore_index=IGNORE_LABEL, reduction="sum"))
        correct += int((logits.argmax(-1) == y)[mask].sum())
        frames += int(mask.sum())
    model.train(was_training)
    if frames == 0:
        return {"ce": math.nan, "acc": math.nan, "frames": 0}
    return {"ce": ce / frames, "acc": correct / frames, "frames": frames}


class MetricsLog:
    """log/train.csv + tensorboard/ (rank 0 only)."""

    FIELDS = [
        "kind",
        "epoch",
        "block",
        "global_step",
        "frames",
        "train_loss",
        "lr",
        "t_compute",
        "t_wait",
        "t_comm",
        "t_ema",
        "t_eval",
        "t_checkpoint",
        "wall",
    ]

    def __init__(
        self,
        exp_dir: Path,
        model_labels: list[str],
        tensorboard: bool = True,
        resume_step: int | None = None,
    ) -> None:
        self.path = Path(exp_dir) / "log" / "train.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fields = list(self.FIELDS)
        for m in model_labels:
            self.fields += [f"dev_ce_{m}", f"dev_acc_{m}"]
        if resume_step is not None and self.path.exists():
            self._drop_rows_after(resume_step)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._f = self.path.open("a", newline="", encoding="utf-8")
        self._w = csv.DictWriter(self._f, fieldnames=self.fields, extrasaction="ignore")
        if new:
            self._w.writeheader()
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(Path(exp_dir) / "tensorboard"))

    def _drop_rows_after(self, step: int) -> None:
        """A resumed run redoes the work after its checkpoint: forget those rows."""
        with self.path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        keep = [
            r for r in rows if r.get("global_step", "").isdigit() and int(r["global_step"]) <= step
        ]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(keep)
        atomic_write_text(self.path, buf.getvalue())

    def row(self, values: dict[str, Any]) -> None:
        self._w.writerow({k: _fmt(v) for k, v in values.items()})
        self._f.flush()
        if self._tb is not None:  # x axis: training frames (all workers), comparable across N
            kind = values.get("kind", "block")
            step = int(values.get("frames", 0))
            for k, v in values.items():
                if k in ("kind", "epoch", "block", "global_step") or not isinstance(v, int | float):
                    continue
                if isinstance(v, float) and not math.isfinite(v):
                    continue
                self._tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        self._f.close()
        if self._tb is not None:
            self._tb.close()


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v
