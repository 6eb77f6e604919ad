"""numpy BLAS threads: the GMM likelihood product with OpenBLAS's default threads vs one.

    python benchmarks/bench_blas_threads.py [--frames 210] [--gaussians 4008] [--dim 39] [--reps 50]

Runs the same float32 product ``x[T, D] @ m[D, G]`` (the triphone GMM's likelihoods of an
utterance in ``steps_py.decode.scorers.GmmScorer``) in two child processes, one with
``OPENBLAS_NUM_THREADS`` unset (OpenBLAS starts one thread per core) and one with it set to 1
(the recipe's default, ``steps_py/__init__.py``), alternating them so that both see the
same machine load, and prints the median time of each and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

CHILD = """
import sys, time
import numpy as np
t, g, d, reps = map(int, sys.argv[1:5])
rng = np.random.default_rng(0)
x = rng.standard_normal((t, d), dtype=np.float32)
m = rng.standard_normal((d, g), dtype=np.float32)
x @ m
times = []
for _ in range(reps):
    t0 = time.perf_counter()
    x @ m
    times.append(time.perf_counter() - t0)
times.sort()
print(times[len(times) // 2])
"""


def child_time(threads: str | None, args: argparse.Namespace) -> float:
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = threads
    argv = [sys.executable, "-c", CHILD, str(args.frames), str(args.gaussians), str(args.dim)]
    out = subprocess.run(
        [*argv, str(args.reps)], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--frames", type=int, default=210, help="T (default: 210, one utterance)")
    ap.add_argument("--gaussians", type=int, default=4008, help="G (default: 4008, tri1)")
    ap.add_argument("--dim", type=int, default=39, help="D (default: 39, MFCC + deltas)")
    ap.add_argument("--reps", type=int, default=50, help="products timed per child (default: 50)")
    ap.add_argument("--rounds", type=int, default=3, help="child pairs (default: 3)")
    args = ap.parse_args(argv)
    default, one = [], []
    for _ in range(args.rounds):
        default.append(child_time(None, args))
        one.append(child_time("1", args))
    d, o = statistics.median(default), statistics.median(one)
    print(
        f"x[{args.frames}, {args.dim}] @ m[{args.dim}, {args.gaussians}] float32, {os.cpu_count()} cores"
    )
    print(f"OpenBLAS default threads: {d * 1e3:8.3f} ms")
    print(f"OPENBLAS_NUM_THREADS=1:   {o * 1e3:8.3f} ms")
    print(f"ratio default / one thread: {d / o:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
