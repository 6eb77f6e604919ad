"""Build the scoreboard: every decoded system of `exp/` in one table, plus plots.

    python -m steps_py.score.scoreboard --exp exp --out results [--runs-glob '*_n*']

Systems:

* every exp dir WITHOUT summary.json that has decode dirs (e.g. `exp/mono` -> GMM):
  one row per decode tag, from `decode[_<tag>]_{dev,test}/`;
* every training run `exp/<model>_<sync>_n<N>[_seed<S>]/` with `summary.json`: one row per
  decoded model tag (`global`, `ema-<decay>`) from `decode_<tag>_{dev,test}/`. Runs that
  differ only by `_seed<S>` are one system: CERs, wall time and frames/s are given as
  mean ± std over the seeds.

Columns: system, model, sync, workers, block (minibatches per sync), epochs, dev CER, test
CER, the EMA model's relative test-CER change vs its own run's global model with a paired
bootstrap 95 % CI over utterances (1000 resamples, fixed seed; seeds pooled, see
`steps_py.score.bootstrap`), train wall time, frames/s. CERs are recomputed from each
decode dir's `ref.txt` and `hyp.txt` (falling back to its `cer` line).

Also: the dev and test lattice oracle CER (from each decode dir's summary.json) and the (LM
weight, word insertion penalty) chosen on dev.

Writes `<out>/scoreboard.md`, `<out>/scoreboard.json`, `<out>/RESULTS` (Kaldi style: the
best `%WER` line of each decode dir's `cer_<lmwt>_<wip>` files with the file name, what
`grep WER exp/*/decode*/cer_* | utils/best_wer.sh` gives per dir), `<out>/dev_acc_<run>.png`
(the run's training curves against frames, from its log/train.csv: train CE per block, dev
frame accuracy of the global model and every EMA at each evaluation) and `<out>/cer_vs_ema_decay.png` (when a run tracked
several decays), and each training run's CERs as TensorBoard hparams in
`<run>/tensorboard/final_cer/` (`steps_py.score.tb_hparams`); prints the markdown table. It is rebuilt only when an input file changed
(a fingerprint of the inputs is kept in scoreboard.json) or with --force.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from steps_py.cli import dataclass_from_args, describe_os_error
from steps_py.decode.artifact import DecodeDir, DecodeScore
from steps_py.fileio import atomic_write_json, atomic_write_text
from steps_py.log import setup_logging
from steps_py.model_tag import is_ema
from steps_py.parallel.run_dir import RunDir, RunDirError
from steps_py.score import tb_hparams
from steps_py.score.bootstrap import RelChangeCI, mean_std, paired_bootstrap_rel_change
from steps_py.score.cer import CerResult, ScoreError

log = logging.getLogger("scoreboard")

RUN_RE = re.compile(
    r"^(?P<base>(?P<model>[A-Za-z0-9]+)_(?P<sync>[A-Za-z0-9-]+)_n(?P<workers>\d+))"
    r"(?:_seed(?P<seed>\d+))?$"
)


@dataclass
class Run:
    """One exp dir: a training run (with summary) or a GMM/other system (summary None)."""

    path: Path
    base: str
    seed: int | None
    summary: dict[str, Any] | None
    decodes: dict[tuple[str, str], Path] = field(default_factory=dict)  # (tag, set) -> dir


@dataclass
class SystemRow:
    system: str
    base: str
    tag: str
    model: str
    sync: str
    workers: int | None
    block: int | None
    epochs: float | None
    seeds: list[int | None]
    dev_cer: list[float]
    test_cer: list[float]
    dev_oracle: list[float]
    test_oracle: list[float]
    chosen: list[str]  # "LM weight/penalty" chosen on dev, per seed
    wall_time_s: list[float]
    frames_per_s: list[float]
    test_density: list[float] = field(default_factory=list)  # word-lattice arcs per frame
    test_rtf: list[float] = field(default_factory=list)  # decoding CPU s per audio s (timing)
    rel_change: RelChangeCI | None = None
    decay: float | None = None
    ema: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = {
            k: getattr(self, k)
            for k in (
                "system",
                "base",
                "tag",
                "model",
                "sync",
                "workers",
                "block",
                "epochs",
                "seeds",
                "dev_cer",
                "test_cer",
                "dev_oracle",
                "test_oracle",
                "test_density",
                "chosen",
                "decay",
                "ema",
            )
        }
        for k in ("dev_cer", "test_cer", "dev_oracle", "test_oracle"):
            d[f"{k}_mean"], d[f"{k}_std"] = mean_std(getattr(self, k))
        # Measured times differ from run to run and machine to machine; everything outside
        # "timing" is a function of the inputs and seeds only (README: Reproducibility).
        timing: dict[str, Any] = {}
        for k in ("wall_time_s", "frames_per_s", "test_rtf"):
            timing[k] = getattr(self, k)
            timing[f"{k}_mean"], timing[f"{k}_std"] = mean_std(getattr(self, k))
        d["timing"] = timing
        d["ema_rel_change_test"] = (
            None
            if self.rel_change is None
            else {
                "percent": self.rel_change.rel_change,
                "ci95_low": self.rel_change.low,
                "ci95_high": self.rel_change.high,
                "resamples": self.rel_change.resamples,
                "seed": self.rel_change.seed,
            }
        )
        return d


def default_model(name: str) -> str:
    """Model column for an exp dir without summary.json: 'gmm' for mono*/tri*, else '?'."""
    return "gmm" if re.match(r"^(mono|tri)", name) else "?"


def tag_decay(tag: str, summary: dict[str, Any] | None = None) -> float | None:
    """EMA decay alpha of a tag: `ema-0.99` -> 0.99; `ema-hl<frames>` -> the alpha the run
    derived (summary's ema_decays labels / ema_alphas); None for other tags."""
    if not is_ema(tag):
        return None
    label = tag.removeprefix("ema-")
    if summary:
        labels, alphas = summary.get("ema_decays") or [], summary.get("ema_alphas") or []
        if len(labels) == len(alphas):
            for lab, a in zip(labels, alphas, strict=True):
                if str(lab) == label or (
                    _is_float(lab) and _is_float(label) and float(lab) == float(label)
                ):
                    return float(a)
    return float(label) if _is_float(label) else None


def _is_float(x: Any) -> bool:
    try:
        float(x)
    except (TypeError, ValueError):
        return False
    return True


def discover(exp: Path, runs_glob: str, sets: tuple[str, str]) -> list[Run]:
    """Find exp dirs with decode dirs of the dev/test sets."""
    runs: list[Run] = []
    if not exp.is_dir():
        raise ScoreError(f"{exp}: no such directory; give the recipe's exp dir with --exp")
    for d in sorted(p for p in exp.iterdir() if p.is_dir() and not p.name.startswith(".")):
        summary = None
        if RunDir(d).summary_path.is_file():
            if not d.match(runs_glob):
                continue
            try:
                summary = RunDir(d).summary()
            except RunDirError as e:
                log.warning("skipping %s: %s", d, e)
                continue
        decodes = {}
        for dd in sorted(d.iterdir()):
            name = DecodeDir.parse_name(dd.name)
            if dd.is_dir() and name and name[1] in sets:
                decodes[name] = dd
        if not decodes:
            continue
        m = RUN_RE.match(d.name)
        if summary is not None and m:
            runs.append(
                Run(
                    d,
                    m.group("base"),
                    int(m.group("seed")) if m.group("seed") else None,
                    summary,
                    decodes,
                )
            )
        else:
            runs.append(Run(d, d.name, None, summary, decodes))
    return runs


def input_files(runs: list[Run]) -> list[Path]:
    files = []
    for r in runs:
        if r.summary is not None:
            files.append(RunDir(r.path).summary_path)
        for dd in r.decodes.values():
            files.extend(DecodeDir(dd).scored_files())
    return sorted(files)


def fingerprint(files: list[Path], args_key: str) -> str:
    h = hashlib.sha256(args_key.encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _num(summary: dict[str, Any] | None, key: str) -> Any:
    return None if summary is None else summary.get(key)


def paired_errors(
    results: list[tuple[CerResult, CerResult]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(S, U) errors of A and B and (U,) ref lengths on the utterances every result has."""
    common = None
    for a, b in results:
        s = set(a.utts) & set(b.utts)
        common = s if common is None else common & s
    if not common:
        return None
    utts = sorted(common)
    ea = np.array([[a.utts[u].errors for u in utts] for a, _ in results], dtype=np.float64)
    eb = np.array([[b.utts[u].errors for u in utts] for _, b in results], dtype=np.float64)
    n = np.array([len(results[0][0].utts[u].ref) for u in utts], dtype=np.float64)
    return ea, eb, n


Scores = dict[tuple[Path, str, str], DecodeScore]  # (run path, tag, set) -> score


def score_runs(runs: list[Run]) -> Scores:
    """Every decode dir of `runs` scored once."""
    scores: Scores = {}
    for r in runs:
        for (tag, s), dd in r.decodes.items():
            sc = DecodeDir(dd).score()
            if sc is not None:
                scores[(r.path, tag, s)] = sc
    return scores


def ema_vs_global(
    members: list[Run], scores: Scores, tag: str, test_set: str, resamples: int, seed: int
) -> RelChangeCI | None:
    """The paired bootstrap CI of the EMA model ``tag`` against the global model, on test."""
    pairs = []
    for r in members:
        a, b = scores.get((r.path, "global", test_set)), scores.get((r.path, tag, test_set))
        if a and b and a.result and b.result:
            pairs.append((a.result, b.result))
    pe = paired_errors(pairs) if pairs else None
    if pe is None:
        return None
    try:
        return paired_bootstrap_rel_change(*pe, resamples=resamples, seed=seed)
    except ValueError as e:
        log.warning("%s/%s: no EMA-vs-global CI (%s)", members[0].base, tag, e)
        return None


def build_rows(
    runs: list[Run], sets: tuple[str, str], resamples: int, seed: int, scores: Scores | None = None
) -> list[SystemRow]:
    dev_set, test_set = sets
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.base, []).append(r)
    if scores is None:
        scores = score_runs(runs)
    rows: list[SystemRow] = []
    for base, members in groups.items():
        members.sort(key=lambda r: (r.seed is None, r.seed or 0))
        tags = sorted(
            {t for r in members for (t, _) in r.decodes},
            key=lambda t: (t not in ("", "global"), tag_decay(t, members[0].summary) or 0.0, t),
        )
        s0 = members[0].summary
        for tag in tags:
            devs = [
                scores[(r.path, tag, dev_set)] for r in members if (r.path, tag, dev_set) in scores
            ]
            tests = [
                scores[(r.path, tag, test_set)]
                for r in members
                if (r.path, tag, test_set) in scores
            ]
            dev, test = [x.cer for x in devs], [x.cer for x in tests]
            if not dev and not test:
                continue
            name = base if not tag else f"{base}/{tag}"
            if len(members) > 1:
                name += f" ({len(members)} seeds)"
            row = SystemRow(
                system=name,
                base=base,
                tag=tag or "-",
                model=str(_num(s0, "model") or default_model(base)),
                sync=str(_num(s0, "sync") or "-"),
                workers=_num(s0, "workers"),
                block=_num(s0, "block_minibatches"),
                epochs=_num(s0, "epochs"),
                seeds=[r.seed for r in members],
                dev_cer=dev,
                test_cer=test,
                dev_oracle=[x.oracle for x in devs if x.oracle is not None],
                test_oracle=[x.oracle for x in tests if x.oracle is not None],
                test_density=[x.density for x in tests if x.density is not None],
                test_rtf=[x.rtf for x in tests if x.rtf is not None],
                chosen=[x.chosen for x in devs if x.chosen is not None],
                wall_time_s=[
                    float(r.summary["wall_time_s"])
                    for r in members
                    if r.summary and r.summary.get("wall_time_s") is not None
                ],
                frames_per_s=[
                    float(r.summary["frames_per_s"])
                    for r in members
                    if r.summary and r.summary.get("frames_per_s") is not None
                ],
                decay=tag_decay(tag, s0),
                ema=is_ema(tag),
            )
            if row.ema:
                row.rel_change = ema_vs_global(members, scores, tag, test_set, resamples, seed)
            rows.append(row)
    rows.sort(
        key=lambda r: (
            r.epochs is not None,
            r.model,
            r.sync,
            r.workers or 0,
            r.base,
            r.ema,
            r.decay or 0.0,
            r.tag,
        )
    )
    return rows


def power_summary(scores: Scores, rows: list[SystemRow], test_set: str) -> dict[str, Any]:
    """How sure the table can be: the test set's size and the EMA-vs-global CI half-widths.

    The half-width of a paired-bootstrap 95 % CI, (high - low) / 2 in relative %, is what
    separates "no difference" from "too small a test set to tell".
    """
    size: dict[str, Any] = {}
    for (_, _, s), sc in sorted(scores.items(), key=lambda kv: kv[0]):
        if s == test_set and sc.result is not None:
            size = {"utterances": len(sc.result.utts), "characters": sc.result.ref_len}
            break
    widths = [(r.rel_change.high - r.rel_change.low) / 2 for r in rows if r.rel_change is not None]
    return {
        "test_set": test_set,
        **size,
        "ci95_half_width_rel_percent": {
            "median": statistics.median(widths) if widths else None,
            "max": max(widths) if widths else None,
            "n": len(widths),
        },
    }


def power_text(power: dict[str, Any]) -> str:
    hw = power["ci95_half_width_rel_percent"]
    size = (
        f"{power['characters']} characters in {power['utterances']} utterances"
        if "characters" in power
        else "size unknown (no ref.txt)"
    )
    line = f"Test set `{power['test_set']}`: {size}."
    if hw["n"]:
        line += (
            f" Half-width of the EMA-vs-global 95 % CI: median {hw['median']:.1f} %, "
            f"max {hw['max']:.1f} % relative ({hw['n']} comparisons)."
        )
    return line + "\n"


def _fmt(xs: list[float], digits: int = 2) -> str:
    m, s = mean_std(xs)
    if m is None:
        return "-"
    return f"{m:.{digits}f}" if len(xs) == 1 else f"{m:.{digits}f} ± {s:.{digits}f}"


def _fmt_time(xs: list[float]) -> str:
    m, s = mean_std(xs)
    if m is None:
        return "-"
    return f"{m / 60:.1f} min" if len(xs) == 1 else f"{m / 60:.1f} ± {s / 60:.1f} min"


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isnan(v):
        return f"{v:g}"
    return str(v)


def markdown_table(rows: list[SystemRow], sets: tuple[str, str]) -> str:
    head = [
        "system",
        "model",
        "sync",
        "workers",
        "block",
        "epochs",
        f"{sets[0]} CER %",
        f"{sets[1]} CER %",
        f"{sets[0]} oracle %",
        f"{sets[1]} oracle %",
        f"{sets[1]} lattice arcs/frame",
        "LM wt/pen.",
        f"EMA vs global, {sets[1]} (rel. %, 95 % CI)",
        "train wall time",
        "frames/s",
        f"{sets[1]} decode RTF/core",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [
            r.system,
            r.model,
            r.sync,
            _cell(r.workers),
            _cell(r.block),
            _cell(r.epochs),
            _fmt(r.dev_cer),
            _fmt(r.test_cer),
            _fmt(r.dev_oracle),
            _fmt(r.test_oracle),
            _fmt(r.test_density),
            ", ".join(dict.fromkeys(r.chosen)) or "-",
            r.rel_change.fmt() if r.rel_change else "-",
            _fmt_time(r.wall_time_s),
            _fmt(r.frames_per_s, 0),
            _fmt(r.test_rtf, 3),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def results_text(runs: list[Run], exp: Path) -> str:
    """A Kaldi-style RESULTS file: the best_wer.sh line of every decode dir, by path."""
    lines = []
    for r in runs:
        for dd in sorted(r.decodes.values()):
            line = DecodeDir(dd).best_kaldi_line()
            if line is not None:
                lines.append(
                    line.replace(f"{exp.parent}/", "") if str(exp.parent) not in ("", ".") else line
                )
    head = (
        "# CER of every decode dir (best LM weight / penalty on dev; the dev-chosen pair on test),\n"
        "# as `for x in exp/*/decode*; do grep WER $x/cer_* | utils/best_wer.sh; done` prints it.\n"
    )
    return head + "".join(f"{x}\n" for x in sorted(lines, key=lambda x: x.rsplit(" ", 1)[-1]))


def make_plots(
    runs: list[Run], rows: list[SystemRow], out: Path, sets: tuple[str, str]
) -> list[str]:
    from steps_py.score.plots import plot_cer_vs_decay, plot_dev_accuracy, plot_training_curves

    written = []
    for r in runs:
        if r.summary is None:
            continue
        png = out / f"dev_acc_{r.path.name}.png"
        hist = r.summary.get("history")
        if plot_training_curves(
            RunDir(r.path).training_log(), png, f"{r.path.name}: training curves"
        ) or (
            isinstance(hist, list)
            and hist
            and plot_dev_accuracy(hist, png, f"{r.path.name}: dev frame accuracy")
        ):
            written.append(png.name)
    series: dict[str, dict[str, Any]] = {}
    glob_cer = {
        (r.base, s): mean_std(r.dev_cer if s == sets[0] else r.test_cer)[0]
        for r in rows
        if r.tag in ("global",)
        for s in sets
    }
    for r in rows:
        if r.decay is None:
            continue
        for s, xs in ((sets[0], r.dev_cer), (sets[1], r.test_cer)):
            if xs:
                d = series.setdefault(
                    f"{r.base} {s}", {"decays": [], "cers": [], "global": glob_cer.get((r.base, s))}
                )
                d["decays"].append(r.decay)
                d["cers"].append(mean_std(xs)[0])
    if plot_cer_vs_decay(series, out / "cer_vs_ema_decay.png"):
        written.append("cer_vs_ema_decay.png")
    return written


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m steps_py.score.scoreboard",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--exp", type=Path, default=Path("exp"), help="experiment dir (default: exp)")
    p.add_argument(
        "--out", type=Path, default=Path("results"), help="output dir (default: results)"
    )
    p.add_argument(
        "--runs-glob",
        "--seeds-glob",
        dest="runs_glob",
        default="*",
        help="glob on training-run dir names to include (e.g. 'dnn_ma_n4*' for one "
        "system's seeds); default: all",
    )
    p.add_argument("--dev-set", default="dev")
    p.add_argument("--test-set", default="test")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap random seed (default 0)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument(
        "--no-tensorboard",
        action="store_true",
        help="do not write each run's CERs as TensorBoard hparams (<run>/tensorboard/final_cer)",
    )
    p.add_argument("--force", action="store_true", help="rebuild even if no input changed")
    return p


@dataclass(frozen=True)
class ScoreboardConfig:
    """What a scoreboard is built of and where; fields are named as the flags."""

    exp: Path
    out: Path
    runs_glob: str  # training-run dir names to include
    dev_set: str
    test_set: str
    resamples: int  # bootstrap resamples
    seed: int  # bootstrap random seed
    no_plots: bool
    no_tensorboard: bool  # no CERs as TensorBoard hparams
    force: bool  # rebuild even if no input changed

    @property
    def sets(self) -> tuple[str, str]:
        """The dev and the test set."""
        return (self.dev_set, self.test_set)

    def options_key(self) -> str:
        """The options the scoreboard depends on, as its fingerprint of the inputs has them."""
        opts = [self.runs_glob, self.sets, self.resamples, self.seed, self.no_plots]
        return json.dumps([*opts, self.no_tensorboard])


def main(argv: list[str] | None = None) -> int:
    config = dataclass_from_args(ScoreboardConfig, build_parser().parse_args(argv))
    setup_logging("scoreboard")
    try:
        return build(config)
    except OSError as e:  # a full disk, a read-only --out: one line naming the file
        msg = describe_os_error(e)
        if msg is None:
            raise
        log.error("%s", msg)
        return 1


def build(config: ScoreboardConfig) -> int:
    """Score every run under --exp and write the scoreboard to --out (unless up to date)."""
    sets = config.sets
    try:
        runs = discover(config.exp, config.runs_glob, sets)
    except ScoreError as e:
        log.error("%s", e)
        return 1
    if not runs:
        log.error(
            "%s: no decode dirs (decode[_<tag>]_{%s,%s}) found; run the decoding stage first",
            config.exp,
            *sets,
        )
        return 1
    fp = fingerprint(input_files(runs), config.options_key())
    out_json, out_md = config.out / "scoreboard.json", config.out / "scoreboard.md"
    # the inputs' sizes and mtimes live beside the scoreboard, not in it, so that the same
    # runs give a byte-identical scoreboard.json
    stamp = config.out / ".scoreboard.inputs"
    if (
        not config.force
        and out_json.is_file()
        and out_md.is_file()
        and stamp.is_file()
        and stamp.read_text(encoding="utf-8").strip() == fp
    ):
        log.info("%s is up to date with its inputs; skipping (use --force to rebuild)", out_md)
        print(out_md.read_text(encoding="utf-8"), end="")
        return 0
    scores = score_runs(runs)
    rows = build_rows(runs, sets, config.resamples, config.seed, scores)
    table = markdown_table(rows, sets)
    power = power_summary(scores, rows, sets[1])
    plots = [] if config.no_plots else make_plots(runs, rows, config.out, sets)
    if not config.no_tensorboard:
        n = tb_hparams.write_all(runs, scores)
        log.info(
            "wrote the CERs of %d run(s) as TensorBoard hparams (<run>/tensorboard/%s)",
            n,
            tb_hparams.SUBDIR,
        )
    md = (
        "# Scoreboard\n\nCER in %; mean ± std over seeds where a system has several. "
        "EMA vs global: relative change of the EMA model's test CER vs the same run's global "
        f"model (negative = EMA better), paired bootstrap 95 % CI over utterances, "
        f"{config.resamples} resamples, seed {config.seed}. " + power_text(power) + "\n" + table
    )
    if plots:
        md += "\n" + "".join(f"![{p}]({p})\n" for p in plots)
    atomic_write_json(
        out_json,
        {
            "sets": list(sets),
            "systems": [r.to_dict() for r in rows],
            "power": power,
            "plots": plots,
        },
    )
    atomic_write_text(out_md, md)
    atomic_write_text(stamp, fp + "\n")
    atomic_write_text(config.out / "RESULTS", results_text(runs, config.exp))
    log.info(
        "wrote %s, %s, %s and %d plot(s) for %d system(s)",
        out_md,
        out_json,
        config.out / "RESULTS",
        len(plots),
        len(rows),
    )
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
