"""The averagers a training run keeps (rank 0 only), built from the trainer's options.

Apart from ``averagers.py`` because it also builds the post-hoc snapshots (``posthoc.py``),
which are an ``Averager`` themselves: ``averagers`` imports neither.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from steps_py.parallel.averagers import (
    PER_STEP_SYNCS,
    Averager,
    EmaAverager,
    IcefallAverage,
    LastModelsCombination,
)
from steps_py.parallel.ema import EmaSet
from steps_py.parallel.posthoc import PowerEmaSnapshots


def build_averagers(
    args: argparse.Namespace, exp: Path, block: int, syncs: int, total_frames: float
) -> dict[str, Averager]:
    """The averagers the trainer's options ask for (rank 0 only), by name.

    `block`: minibatches per block asked for (the combination's step for none/ddp);
    `syncs`: synchronizations the run will do (spaces the post-hoc snapshots);
    `total_frames`: the run's training frames (EMA half-life fractions and starts).
    """
    out: dict[str, Averager] = {}
    if args.ema_specs and not args.ema_interfering:
        out["ema"] = EmaAverager(EmaSet(args.ema_specs, total_frames))
    if args.icefall_average_period:
        out["icefall"] = IcefallAverage(args.icefall_average_period)
    if args.combine_max_models:
        out["combine"] = LastModelsCombination(
            args.combine_max_models, every_steps=block if args.sync in PER_STEP_SYNCS else 1
        )
    if args.posthoc_snapshots:
        out["posthoc"] = PowerEmaSnapshots(
            exp / "posthoc", args.posthoc_sigma_rels, max(1, syncs // args.posthoc_snapshots)
        )
    return out
