"""The triphone half of stage 4 against the monophone half (issue 21: tree building and
triphone training at most twice the monophone stage's time), each step as ``run.sh`` runs
it, on the inputs of a finished default run.

    python benchmarks/bench_tri_stage.py --workdir /work/fresh6 --out /tmp/bench_tri \\
        [--baseline-code DIR] [--repeat 3] [--steps train_tri,tri_graph] [--nj 2] \\
        [--conf egs/synth/conf/run.conf]

Run from the repository root; the steps run in --workdir (its data/, exp/mono and
exp/mono_ali are the inputs) with their outputs under --out, each in its own process:
``train_mono``, ``align`` of train and dev and the HCLG of the monophone model, then
``train_tri``, ``align`` of train and dev with it and its HCLG, with the options of --conf
(gmm_opts, align_opts, tri_opts). The triphone steps start from the run's own monophone
model and alignments, so that every output can be compared with the run's: final.npz,
final.mdl and tree, ali.ark, HCLG.fst and HCLG_pdf.fst must be the same bytes.

Each step is timed in CPU seconds (user + system of the step and its job processes, from
getrusage) and wall seconds; on a shared machine only the CPU times are stable. The
triphone HCLG is built twice, side by side: by ``graph.make_cd_hclg`` (array steps,
``steps_py.decode.cd_graph``) and by ``make_cd_hclg(arrays=False)`` (kaldifst's
compose_context and relabelling by composition, the code before), which must give the
same bytes. With --baseline-code (a checkout of an older commit) every step also runs
with that code, alternating with this one's; --repeat N runs each step N times per code
(alternating) and keeps the medians. Prints a table, the triphone/monophone ratios of CPU
and wall time (when all steps ran), and one JSON line (also written to <out>/bench.json).
"""

from __future__ import annotations

import argparse
import filecmp
import functools
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
STAGES = {"mono": ("train_mono", "mono_ali_train", "mono_ali_dev", "mono_graph")}
STAGES["tri"] = ("train_tri", "tri_ali_train", "tri_ali_dev", "tri_graph")


def conf_opts(conf: Path) -> dict[str, list[str]]:
    """gmm_opts, align_opts and tri_opts of a run.conf (shell assignments in double quotes)."""
    text = conf.read_text()
    out = {}
    for name in ("gmm_opts", "align_opts", "tri_opts"):
        m = re.search(rf'^{name}="([^"]*)"', text, re.M)
        out[name] = shlex.split(m.group(1)) if m else []
    return out


def step_commands(out: Path, nj: int, opts: dict[str, list[str]]) -> dict[str, list[str]]:
    """The stage-4 commands of run.sh (python -m arguments); outputs under `out`."""
    j = ["--nj", str(nj)]
    cmds = {
        "train_mono": ["steps_py.gmm.train_mono", "--data", "data/train", "--lang", "data/lang"]
        + ["--out", f"{out}/mono", *j, *opts["gmm_opts"]],
        "mono_graph": ["steps_py.decode.graph", "--lang", "data/lang_test"]
        + ["--model", f"{out}/mono", "--out", f"{out}/mono/graph"],
        "train_tri": ["steps_py.gmm.train_tri", "--data", "data/train", "--lang", "data/lang"]
        + ["--ali", "exp/mono_ali/train", "--ali-model", "exp/mono", "--out", f"{out}/tri1"]
        + [*j, *opts["tri_opts"]],
        "tri_graph": ["steps_py.decode.graph", "--lang", "data/lang_test"]
        + ["--model", f"{out}/tri1", "--out", f"{out}/tri1/graph"],
    }
    for s in ("train", "dev"):
        align = ["steps_py.gmm.align", "--data", f"data/{s}", "--lang", "data/lang", *j]
        cmds[f"mono_ali_{s}"] = align + ["--model", f"{out}/mono", "--out", f"{out}/mono_ali/{s}"]
        cmds[f"mono_ali_{s}"] += ["--cmd", "local", *opts["align_opts"]]
        cmds[f"tri_ali_{s}"] = align + ["--model", f"{out}/tri1", "--out", f"{out}/tri1_ali/{s}"]
        cmds[f"tri_ali_{s}"] += opts["align_opts"]
    return cmds


# outputs compared with the run's: step -> [(file under --out, file under the workdir)]
OUTPUTS = {
    "train_mono": [("mono/final.npz", "exp/mono/final.npz")],
    "mono_graph": [("mono/graph/HCLG.fst", "exp/mono/graph/HCLG.fst")],
    "train_tri": [("tri1/final.mdl", "exp/tri1/final.mdl"), ("tri1/tree", "exp/tri1/tree")],
    "tri_graph": [
        ("tri1/graph/HCLG.fst", "exp/tri1/graph/HCLG.fst"),
        ("tri1/graph/HCLG_pdf.fst", "exp/tri1/graph/HCLG_pdf.fst"),
    ],
}
for _s in ("train", "dev"):
    OUTPUTS[f"mono_ali_{_s}"] = [(f"mono_ali/{_s}/ali.ark", f"exp/mono_ali/{_s}/ali.ark")]
    OUTPUTS[f"tri_ali_{_s}"] = [(f"tri1_ali/{_s}/ali.ark", f"exp/tri1_ali/{_s}/ali.ark")]


def timed(argv: list[str], cwd: Path, code: Path, log: Path) -> tuple[float, float]:
    """(CPU s of the process and the children it waited for, wall s); raises if it fails."""
    env = {**os.environ, "PYTHONPATH": f"{code}:{os.environ.get('PYTHONPATH', '')}"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.run(argv, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}); see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def same_outputs(step: str, out: Path, workdir: Path) -> bool:
    return all(
        filecmp.cmp(out / mine, workdir / theirs, shallow=False) for mine, theirs in OUTPUTS[step]
    )


def run_step(step: str, cmd: list[str], args: argparse.Namespace, code: Path, out: Path) -> dict:
    """One step with one code version: its times and whether its outputs are the run's."""
    argv = [sys.executable, "-P", "-m", *cmd, "--force"]
    if step == "tri_graph_kaldifst":  # the same graph by the kaldifst path, in this process type
        argv = [sys.executable, "-P", __file__, "--kaldifst-graph", *cmd[1:], "--force"]
    cpu, wall = timed(argv, args.workdir, code, out / f"{step}.log")
    check = "tri_graph" if step == "tri_graph_kaldifst" else step
    return {
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "same": same_outputs(check, out, args.workdir),
    }


def kaldifst_graph(argv: list[str]) -> int:
    """steps_py.decode.graph with make_cd_hclg(arrays=False): the kaldifst path."""
    from steps_py.decode import graph

    graph.make_cd_hclg = functools.partial(graph.make_cd_hclg, arrays=False)
    return graph.main(argv)


def median_run(runs: list[dict]) -> dict:
    """The median CPU and wall seconds of the runs of a step (same outputs in all of them)."""
    return {
        "cpu_s": round(float(np.median([r["cpu_s"] for r in runs])), 2),
        "wall_s": round(float(np.median([r["wall_s"] for r in runs])), 2),
        "same": all(r["same"] for r in runs),
        "runs": len(runs),
    }


def ratios(rows: dict[str, dict]) -> dict[str, float]:
    """The stages' CPU seconds and the triphone/monophone ratios (when all steps ran)."""
    if not all(step in rows for steps in STAGES.values() for step in steps):
        return {}
    tot = {
        st: {k: sum(rows[s][k] for s in steps) for k in ("cpu_s", "wall_s")}
        for st, steps in STAGES.items()
    }
    return {
        "mono_cpu_s": round(tot["mono"]["cpu_s"], 2),
        "tri_cpu_s": round(tot["tri"]["cpu_s"], 2),
        "tri_over_mono_cpu": round(tot["tri"]["cpu_s"] / tot["mono"]["cpu_s"], 3),
        "tri_over_mono_wall": round(tot["tri"]["wall_s"] / tot["mono"]["wall_s"], 3),
    }


def report(results: dict[str, dict[str, dict]]) -> dict:
    """Print the table and the ratios; return the summary (steps, ratios per code)."""
    names = list(results)
    print(f"{'step':22}" + "".join(f"{n + ' CPU s':>16}{'wall s':>9}{'same':>6}" for n in names))
    for step in results["this"]:
        row = f"{step:22}"
        for n in names:
            r = results[n].get(step)
            row += f"{r['cpu_s']:16.2f}{r['wall_s']:9.2f}{r['same']!s:>6}" if r else " " * 31
        print(row)
    summary: dict = {"steps": results}
    for n in names:
        summary[n] = s = ratios(results[n])
        if s:
            print(
                f"{n}: mono stage {s['mono_cpu_s']:.1f} s CPU, tri stage {s['tri_cpu_s']:.1f} s "
                f"CPU; tri/mono {s['tri_over_mono_cpu']:.2f} (CPU), "
                f"{s['tri_over_mono_wall']:.2f} (wall)"
            )
    if {"tri_graph_kaldifst", "tri_graph"} <= results["this"].keys():
        old, new = results["this"]["tri_graph_kaldifst"], results["this"]["tri_graph"]
        print(f"tri graph: kaldifst path / array path CPU {old['cpu_s'] / new['cpu_s']:.2f}x")
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--kaldifst-graph"]:
        return kaldifst_graph(argv[1:])
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workdir", type=Path, required=True, help="a finished default run")
    p.add_argument("--out", type=Path, required=True, help="scratch dir for the outputs")
    p.add_argument("--baseline-code", type=Path, default=None, help="older code to compare")
    p.add_argument("--nj", type=int, default=2, help="jobs, as run.sh (default %(default)s)")
    p.add_argument("--conf", type=Path, default=ROOT / "egs/synth/conf/run.conf")
    p.add_argument(
        "--repeat", type=int, default=1, help="runs of each step per code, median kept (default 1)"
    )
    p.add_argument("--steps", default="", help="only these steps (comma-separated; default all)")
    args = p.parse_args(argv)
    args.workdir, args.out = args.workdir.resolve(), args.out.resolve()
    codes = {"this": ROOT}
    if args.baseline_code:
        codes["baseline"] = args.baseline_code.resolve()
    opts = conf_opts(args.conf)
    steps = [*STAGES["mono"], *STAGES["tri"], "tri_graph_kaldifst"]
    steps = [s for s in steps if s in args.steps.split(",")] if args.steps else steps
    results: dict[str, dict[str, dict]] = {name: {} for name in codes}
    for step in steps:
        runs: dict[str, list[dict]] = {name: [] for name in codes}
        for _ in range(args.repeat):  # the code versions alternate, run after run
            for name, code in codes.items():
                if name == "this" or step != "tri_graph_kaldifst":
                    out = args.out / name
                    out.mkdir(parents=True, exist_ok=True)
                    cmd = step_commands(out, args.nj, opts)[step.replace("_kaldifst", "")]
                    runs[name].append(run_step(step, cmd, args, code, out))
                    print(f"{name:9} {step:20} {runs[name][-1]}", flush=True)
        for name, done in runs.items():
            if done:
                results[name][step] = median_run(done)
    summary = report(results)
    (args.out / "bench.json").write_text(json.dumps(summary) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
