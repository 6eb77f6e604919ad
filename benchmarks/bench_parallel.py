"""Benchmark of the parallel training engine, side by side in one run.

Builds a synthetic DNN egs dir (random fbank-like features, learnable labels), then trains
on the same data with
  * N=1, one thread (`--sync none`)             the single-worker baseline,
  * N=2 real processes (torchrun, gloo, one thread each, `--sync ma`, K=32 minibatches),
  * optionally N=1 with two threads (`--n1-threads2`), for reference,
  * with `--simulate-compare N`: instead, N=1 (`--sync ma`) and N simulated workers
    (`--simulate N --sync ma`) on the same data, threads and block, alternated `--rounds`
    times (each round runs both, so slow drifts of a shared machine hit both alike), and
    the median ratio of training wall time per frame (target <= 1.1 at N = 64),
and reports, from each run's summary.json:
  * share of wall time in synchronization (all-reduce + flatten/assign; target <= 1 %),
  * share in the EMA update (target <= 0.2 %),
  * speedup of N=2 over N=1 on equal data (target >= 1.8x on 2 cores),
using the training wall time (dev evaluation and checkpoint writing excluded).
Numbers depend on the machine's load: other jobs running at the same time lower them.

  python benchmarks/bench_parallel.py --out results/bench_parallel.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from steps_py.log import setup_logging  # noqa: E402
from steps_py.nnet.egs import EgsParams, write_egs  # noqa: E402

log = setup_logging("bench_parallel")


def make_egs(out: Path, frames: int, dim: int, pdfs: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((dim, pdfs))
    feats, alis = {}, {}
    n, i = 0, 0
    while n < frames:
        t = int(rng.integers(200, 600))
        x = rng.standard_normal((t, dim)).astype(np.float32)
        feats[f"u{i:05d}"], alis[f"u{i:05d}"] = x, (x @ proj).argmax(1).astype(np.int32)
        n += t
        i += 1
    utts = sorted(feats)
    write_egs(
        out,
        (utts[2:], feats.__getitem__, alis),
        pdfs,
        EgsParams(model_type="dnn", num_shards=4, seed=1, context=5),
        (utts[:2], feats.__getitem__, alis),
    )
    return out


def train(
    egs: Path,
    exp: Path,
    n: int,
    threads: int,
    sync: str,
    args: argparse.Namespace,
    simulate: bool = False,
) -> dict:
    common = [
        "--egs",
        str(egs),
        "--exp-dir",
        str(exp),
        "--sync",
        sync,
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
        "--block-minibatches",
        str(args.block_minibatches),
        "--ema-decays",
        args.ema_decays,
        "--optimizer",
        args.optimizer,
        "--lr-initial",
        str(args.lr_initial),
        "--lr-final",
        str(args.lr_initial / 5),
        "--model-config",
        f"hidden_layers={args.hidden_layers},hidden_dim={args.hidden_dim}",
        "--threads",
        str(threads),
        "--checkpoint-every-blocks",
        "0",
        "--no-tensorboard",
        "--force",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads))
    if n == 1:
        cmd = [sys.executable, "-m", "steps_py.parallel.train", *common]
    elif simulate:
        cmd = [sys.executable, "-m", "steps_py.parallel.train", "--simulate", str(n), *common]
    else:
        cmd = [
            sys.executable,
            "-m",
            "steps_py.parallel.launch",
            "--nnodes",
            "1",
            "--nproc_per_node",
            str(n),
            "-m",
            "steps_py.parallel.train",
            *common,
        ]
    log.info("running N=%d threads=%d sync=%s", n, threads, sync)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"training failed:\n{p.stderr[-3000:]}")
    s = json.loads((exp / "summary.json").read_text())
    t = s["time_split_s"]
    train_wall = s["wall_time_s"] - t.get("eval", 0.0) - t.get("checkpoint", 0.0)
    return {
        "workers": n,
        "threads_per_worker": threads,
        "sync": sync,
        "wall_time_s": s["wall_time_s"],
        "train_wall_s": train_wall,
        "compute_s": t.get("compute", 0.0),
        "sync_s": t.get("comm", 0.0),
        "wait_s": t.get("wait", 0.0),
        "ema_s": t.get("ema", 0.0),
        "sync_share": t.get("comm", 0.0) / train_wall,
        "ema_share": t.get("ema", 0.0) / train_wall,
        "frames": s["frames"],
        "frames_per_s": s["frames"] / train_wall,
        "dev_acc_global": s["history"][-1]["dev_acc_global"],
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--frames", type=int, default=60000, help="training frames")
    p.add_argument("--dim", type=int, default=40)
    p.add_argument("--pdfs", type=int, default=200)
    p.add_argument("--hidden-layers", type=int, default=4)
    p.add_argument("--hidden-dim", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--block-minibatches", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--optimizer", default="ngsgd")
    p.add_argument("--lr-initial", type=float, default=0.02)
    p.add_argument("--ema-decays", default="0.9,0.99")
    p.add_argument("--n1-threads2", action="store_true", help="also run N=1 with 2 threads")
    p.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument(
        "--simulate-compare",
        type=int,
        default=0,
        metavar="N",
        help="compare N simulated workers with one worker per training frame",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds of --simulate-compare")
    p.add_argument("--threads", type=int, default=2, help="threads of --simulate-compare runs")
    args = p.parse_args()
    if args.simulate_compare:
        return simulate_compare(args)
    with tempfile.TemporaryDirectory(prefix="bench_parallel_") as tmp:
        work = args.workdir or Path(tmp)
        egs = work / "egs"
        if not (egs / ".done").is_file():
            make_egs(egs, args.frames, args.dim, args.pdfs)
        runs = [
            train(egs, work / "n1", 1, 1, "none", args),
            train(egs, work / "n2", 2, 1, "ma", args),
        ]
        if args.n1_threads2:
            runs.append(train(egs, work / "n1t2", 1, 2, "none", args))
    n1, n2 = runs[0], runs[1]
    res = {
        "cpu_count": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "runs": runs,
        "sync_share_n2": n2["sync_share"],
        "ema_share_n2": n2["ema_share"],
        "speedup_n2_vs_n1": n1["train_wall_s"] / n2["train_wall_s"],
    }
    print(
        f"{'run':<22}{'train wall s':>13}{'frames/s':>10}{'sync %':>9}{'wait %':>8}{'EMA %':>8}"
        f"{'dev acc':>9}"
    )
    for r in runs:
        name = f"N={r['workers']} x{r['threads_per_worker']}thr {r['sync']}"
        print(
            f"{name:<22}{r['train_wall_s']:>13.2f}{r['frames_per_s']:>10.0f}"
            f"{100 * r['sync_share']:>9.3f}{100 * r['wait_s'] / r['train_wall_s']:>8.3f}"
            f"{100 * r['ema_share']:>8.3f}"
            f"{r['dev_acc_global']:>9.3f}"
        )
    print(
        f"N=2 vs N=1 (1 thread each) speedup on equal data: {res['speedup_n2_vs_n1']:.2f}x "
        f"(target >= 1.8); sync share {100 * res['sync_share_n2']:.3f} % (target <= 1); "
        f"EMA share {100 * res['ema_share_n2']:.3f} % (target <= 0.2); "
        f"1-min load average {res['load_avg_1min']:.1f} on {os.cpu_count()} cores"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


def simulate_compare(args: argparse.Namespace) -> int:
    """N simulated workers vs one worker: training wall time per frame, median of rounds."""
    import statistics

    n = args.simulate_compare
    with tempfile.TemporaryDirectory(prefix="bench_simulate_") as tmp:
        work = args.workdir or Path(tmp)
        egs = work / "egs"
        if not (egs / ".done").is_file():
            make_egs(egs, args.frames, args.dim, args.pdfs)
        ratios, rows = [], []
        for r in range(args.rounds):
            one = train(egs, work / f"n1_{r}", 1, args.threads, "ma", args)
            many = train(egs, work / f"n{n}_{r}", n, args.threads, "ma", args, simulate=True)
            per_frame = [x["train_wall_s"] / x["frames"] for x in (one, many)]
            ratios.append(per_frame[1] / per_frame[0])
            rows.append((one, many))
            print(
                f"round {r + 1}: N=1 {one['frames_per_s']:.0f} frames/s, simulated N={n} "
                f"{many['frames_per_s']:.0f} frames/s (sync {100 * many['sync_share']:.2f} %, "
                f"averagers {100 * many['ema_share']:.2f} %), time per frame ratio {ratios[-1]:.3f}"
            )
    med = statistics.median(ratios)
    print(
        f"simulated N={n} vs N=1, {args.threads} threads, {args.frames} frames, block "
        f"{args.block_minibatches} minibatches: time per training frame ratio {med:.3f} "
        f"(median of {args.rounds}; range {min(ratios):.3f}-{max(ratios):.3f}; target <= 1.1); "
        f"1-min load average {os.getloadavg()[0]:.1f}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"ratios": ratios, "median": med, "runs": rows}, indent=2) + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
