"""The trainer's typed configuration: frozen dataclasses, one per concern, in one `TrainConfig`.

Library code (`Trainer`, `build_averagers`, `optimizer_kwargs`, `settings`) reads these and
never an `argparse.Namespace`: the command line is parsed and checked in `options.py`, whose
`from_args` builds the `TrainConfig` once. A field is named as its flag (``--bmuf-lr`` ->
`SyncConfig.bmuf_lr`); the defaults are the flags' and live in `options.py` only.
`settings(config, cfg, block)` is the part of a configuration that changes the maths of a
run: a checkpoint stores it and a resume compares it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps_py.nnet.optim import OptimizerConfig, lr_at
from steps_py.parallel.ema import EmaSpec


@dataclass(frozen=True)
class DataConfig:
    """The examples and how each worker reads them."""

    egs: Path  # the examples dir (python -m steps_py.nnet.egs)
    batch_size: int  # minibatch size per worker
    seed: int  # the initial model, the shards' order, the dev reader


@dataclass(frozen=True)
class ModelConfig:
    """The model built and the priors stored with each final model."""

    overrides: dict[str, Any]  # --model-config, over the backend's defaults
    priors: str  # "adjusted" (the model's mean posterior) or "counts"
    prior_frames: int  # training frames for the adjusted priors


@dataclass(frozen=True)
class ScheduleConfig:
    """Epochs and the learning-rate schedule (exponential decay, `lr_at`)."""

    epochs: int
    lr_initial: float
    lr_final: float
    lr_times_workers: bool  # Kaldi nnet3: each worker's rate is the given one times N

    def lr(self, progress: float, world_size: int) -> float:
        """A worker's learning rate after `progress` (0..1) of the run."""
        scale = world_size if self.lr_times_workers else 1
        return lr_at(progress, self.lr_initial, self.lr_final) * scale


@dataclass(frozen=True)
class SyncConfig:
    """The workers (torchrun processes or simulated) and how they are synchronised."""

    sync: str  # one of sync.SYNC_CHOICES
    simulate: int | None  # N virtual workers in this process
    workers: int | None  # expected number of workers (checked)
    threads: int | None  # torch threads per process (None: cores // local workers)
    block_minibatches: int | None
    block_frames: float | None
    ddp_impl: str  # "torch" or "flat"
    bmuf_momentum: float | None  # None: 1 - 1/N
    bmuf_lr: float
    warmup_blocks: int

    def block_size(self, frames_per_minibatch: float) -> int:
        """Minibatches per block asked for: K, or F frames in minibatches, or 16."""
        if self.block_minibatches:
            return self.block_minibatches
        if self.block_frames:
            return max(1, round(self.block_frames / frames_per_minibatch))
        return 16


@dataclass(frozen=True)
class AveragerConfig:
    """The EMAs and the other non-interfering averagers (or the interfering ablation)."""

    ema_specs: tuple[EmaSpec, ...]
    ema_interfering: bool  # ablation: the (one) EMA is broadcast as the next start
    icefall_average_period: int  # 0 = off
    combine_max_models: int  # 0 = off
    posthoc_snapshots: int  # 0 = off
    posthoc_sigma_rels: tuple[float, ...]


@dataclass(frozen=True)
class EvalConfig:
    """When dev CE/accuracy is computed besides every epoch's end, and on how much."""

    eval_every_blocks: int  # 0: per epoch only
    evals: int  # about this many evaluations over the run (0: off)
    dev_max_minibatches: int  # 0: all

    def every(self, syncs: int) -> int:
        """Blocks between evaluations in a run of `syncs` blocks (0: per epoch only)."""
        return self.eval_every_blocks or (max(1, syncs // self.evals) if self.evals else 0)


@dataclass(frozen=True)
class RunConfig:
    """The run dir: checkpoints, logs, what becomes of an earlier run there."""

    exp_dir: Path
    checkpoint_every_blocks: int  # 0: only at epoch ends
    keep_checkpoints: int
    resume: bool
    resume_any_settings: bool
    force: bool  # start over: delete the old checkpoints, logs and final models
    save_epoch_models: bool
    tensorboard: bool


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run is asked to do (`options.from_args` builds it)."""

    data: DataConfig
    model: ModelConfig
    schedule: ScheduleConfig
    optimizer: OptimizerConfig
    sync: SyncConfig
    averagers: AveragerConfig
    evals: EvalConfig
    run: RunConfig


def settings(config: TrainConfig, cfg: dict[str, Any], block: int) -> dict[str, Any]:
    """What changes the maths of a run (a resume with other values is refused); keys are
    the flags' names, `cfg` the model's full config, `block` the K the run uses."""
    d, s, o, y, a, m = (
        config.data,
        config.schedule,
        config.optimizer,
        config.sync,
        config.averagers,
        config.model,
    )
    return {
        "sync": y.sync,
        "epochs": s.epochs,
        "batch_size": d.batch_size,
        "seed": d.seed,
        "optimizer": o.name,
        "lr_initial": s.lr_initial,
        "lr_final": s.lr_final,
        "momentum": o.momentum,
        "max_change": o.max_change,
        "max_change_global": o.max_change_global,
        "ng_rank_in": o.ng_rank_in,
        "ng_rank_out": o.ng_rank_out,
        "ng_update_period": o.ng_update_period,
        "bmuf_momentum": y.bmuf_momentum,
        "bmuf_lr": y.bmuf_lr,
        "warmup_blocks": y.warmup_blocks,
        "lr_times_workers": s.lr_times_workers,
        "ema_interfering": a.ema_interfering,
        "icefall_average_period": a.icefall_average_period,
        "combine_max_models": a.combine_max_models,
        "posthoc_snapshots": a.posthoc_snapshots,
        "posthoc_sigma_rels": list(a.posthoc_sigma_rels),  # a list, as a checkpoint reads it
        "priors": m.priors,
        "prior_frames": m.prior_frames,
        "ddp_impl": y.ddp_impl,
        "egs": str(Path(d.egs).resolve()),
        "model_config": cfg,
        "block_minibatches": block,
        "emas": [e.label for e in a.ema_specs],
    }
