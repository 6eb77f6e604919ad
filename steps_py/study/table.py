"""The study's table and plots, from the runs and decodes that are done (partial is fine).

`results/study/table.json` and `table.md`: one row per model x sync x N (x variant) x
averager: the global model, the EMA chosen on dev (mean dev CER over the config's seeds),
icefall's running average, Kaldi's last-k combination and, in the ablation, the interfering
EMA. Columns: dev and test CER (mean ± std over seeds), the paired-bootstrap 95 % CI of the
relative test-CER change against the same runs' global models (seeds pooled), syncs,
training frames, training wall time. Plots:

* `cer_vs_workers.png`: test CER against N per sync method (global, EMA, icefall average,
  Kaldi combination; error bars = std over seeds);
* `dev_ce_vs_frames.png`: dev cross entropy against training frames, global vs EMAs;
* `cer_vs_half_life.png`: dev CER against the EMA half-life, tracked EMAs (points) and
  post-hoc reconstructed ones (curve).

`verdict(rows)` writes the README's "Does the EMA model help?" paragraph from the rows.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steps_py.fileio import atomic_write_json, atomic_write_text
from steps_py.model_tag import ModelTag, TagKind
from steps_py.score.bootstrap import mean_std, paired_bootstrap_rel_change
from steps_py.score.readme import ALL_ROWS  # README's copy of table.md stops there
from steps_py.study.record import is_diverged, paired, paired_across

if TYPE_CHECKING:
    from steps_py.study.view import StudyView as Study

log = logging.getLogger("study")

AVERAGERS = ("global", "ema", "icefall-avg", "kaldi-combine", "ema-interfering")
RESAMPLES, BOOT_SEED = 1000, 0


def _tag_for(averager: str, tags: list[str], chosen: str | None) -> str | None:
    if averager == "ema":
        return chosen
    if averager == "ema-interfering":
        return next((t for t in tags if ModelTag.parse(t).kind == TagKind.INTERFERING), None)
    return averager if averager in tags else None


def finished(study: Study) -> list[tuple[Any, dict[str, Any]]]:
    """(run, record) of every plan run that trained (diverged runs have no models)."""
    return [
        (r, rec)
        for r in study.plan.runs
        if (rec := study.record(r)) is not None and not is_diverged(rec)
    ]


def build_rows(study: Study) -> list[dict[str, Any]]:
    """Rows of the table from the records of every config with at least one finished run."""
    choices_path = study.results / "choices.json"
    choices = json.loads(choices_path.read_text()) if choices_path.is_file() else {}
    by_config: dict[str, list[tuple[Any, dict[str, Any]]]] = defaultdict(list)
    for r, rec in finished(study):
        by_config[r.config].append((r, rec))
    rows: list[dict[str, Any]] = []
    for config, members in by_config.items():
        runs, recs = [m[0] for m in members], [m[1] for m in members]
        chosen = (choices.get(config) or {}).get("ema")
        tags = recs[0]["final_models"]
        for averager in AVERAGERS:
            tag = _tag_for(averager, tags, chosen)
            if tag is None:
                continue
            dev = [
                rec["models"][tag]["dev"]["cer"]
                for rec in recs
                if "dev" in rec["models"].get(tag, {})
            ]
            test = [
                rec["models"][tag]["test"]["cer"]
                for rec in recs
                if "test" in rec["models"].get(tag, {})
            ]
            if not dev and not test:
                continue
            s0 = recs[0]["summary"]
            row: dict[str, Any] = {
                "config": config,
                "model": runs[0].model,
                "sync": runs[0].sync,
                "workers": runs[0].workers,
                "variant": runs[0].tag or "-",
                "averager": averager,
                "model_tag": tag,
                "seeds": [r.seed for r in runs],
                "dev_cer": dev,
                "test_cer": test,
                "syncs": s0.get("syncs"),
                "frames": s0.get("frames"),
                "block_minibatches": s0.get("block_minibatches"),
                "train_wall_s": [float(rec["summary"]["wall_time_s"]) for rec in recs],
            }
            for k in ("dev_cer", "test_cer", "train_wall_s"):
                row[f"{k}_mean"], row[f"{k}_std"] = mean_std(row[k])
            row["vs_global"] = None
            if averager != "global":
                pe = paired(recs, "global", tag, "test")
                if pe is not None:
                    ci = paired_bootstrap_rel_change(*pe, resamples=RESAMPLES, seed=BOOT_SEED)
                    row["vs_global"] = {
                        "percent": ci.rel_change,
                        "ci95_low": ci.low,
                        "ci95_high": ci.high,
                        "seeds_pooled": len(recs),
                    }
            rows.append(row)
    rows.sort(
        key=lambda r: (
            r["model"],
            r["variant"] != "-",
            r["variant"],
            r["sync"],
            r["workers"],
            AVERAGERS.index(r["averager"]),
        )
    )
    return rows


def _fmt(m: float | None, s: float | None, n: int) -> str:
    if m is None:
        return "-"
    return f"{m:.2f}" if n <= 1 else f"{m:.2f} ± {s:.2f}"


def _ci(v: dict[str, Any] | None) -> str:
    if not v:
        return "-"
    star = "**" if v["ci95_high"] < 0 or v["ci95_low"] > 0 else ""
    return f"{star}{v['percent']:+.1f} % [{v['ci95_low']:+.1f}, {v['ci95_high']:+.1f}]{star}"


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | sync | N | variant | averager | model chosen on dev | seeds | dev CER % | "
        "test CER % | test vs global (rel., 95 % CI) | syncs | frames | train time |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['sync']} | {r['workers']} | {r['variant']} | {r['averager']} | "
            f"{r['model_tag'] if r['averager'] == 'ema' else '-'} | {len(r['seeds'])} | "
            f"{_fmt(r['dev_cer_mean'], r['dev_cer_std'], len(r['dev_cer']))} | "
            f"{_fmt(r['test_cer_mean'], r['test_cer_std'], len(r['test_cer']))} | "
            f"{_ci(r['vs_global'])} | {r['syncs']} | {r['frames']} | "
            f"{(r['train_wall_s_mean'] or 0) / 60:.1f} min |"
        )
    return head + "\n".join(lines) + "\n"


def verdict(rows: list[dict[str, Any]]) -> str:
    """Plain sentences on where the EMA helps, from the CIs (nothing typed in)."""
    ema = [r for r in rows if r["averager"] == "ema" and r["vs_global"] and r["variant"] == "-"]
    if not ema:
        return "No configuration has test decodes of both its global and its EMA model yet."
    better = [r for r in ema if r["vs_global"]["ci95_high"] < 0]
    worse = [r for r in ema if r["vs_global"]["ci95_low"] > 0]
    same = [r for r in ema if r not in better and r not in worse]

    def names(rs: list[dict[str, Any]]) -> str:
        return (
            ", ".join(
                f"{r['model']} {r['sync']} N={r['workers']} ({r['vs_global']['percent']:+.1f} %)"
                for r in rs
            )
            or "none"
        )

    out = [
        f"Of {len(ema)} configurations (model x sync x N) with test decodes, the EMA chosen on "
        f"dev is significantly better than the same runs' global model (paired-bootstrap 95 % "
        f"CI of the relative test-CER change below 0) in {len(better)}: {names(better)}; "
        f"significantly worse in {len(worse)}: {names(worse)}; and not significantly "
        f"different in {len(same)}: {names(same)}. With one 95 % CI per configuration, about "
        f"{0.05 * len(ema):.2f} of {len(ema)} would exclude 0 by chance alone if the EMA made no "
        "difference anywhere."
    ]
    for rival in ("icefall-avg", "kaldi-combine"):
        pairs = []
        for e in ema:
            o = next(
                (
                    r
                    for r in rows
                    if r["config"] == e["config"]
                    and r["averager"] == rival
                    and r["test_cer_mean"] is not None
                ),
                None,
            )
            if o is not None and e["test_cer_mean"] is not None:
                pairs.append((e, o))
        if pairs:
            wins = sum(1 for e, o in pairs if e["test_cer_mean"] < o["test_cer_mean"])
            out.append(
                f"Against {rival} (the same runs), the EMA has the lower mean test CER in "
                f"{wins} of {len(pairs)} configurations."
            )
    return " ".join(out)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """One line per configuration: test CER of each averager and its change vs global."""
    configs: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        configs[r["config"]][r["averager"]] = r
    lines = []
    for by in configs.values():
        g = by.get("global")
        if g is None or g["test_cer_mean"] is None:
            continue
        cells = []
        for averager in ("ema", "icefall-avg", "kaldi-combine"):
            r = by.get(averager)
            if r is None or r["test_cer_mean"] is None:
                cells.append("-")
                continue
            tag = f" ({r['model_tag'].removeprefix('ema-')})" if averager == "ema" else ""
            cells.append(
                f"{_fmt(r['test_cer_mean'], r['test_cer_std'], len(r['test_cer']))}{tag}, "
                f"{_ci(r['vs_global'])}"
            )
        lines.append(
            f"| {g['model']} | {g['sync']} | {g['workers']} | {g['variant']} | {len(g['seeds'])} | "
            f"{g['syncs']} | {_fmt(g['test_cer_mean'], g['test_cer_std'], len(g['test_cer']))} | "
            + " | ".join(cells)
            + " |"
        )
    if not lines:
        return ""
    return (
        "Test CER % per configuration (mean ± std over seeds), and each averager's relative "
        "change against the same runs' global model with its paired-bootstrap 95 % CI "
        "(bold: the CI excludes 0):\n\n"
        "| model | sync | N | variant | seeds | syncs | global | EMA (half-life chosen on dev) "
        "| icefall average | Kaldi combination |\n|---|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(lines)
        + "\n"
    )


def ablation_rows(study: Study, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each test-decoded model of an ablation run (a plan family with a tag) against the global
    model of its baseline run: same model, sync, N and seed, no tag; paired bootstrap on test."""
    recs: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r, rec in finished(study):
        recs[r.config][r.seed] = rec
    out: list[dict[str, Any]] = []
    for row in rows:
        if row["variant"] == "-" or row["test_cer_mean"] is None:
            continue
        key = (row["model"], row["sync"], row["workers"])
        base = next(
            (
                b
                for b in rows
                if b["variant"] == "-"
                and b["averager"] == "global"
                and (b["model"], b["sync"], b["workers"]) == key
            ),
            None,
        )
        if base is None:
            continue
        va, ba = recs[row["config"]], recs[base["config"]]
        seeds = sorted(set(va) & set(ba))
        # a = the baseline's global model, b = the ablation's model: the change of b vs a
        pe = paired_across([(ba[s], va[s]) for s in seeds], "global", row["model_tag"], "test")
        if pe is None:
            continue
        ci = paired_bootstrap_rel_change(*pe, resamples=RESAMPLES, seed=BOOT_SEED)
        eb, ea, n = pe
        out.append(
            {
                "variant": row["variant"],
                "config": row["config"],
                "model": row["model"],
                "sync": row["sync"],
                "workers": row["workers"],
                "averager": row["averager"],
                "model_tag": row["model_tag"],
                "seeds": seeds,
                "test_cer": float(100.0 * ea.sum() / (len(seeds) * n.sum())),
                "baseline_config": base["config"],
                "baseline_test_cer": float(100.0 * eb.sum() / (len(seeds) * n.sum())),
                "vs_baseline_global": {
                    "percent": ci.rel_change,
                    "ci95_low": ci.low,
                    "ci95_high": ci.high,
                    "seeds_pooled": len(seeds),
                },
            }
        )
    return out


def ablation_table(ab: list[dict[str, Any]]) -> str:
    if not ab:
        return ""
    lines = [
        f"| {a['variant']} | {a['model']} | {a['sync']} | {a['workers']} | {a['averager']} "
        f"({a['model_tag']}) | {len(a['seeds'])} | {a['test_cer']:.2f} | "
        f"{a['baseline_test_cer']:.2f} | {_ci(a['vs_baseline_global'])} |"
        for a in ab
    ]
    return (
        "Ablations: each model of an ablation run against the global model of its baseline "
        "run (same model, sync, N and seeds; `interfering`: B(t) = E(t), the EMA sent back "
        "to the workers; `lrxN`: each worker's learning rate times N, Kaldi's convention), "
        "test CER %, paired bootstrap 95 % CI:\n\n"
        "| ablation | model | sync | N | model of the ablation run | seeds | test CER % | "
        "baseline global test CER % | change (rel., 95 % CI) |\n"
        "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n"
    )


def progress(study: Study) -> str:
    """Which of the plan's runs have records (trained and dev-decoded), and which do not yet."""
    done = [r.name for r in study.plan.runs if study.record(r) is not None]
    missing = [r.name for r in study.plan.runs if study.record(r) is None]
    line = f"Runs of the plan with results: {len(done)} of {len(study.plan.runs)}."
    diverged = [
        (r.name, rec["diverged"]) for r in study.plan.runs if is_diverged(rec := study.record(r))
    ]
    if diverged:
        line += (
            f" {len(diverged)} of them diverged (training stopped on a non-finite loss, gradient "
            "or Fisher estimate; no model, so they are in no row below): "
            + "; ".join(
                f"{name} at {d.get('where', '?')} ({d.get('frames', '?')} frames)"
                for name, d in diverged
            )
            + "."
        )
    if missing:
        line += (
            " Not run yet (`local/run_study.sh` continues with them): " + ", ".join(missing) + "."
        )
    return line + examples_note(study)


def examples_note(study: Study) -> str:
    """Which examples (alignments and features: the record's `examples` fingerprint) the runs
    trained on; and the records a retraining superseded."""
    groups: dict[str, list[str]] = defaultdict(list)
    for r in study.plan.runs:
        rec = study.record(r)
        if rec is not None and not is_diverged(rec):
            groups[rec.get("examples", "")].append(r.name)
    legacy = groups.pop("", [])
    out = ""
    if len(groups) > 1:
        out += (
            " The runs did not all train on the same examples (a workdir rebuilt by other "
            "code): "
            + "; ".join(f"{len(v)} runs on examples {fp}" for fp, v in sorted(groups.items()))
            + ". Every contrast compares models of the same runs, so it is unaffected; "
            "comparisons of global models across configs are not."
        )
    elif groups and legacy:
        ((fp, names),) = groups.items()
        out += (
            f" Examples (sha256 of their targets and features): {fp} for the {len(names)} runs "
            f"recorded since records name them; the other {len(legacy)} were recorded before."
        )
    kept = sorted((study.results / "superseded").glob("*.json"))
    if kept:
        out += (
            " Records superseded by a retraining that did not reproduce them (kept in "
            f"{study.results / 'superseded'}; their runs decoded again): "
            + ", ".join(p.name.rsplit(".", 2)[0] for p in kept)
            + "."
        )
    return out


def posthoc_table(study: Study) -> str:
    """Reconstructed (post-hoc) EMAs against the tracked EMAs of the same half-life."""
    lines = []
    names = {r.name: r for r in study.plan.runs}
    for name in study.plan.posthoc_runs:
        path = study.results / "posthoc" / f"{name}.json"
        if name not in names or not path.is_file():
            continue
        items = json.loads(path.read_text(encoding="utf-8")).items()
        for hl, d in sorted(items, key=lambda kv: float(kv[0].removeprefix("hl"))):
            tracked = study.dev_cer(names[name], f"ema-{hl}")
            post = study.dev_cer(names[name], f"posthoc-{hl}")
            lines.append(
                f"| {name} | {hl.removeprefix('hl')} | {d['max_abs_diff_posthoc_vs_tracked']:.4f} | "
                f"{d['max_abs_diff_tracked_vs_global']:.4f} | "
                f"{'-' if tracked is None else f'{tracked:.2f}'} | {'-' if post is None else f'{post:.2f}'} |"
            )
    if not lines:
        return ""
    return (
        "Post-hoc EMA (reconstructed after training from the snapshots by least squares) "
        "against the EMA tracked during training, same half-life:\n\n"
        "| run | half-life (frames) | max abs param diff, post-hoc vs tracked | max abs param diff, "
        "tracked vs global | dev CER % tracked | dev CER % post-hoc |\n|---|---|---|---|---|---|\n"
        + "\n".join(lines)
        + "\n"
    )


def write_study_table(study: Study) -> list[dict[str, Any]]:
    rows = build_rows(study)
    ablations = ablation_rows(study, rows)
    out = study.results
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out / "table.json",
        {
            "plan": str(study.plan.path),
            "rows": rows,
            "ablations": ablations,
            "resamples": RESAMPLES,
            "bootstrap_seed": BOOT_SEED,
        },
    )
    plots = ("cer_vs_workers.png", "dev_ce_vs_frames.png", "cer_vs_half_life.png")
    for name in plots:
        (out / name).unlink(missing_ok=True)  # a plot with nothing to draw is not left stale
    try:
        plot_cer_vs_workers(rows, out / plots[0])
        plot_dev_ce_vs_frames(study, out / plots[1])
        plot_cer_vs_half_life(study, out / plots[2])
    except ImportError as e:  # matplotlib is a dependency; say so if it is broken
        log.warning("plots skipped: %s", e)
    post = posthoc_table(study)
    links = "".join(f"![{n.removesuffix('.png')}]({n})\n" for n in plots if (out / n).is_file())
    parts = [progress(study), verdict(rows), summary_table(rows), ablation_table(ablations), post]
    atomic_write_text(
        out / "table.md",
        "\n\n".join(p.strip() for p in parts if p)
        + "\n"
        + ("\n" + links if links else "")
        + f"\n{ALL_ROWS}\n\nAll rows:\n\n"
        + format_table(rows),
    )
    log.info("study table: %d rows -> %s", len(rows), out / "table.md")
    return rows


# ---------------------------------------------------------------------- plots
def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cer_vs_workers(rows: list[dict[str, Any]], path: Path) -> None:
    plt = _plt()
    base = [r for r in rows if r["variant"] == "-" and r["test_cer_mean"] is not None]
    syncs = [s for s in ("ma", "bmuf-cbm", "bmuf-nbm", "ddp") if any(r["sync"] == s for r in base)]
    models = sorted({r["model"] for r in base})
    if not syncs or not models:
        return
    fig, axes = plt.subplots(
        len(models),
        len(syncs),
        figsize=(4 * len(syncs), 3.2 * len(models)),
        squeeze=False,
        sharey="row",
    )
    for i, m in enumerate(models):
        for j, s in enumerate(syncs):
            ax = axes[i][j]
            for averager in ("global", "ema", "icefall-avg", "kaldi-combine"):
                pts = sorted(
                    (r["workers"], r["test_cer_mean"], r["test_cer_std"] or 0.0)
                    for r in base
                    if r["model"] == m
                    and r["averager"] == averager
                    and (r["sync"] == s or (r["workers"] == 1 and r["sync"] == "ma"))
                )
                if pts:
                    ax.errorbar(
                        [p[0] for p in pts],
                        [p[1] for p in pts],
                        yerr=[p[2] for p in pts],
                        marker="o",
                        capsize=3,
                        label=averager,
                    )
            ax.set_xscale("log", base=2)
            ax.set_title(f"{m} {s}")
            ax.set_xlabel("workers N")
            ax.set_ylabel("test CER %")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_dev_ce_vs_frames(study: Study, path: Path) -> None:
    plt = _plt()
    first = min(x.seed for x in study.plan.runs)
    picked = [
        (r, rec)
        for r in study.plan.runs
        if r.seed == first
        and r.workers == 16
        and not r.tag
        and (rec := study.record(r)) is not None
        and rec.get("dev_curve")
    ]
    if not picked:
        return
    fig, axes = plt.subplots(1, len(picked), figsize=(4 * len(picked), 3.2), squeeze=False)
    for ax, (r, rec) in zip(axes[0], picked, strict=True):
        curve = rec["dev_curve"]
        for name in [k for k in curve[0] if k != "frames"]:
            pts = [(p["frames"], p[name]) for p in curve if name in p]
            ax.plot(
                [q[0] for q in pts],
                [q[1] for q in pts],
                label=name,
                lw=2 if name == "global" else 1,
            )
        ax.set_title(r.name, fontsize=9)
        ax.set_xlabel("training frames")
        ax.set_ylabel("dev CE (nats/frame)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def half_life_curve(study: Study, run: Any, kind: TagKind) -> list[tuple[float, float]]:
    """(half-life, dev CER) of a run's decoded models of `kind` (EMA or post-hoc) given by a
    half-life in frames alone."""
    pts = []
    rec = study.record(run) or {"models": {}}
    for t in rec["models"]:
        tag = ModelTag.parse(t)
        if tag.kind == kind and tag.epoch is None and tag.is_plain_half_life:
            cer = study.dev_cer(run, t)
            if cer is not None:
                pts.append((tag.half_life, cer))
    return sorted(pts)  # type: ignore[arg-type]


def plot_cer_vs_half_life(study: Study, path: Path) -> None:
    plt = _plt()
    names = {r.name: r for r in study.plan.runs}
    runs = [names[n] for n in study.plan.posthoc_runs if n in names and study.record(names[n])]
    if not runs:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        rec = half_life_curve(study, r, TagKind.POSTHOC)
        tr = half_life_curve(study, r, TagKind.EMA)
        line = ax.plot([p[0] for p in rec], [p[1] for p in rec], label=f"{r.config} post-hoc")
        ax.scatter(
            [p[0] for p in tr],
            [p[1] for p in tr],
            color=line[0].get_color(),
            marker="o",
            label=f"{r.config} tracked",
        )
        g = study.dev_cer(r, "global")
        if g is not None and not math.isnan(g):
            ax.axhline(g, color=line[0].get_color(), ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("EMA half-life (training frames)")
    ax.set_ylabel("dev CER % (dotted: global model)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
