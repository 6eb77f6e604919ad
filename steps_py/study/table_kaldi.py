"""The second study's table (issue 19), from its committed records only.

`results/study_kaldi/table.json` and `table.md`: per config (model x sync x N x variant) and
averager (global, the model chosen on dev, Kaldi's combination, icefall's average): dev and
test CER per seed, and every model's contrast with the same runs' global model on test
(`contrast.py`: hierarchical-bootstrap 95 % CI, TOST at +-margin %, per-seed changes,
verdict). Sections: the primary contrasts the plan names, every other contrast, the
mechanism runs (final learning rate), convergence (frames to reach the global model's final
dev CE and CER), the learning-rate pilot. With leave-one-speaker-out folds (the digits plan)
every fold's test decodes of a config and seed are pooled into one set before any statistic,
and the model chosen on dev is each fold's own choice. Plots: `plots_kaldi.py`.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steps_py.fileio import atomic_write_json, atomic_write_text
from steps_py.study.contrast import contrast, frames_to_reach
from steps_py.study.record import is_diverged, paired_entries
from steps_py.study.table import progress

if TYPE_CHECKING:
    from steps_py.study.view import StudyView as Study

log = logging.getLogger("study")

AVERAGERS = ("global", "ema", "kaldi-combine", "icefall-avg")


def _merge(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """One decode entry from the folds' entries (disjoint utterances): pooled CER."""
    out: dict[str, Any] = {"utts": [], "errors": [], "ref_len": []}
    for e in entries:
        for k in out:
            out[k] += list(e[k])
    out["cer"] = 100.0 * sum(out["errors"]) / max(1, sum(out["ref_len"]))
    return out


def _choices(study: Study) -> dict[str, Any]:
    p = study.results / "choices.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}


def seed_entries(folds: list[Study], config: str) -> dict[int, dict[str, Any]]:
    """Per seed of `config`: its records (one per fold), whether it diverged, and per averager
    the model tag of each fold and the decode entries of each split pooled over the folds."""
    out: dict[int, dict[str, Any]] = {}
    runs = [r for r in folds[0].plan.runs if r.config == config]
    for run in runs:
        recs = [f.record(run) for f in folds]
        if any(r is None for r in recs):
            continue
        seed: dict[str, Any] = {"records": recs, "diverged": any(map(is_diverged, recs))}
        if not seed["diverged"]:
            for averager in AVERAGERS:
                tags = [
                    (_choices(f).get(config) or {}).get("ema") if averager == "ema" else averager
                    for f in folds
                ]
                splits = {}
                for split in ("dev", "test"):
                    es = [
                        r["models"].get(t, {}).get(split) for r, t in zip(recs, tags, strict=True)
                    ]
                    if all(e is not None for e in es):
                        splits[split] = _merge(es)  # type: ignore[arg-type]
                if splits:
                    seed[averager] = {"tags": tags, **splits}
        out[run.seed] = seed
    return out


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def _convergence(
    seeds: dict[int, dict[str, Any]], tags: dict[str, dict[int, str]]
) -> dict[str, Any]:
    """Frames each model needs to reach the global model's final dev CE (and dev CER, from the
    epoch-end decodes), mean over seeds; folds: the first fold's runs."""
    out: dict[str, Any] = {}
    for averager, tag_by_seed in tags.items():
        ce_frames, cer_frames = [], []
        for seed, s in sorted(seeds.items()):
            tag = tag_by_seed[seed]
            rec = s["records"][0]
            curve = rec.get("epoch_curve") or []
            if not curve or tag not in curve[-1]:
                continue
            pts = [(p["frames"], p[tag]) for p in [*rec.get("dev_curve", []), *curve] if tag in p]
            ce_frames.append(frames_to_reach(pts, curve[-1]["global"]))
            cer = [
                (
                    p["frames"],
                    rec["models"].get(f"epoch{p['epoch']}-{tag}", {}).get("dev", {}).get("cer"),
                )
                for p in curve[:-1]
            ] + [(curve[-1]["frames"], rec["models"].get(tag, {}).get("dev", {}).get("cer"))]
            g = rec["models"].get("global", {}).get("dev", {}).get("cer")
            if g is not None and len(cer) > 1 and all(c is not None for _, c in cer):
                cer_frames.append(frames_to_reach(cer, g))  # type: ignore[arg-type]
        out[averager] = {
            "frames_to_global_final_dev_ce": ce_frames,
            "frames_to_global_final_dev_cer": cer_frames,
            "final_frames": [s["records"][0]["summary"].get("frames") for s in seeds.values()],
        }
    return out


def recounted_max_change(folds: list[Study]) -> dict[str, dict[str, float]]:
    """Last-epoch max-change counts of runs trained before the trainer counted it, from
    `max_change_recount.tsv` beside the records (`python -m local.recount_max_change`); only
    the runs whose retrained final model was bit-identical to their own."""
    out: dict[str, dict[str, float]] = {}
    for f in folds:
        path = f.results / "max_change_recount.tsv"
        if not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()[1:]
        for run, _epoch, layer, glob, same in (ln.split("\t") for ln in lines if ln):
            if same == "True":
                out[run] = {"layer_pct": float(layer), "global_pct": float(glob)}
    return out


def _last_epoch_max_change(
    ok: dict[int, dict[str, Any]], recounted: dict[str, dict[str, float]]
) -> dict[str, Any] | None:
    """Mean over the runs (seeds, folds) that counted it: percent of layer updates and of
    minibatches that max-change limited in the last epoch (how far the learning rate still
    sets the step); a run's own count, else its recount."""
    recs = [rec for v in ok.values() for rec in v["records"]]
    last = [mc[-1] if (mc := rec.get("max_change")) else recounted.get(rec["run"]) for rec in recs]
    last = [m for m in last if m]
    if not last:
        return None
    return {
        "layer_pct": statistics.fmean(m["layer_pct"] for m in last),
        "global_pct": statistics.fmean(m["global_pct"] for m in last),
        "runs": len(last),
        "of_runs": len(recs),
    }


def config_rows(
    folds: list[Study], config: str, recounted: dict[str, dict[str, float]] | None = None
) -> list[dict[str, Any]]:
    plan, st = folds[0].plan, folds[0].plan.stats
    spec = next(r for r in plan.runs if r.config == config)
    seeds = seed_entries(folds, config)
    ok = {k: v for k, v in seeds.items() if not v["diverged"]}
    base = {
        "config": config,
        "model": spec.model,
        "sync": spec.sync,
        "workers": spec.workers,
        "variant": spec.tag or "-",
        "lr_final_ratio": spec.lr_final_ratio,
        "primary": config in st.primary,
        "seeds_planned": sorted(r.seed for r in plan.runs if r.config == config),
        "seeds_diverged": sorted(k for k, v in seeds.items() if v["diverged"]),
    }
    if not ok:
        status = "diverged" if seeds else "not run"
        if not seeds and folds[0].pilot_diverged(spec):
            status = "not run: every learning-rate pilot diverged"
        return [{**base, "averager": "global", "status": status, "seeds": [], "vs_global": None}]
    first = next(iter(ok.values()))["records"][0]
    rows = []
    for averager in AVERAGERS:
        have = {k: v[averager] for k, v in ok.items() if averager in v}
        if not have:
            continue
        row = {
            **base,
            "averager": averager,
            "status": "done" if len(ok) == len(base["seeds_planned"]) else "partial",
            "model_tags": {str(k): v["tags"] for k, v in have.items()},
            "seeds": sorted(have),
            "dev_cer": [v["dev"]["cer"] for v in have.values() if "dev" in v],
            "test_cer": [v["test"]["cer"] for v in have.values() if "test" in v],
            "syncs": first["summary"].get("syncs"),
            "frames": first["summary"].get("frames"),
            "lr": first.get("lr"),
            "max_change_last_epoch": _last_epoch_max_change(ok, recounted or {}),
            "train_wall_s": [v["records"][0]["summary"]["wall_time_s"] for v in ok.values()],
            "vs_global": None,
            "dev_vs_global_per_seed": None,
        }
        row["dev_cer_mean"], row["test_cer_mean"] = _mean(row["dev_cer"]), _mean(row["test_cer"])
        if averager != "global":
            both = [k for k in have if "test" in have[k] and "test" in ok[k].get("global", {})]
            pe = paired_entries([(ok[k]["global"]["test"], have[k]["test"]) for k in both])
            if pe is not None and pe[0].sum() > 0:  # a global model with no error: no ratio
                row["vs_global"] = contrast(pe[:3], pe[3], st.resamples, st.seed, st.margin)
                if all(t == "global" for v in have.values() for t in v["tags"]):
                    row["vs_global"].update(verdict="dev chose global", equivalent=None)
                elif all(have[k]["test"] == ok[k]["global"]["test"] for k in both):
                    # e.g. Kaldi's combination of only the last model: the global model itself
                    row["vs_global"].update(verdict="same decodes as global", equivalent=None)
            row["dev_vs_global_per_seed"] = [
                100.0
                * (have[k]["dev"]["cer"] - ok[k]["global"]["dev"]["cer"])
                / ok[k]["global"]["dev"]["cer"]
                for k in have
                if "dev" in have[k] and "dev" in ok[k].get("global", {})
            ]
        rows.append(row)
    ema = next((r for r in rows if r["averager"] == "ema"), None)
    if ema is not None:
        tags = {
            "global": dict.fromkeys(ok, "global"),
            "ema": {k: v["ema"]["tags"][0] for k, v in ok.items() if "ema" in v},
        }
        if len(tags["ema"]) == len(ok):
            ema["convergence"] = _convergence(ok, tags)
    return rows


def build_rows(folds: list[Study]) -> list[dict[str, Any]]:
    configs = list(dict.fromkeys(r.config for r in folds[0].plan.runs))
    recounted = recounted_max_change(folds)  # read once for the whole table
    return [row for c in configs for row in config_rows(folds, c, recounted)]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:+.1f}"


def _cer(xs: list[float]) -> str:
    if not xs:
        return "-"
    return (
        f"{xs[0]:.2f}"
        if len(xs) == 1
        else f"{statistics.fmean(xs):.2f} ± {statistics.stdev(xs):.2f}"
    )


def _contrast_cells(c: dict[str, Any] | None) -> str:
    if not c:
        return "- | - | - | - | -"
    seeds = ", ".join(_pct(x) for x in c["per_seed_percent"])
    return (
        f"{c['percent']:+.1f} % [{c['ci95_low']:+.1f}, {c['ci95_high']:+.1f}] | {seeds} | "
        f"{c['tost_p']:.3f} [{c['ci90_low']:+.1f}, {c['ci90_high']:+.1f}] | "
        f"**{c['verdict']}** | {c['speakers']} spk, {c['utterances']} utts"
    )


CONTRAST_HEAD = (
    "| config | seeds | averager (model chosen on dev) | global test CER % | its test CER % | "
    "change vs global (95 % CI) | per seed % | TOST p (90 % CI) | verdict | pooled over |\n"
    "|---|---|---|---|---|---|---|---|---|---|\n"
)


def contrast_lines(rows: list[dict[str, Any]], keep: Any) -> list[str]:
    glob = {r["config"]: r for r in rows if r["averager"] == "global"}
    lines = []
    for r in rows:
        if r["averager"] == "global" or not keep(r) or r.get("vs_global") is None:
            continue
        tags = sorted({t for ts in r["model_tags"].values() for t in ts})
        lines.append(
            f"| {r['config']} | {len(r['seeds'])} | {r['averager']} ({', '.join(tags)}) | "
            f"{_cer(glob[r['config']]['test_cer'])} | {_cer(r['test_cer'])} | "
            f"{_contrast_cells(r['vs_global'])} |"
        )
    return lines


def mechanism_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The configs that differ only in the final learning rate (lr_final_ratio), by ratio:
    the rate each worker ran at, the global and the dev-chosen model's test CER, the change,
    and how often max-change limited the last epoch's updates."""
    glob = {r["config"]: r for r in rows if r["averager"] == "global"}
    lines = []
    keyed = defaultdict(list)
    for r in rows:
        if r["averager"] == "ema" and r.get("lr"):
            keyed[(r["model"], r["sync"], r["workers"])].append(r)
    for group in keyed.values():
        if not any(r["lr_final_ratio"] is not None for r in group):
            continue
        for r in sorted(group, key=lambda r: -r["lr"]["lr_final"] / r["lr"]["lr_initial"]):
            lr = r["lr"]
            times = r["workers"] if lr.get("lr_times_workers") else 1
            c = r["vs_global"]
            mc = r.get("max_change_last_epoch")
            lines.append(
                f"| {r['config']} | {lr['lr_initial'] * times:g} -> {lr['lr_final'] * times:g} "
                f"(x{lr['lr_final'] / lr['lr_initial']:g}) | {len(r['seeds'])} | "
                f"{_cer(glob[r['config']]['test_cer'])} | {_cer(r['test_cer'])} | "
                + (
                    f"{c['percent']:+.1f} % [{c['ci95_low']:+.1f}, {c['ci95_high']:+.1f}] | {c['verdict']} |"
                    if c
                    else "- | - |"
                )
                + (
                    f" {mc['layer_pct']:.0f} % / {mc['global_pct']:.0f} % ({mc['runs']} of "
                    f"{mc['of_runs']} runs) |"
                    if mc
                    else " not counted |"
                )
            )
    return lines


def convergence_lines(rows: list[dict[str, Any]]) -> list[str]:
    def fr(xs: list[float | None]) -> str:
        if not xs:
            return "-"
        if any(x is None for x in xs):
            return f"not reached in {sum(x is None for x in xs)} of {len(xs)} seeds"
        return f"{statistics.fmean(xs) / 1e6:.2f} M"  # type: ignore[arg-type]

    lines = []
    for r in rows:
        cv = r.get("convergence")
        if not cv:
            continue
        total = [f for f in cv["global"]["final_frames"] if f]
        lines.append(
            f"| {r['config']} | {len(r['seeds'])} | {fr(total)} | "
            f"{fr(cv['global']['frames_to_global_final_dev_ce'])} | {fr(cv['ema']['frames_to_global_final_dev_ce'])} | "
            f"{fr(cv['global']['frames_to_global_final_dev_cer'])} | {fr(cv['ema']['frames_to_global_final_dev_cer'])} |"
        )
    return lines


def table_md(folds: list[Study], rows: list[dict[str, Any]]) -> str:
    plan = folds[0].plan
    prim = contrast_lines(rows, lambda r: r["primary"] and r["averager"] == "ema")
    rest = contrast_lines(rows, lambda r: not (r["primary"] and r["averager"] == "ema"))
    counts = defaultdict(int)
    for r in rows:
        if r["averager"] == "ema" and r.get("vs_global"):
            counts[r["vs_global"]["verdict"]] += 1
    parts = [
        f"Corpus: {plan.corpus or '-'}. Plan: `{plan.path}`. Statistics fixed in the plan before "
        f"the runs: hierarchical bootstrap (seeds, then speakers, then utterances; "
        f"{plan.stats.resamples} resamples, seed {plan.stats.seed}); TOST equivalence at "
        f"±{plan.stats.margin:g} % relative; the model chosen on dev by {plan.choice_by}"
        + (" with the global model (half-life 0) as a candidate" if plan.global_candidate else "")
        + ". Verdicts: helps / hurts (95 % CI excludes 0), equivalent (TOST p < 0.05), "
        "inconclusive (neither); dev chose global and same decodes as global: the row is the global "
        "model itself.",
        progress(folds[0])
        if len(folds) == 1
        else "Folds (the left-out speaker is test, the next one dev):\n\n"
        + "\n".join(f"- {f.results.name}: {progress(f)}" for f in folds),
        "Primary contrasts (named in the plan before the runs): the model chosen on dev vs the "
        "global model, test, end of the last epoch.\n\n" + CONTRAST_HEAD + "\n".join(prim)
        if prim
        else "",
        "Verdicts of the dev-chosen model against global over all configs: "
        + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none yet")
        + ".",
        "Every other contrast:\n\n" + CONTRAST_HEAD + "\n".join(rest) if rest else "",
    ]
    mech = mechanism_lines(rows)
    if mech:
        parts.append(
            "The mechanism: the same config with different final learning rates; does the "
            "dev-chosen EMA gain more where the final rate is higher? The last column: how "
            "often max-change limited the updates in the last epoch (layer updates / "
            "minibatches under the global limit; counted by runs trained since bf73266, recounted "
            "for earlier ones by python -m local.recount_max_change): where "
            "it is near 100 %, max-change, not the learning rate, sets the step size.\n\n"
            "| config | learning rate per worker (first -> last) | seeds | global test CER % "
            "| chosen test CER % | change vs global (95 % CI) | verdict | max-change active, "
            "last epoch |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(mech)
        )
    conv = convergence_lines(rows)
    if conv:
        parts.append(
            "Convergence: training frames each model needs to reach the global model's final "
            "dev CE (whole dev set, at every evaluation) and dev CER (epoch-end decodes), mean "
            "over seeds.\n\n| config | seeds | frames trained | global: to final dev CE | "
            "dev-chosen: to global's final dev CE | global: to final dev CER | dev-chosen: to "
            "global's final dev CER |\n|---|---|---|---|---|---|---|\n" + "\n".join(conv)
        )
    pilot = folds[0].results / "pilot.json"
    if pilot.is_file():
        lines = [
            f"| {g} | {', '.join(v['applies_to'])} | x{v['factor']:g} | "
            + ", ".join(
                f"x{f}: {'diverged' if ce is None else f'{ce:.4f}'}"
                for f, ce in sorted(
                    v["dev_ce_global_by_factor"].items(), key=lambda kv: float(kv[0])
                )
            )
            + " |"
            for g, v in json.loads(pilot.read_text(encoding="utf-8")).items()
        ]
        parts.append(
            "Learning-rate pilot (short runs; the factor with the lowest final dev CE of the "
            "global model, never test):\n\n| pilot | applies to | factor | dev CE by factor |\n"
            "|---|---|---|---|\n" + "\n".join(lines)
        )
    return "\n\n".join(p.strip() for p in parts if p) + "\n"


def write_kaldi_table(folds: list[Study], results: Path) -> list[dict[str, Any]]:
    from steps_py.study.plots_kaldi import write_plots

    rows = build_rows(folds)
    plan = folds[0].plan
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        results / "table.json",
        {
            "plan": str(plan.path),
            "corpus": plan.corpus,
            "folds": list(plan.fold_speakers),
            "statistics": {
                "bootstrap": plan.stats.bootstrap,
                "resamples": plan.stats.resamples,
                "seed": plan.stats.seed,
                "equivalence_margin_percent": plan.stats.margin,
                "primary": list(plan.stats.primary),
            },
            "choice": {"by": plan.choice_by, "global_candidate": plan.global_candidate},
            "rows": rows,
        },
    )
    links = write_plots(folds, rows, results)
    atomic_write_text(
        results / "table.md",
        table_md(folds, rows) + "".join(f"\n![{n.removesuffix('.png')}]({n})\n" for n in links),
    )
    log.info("study table: %d rows -> %s", len(rows), results / "table.md")
    return rows
