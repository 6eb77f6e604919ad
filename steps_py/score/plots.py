"""Scoreboard plots (matplotlib, Agg backend, PNG files).

* `plot_training_curves`: one training run's curves against training frames (all workers),
  from its ``log/train.csv`` (`training_curves`): the train cross entropy after every block
  (the mean over the epoch so far, as logged) and the dev frame accuracy of the global model
  and of every averaged model at every evaluation (each epoch end, and every
  ``--eval-every-blocks``/``--evals`` evaluation), epoch ends marked;
* `plot_dev_accuracy`: dev frame accuracy per epoch of the global model and of every EMA
  model of one training run, read from `summary.json`'s `history` (a run without train.csv).
* `plot_cer_vs_decay`: CER against the EMA decay (one line per run and set, the global
  model's CER as a dashed line of the same colour), for runs that tracked several decays.

The `history` entries of summary.json are read tolerantly: any numeric field whose
flattened key path contains "acc" and "dev" is a dev accuracy; the model it belongs to is
"global" or the `ema-<decay>` / `ema-hl<half-life>` part of the key path (e.g.
`{"dev": {"global": {"acc": ..}, "ema-0.99": {"acc": ..}}}` or `dev_acc_ema-0.99`, the
trainer's form).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402

from steps_py.fileio import atomic_path  # noqa: E402

_EMA_RE = re.compile(r"ema[-_]?((?:hl)?\d*\.?\d+(?:e[+-]?\d+)?)")


def _flatten(obj: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}/{k}" if prefix else str(k)))
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        out[prefix] = float(obj)
    return out


def model_of_key(key: str) -> str | None:
    """'global', 'ema-<decay>' or None for a flattened history key."""
    k = key.lower()
    m = _EMA_RE.search(k)
    if m:
        return f"ema-{m.group(1)}"
    if "global" in k:
        return "global"
    return None


def dev_accuracy_curves(history: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """{model: [(epoch, dev accuracy), ...]} from a summary.json history."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for i, entry in enumerate(history):
        if not isinstance(entry, dict):
            continue
        epoch = float(entry.get("epoch", i + 1))
        for key, val in _flatten(entry).items():
            k = key.lower()
            if "acc" not in k or ("dev" not in k and "valid" not in k):
                continue
            model = model_of_key(key)
            if model is not None:
                curves.setdefault(model, []).append((epoch, val))
    return curves


@dataclass
class TrainingCurves:
    """What `plot_training_curves` draws, x in training frames (all workers)."""

    train_ce: list[tuple[float, float]] = field(default_factory=list)  # one point per block
    dev_acc: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # per evaluation
    epoch_ends: list[float] = field(default_factory=list)


def training_curves(rows: list[dict[str, str]]) -> TrainingCurves:
    """The curves of a run's ``log/train.csv`` rows: a train CE point per ``block`` row, a dev
    accuracy point per model at each evaluation (a row with ``dev_acc_<model>``; the epoch
    row repeats an evaluation of the same frames, which counts once)."""
    c = TrainingCurves()
    for row in rows:
        if not row.get("frames"):
            continue
        frames = float(row["frames"])
        loss = float(row.get("train_loss") or 0.0)
        if row.get("kind") == "block" and loss > 0:  # 0: an epoch's first block in logs
            c.train_ce.append((frames, loss))  # written before the trainer counted it in
        if row.get("kind") == "epoch":
            c.epoch_ends.append(frames)
        for key, val in row.items():
            if key and key.startswith("dev_acc_") and val:
                pts = c.dev_acc.setdefault(key.removeprefix("dev_acc_"), [])
                if not pts or pts[-1][0] != frames:
                    pts.append((frames, float(val)))
    return c


def plot_training_curves(rows: list[dict[str, str]], out_png: Path, title: str) -> bool:
    """Train CE per block and dev accuracy per evaluation against frames; False (nothing
    written) when the rows hold neither."""
    c = training_curves(rows)
    if not c.train_ce and not c.dev_acc:
        return False
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    if c.train_ce:
        top.plot([p[0] for p in c.train_ce], [p[1] for p in c.train_ce], marker=".", ms=3)
    top.set_ylabel("train CE (epoch mean so far)")
    top.set_title(title)
    for model in sorted(c.dev_acc, key=lambda m: (m != "global", m)):
        pts = c.dev_acc[model]
        bottom.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker="o",
            ms=4,
            label=f"{model} ({len(pts)} evaluations)",
            linestyle="-" if model == "global" else "--",
        )
    bottom.set_ylabel("dev frame accuracy")
    bottom.set_xlabel("training frames (all workers)")
    bottom.xaxis.set_major_formatter(EngFormatter(sep=""))
    for ax in (top, bottom):
        for x in c.epoch_ends:
            ax.axvline(x, color="grey", alpha=0.3, linewidth=0.8)
        ax.grid(alpha=0.3)
    if c.dev_acc:
        bottom.legend(fontsize=8)
    _save(fig, out_png)
    return True


def _save(fig: Any, out_png: Path) -> None:
    with atomic_path(Path(out_png)) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_dev_accuracy(history: list[dict], out_png: Path, title: str) -> bool:
    """Plot dev frame accuracy per epoch; False (nothing written) if history has none."""
    curves = dev_accuracy_curves(history)
    if not curves:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for model in sorted(curves, key=lambda m: (m != "global", m)):
        pts = sorted(curves[model])
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker="o",
            label=model,
            linestyle="-" if model == "global" else "--",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev frame accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, out_png)
    return True


def plot_cer_vs_decay(series: dict[str, dict[str, Any]], out_png: Path) -> bool:
    """series: {label: {"decays": [..], "cers": [..], "global": cer | None}}; False if empty."""
    series = {k: v for k, v in series.items() if len(v["decays"]) >= 2}
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, s in sorted(series.items()):
        pts = sorted(zip(s["decays"], s["cers"], strict=True))
        (line,) = ax.plot(
            [p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{label} EMA"
        )
        if s.get("global") is not None:
            ax.axhline(s["global"], color=line.get_color(), linestyle=":", label=f"{label} global")
    ax.set_xlabel("EMA decay alpha")
    ax.set_ylabel("CER (%)")
    ax.set_title("CER against EMA decay")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, out_png)
    return True
