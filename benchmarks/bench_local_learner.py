"""Benchmark of the local learner: our training step against a bare PyTorch loop.

Writes synthetic examples (stage-5 format) to a temporary dir, then times, with the same
model, threads and batch, round-robin (each round runs ``--chunk`` steps of every
configuration in turn, so slow drifts of a shared machine hit all of them alike; the
median round is reported, and the median of the per-round ratios with its quartiles):

* ``reader``: ``EgsReader`` alone (minibatches/s), to show reading is not the bottleneck;
* ``bare``: pre-built tensors, ``torch.optim.SGD`` step (the reference);
* ``ours-sgd``: reading from ``EgsReader`` + ``make_optimizer("sgd")`` + lr schedule;
* ``ours-sgd-mc``: the same with our optimizer without natural gradient (max-change only);
* ``ours-ngsgd``: the same with natural-gradient SGD (``--ng-*`` options: rank, period);
* with ``--breakdown``: ``ours-ngsgd`` without re-estimation after Kaldi's 10 initial
  updates (what preconditioning alone costs; the difference to ``ours-ngsgd`` is the
  re-estimation: power-iteration products and the [rank x rank] eigenproblems);
* with ``--ngsgd-from FILE``: ``ours-ngsgd`` with the ``NGSGD`` class of another
  ``ngsgd.py`` (e.g. an older commit's, ``git show <rev>:steps_py/nnet/ngsgd.py > f.py``),
  so that two implementations are timed side by side in one process.

For a DNN it also prints the arithmetic the natural gradient adds to a step (the products
with the Fisher factors of every Linear, and the amortized re-estimation), as a share of
the step's matrix products (forward, weight gradient, and the input gradient of every
layer but the first, which neither loop computes): ``1 / (1 + share)`` is the best ratio
NG-SGD can reach here if its products ran as fast as the step's, whatever the
implementation. ``--clock cpu`` times with the process's CPU time instead of the wall
clock (1 thread only: steadier on a shared machine, where other processes preempt ours).

Usage::

    nice python benchmarks/bench_local_learner.py --model-type dnn --threads 1 --steps 40
    nice python benchmarks/bench_local_learner.py --hidden-dim 384 --hidden-layers 3 --threads 2
    git show b63b036:steps_py/nnet/ngsgd.py > /tmp/ngsgd_old.py
    nice python benchmarks/bench_local_learner.py --ngsgd-from /tmp/ngsgd_old.py --breakdown --steps 150
    nice python benchmarks/bench_local_learner.py --model-type lstm --batch-size 32 --steps 15
    python benchmarks/bench_local_learner.py --sweep   # NG-SGD cost for a few rank/period pairs
    python benchmarks/bench_local_learner.py --hidden-dim 1024 --steps 10
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from steps_py.nnet.egs import EgsParams, EgsReader, write_egs
from steps_py.nnet.models import build_model
from steps_py.nnet.optim import lr_at, make_optimizer, set_lr


def synth_egs(out: Path, model_type: str, utts: int, frames: int, dim: int, pdfs: int) -> None:
    rng = np.random.default_rng(0)
    names = [f"u{i:04d}" for i in range(utts)]
    feats = {u: rng.standard_normal((frames, dim)).astype(np.float32) for u in names}
    alis = {u: rng.integers(0, pdfs, frames).astype(np.int32) for u in names}
    write_egs(
        out, (names, feats.__getitem__, alis), pdfs, EgsParams(model_type=model_type, num_shards=4)
    )


def cycle(reader: EgsReader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    epoch = 0
    while True:
        reader.set_epoch(epoch)
        yield from reader
        epoch += 1


def time_steps(
    step: Callable[[], None], steps: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    t0 = clock()
    for _ in range(steps):
        step()
    return (clock() - t0) / steps


def load_ngsgd_class(path: Path) -> type:
    """The ``NGSGD`` class of another ngsgd.py (for a side-by-side comparison)."""
    spec = importlib.util.spec_from_file_location("ngsgd_compared", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--ngsgd-from: cannot import {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.NGSGD


def ng_work_share(
    model: torch.nn.Module, frames: int, rank_in: int, rank_out: int, period: int
) -> float | None:
    """Multiply-adds NG-SGD adds per step over those of the forward+backward products (Linear only)."""
    base = extra = 0.0
    first = True
    for mod in model.modules():
        if isinstance(mod, torch.nn.LSTM):
            return None
        if not isinstance(mod, torch.nn.Linear):
            continue
        d_in, d_out = mod.in_features + 1, mod.out_features
        # forward, weight grad, and input grad but for the first layer (its input needs none)
        base += (2 if first else 3) * frames * d_in * d_out
        first = False
        for d, r in ((d_in, min(rank_in, d_in - 1)), (d_out, min(rank_out, d_out - 1))):
            extra += 2 * frames * d * r  # H = X R^T and X - H E R, every step
            extra += (frames * d * r + 2 * r * r * d) / period  # H^T X, Y Y^T, C^-1/2 U^T Y
    return extra / base


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--model-type", choices=("dnn", "lstm"), default="dnn")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=256, help="frames (dnn) or chunks (lstm)")
    ap.add_argument("--steps", type=int, default=40, help="rounds (timed chunks per configuration)")
    ap.add_argument("--chunk", type=int, default=4, help="steps per configuration per round")
    ap.add_argument("--warmup", type=int, default=12, help="untimed steps per configuration first")
    ap.add_argument("--hidden-dim", type=int, default=512)
    ap.add_argument("--hidden-layers", type=int, default=4)
    ap.add_argument("--cells", type=int, default=512)
    ap.add_argument("--pdfs", type=int, default=300)
    ap.add_argument("--ng-rank-in", type=int, default=20)
    ap.add_argument("--ng-rank-out", type=int, default=80)
    ap.add_argument("--ng-update-period", type=int, default=4)
    ap.add_argument(
        "--sweep", action="store_true", help="also time NG-SGD at other rank/period settings"
    )
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="also time NG-SGD without re-estimation (preconditioning alone)",
    )
    ap.add_argument(
        "--ngsgd-from",
        type=Path,
        default=None,
        help="also time the NGSGD class of this ngsgd.py file, side by side",
    )
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall clock, or this process's CPU time (with --threads 1 only)",
    )
    args = ap.parse_args()
    if args.clock == "cpu" and args.threads != 1:
        raise SystemExit("--clock cpu needs --threads 1 (CPU time adds up the threads)")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    other_ngsgd = load_ngsgd_class(args.ngsgd_from) if args.ngsgd_from else None
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dim = 40
    with tempfile.TemporaryDirectory() as tmp:
        egs = Path(tmp) / "egs"
        synth_egs(egs, args.model_type, utts=200, frames=300, dim=dim, pdfs=args.pdfs)
        cfg = {"type": args.model_type, "feat_dim": dim, "num_pdfs": args.pdfs}
        if args.model_type == "dnn":
            cfg["hidden_dim"] = args.hidden_dim
            cfg["hidden_layers"] = args.hidden_layers
        else:
            cfg["cells"] = args.cells
        reader = EgsReader(egs, 0, 1, batch_size=args.batch_size, seed=0)
        fpe = reader.frames_per_epoch // reader.minibatches_per_epoch
        cached = [b for _, b in zip(range(8), cycle(reader), strict=False)]
        p = args.pdfs

        def make(name: str, ng: dict | None = None, cls: type | None = None) -> Callable[[], None]:
            model = build_model(cfg)
            if name == "bare":
                opt = torch.optim.SGD(model.parameters(), lr=1e-3)
                i = [0]

                def step() -> None:
                    x, y = cached[i[0] % len(cached)]
                    i[0] += 1
                    loss = F.cross_entropy(model(x).reshape(-1, p), y.reshape(-1))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()

                return step
            kw = ng or {}
            opt = (
                cls(model, lr=1e-3, **kw)
                if cls is not None
                else make_optimizer(model, name, lr=1e-3, **kw)
            )
            it = cycle(EgsReader(egs, 0, 1, batch_size=args.batch_size, seed=0))
            n = [0]

            def step() -> None:
                x, y = next(it)
                set_lr(opt, lr_at(n[0] / 1000, 1e-3, 1e-4))
                n[0] += 1
                loss = F.cross_entropy(model(x).reshape(-1, p), y.reshape(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            return step

        ng_default = dict(
            rank_in=args.ng_rank_in, rank_out=args.ng_rank_out, update_period=args.ng_update_period
        )
        configs: dict[str, Callable[[], None]] = {
            "bare": make("bare"),
            "ours-sgd": make("sgd"),
            "ours-sgd-mc": make("sgd-mc"),
            f"ours-ngsgd(r{args.ng_rank_in}/{args.ng_rank_out},p{args.ng_update_period})": make(
                "ngsgd", ng_default
            ),
        }
        if args.breakdown:
            configs["ours-ngsgd(no re-estimation)"] = make(
                "ngsgd", {**ng_default, "update_period": 10**9}
            )
        if other_ngsgd is not None:
            configs[f"ngsgd from {args.ngsgd_from.name}"[:34]] = make(
                "ngsgd", ng_default, other_ngsgd
            )
        if args.sweep:
            for rin, rout, per in ((20, 80, 1), (20, 80, 8), (10, 40, 4), (10, 40, 8)):
                configs[f"ours-ngsgd(r{rin}/{rout},p{per})"] = make(
                    "ngsgd", dict(rank_in=rin, rank_out=rout, update_period=per)
                )
        rd = cycle(EgsReader(egs, 0, 1, batch_size=args.batch_size, seed=1))
        for step in configs.values():  # past NG-SGD's initial every-step Fisher updates
            for _ in range(args.warmup):
                step()
        times: dict[str, list[float]] = {k: [] for k in ["reader", *configs]}
        for _ in range(args.steps):
            times["reader"].append(time_steps(lambda: next(rd), args.chunk * 4, clock))
            for name, step in configs.items():
                times[name].append(time_steps(step, args.chunk, clock))
        med = {k: statistics.median(v) for k, v in times.items()}
        iqr = {k: (np.percentile(v, 75) - np.percentile(v, 25)) / med[k] for k, v in times.items()}
        # ratio per round (all configurations of a round ran within a second or so), then the
        # median and quartiles of those: slow drifts of a shared machine cancel in each round
        ratios = {
            k: [b / t for b, t in zip(times["bare"], v, strict=True)] for k, v in times.items()
        }
        r_med = {k: statistics.median(v) for k, v in ratios.items()}
        r_q = {k: (np.percentile(v, 25), np.percentile(v, 75)) for k, v in ratios.items()}
        print(
            f"model={args.model_type} cfg={build_model(cfg).__class__.__name__} batch={args.batch_size} "
            f"frames/minibatch={fpe} threads={args.threads} rounds={args.steps} x {args.chunk} steps "
            f"clock={args.clock}"
        )
        print(
            f"{'what':34s} {'ms/step':>9s} {'frames/s':>10s} {'vs bare':>8s} {'IQR/median':>10s} "
            f"{'per-round vs bare [quartiles]':>30s}"
        )
        print(
            f"{'reader only':34s} {1000 * med['reader']:9.2f} {fpe / med['reader']:10.0f} "
            f"{'':>8s}  ({1 / med['reader']:.0f} minibatches/s; "
            f"{100 * med['reader'] / med['bare']:.1f}% of a bare step)"
        )
        for name in configs:
            print(
                f"{name:34s} {1000 * med[name]:9.2f} {fpe / med[name]:10.0f} {med['bare'] / med[name]:8.3f} "
                f"{iqr[name]:10.3f} {r_med[name]:15.3f} [{r_q[name][0]:.3f}, {r_q[name][1]:.3f}]"
            )
        share = ng_work_share(
            build_model(cfg), fpe, args.ng_rank_in, args.ng_rank_out, args.ng_update_period
        )
        if share is not None:
            print(
                f"NG-SGD adds {100 * share:.1f}% to the step's matrix-product work "
                f"(r{args.ng_rank_in}/{args.ng_rank_out}, p{args.ng_update_period}): "
                f"best reachable ratio vs bare {1 / (1 + share):.3f}"
            )


if __name__ == "__main__":
    main()
