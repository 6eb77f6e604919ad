"""What a training run is at a point in time, and its checkpoint schema (written once, here).

`TrainState` holds the counters and history of the loop. `RunParts.state_dict(...)` turns
the whole run (state, sync object, averagers, workers' optimizers, data positions and RNGs)
into the two kinds of files of `checkpoint.py` (`global.pt` from rank 0, `worker-<r>.pt` per
worker), and `RunParts.load_state_dict(...)` reads them back into the same objects. The settings a run was started
with (`settings`: everything that changes the maths) are stored too, and a resume with
other settings is refused unless asked for (`--resume-any-settings`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from steps_py.parallel.averagers import Averager
from steps_py.parallel.checkpoint import (
    CheckpointError,
    DamagedCheckpoint,
    list_checkpoints,
    load_global,
    load_worker,
    set_aside,
)
from steps_py.parallel.errors import ResumeError
from steps_py.parallel.group import Group
from steps_py.parallel.metrics import TimeSplit
from steps_py.parallel.sync import Sync
from steps_py.parallel.workers import Worker

VERSION = 2
log = logging.getLogger("train")


@dataclass
class TrainState:
    epoch: int = 0
    step_in_epoch: int = 0
    block: int = 0
    global_step: int = 0
    frames: int = 0
    wall_before: float = 0.0
    ep_loss: float = 0.0  # this epoch's summed frame CE so far (all workers)
    ep_frames: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunParts:
    """The parts of a run a checkpoint holds: the loop's counters, the settings and parameter
    shapes it was started with, the sync object, the averagers, this process's workers and
    the time split; `state_dict` / `load_state_dict` write and read the checkpoint schema."""

    state: TrainState
    settings: dict[str, Any]
    shapes: dict[str, Any]
    sync: Sync
    averagers: dict[str, Averager]
    workers: list[Worker]
    timer: TimeSplit
    world_size: int

    def state_dict(self, wall: float) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
        """(global state for rank 0, {rank: worker state}) of the run now."""
        counters = asdict(self.state)
        counters["history"] = json.dumps(counters["history"])
        counters["wall_before"] = wall
        gstate = {
            "version": VERSION,
            "world_size": self.world_size,
            "state": counters,
            "settings": json.dumps(self.settings, sort_keys=True),
            "shapes": json.dumps(self.shapes),
            "sync": self.sync.state_dict(),
            "averagers": {k: a.state_dict() for k, a in self.averagers.items()},
            "time": self.timer.as_dict(),
        }
        wstates = {w.rank: w.state_dict() for w in self.workers}
        return gstate, wstates

    def load_state_dict(self, ck: Path, device: torch.device, any_settings: bool = False) -> None:
        """Load checkpoint `ck` into the run's objects.

        Raises `DamagedCheckpoint` when a file of it cannot be read (the caller tries an older
        one) and `ResumeError` when it cannot continue this run (other model, workers,
        settings).
        """
        try:
            g = load_global(ck, device)
            self._check(ck, g, any_settings)
            self.sync.load_state_dict(g["sync"])
            for name, a in self.averagers.items():
                if name not in g["averagers"]:
                    raise ResumeError(
                        f"checkpoint {ck} has no state for the {name} averager; "
                        "resume with the same averager options"
                    )
                a.load_state_dict(g["averagers"][name])
            for w in self.workers:
                w.flat.set(self.sync.start_flat)
                w.load_state_dict(load_worker(ck, w.rank, "cpu"))  # RNG states stay on the CPU
        except DamagedCheckpoint:
            raise
        except (CheckpointError, ValueError, KeyError) as e:
            raise ResumeError(f"cannot resume from {ck}: {e}") from None
        counters = dict(g["state"])
        counters["history"] = json.loads(counters["history"])
        for k, v in counters.items():
            setattr(self.state, k, type(getattr(self.state, k))(v) if k != "history" else v)
        for k, v in g["time"].items():
            self.timer.seconds[k] = float(v)

    def _check(self, ck: Path, g: dict[str, Any], any_settings: bool) -> None:
        """The checkpoint's format, model, workers and settings are this run's."""
        shapes = self.shapes
        if int(g.get("version", 1)) != VERSION:
            raise ResumeError(
                f"checkpoint {ck} has format version {g.get('version', 1)}, this "
                f"trainer writes {VERSION}; start over with --force"
            )
        saved_shapes = json.loads(g["shapes"])
        if saved_shapes != shapes:
            diff = [
                k
                for k in sorted(set(saved_shapes) | set(shapes))
                if saved_shapes.get(k) != shapes.get(k)
            ]
            raise ResumeError(
                f"checkpoint {ck} was written for a model whose parameters differ from the one "
                f"built now from --model-config/--egs (first differences: {diff[:3]}: "
                f"{[saved_shapes.get(k) for k in diff[:3]]} vs {[shapes.get(k) for k in diff[:3]]}"
                "); use the same egs and model config, a new --exp-dir, or --force"
            )
        if int(g["world_size"]) != self.world_size:
            raise ResumeError(
                f"checkpoint {ck} has {g['world_size']} workers, this run "
                f"{self.world_size}; resume with the same number of workers"
            )
        diff = settings_diff(json.loads(g["settings"]), self.settings)
        if diff and not any_settings:
            raise ResumeError(
                f"checkpoint {ck} was made with other settings ({'; '.join(diff)}); "
                "rerun with the same options, or --force to start over, or "
                "--resume-any-settings to continue anyway"
            )


def settings_diff(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    keys = sorted(set(saved) | set(now))
    return [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]


def resume_newest(
    exp: Path, resume: bool, group: Group, load: Callable[[Path], None]
) -> Path | None:
    """Load the newest checkpoint every rank can read (`load(ck)`); the one used, or None.

    A damaged checkpoint is reported, set aside as `damaged-block-*` and the one before it
    tried. Checkpoints without `resume` are refused (they belong to an earlier attempt).
    """
    cks = list_checkpoints(exp)
    if cks and not resume:
        raise ResumeError(
            f"{exp} holds checkpoints of an earlier run ({cks[-1].name}); pass "
            "--resume to continue it or --force to start over"
        )
    for ck in reversed(cks):
        try:
            load(ck)
            ok = 1
        except DamagedCheckpoint as e:
            log.warning("%s; trying the checkpoint before it", e)
            ok = 0
        if group.all_reduce_min_int([ok]):  # every rank could load it
            log.info("resumed from %s", ck)
            return ck
        if group.is_main:
            set_aside(ck)
    if cks:
        raise ResumeError(
            f"no checkpoint in {exp}/checkpoints could be loaded (set aside as "
            "damaged-*); rerun with --force to start over"
        )
    return None
