"""The averagers a training run keeps (rank 0 only), built from its `AveragerConfig`.

Apart from ``averagers.py`` because it also builds the post-hoc snapshots (``posthoc.py``),
which are an ``Averager`` themselves: ``averagers`` imports neither.
"""

from __future__ import annotations

from pathlib import Path

from steps_py.parallel.averagers import (
    PER_STEP_SYNCS,
    Averager,
    EmaAverager,
    IcefallAverage,
    LastModelsCombination,
)
from steps_py.parallel.config import AveragerConfig
from steps_py.parallel.ema import EmaSet
from steps_py.parallel.posthoc import PowerEmaSnapshots


def build_averagers(
    config: AveragerConfig, sync: str, exp: Path, block: int, syncs: int, total_frames: float
) -> dict[str, Averager]:
    """The averagers `config` asks for (rank 0 only), by name.

    `sync`: the run's sync method (a per-step one spaces the combination's models);
    `block`: minibatches per block asked for (the combination's step for none/ddp);
    `syncs`: synchronizations the run will do (spaces the post-hoc snapshots);
    `total_frames`: the run's training frames (EMA half-life fractions and starts).
    """
    c = config
    out: dict[str, Averager] = {}
    if c.ema_specs and not c.ema_interfering:
        out["ema"] = EmaAverager(EmaSet(list(c.ema_specs), total_frames))
    if c.icefall_average_period:
        out["icefall"] = IcefallAverage(c.icefall_average_period)
    if c.combine_max_models:
        out["combine"] = LastModelsCombination(
            c.combine_max_models, every_steps=block if sync in PER_STEP_SYNCS else 1
        )
    if c.posthoc_snapshots:
        out["posthoc"] = PowerEmaSnapshots(
            exp / "posthoc", list(c.posthoc_sigma_rels), max(1, syncs // c.posthoc_snapshots)
        )
    return out
