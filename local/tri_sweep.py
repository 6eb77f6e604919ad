"""Choose the triphone system's size (tree leaves x Gaussians) on dev, within issue 21's time limit.

    python -m local.tri_sweep --workdir /work/fresh4 --conf-dir egs/synth/conf \\
        --out sweep_work --leaves 500,1000,2000 --gauss 2000,4000,8000 --results results/tri_sweep

Input: the workdir of a run of run.sh that trained its GMMs: ``data/{train,dev}`` with MFCC
features, ``data/lang``, ``data/lang_test`` and tri1's input, the monophone GMM ``exp/mono``
and its train alignments ``exp/mono_ali/train``. Nothing under it is written. The options
come from ``<conf-dir>/run.conf`` (sourced from the recipe root, as run.sh does):
``tri_opts`` (its ``--num-leaves``/``--tot-gauss`` replaced by the point's), ``align_opts``,
``gmm_decode_opts`` and, for the time reference, ``gmm_opts``.

For every (leaves, Gaussians) of the grid, in ``<out>/l<L>_g<G>/``, tri1's steps run as
run.sh runs them, each step timed (wall and CPU): ``steps_py.gmm.train_tri`` (tree and
EM), ``steps_py.gmm.align`` of train and of dev, ``steps_py.decode.graph``; then dev is decoded
with ``steps_py.decode.gmm`` (not timed; test is never decoded). Before the points, the
monophone's steps are timed the same way in ``<out>/mono_ref`` (``train_mono`` with
``gmm_opts``, alignments of train and dev, graph), on the same machine under the same load,
unless ``--mono-seconds`` gives its time.

Resumable: a point (and the reference) is done when its ``point.json`` (``ref.json``) exists
and is skipped; a point directory without it (an interrupted point) is removed and redone
whole, so its times are never those of a half-skipped stage.

Selection rule (fixed before the sweep ran): among the points whose tri1 stage time
(train_tri + both alignments + graph) is at most ``--time-factor`` (default 2: issue 21's
"tree building and triphone training at most twice the monophone stage's time") times the
monophone stage's time, the one with the lowest dev CER; ties go to fewer leaves, then fewer
Gaussians. When no point is within the limit there is no choice, and the table says so. The
time compared is ``--time`` (default ``cpu``: user + system seconds of the steps and their
worker processes; on a machine shared with other jobs, wall times measured minutes apart
change with the load far more than CPU times do; ``wall`` on an otherwise idle machine).

Writes ``<results>.md`` (a table for README, ``python -m steps_py.score.readme --what
tri_sweep``) and ``<results>.json`` (every point, the reference, the limit and the choice).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from steps_py.cli import StepError, int_at_least, step_main
from steps_py.decode.artifact import DecodeDir, DecodeDirError
from steps_py.fileio import atomic_write_json, atomic_write_text

log = logging.getLogger("tri_sweep")

RECIPE_ROOT = Path(__file__).resolve().parents[1]
CONF_KEYS = ("gmm_opts", "align_opts", "tri_opts", "gmm_decode_opts")
GRID_FLAGS = ("--num-leaves", "--tot-gauss")

# Runs one step: (python -m arguments, log file) -> None; raises SweepError when it fails.
Runner = Callable[[list[str], Path], None]
MEASURES = ("cpu", "wall")


def children_cpu_seconds() -> float:
    """User + system seconds of this process's finished children (and theirs, once waited for)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# the steps' clocks (tests replace them)
clock: Callable[[], float] = time.monotonic
cpu_clock: Callable[[], float] = children_cpu_seconds


class SweepError(StepError):
    """Bad input to the sweep, or a step of a point failed."""


@dataclass(frozen=True)
class Point:
    """One grid point's measured result (``point.json``)."""

    leaves: int
    gauss: int
    pdfs: int | None
    num_gauss: int | None
    dev_cer: float
    lm_weight: float
    penalty: float
    seconds: dict[str, float]  # wall: train_tri, align_train, align_dev, graph
    cpu_seconds: dict[str, float]  # the same steps' CPU seconds (user + system)
    stage_seconds: float  # the tri1 stage's wall time: the sum of `seconds`
    stage_cpu_seconds: float  # and its CPU time
    load_avg: float  # 1-minute load average when the stage ended
    options: dict[str, str]  # what made it (a point is only reused with the same)

    @property
    def name(self) -> str:
        return point_name(self.leaves, self.gauss)

    def stage(self, measure: str) -> float:
        """The tri1 stage's time: ``wall`` or ``cpu`` seconds."""
        return self.stage_cpu_seconds if measure == "cpu" else self.stage_seconds


def point_name(leaves: int, gauss: int) -> str:
    return f"l{leaves}_g{gauss}"


# ---------------------------------------------------------------------- configuration
def read_conf(conf_dir: Path) -> dict[str, str]:
    """The option strings CONF_KEYS of ``<conf_dir>/run.conf``, sourced from the recipe root."""
    conf = conf_dir / "run.conf"
    if not conf.is_file():
        raise SweepError(
            f"{conf} not found; give --conf-dir the recipe's conf dir (egs/<corpus>/conf)"
        )
    script = (
        "declare -A egs_opts train_opts sync_opts feat_opts; "
        '. "$1" > /dev/null || exit 1; '
        + "; ".join(f'printf "%s\\0" "${{{k}:-}}"' for k in CONF_KEYS)
    )
    res = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script, "_", str(conf.resolve())],
        cwd=RECIPE_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise SweepError(f"{conf} does not load in bash: {res.stderr.strip()}")
    values = res.stdout.split("\0")[: len(CONF_KEYS)]
    out = dict(zip(CONF_KEYS, values, strict=True))
    if not out["tri_opts"]:
        raise SweepError(f"{conf} sets no tri_opts: the sweep varies the triphone system's size")
    return out


def without_grid_flags(opts: str) -> list[str]:
    """``tri_opts`` split like run.sh, without --num-leaves/--tot-gauss (and their values)."""
    words, out, i = shlex.split(opts), [], 0
    while i < len(words):
        w = words[i]
        if w in GRID_FLAGS:
            i += 2
            continue
        if not any(w.startswith(f + "=") for f in GRID_FLAGS):
            out.append(w)
        i += 1
    return out


def parse_grid(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SweepError(f"{flag} {text!r}: give comma-separated integers, e.g. 500,1000") from None
    if not values or min(values) < 1 or len(set(values)) != len(values):
        raise SweepError(f"{flag} {text!r}: give distinct positive integers, e.g. 500,1000")
    return sorted(values)


def check_workdir(workdir: Path) -> None:
    need = [
        "data/train",
        "data/dev",
        "data/lang",
        "data/lang_test",
        "exp/mono",
        "exp/mono_ali/train",
    ]
    missing = [p for p in need if not (workdir / p).is_dir()]
    if missing:
        raise SweepError(
            f"--workdir {workdir} lacks {', '.join(missing)}: give the workdir of a run of "
            "run.sh that trained the monophone GMM and aligned train with it (exp/mono, exp/mono_ali)"
        )


# ---------------------------------------------------------------------- running steps
def run_step(args: list[str], log_file: Path) -> None:
    """``python -m <args>`` with its output in `log_file`; SweepError naming the log if it fails."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w", encoding="utf-8") as f:
        rc = subprocess.run(
            [sys.executable, "-m", *args], stdout=f, stderr=subprocess.STDOUT
        ).returncode
    if rc != 0:
        tail = log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise SweepError(
            f"{args[0]} failed (exit {rc}); its log {log_file} ends: " + " | ".join(tail)
        )


Times = dict[str, dict[str, float]]  # step -> {"wall": s, "cpu": s}


def timed(runner: Runner, args: list[str], log_file: Path) -> dict[str, float]:
    t0, c0 = clock(), cpu_clock()
    runner(args, log_file)
    return {"wall": round(clock() - t0, 1), "cpu": round(cpu_clock() - c0, 1)}


def stage_total(times: Times, measure: str) -> float:
    return round(sum(t[measure] for t in times.values()), 1)


def align_and_graph(
    runner: Runner, workdir: Path, model: Path, ali_out: Path, conf: dict[str, str], nj: int
) -> Times:
    """Alignments of train and dev with `model` and its graph, as run.sh runs them: times each."""
    data = workdir / "data"
    secs: Times = {}
    for s in ("train", "dev"):
        args = ["steps_py.gmm.align", "--data", str(data / s), "--lang", str(data / "lang")]
        args += ["--model", str(model), "--out", str(ali_out / s), "--nj", str(nj)]
        secs[f"align_{s}"] = timed(
            runner, args + shlex.split(conf["align_opts"]), ali_out / f"log/align_{s}.log"
        )
    graph = ["steps_py.decode.graph", "--lang", str(data / "lang_test"), "--model", str(model)]
    secs["graph"] = timed(
        runner, graph + ["--out", str(model / "graph")], model / "log/sweep_graph.log"
    )
    return secs


def fresh_dir(d: Path, marker: str) -> None:
    """Remove `d` when an interrupted run left it without `marker`; its times would be partial."""
    if d.exists() and not (d / marker).is_file():
        log.info("%s has no %s (interrupted): redoing it from scratch", d, marker)
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)


def mono_reference(
    runner: Runner, workdir: Path, out: Path, conf: dict[str, str], nj: int
) -> dict[str, float]:
    """{"wall": s, "cpu": s} of the monophone's steps, measured once in ``<out>/mono_ref``."""
    ref_dir = out / "mono_ref"
    ref_json = ref_dir / "ref.json"
    if ref_json.is_file():
        ref = json.loads(ref_json.read_text(encoding="utf-8"))
        log.info("monophone stage reference: %s s (from %s)", ref["stage_seconds"], ref_json)
        return {m: float(ref["stage_seconds"][m]) for m in MEASURES}
    fresh_dir(ref_dir, "ref.json")
    log.info("timing the monophone stage (train_mono, alignments, graph) in %s", ref_dir)
    data, mono = workdir / "data", ref_dir / "mono"
    args = ["steps_py.gmm.train_mono", "--data", str(data / "train"), "--lang", str(data / "lang")]
    args += ["--out", str(mono), "--nj", str(nj), *shlex.split(conf["gmm_opts"])]
    times = {"train_mono": timed(runner, args, ref_dir / "log/train_mono.log")}
    times |= align_and_graph(runner, workdir, mono, ref_dir / "mono_ali", conf, nj)
    total = {m: stage_total(times, m) for m in MEASURES}
    if min(total.values()) <= 0:
        raise SweepError(f"the monophone stage took {total} s in {ref_dir}: not a time limit")
    load = round(os.getloadavg()[0], 2)
    atomic_write_json(ref_json, {"seconds": times, "stage_seconds": total, "load_avg": load})
    log.info("monophone stage reference: %s s (%s)", total, times)
    return total


def read_int(p: Path) -> int | None:
    try:
        return int(p.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def dev_result(decode: Path) -> tuple[float, float, float]:
    """(dev CER, LM weight, penalty) of a dev decode dir."""
    try:
        score, chosen = DecodeDir(decode).score(), DecodeDir(decode).chosen()
    except DecodeDirError as e:
        raise SweepError(f"{decode}: {e}") from None
    if score is None:
        raise SweepError(f"{decode} has no CER; see its log/ and decode it again")
    return score.cer, chosen.lm_weight, chosen.penalty


def what_counts(options: dict[str, str]) -> dict[str, str]:
    """The options a point's result depends on: the conf's leaves and Gaussians are the
    point's own (setting tri_opts to the chosen point keeps the sweep's points), and
    gmm_opts only times the reference."""
    out = {k: v for k, v in options.items() if k != "gmm_opts"}
    out["tri_opts"] = shlex.join(without_grid_flags(options.get("tri_opts", "")))
    return out


def run_point(
    runner: Runner, workdir: Path, out: Path, conf: dict[str, str], leaves: int, gauss: int, nj: int
) -> Point:
    """Train, align, graph (timed) and decode dev at one grid point, or read its point.json."""
    d = out / point_name(leaves, gauss)
    options = {"workdir": str(workdir.resolve()), **conf}
    if (d / "point.json").is_file():
        p = Point(**json.loads((d / "point.json").read_text(encoding="utf-8")))
        if what_counts(p.options) != what_counts(options):
            raise SweepError(
                f"{d} was made with other options ({what_counts(p.options)} vs "
                f"{what_counts(options)}); give another --out or remove it"
            )
        log.info("%s: done (dev CER %.2f), skipping", d, p.dev_cer)
        return p
    fresh_dir(d, "point.json")
    log.info("%s: %d leaves, %d Gaussians: train_tri, alignments, graph, dev", d, leaves, gauss)
    data, tri1 = workdir / "data", d / "tri1"
    args = ["steps_py.gmm.train_tri", "--data", str(data / "train"), "--lang", str(data / "lang")]
    args += ["--ali", str(workdir / "exp/mono_ali/train"), "--ali-model", str(workdir / "exp/mono")]
    args += ["--out", str(tri1), "--nj", str(nj), *without_grid_flags(conf["tri_opts"])]
    args += ["--num-leaves", str(leaves), "--tot-gauss", str(gauss)]
    times = {"train_tri": timed(runner, args, d / "log/train_tri.log")}
    times |= align_and_graph(runner, workdir, tri1, d / "tri1_ali", conf, nj)
    load = round(os.getloadavg()[0], 2)
    dec = ["steps_py.decode.gmm", "--model", str(tri1), "--graph", str(tri1 / "graph")]
    dec += ["--data", str(data / "dev"), "--out", str(tri1 / "decode_dev"), "--nj", str(nj)]
    runner(dec + shlex.split(conf["gmm_decode_opts"]), d / "log/decode_dev.log")
    cer, lmwt, wip = dev_result(tri1 / "decode_dev")
    info: dict[str, Any] = {}
    if (tri1 / "info.json").is_file():
        info = json.loads((tri1 / "info.json").read_text(encoding="utf-8"))
    wall = {k: t["wall"] for k, t in times.items()}
    cpu = {k: t["cpu"] for k, t in times.items()}
    p = Point(
        leaves, gauss, read_int(tri1 / "num_pdfs"), info.get("num_gauss"), cer, lmwt, wip,
        wall, cpu, stage_total(times, "wall"), stage_total(times, "cpu"), load, options,
    )  # fmt: skip
    atomic_write_json(d / "point.json", asdict(p))
    log.info("%s: dev CER %.2f, tri1 stage %s s wall, %s s CPU", d, cer, wall, cpu)
    return p


# ---------------------------------------------------------------------- the choice and table
@dataclass(frozen=True)
class Limit:
    """The time limit: `factor` x the monophone stage's `mono` seconds of `measure`."""

    mono: dict[str, float]  # {"wall": s, "cpu": s} (a given --mono-seconds: only its measure)
    factor: float
    measure: str  # "cpu" or "wall"

    @property
    def seconds(self) -> float:
        return self.factor * self.mono[self.measure]

    def within(self, p: Point) -> bool:
        return p.stage(self.measure) <= self.seconds


def choose(points: Sequence[Point], limit: Limit) -> Point | None:
    """The rule of the module docstring: best dev CER within the time limit."""
    ok = [p for p in points if limit.within(p)]
    return min(ok, key=lambda p: (p.dev_cer, p.leaves, p.gauss), default=None)


def _cell(v: Any) -> str:
    return "-" if v is None else str(v)


def _row(p: Point, limit: Limit, chosen: Point | None) -> str:
    align = p.seconds.get("align_train", 0.0) + p.seconds.get("align_dev", 0.0)
    mark = " (chosen)" if chosen is not None and p.name == chosen.name else ""
    cells = [p.leaves, p.gauss, _cell(p.pdfs), _cell(p.num_gauss), f"{p.dev_cer:.2f}{mark}"]
    cells += [f"{p.lm_weight:g}/{p.penalty:g}", f"{p.seconds.get('train_tri', 0.0):.1f}"]
    cells += [f"{align:.1f}", f"{p.seconds.get('graph', 0.0):.1f}", f"{p.stage_seconds:.1f}"]
    cells += [
        f"{p.stage_cpu_seconds:.1f}",
        f"{p.stage(limit.measure) / limit.mono[limit.measure]:.2f}",
    ]
    cells += ["yes" if limit.within(p) else "no", f"{p.load_avg:.2f}"]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table_md(points: Sequence[Point], limit: Limit, chosen: Point | None, command: str) -> str:
    head = (
        "| leaves | Gaussians | pdfs | Gaussians (final) | dev CER % | LM wt/pen. | train_tri s "
        f"| align s | graph s | tri1 stage s | tri1 stage CPU s | x mono ({limit.measure}) "
        "| within limit | load avg |"
    )
    lines = [head, "|" + "---|" * (head.count(" | ") + 1)]
    lines += [_row(p, limit, chosen) for p in sorted(points, key=lambda p: (p.leaves, p.gauss))]
    verdict = (
        f"Chosen: **{chosen.leaves} leaves, {chosen.gauss} Gaussians** (dev CER {chosen.dev_cer:.2f})."
        if chosen is not None
        else f"No point's tri1 stage is within {limit.seconds:.1f} s ({limit.measure}): no choice."
    )
    mono = ", ".join(f"{v:.1f} s {m}" for m, v in sorted(limit.mono.items()))
    return (
        "# Triphone system size chosen on dev\n\n"
        f"Made by `{command}`. Each point: tri1's steps as run.sh runs them (train_tri = tree + "
        "EM, alignments of train and dev, HCLG), wall seconds per step and the stage's wall and "
        "CPU (user + system, worker processes included) seconds on a shared machine (load avg: "
        "the 1-minute load when the stage ended); then dev decoded with the recipe's "
        f"gmm_decode_opts. The monophone stage (train_mono, alignments, HCLG) timed the same way: "
        f"{mono}; limit {limit.factor:g} x its {limit.measure} time = {limit.seconds:.1f} s. "
        "Rule: the lowest dev CER among points within the limit (ties: fewer leaves, then fewer "
        "Gaussians).\n\n" + "\n".join(lines) + f"\n\n{verdict}\n"
    )


def write_results(
    prefix: Path, points: Sequence[Point], limit: Limit, command: str
) -> Point | None:
    chosen = choose(points, limit)
    atomic_write_text(prefix.with_suffix(".md"), table_md(points, limit, chosen, command))
    atomic_write_json(
        prefix.with_suffix(".json"),
        {
            "command": command,
            "mono_stage_seconds": limit.mono,
            "time": limit.measure,
            "time_factor": limit.factor,
            "limit_seconds": round(limit.seconds, 1),
            "chosen": None if chosen is None else {"leaves": chosen.leaves, "gauss": chosen.gauss},
            "points": [asdict(p) for p in points],
        },
    )
    return chosen


# ---------------------------------------------------------------------- command line
def sweep(args: argparse.Namespace, runner: Runner = run_step) -> Point | None:
    check_workdir(args.workdir)
    conf = read_conf(args.conf_dir)
    leaves, gauss = parse_grid(args.leaves, "--leaves"), parse_grid(args.gauss, "--gauss")
    if args.mono_seconds is not None:
        mono = {args.time: float(args.mono_seconds)}
    else:
        mono = mono_reference(runner, args.workdir, args.out, conf, args.nj)
    limit = Limit(mono, args.time_factor, args.time)
    points = []
    for n_leaves in leaves:
        for n_gauss in gauss:
            if n_gauss < n_leaves:
                log.info(
                    "skipping %d leaves x %d Gaussians: fewer Gaussians than leaves",
                    n_leaves,
                    n_gauss,
                )
                continue
            points.append(
                run_point(runner, args.workdir, args.out, conf, n_leaves, n_gauss, args.nj)
            )
    command = "python -m local.tri_sweep " + shlex.join(args.argv)
    chosen = write_results(args.results, points, limit, command)
    log.info(
        "wrote %s.{md,json}; chosen: %s", args.results,
        "none within the time limit" if chosen is None else f"{chosen.leaves} leaves, {chosen.gauss} Gaussians",
    )  # fmt: skip
    return chosen


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m local.tri_sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--workdir",
        type=Path,
        required=True,
        help="workdir of a run that trained exp/mono and wrote exp/mono_ali (read only)",
    )
    p.add_argument(
        "--conf-dir",
        type=Path,
        default=Path("egs/synth/conf"),
        help="the run's conf dir (default %(default)s)",
    )
    p.add_argument("--out", type=Path, required=True, help="where the points' dirs go")
    p.add_argument(
        "--leaves", default="500,1000,2000", help="tree leaves of the grid (default %(default)s)"
    )
    p.add_argument(
        "--gauss", default="2000,4000,8000", help="Gaussians of the grid (default %(default)s)"
    )
    p.add_argument(
        "--results",
        type=Path,
        default=Path("results/tri_sweep"),
        help="writes <results>.md and <results>.json (default %(default)s)",
    )
    p.add_argument(
        "--time-factor",
        type=float,
        default=2.0,
        help="tri1 stage at most this many times the monophone stage (default %(default)s)",
    )
    p.add_argument(
        "--time",
        choices=MEASURES,
        default="cpu",
        help="the time the limit compares: CPU (user + system) or wall seconds (default %(default)s)",
    )
    p.add_argument(
        "--mono-seconds",
        type=float,
        default=None,
        help="the monophone stage's --time seconds; default: time it here in <out>/mono_ref",
    )
    p.add_argument(
        "--nj", type=int_at_least(1), default=2, help="parallel jobs per step (default %(default)s)"
    )
    return p


def run(args: argparse.Namespace) -> int:
    if args.time_factor <= 0 or (args.mono_seconds is not None and args.mono_seconds <= 0):
        raise SweepError("--time-factor and --mono-seconds must be positive")
    sweep(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    parser.set_defaults(argv=list(argv))
    return step_main("tri_sweep", parser, run, argv, log_file=lambda a: a.out / "log" / "sweep.log")


if __name__ == "__main__":
    raise SystemExit(main())
