"""Final CERs into each training run's TensorBoard as hparams (the HPARAMS tab).

The scoreboard calls ``write_run_hparams`` for every training run it scores: the run's
settings (model, sync, workers, block, epochs, seed, ...) become the hparams and its
scored CERs the metrics ``cer/<set>/<tag>`` (e.g. ``cer/test/ema-hl100000``), written to
``<run>/tensorboard/final_cer/``. TensorBoard's HPARAMS tab then lists every run of
``tensorboard --logdir exp`` in one sortable table beside the training curves.

``torch.utils.tensorboard`` writes the events; nothing here is hand-made. The directory
is rewritten whole each time, so rescoring leaves one set of numbers, not a history.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger("scoreboard")

HPARAM_KEYS = (
    "model",
    "sync",
    "workers",
    "block_minibatches",
    "batch_size",
    "epochs",
    "seed",
    "optimizer",
    "lr_times_workers",
    "ema_interfering",
)
SUBDIR = "final_cer"


def run_hparams(summary: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """The hparams of a run from its summary.json: scalar settings only, in a fixed order."""
    out: dict[str, bool | int | float | str] = {}
    for k in HPARAM_KEYS:
        v = summary.get(k)
        if isinstance(v, bool | int | float | str):
            out[k] = v
    return out


def write_run_hparams(run_dir: Path, summary: dict[str, Any], cers: dict[str, float]) -> Path:
    """Write hparams and the metrics `cers` ({"cer/<set>/<tag>": CER %}) for one run."""
    from torch.utils.tensorboard import SummaryWriter

    out = Path(run_dir) / "tensorboard" / SUBDIR
    if out.exists():
        shutil.rmtree(out)
    with SummaryWriter(str(out)) as w:
        # run_name "." keeps the events in `out` itself instead of a timestamped subdir
        w.add_hparams(run_hparams(summary), dict(sorted(cers.items())), run_name=".")
    return out


def write_all(runs: list[Any], scores: dict[tuple[Path, str, str], Any]) -> int:
    """hparams for every training run among `runs` (scoreboard Runs) that has scored decodes."""
    n = 0
    for r in runs:
        if r.summary is None:
            continue
        cers = {
            f"cer/{s}/{tag or 'global'}": float(scores[(r.path, tag, s)].cer)
            for (tag, s) in r.decodes
            if (r.path, tag, s) in scores
        }
        if not cers:
            continue
        try:
            write_run_hparams(r.path, r.summary, cers)
            n += 1
        except OSError as e:  # a read-only exp dir must not fail the scoreboard
            log.warning("%s: cannot write TensorBoard hparams (%s); skipped", r.path, e)
    return n
