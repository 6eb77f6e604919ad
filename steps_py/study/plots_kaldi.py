"""The second study's plots, from the rows of `table_kaldi.py` and the records.

* `change_vs_workers.png`: per model (rows) and sync method (columns), each averager's
  relative test-CER change against the same runs' global model with its 95 % CI
  (hierarchical bootstrap) against N; configs that diverged or have not run are marked as
  such on the zero line, not left out silently.
* `dev_ce_vs_half_life.png`: the final whole-dev CE of every tracked EMA relative to the
  global model, half-lives in order of value (fraction of the run), one line per config.
* `convergence.png`: dev CE against training frames for the primary configs' first seed:
  global in black, the EMAs coloured by half-life with a sequential colour map (light =
  short, dark = long); dots: dev CER at the epoch ends (global and the dev-chosen model).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steps_py.study.view import StudyView as Study

log = logging.getLogger("study")

SYNCS = ("ma", "bmuf-cbm", "bmuf-nbm", "ddp", "none")
RIVALS = ("ema", "kaldi-combine", "icefall-avg")


def half_life_key(tag: str) -> float | None:
    """The half-life of an EMA label for ordering (`ema-hl5pct...` -> 0.05, frames as is)."""
    m = re.match(r"ema-hl([0-9.]+)(pct)?", tag)
    if m is None:
        return None
    return float(m.group(1)) / 100.0 if m.group(2) else float(m.group(1))


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw_rivals(ax: Any, here: list[dict[str, Any]]) -> None:
    """Each averager's change vs global with its CI against N, side by side; one colour per
    averager in every panel, whichever rows the panel has."""
    for k, averager in enumerate(RIVALS):
        pts = sorted(
            (r["workers"], r["vs_global"])
            for r in here
            if r["averager"] == averager and r.get("vs_global")
        )
        if pts:
            x = [p[0] * (1.0 + 0.06 * (k - 1)) for p in pts]  # side by side
            y = [p[1]["percent"] for p in pts]
            err = [
                [p[1]["percent"] - p[1]["ci95_low"] for p in pts],
                [p[1]["ci95_high"] - p[1]["percent"] for p in pts],
            ]
            ax.errorbar(
                x, y, yerr=err, marker="o", capsize=3, ls="-", label=averager, color=f"C{k}"
            )


def plot_change_vs_workers(rows: list[dict[str, Any]], path: Path) -> bool:
    plt = _plt()
    models = sorted({r["model"] for r in rows})
    syncs = [s for s in SYNCS if any(r["sync"] == s for r in rows)]
    if not models or not syncs:
        return False
    fig, axes = plt.subplots(
        len(models),
        len(syncs),
        figsize=(4 * len(syncs), 3.3 * len(models)),
        squeeze=False,
        sharey=True,
    )
    for i, m in enumerate(models):
        for j, s in enumerate(syncs):
            ax = axes[i][j]
            here = [r for r in rows if r["model"] == m and r["sync"] == s and r["variant"] == "-"]
            if not here:  # e.g. LSTMP with DDP: not a config of the plan
                ax.set_title(f"{m} {s}")
                ax.text(
                    0.5,
                    0.5,
                    "not in the plan",
                    ha="center",
                    va="center",
                    color="grey",
                    transform=ax.transAxes,
                )
                ax.set_axis_off()
                continue
            _draw_rivals(ax, here)
            for r in here:  # what dev chose, beside its point
                if r["averager"] == "ema" and r.get("vs_global"):
                    chosen = sorted({t for ts in r["model_tags"].values() for t in ts})
                    text = ",".join(t.removeprefix("ema-").removesuffix("-bc") for t in chosen)
                    ax.annotate(text, (r["workers"], r["vs_global"]["percent"]), fontsize=6)
            for r in here:
                if r["status"] in ("diverged", "not run") or r["status"].startswith("not run:"):
                    short = "pilot diverged" if "pilot" in r["status"] else r["status"]
                    ax.scatter(
                        [r["workers"]],
                        [0.0],
                        marker="x",
                        color="grey" if short == "not run" else "red",
                        zorder=5,
                    )
                    ax.annotate(short, (r["workers"], 0.0), fontsize=7, rotation=90, va="bottom")
            ax.axhline(0.0, color="black", lw=0.8)
            ax.set_xscale("log", base=2)
            ns = [r["workers"] for r in here]
            ax.set_xlim(min(ns) / 1.6, max(ns) * 1.6)  # one N alone still gets a readable axis
            ax.set_xticks(sorted(set(ns)), [str(n) for n in sorted(set(ns))])
            ax.set_title(f"{m} {s}")
            ax.set_xlabel("workers N")
            ax.set_ylabel("test CER change vs global, % (95 % CI)")
            ax.grid(alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in axes.flat:  # one legend, on the first panel with points (the others have the same)
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    if handles:
        first = next(ax for ax in axes.flat if ax.get_legend_handles_labels()[0])
        first.legend(list(handles.values()), list(handles), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _final_ce(rec: dict[str, Any]) -> dict[str, float]:
    curve = rec.get("epoch_curve") or []
    return {k: v for k, v in curve[-1].items() if k not in ("epoch", "frames")} if curve else {}


def plot_dev_ce_vs_half_life(folds: list[Study], path: Path) -> bool:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for config in dict.fromkeys(r.config for r in folds[0].plan.runs):
        run = next(r for r in folds[0].plan.runs if r.config == config)
        rec = folds[0].record(run)
        ce = _final_ce(rec) if rec else {}
        pts = (
            sorted(
                (k, 100.0 * (v - ce["global"]) / ce["global"])
                for t, v in ce.items()
                if (k := half_life_key(t)) is not None
            )
            if "global" in ce
            else []
        )
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, lw=1, label=config)
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("EMA half-life (fraction of the run's frames, ordered by value)")
    ax.set_ylabel(
        "final dev CE vs global, % (seed 1"
        + (f", {folds[0].results.name})" if len(folds) > 1 else ")")
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_convergence(folds: list[Study], rows: list[dict[str, Any]], path: Path) -> bool:
    plt = _plt()
    from matplotlib import colormaps

    picked = [r for r in rows if r["averager"] == "ema" and r["primary"]] or [
        r for r in rows if r.get("convergence")
    ]
    picked = picked[:4]
    runs = {r.config: r for r in sorted(folds[0].plan.runs, key=lambda r: -r.seed)}
    recs = [(r, folds[0].record(runs[r["config"]])) for r in picked]
    recs = [(r, rec) for r, rec in recs if rec and rec.get("epoch_curve")]
    if not recs:
        return False
    fig, axes = plt.subplots(1, len(recs), figsize=(5 * len(recs), 3.8), squeeze=False)
    cmap = colormaps["viridis_r"]
    for ax, (row, rec) in zip(axes[0], recs, strict=True):
        pts = sorted([*rec.get("dev_curve", []), *rec["epoch_curve"]], key=lambda p: p["frames"])
        emas = sorted((k, t) for t in _final_ce(rec) if (k := half_life_key(t)) is not None)
        for i, (_, tag) in enumerate(emas):
            xy = [(p["frames"], p[tag]) for p in pts if tag in p]
            ax.plot(
                *zip(*xy, strict=True),
                color=cmap(0.15 + 0.8 * i / max(1, len(emas) - 1)),
                lw=1,
                label=tag,
            )
        xy = [(p["frames"], p["global"]) for p in pts if "global" in p]
        ax.plot(*zip(*xy, strict=True), color="black", lw=2, label="global")
        where = f", {folds[0].results.name}" if len(folds) > 1 else ""  # the first fold's run
        ax.set_title(f"{rec['run']}{where} (dev CE; CER on the right axis)", fontsize=8)
        ax.set_xlabel("training frames")
        ax.set_ylabel("dev CE (nats/frame)")
        ax.grid(alpha=0.3)
        ax2 = ax.twinx()
        for tag, colour in (
            ("global", "black"),
            (row["model_tags"][str(row["seeds"][0])][0], "tab:red"),
        ):
            cer = [
                (
                    p["frames"],
                    rec["models"]
                    .get(f"epoch{p['epoch']}-{tag}" if p is not rec["epoch_curve"][-1] else tag, {})
                    .get("dev", {})
                    .get("cer"),
                )
                for p in rec["epoch_curve"]
            ]
            cer = [c for c in cer if c[1] is not None]
            if cer:
                ax2.plot(*zip(*cer, strict=True), ls=":", marker="s", color=colour, ms=4)
        ax2.set_ylabel("dev CER % (squares: global black, chosen red)")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_plots(folds: list[Study], rows: list[dict[str, Any]], out: Path) -> list[str]:
    """Draw every plot that has data (a stale one is removed); the names drawn."""
    names = ("change_vs_workers.png", "dev_ce_vs_half_life.png", "convergence.png")
    for n in names:
        (out / n).unlink(missing_ok=True)
    drawn = []
    try:
        for name, ok in (
            (names[0], lambda p: plot_change_vs_workers(rows, p)),
            (names[1], lambda p: plot_dev_ce_vs_half_life(folds, p)),
            (names[2], lambda p: plot_convergence(folds, rows, p)),
        ):
            if ok(out / name):
                drawn.append(name)
    except ImportError as e:  # matplotlib is a dependency; say so if it is broken
        log.warning("plots skipped: %s", e)
    return drawn
