"""Command-line options of the trainer, checked before any work, and the typed config of them.

Every flag with a range is parsed by a checking type, so a bad value is an argparse error
naming the flag and the allowed range (``--block-minibatches 0`` -> "must be an integer >=
1"), before anything is read or written. `from_args` turns the parsed options into the
`TrainConfig` (`config.py`) the library code reads; this is the only module of the package
below the trainer's own entry (`train.run`/`main`) that sees an `argparse.Namespace`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from steps_py.cli import dataclass_from_args, int_at_least
from steps_py.nnet.optim import OPTIMIZERS, OptimizerConfig
from steps_py.parallel.config import (
    AveragerConfig,
    DataConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    ScheduleConfig,
    SyncConfig,
    TrainConfig,
)
from steps_py.parallel.ema import EmaSpec, ema_specs
from steps_py.parallel.sync import SYNC_CHOICES


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {v:g}")
    return v


def unit_interval(text: str) -> float:
    """A number in [0, 1)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {v:g}")
    return v


def float_list(lo: float, hi: float | None, hi_open: bool = True) -> Callable[[str], list[float]]:
    """Comma-separated numbers in [lo, hi) (or (lo, inf) when hi is None)."""

    def parse(text: str) -> list[float]:
        out = []
        for item in text.split(","):
            if not item.strip():
                continue
            try:
                v = float(item)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{item.strip()!r} is not a number") from None
            ok = (lo <= v < hi if hi_open else lo <= v <= hi) if hi is not None else v > lo
            if not ok:
                rng = f"[{lo:g}, {hi:g})" if hi is not None else f"> {lo:g}"
                raise argparse.ArgumentTypeError(f"{v:g} is outside the allowed range {rng}")
            out.append(v)
        return out

    return parse


def model_config_arg(text: str) -> dict[str, Any]:
    """A JSON file, inline JSON, or `key=val,key=val` (values parsed as JSON when possible)."""
    if not text:
        return {}
    p = Path(text)
    try:
        if p.is_file():
            cfg = json.loads(p.read_text(encoding="utf-8"))
        elif text.lstrip().startswith("{"):
            cfg = json.loads(text)
        else:
            cfg = {}
            for item in text.split(","):
                if not item.strip():
                    continue
                if "=" not in item:
                    raise argparse.ArgumentTypeError(
                        f"{item!r} is not key=val (or give a JSON file)"
                    )
                k, v = item.split("=", 1)
                try:
                    cfg[k.strip()] = json.loads(v)
                except json.JSONDecodeError:
                    cfg[k.strip()] = v.strip()
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise argparse.ArgumentTypeError("must be a JSON object or key=val,...")
    return cfg


def _io_args(p: argparse.ArgumentParser) -> None:
    """Options: data and outputs."""
    io = p.add_argument_group("data and outputs")
    io.add_argument(
        "--egs", type=Path, required=True, help="examples dir (python -m steps_py.nnet.egs)"
    )
    io.add_argument("--exp-dir", type=Path, required=True, help="run dir, e.g. exp/dnn_ma_n4")
    io.add_argument(
        "--model-config",
        type=model_config_arg,
        default={},
        help="JSON file, inline JSON or key=val,... overriding the model defaults "
        "(e.g. hidden_layers=3,hidden_dim=384)",
    )


def _training_args(p: argparse.ArgumentParser) -> None:
    """Options: training."""
    tr = p.add_argument_group("training")
    tr.add_argument("--epochs", type=int_at_least(1), default=4, help="default %(default)s")
    tr.add_argument(
        "--batch-size",
        type=int_at_least(1),
        default=256,
        help="minibatch size per worker (default %(default)s)",
    )
    tr.add_argument("--seed", type=int, default=1, help="default %(default)s")
    tr.add_argument(
        "--lr-times-workers",
        action="store_true",
        help="Kaldi nnet3's convention: each worker's learning rate is the given one "
        "times N (the given rates are 'effective' rates)",
    )
    _optimizer_args(p)  # --optimizer, --lr-initial/--lr-final (exponential decay), ...


def _optimizer_args(p: argparse.ArgumentParser) -> None:
    """Options: the local optimizer (`OptimizerConfig`) and its learning rates."""
    g = p.add_argument_group("local optimizer")
    g.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="ngsgd",
        help="local optimizer (default %(default)s)",
    )
    g.add_argument(
        "--lr-initial",
        type=float,
        default=0.002,
        help="initial learning rate (default %(default)s)",
    )
    g.add_argument(
        "--lr-final", type=float, default=0.0002, help="final learning rate (default %(default)s)"
    )
    g.add_argument("--momentum", type=float, default=0.0, help="momentum (default %(default)s)")
    g.add_argument(
        "--max-change",
        type=float,
        default=0.75,
        help="per-layer max Frobenius norm of an update, 0 = off (default %(default)s)",
    )
    g.add_argument(
        "--max-change-global",
        type=float,
        default=2.0,
        help="max norm of the whole update, 0 = off (default %(default)s)",
    )
    g.add_argument(
        "--ng-rank-in", type=int, default=20, help="NG input-side rank (default %(default)s)"
    )
    g.add_argument(
        "--ng-rank-out", type=int, default=80, help="NG output-side rank (default %(default)s)"
    )
    g.add_argument(
        "--ng-update-period",
        type=int,
        default=4,
        help="re-estimate the Fisher matrices every N minibatches (default %(default)s)",
    )


def _sync_args(p: argparse.ArgumentParser) -> None:
    """Options: parallelism and synchronization."""
    sy = p.add_argument_group("parallelism and synchronization")
    sy.add_argument("--sync", default="ma", choices=SYNC_CHOICES, help="default %(default)s")
    sy.add_argument(
        "--simulate",
        type=int_at_least(1),
        default=None,
        metavar="N",
        help="run N virtual workers one after another in this process",
    )
    sy.add_argument(
        "--workers",
        type=int_at_least(1),
        default=None,
        help="expected number of workers (checked against torchrun / --simulate)",
    )
    sy.add_argument(
        "--block-minibatches",
        type=int_at_least(1),
        default=None,
        metavar="K",
        help="local minibatches per block (default 16 unless --block-frames)",
    )
    sy.add_argument(
        "--block-frames",
        type=positive_float,
        default=None,
        metavar="F",
        help="frames per worker per block (alternative to --block-minibatches)",
    )
    sy.add_argument(
        "--ddp-impl",
        default="torch",
        choices=["torch", "flat"],
        help="--sync ddp with real processes: torch DistributedDataParallel or one flat "
        "gradient all-reduce per step (simulation always uses flat)",
    )
    sy.add_argument(
        "--bmuf-momentum",
        type=unit_interval,
        default=None,
        help="block momentum eta in [0, 1) (default 1 - 1/N)",
    )
    sy.add_argument(
        "--bmuf-lr",
        type=positive_float,
        default=1.0,
        help="block learning rate zeta (default %(default)s)",
    )
    sy.add_argument(
        "--warmup-blocks",
        type=int_at_least(0),
        default=0,
        help="BMUF: plain model averaging for the first W blocks (default 0)",
    )
    sy.add_argument(
        "--threads",
        type=int_at_least(1),
        default=None,
        help="torch threads per process (default max(1, cores // local workers))",
    )


def _ema_args(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Options: the EMAs and the other averagers."""
    em = p.add_argument_group("EMA models and the other averagers (all non-interfering)")
    em.add_argument(
        "--ema-half-life-frames",
        type=float_list(0.0, None),
        default=[100000.0],
        help="comma-separated EMA half-lives in training frames (all workers), "
        "alpha = 0.5 ** (frames of a sync / half-life); final/ema-hl<H> "
        "(default 100000)",
    )
    em.add_argument(
        "--ema-decays",
        type=float_list(0.0, 1.0),
        default=[],
        help="comma-separated fixed decays per synchronization in [0, 1); "
        "final/ema-<alpha> (default none)",
    )
    em.add_argument(
        "--ema-warmup-half-life-frames",
        type=float_list(0.0, None),
        default=[],
        help="more EMAs by half-life with warm-up alpha_t = min(alpha, (1+t)/(10+t)); "
        "final/ema-hl<H>-warmup",
    )
    em.add_argument(
        "--ema-half-life-fractions",
        type=float_list(0.0, None),
        default=[],
        help="more EMAs by half-life as a fraction of the run's training frames (0.05 = 5 %%), "
        "so runs of any length compare; final/ema-hl<P>pct (default none)",
    )
    em.add_argument(
        "--ema-warmup",
        action="store_true",
        help="give every EMA of --ema-decays/--ema-half-life-frames/--ema-half-life-fractions "
        "the warm-up; final/ema-warmup-upto-<decay or half-life>",
    )
    em.add_argument(
        "--ema-start",
        type=unit_interval,
        default=0.0,
        metavar="FRACTION",
        help="every EMA follows G until this fraction of the run's frames is trained, "
        "then E = G and averaging starts; label suffix -start<P>pct (default 0: E(0) = G(0))",
    )
    em.add_argument(
        "--ema-bias-correction",
        action="store_true",
        help="Adam's bias correction: E(0) = 0, model E / (1 - prod alpha), so the initial "
        "model has no weight; label suffix -bc (default off: E(0) = G(0), the paper's)",
    )
    em.add_argument(
        "--ema-interfering",
        action="store_true",
        help="ablation: broadcast the (one) EMA as the next start, B(t) = E(t)",
    )
    return em


def _averager_args(em: argparse._ArgumentGroup) -> None:
    """Options: the averagers beside the EMAs (in the EMAs' group)."""
    em.add_argument(
        "--icefall-average-period",
        type=int_at_least(0),
        default=0,
        help="icefall's model_avg: running uniform average of the model, updated "
        "every P local steps; final/icefall-avg (0 = off, default)",
    )
    em.add_argument(
        "--combine-max-models",
        type=int_at_least(0),
        default=0,
        help="Kaldi nnet3's final combination: average of the last k synchronized "
        "models, k <= this chosen on dev CE; final/kaldi-combine (0 = off)",
    )
    em.add_argument(
        "--posthoc-snapshots",
        type=int_at_least(0),
        default=0,
        help="keep about this many snapshots of each power EMA for post-hoc EMA "
        "reconstruction (python -m steps_py.parallel.posthoc); 0 = off",
    )
    em.add_argument(
        "--posthoc-sigma-rels",
        type=float_list(0.0, 0.28),
        default=[0.05, 0.10],
        help="relative widths of the power EMAs kept for post-hoc (default 0.05,0.1)",
    )


def _prior_args(p: argparse.ArgumentParser) -> None:
    """Options: priors of the final models."""
    pr = p.add_argument_group("priors of the final models")
    pr.add_argument(
        "--priors",
        default="adjusted",
        choices=["adjusted", "counts"],
        help="log priors stored with each final model for decoding: 'adjusted' = the "
        "model's own mean posterior over training frames (Kaldi nnet3's "
        "adjust-priors; the alignment-count priors are kept beside them), "
        "'counts' = the alignment-count priors of the examples (default %(default)s)",
    )
    pr.add_argument(
        "--prior-frames",
        type=int_at_least(1),
        default=30000,
        help="training frames used for the adjusted priors (default %(default)s)",
    )


def _log_args(p: argparse.ArgumentParser) -> None:
    """Options: checkpoints and logs."""
    lg = p.add_argument_group("checkpoints and logs")
    lg.add_argument(
        "--checkpoint-every-blocks",
        type=int_at_least(0),
        default=50,
        help="default %(default)s (0: only at epoch ends)",
    )
    lg.add_argument(
        "--keep-checkpoints", type=int_at_least(1), default=2, help="default %(default)s"
    )
    lg.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest complete checkpoint if there is one (a damaged "
        "one is skipped for the one before)",
    )
    lg.add_argument(
        "--resume-any-settings",
        action="store_true",
        help="resume even if the checkpoint was made with other settings",
    )
    lg.add_argument(
        "--eval-every-blocks",
        type=int_at_least(0),
        default=0,
        help="also evaluate dev CE/accuracy every N blocks (0: per epoch only)",
    )
    lg.add_argument(
        "--evals",
        type=int_at_least(0),
        default=0,
        help="also evaluate dev CE/accuracy about this many times, evenly over the "
        "run (instead of --eval-every-blocks; 0: off)",
    )
    lg.add_argument(
        "--dev-max-minibatches",
        type=int_at_least(0),
        default=0,
        help="cap on dev minibatches per evaluation (0: all)",
    )
    lg.add_argument(
        "--save-epoch-models",
        action="store_true",
        help="also write every model at the end of each epoch but the last to "
        "<exp-dir>/epoch<E>/ (for dev decodes against frames)",
    )
    lg.add_argument("--no-tensorboard", action="store_true")
    lg.add_argument(
        "--force",
        action="store_true",
        help="start over: delete this run's checkpoints, logs and final models",
    )


def build_parser(description: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m steps_py.parallel.train",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _io_args(p)
    _training_args(p)
    _sync_args(p)
    _averager_args(_ema_args(p))
    _prior_args(p)
    _log_args(p)
    return p


def parse_args(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse and cross-check (errors name the flags), before any work is done."""
    args = p.parse_args(argv)
    if args.block_minibatches and args.block_frames:
        p.error("give --block-minibatches or --block-frames, not both")
    if args.evals and args.eval_every_blocks:
        p.error("give --evals or --eval-every-blocks, not both")
    if any(s <= 0 for s in args.posthoc_sigma_rels):
        p.error("argument --posthoc-sigma-rels: every value must be > 0")
    try:
        args.ema_specs = _ema_specs(args)
    except ValueError as e:
        p.error(f"EMA options: {e}")
    if args.ema_interfering and len(args.ema_specs) != 1:
        p.error(
            f"--ema-interfering broadcasts one EMA; {len(args.ema_specs)} are asked for "
            f"({', '.join(s.label for s in args.ema_specs)})"
        )
    for flag in ("lr_initial", "lr_final"):
        if not getattr(args, flag) > 0:
            p.error(f"argument --{flag.replace('_', '-')}: must be > 0, got {getattr(args, flag)}")
    return args


def _ema_specs(args: argparse.Namespace) -> list[EmaSpec]:
    """The EMAs the --ema-* options ask for (ValueError: a contradiction among them)."""
    return ema_specs(
        args.ema_decays,
        args.ema_half_life_frames,
        args.ema_warmup_half_life_frames,
        args.ema_warmup,
        args.ema_half_life_fractions,
        args.ema_start,
        args.ema_bias_correction,
    )


def from_args(args: argparse.Namespace) -> TrainConfig:
    """The typed configuration of options `parse_args` has checked (built once, at the entry)."""
    return TrainConfig(
        data=dataclass_from_args(DataConfig, args),
        model=dataclass_from_args(ModelConfig, args, overrides=dict(args.model_config)),
        schedule=dataclass_from_args(ScheduleConfig, args),
        optimizer=dataclass_from_args(OptimizerConfig, args, name=args.optimizer),
        sync=dataclass_from_args(SyncConfig, args),
        averagers=dataclass_from_args(
            AveragerConfig,
            args,
            ema_specs=tuple(_ema_specs(args)),
            posthoc_sigma_rels=tuple(args.posthoc_sigma_rels),
        ),
        evals=dataclass_from_args(EvalConfig, args),
        run=dataclass_from_args(RunConfig, args, tensorboard=not args.no_tensorboard),
    )
