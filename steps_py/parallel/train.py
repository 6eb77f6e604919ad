"""The one parallel training loop (MA / BMUF / DDP / none) with non-interfering averagers.

Run one of:
  torchrun --standalone --nproc_per_node 2 -m steps_py.parallel.train --egs exp/egs/dnn \
      --exp-dir exp/dnn_ma_n2 --sync ma --block-minibatches 16
  python -m steps_py.parallel.train --simulate 4 --egs exp/egs/dnn --exp-dir exp/dnn_ma_n4 --sync ma
  python -m steps_py.parallel.train --egs exp/egs/dnn --exp-dir exp/dnn_none_n1 --sync none
Multi-node: on every node `torchrun --nnodes M --nproc_per_node N --rdzv-backend c10d
--rdzv-endpoint HOST:PORT -m steps_py.parallel.train ...` with --exp-dir on a shared
filesystem. gloo on CPU, NCCL on GPU, chosen automatically. On one machine use
`python -m steps_py.parallel.launch` (torchrun with every socket on loopback).
Fault tolerance: `torchrun --max-restarts 3 ... --resume`: a worker that dies makes
torchrun restart all workers, which continue from the latest complete checkpoint.

Each worker (a process, or one of the N virtual workers of `--simulate N`, run one after
another in one process) trains its own model copy with its own optimizer on its own shard
of the examples. Every block of K minibatches the sync object (`sync.py`) turns the
workers' models into the global model G(t) and the next start B(t); the averagers
(`averagers.py`: EMAs, icefall's average, Kaldi's last-models combination, post-hoc
snapshots) then read G(t) and never feed back. `final/` gets the global model and every
averager's model, each with its own adjusted priors (`export.py`).
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from steps_py.cli import StepError, describe_os_error, progress
from steps_py.fileio import (
    OutputError,
    atomic_path,
    atomic_write_json,
    hold_lock,
    is_done,
    mark_done,
)
from steps_py.log import setup_logging
from steps_py.nnet.optim import optimizer_kwargs
from steps_py.parallel import checkpoint as ckpt
from steps_py.parallel.averager_set import build_averagers
from steps_py.parallel.averagers import LastModelsCombination
from steps_py.parallel.backend import Backend, NnetBackend
from steps_py.parallel.config import RunConfig, SyncConfig, TrainConfig, settings
from steps_py.parallel.ema import EmaSet
from steps_py.parallel.errors import DivergenceError, TrainingError
from steps_py.parallel.export import ModelWriter, write_final_models
from steps_py.parallel.group import Group, choose_device, init_group, launched_by_torchrun
from steps_py.parallel.metrics import MetricsLog, TimeSplit, evaluate
from steps_py.parallel.options import build_parser as _build_parser
from steps_py.parallel.options import from_args, parse_args
from steps_py.parallel.run_dir import RunDir
from steps_py.parallel.state import RunParts, TrainState, resume_newest
from steps_py.parallel.sync import InterferingEma, Sync, make_sync
from steps_py.parallel.workers import DivergedError, build_workers, check_model_dims

log = logging.getLogger("train")


@dataclass
class Hooks:
    """Test hooks: `after_block(state, group)` returning True stops the run there."""

    after_block: Callable[[TrainState, Group], bool] | None = None


def build_parser() -> argparse.ArgumentParser:
    return _build_parser(__doc__)


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        backend: Backend,
        group: Group,
        device: torch.device,
        hooks: Hooks,
    ) -> None:
        self.config, self.backend, self.group, self.device, self.hooks = (
            config,
            backend,
            group,
            device,
            hooks,
        )
        data, model = config.data, config.model
        self.exp: Path = config.run.exp_dir
        if group.is_main:  # a rerun (lower lr, --resume) is not the diverged run any more
            (self.exp / "diverged.json").unlink(missing_ok=True)
        info = backend.egs_info(data.egs)
        self.cfg = backend.model_config(info, model.overrides)
        torch.manual_seed(data.seed)
        try:
            base = backend.build_model(self.cfg).to(device)
        except (TypeError, ValueError) as e:
            raise TrainingError(f"--model-config {model.overrides}: {e}") from None
        self.workers = build_workers(
            backend,
            base,
            group,
            data.egs,
            data.batch_size,
            data.seed,
            device,
            optimizer_kwargs(config.optimizer, config.schedule.lr_initial),
        )
        self.writer = ModelWriter(
            backend,
            self.cfg,
            data.egs,
            model.priors,
            model.prior_frames,
            data.batch_size,
            data.seed,
            device,
        )
        self.dev = (
            backend.make_reader(data.egs, 0, 1, data.batch_size, data.seed, "dev")
            if group.is_main
            else None
        )
        self.dev_start = self.dev.state_dict() if self.dev is not None else None
        self.steps_per_epoch = steps_per_epoch(self.workers, group, data.egs, data.batch_size)
        self._setup_sync(config, group)
        self.settings = settings(config, self.cfg, self.K)
        self.shapes = self.workers[0].flat.describe()
        for w in self.workers:
            w.fwd = self.sync.wrap(w.model, group)
        check_model_dims(self.workers[0], int(info.get("num_pdfs", 0)), data.egs)
        self.state, self.timer = TrainState(), TimeSplit()
        self.last_ckpt: Path | None = None
        self.lr = config.schedule.lr_initial

    def _setup_sync(self, config: TrainConfig, group: Group) -> None:
        """The sync object, the block size K, the run's frames, the averagers, the evals."""
        c, av = config.sync, config.averagers
        r0 = self.workers[0].reader
        frames_per_mb = r0.frames_per_epoch / max(1, r0.minibatches_per_epoch)
        k = c.block_size(frames_per_mb)
        sync = make_sync(
            c.sync,
            group.world_size,
            c.bmuf_momentum,
            c.bmuf_lr,
            c.warmup_blocks,
            c.ddp_impl,
        )
        self.total_steps = config.schedule.epochs * self.steps_per_epoch
        # what EMA half-life fractions and starts are fractions of (all workers)
        self.total_frames = group.world_size * frames_per_mb * self.total_steps
        try:
            emas = EmaSet(list(av.ema_specs), self.total_frames) if av.ema_interfering else None
        except ValueError as e:
            raise TrainingError(f"EMA options: {e}") from None
        self.sync: Sync = InterferingEma(sync, emas) if emas is not None else sync
        self.K = self.sync.block_minibatches(k)
        self.frames_per_block = group.world_size * frames_per_mb * self.K  # all workers
        syncs = config.schedule.epochs * -(-self.steps_per_epoch // self.K)
        self.averagers = (
            build_averagers(av, c.sync, self.exp, k, syncs, self.total_frames)
            if group.is_main
            else {}
        )
        self.eval_every = config.evals.every(syncs)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        st, run, epochs = self.state, self.config.run, self.config.schedule.epochs
        self.mlog = (
            MetricsLog(
                self.exp,
                [n for n, _ in self.models()],
                run.tensorboard,
                st.global_step if self.last_ckpt else None,
            )
            if self.group.is_main
            else None
        )
        self.bar = progress(
            total=self.total_steps,
            desc=f"train {self.sync.name} n{self.group.world_size}",
            unit="mb",
            log_every=max(50, self.total_steps // 10),
            logger=log,
            initial=st.global_step,
            disable=not self.group.is_main,
        )
        t0 = time.perf_counter() - st.wall_before
        stop = False
        for epoch in range(st.epoch, epochs):
            if epoch != st.epoch:
                st.epoch, st.step_in_epoch, st.ep_loss, st.ep_frames = epoch, 0, 0.0, 0
            if st.step_in_epoch >= self.steps_per_epoch:
                continue  # resumed from the checkpoint written at the end of this epoch
            for w in self.workers:
                w.start_epoch(epoch)
            while st.step_in_epoch < self.steps_per_epoch:
                for _ in range(min(self.K, self.steps_per_epoch - st.step_in_epoch)):
                    self.step()
                    self.bar.update(1)
                evals = self.end_block()  # first: the row's train CE includes this block
                self.log_row("block", st.ep_loss / max(st.ep_frames, 1), evals, t0)
                stop = bool(self.hooks.after_block and self.hooks.after_block(st, self.group))
                if st.step_in_epoch < self.steps_per_epoch and (
                    stop
                    or (run.checkpoint_every_blocks and st.block % run.checkpoint_every_blocks == 0)
                ):
                    self.checkpoint(t0)
                    if stop:
                        return self.stopped()
            evals = self.end_epoch()
            self.log_row("epoch", st.history[-1]["train_loss"], evals, t0)
            if run.save_epoch_models and epoch + 1 < epochs:
                self.save_epoch_models(epoch + 1)
            self.checkpoint(t0)
            if stop and epoch + 1 < epochs:
                return self.stopped()
        self.close_logs()
        return self.finish(time.perf_counter() - t0)

    def stopped(self) -> dict[str, Any]:
        self.close_logs()
        log.info("stopped after block %d as asked; resume with --resume", self.state.block)
        return {"stopped_at_block": self.state.block, "checkpoint": str(self.last_ckpt)}

    def close_logs(self) -> None:
        self.bar.close()
        if self.mlog is not None:
            self.mlog.close()

    def diverged(self, why: str, where: str) -> None:
        """Write <exp>/diverged.json (what a study records) and stop with DivergenceError."""
        if self.group.is_main:
            atomic_write_json(
                self.exp / "diverged.json",
                {
                    "reason": why,
                    "where": where,
                    "global_step": self.state.global_step,
                    "frames": self.state.frames,
                    "last_checkpoint": str(self.last_ckpt) if self.last_ckpt else None,
                },
            )
        raise DivergenceError(
            f"{why}; last good checkpoint: {self.last_ckpt or 'none'}. Lower "
            "--lr-initial, then rerun with --resume (or --force to start over)"
        )

    def step(self) -> None:
        st = self.state
        lr = self.config.schedule.lr(
            st.global_step / max(1, self.total_steps - 1), self.group.world_size
        )
        where = f"epoch {st.epoch + 1}, minibatch {st.step_in_epoch + 1}"
        try:
            with self.timer.measure("compute", self.device):
                for w in self.workers:
                    w.forward_backward(lr, where)
            with self.timer.measure("comm", self.device):
                self.sync.after_backward(self.group, [w.flat for w in self.workers])
            with self.timer.measure("compute", self.device):
                for w in self.workers:
                    w.update()
        except DivergedError as e:  # the loss (workers.py): its message says where
            self.diverged(str(e), where)
        except FloatingPointError as e:  # NG-SGD: a non-finite gradient or Fisher estimate
            self.diverged(f"{e} at {where}", where)
        st.step_in_epoch += 1
        st.global_step += 1
        self.lr = lr

    def end_block(self) -> dict[str, dict[str, float]]:
        """Synchronize, update the averagers, count; evaluate when due."""
        st, g = self.state, self.group
        if g.is_real and self.K > 1:
            with self.timer.measure("wait", self.device):  # load imbalance, kept apart from comm
                g.barrier()
        with self.timer.measure("comm", self.device):
            loss, frames = g.all_reduce_sum(
                [
                    torch.tensor(
                        [w.loss_sum, float(w.frames)], dtype=torch.float64, device=self.device
                    )
                    for w in self.workers
                ]
            ).tolist()
            start = self.sync.on_block_end(g, [w.flat.get() for w in self.workers], frames)
            for w in self.workers:
                w.flat.set(start)
                w.loss_sum, w.frames = 0.0, 0
        with self.timer.measure("ema", self.device):
            for a in self.averagers.values():
                a.update(self.sync.global_flat, frames, st.global_step)
        st.block += 1
        st.ep_loss += loss
        st.ep_frames += int(frames)
        st.frames += int(frames)
        if g.is_main and self.eval_every and st.block % self.eval_every == 0:
            return self.evaluate()
        return {}

    def end_epoch(self) -> dict[str, dict[str, float]]:
        st = self.state
        mc = self.max_change_activity()
        evals = self.evaluate() if self.group.is_main else {}
        h: dict[str, Any] = {
            "epoch": st.epoch + 1,
            "train_loss": st.ep_loss / max(st.ep_frames, 1),
            "blocks": st.block,
            "frames": st.frames,
            **mc,
        }
        for name, m in evals.items():
            h[f"dev_ce_{name}"], h[f"dev_acc_{name}"] = m["ce"], m["acc"]
        st.history.append(h)
        log.info(
            "epoch %d: train CE %.4f%s | %s",
            st.epoch + 1,
            h["train_loss"],
            (
                f" | max-change active on {mc['max_change_layer_pct']:.1f} % of layer updates, "
                f"global max-change on {mc['max_change_global_pct']:.1f} % of minibatches"
                if mc
                else ""
            ),
            " | ".join(f"{k} dev CE {v['ce']:.4f} acc {v['acc']:.4f}" for k, v in evals.items()),
        )
        return evals

    def max_change_activity(self) -> dict[str, float]:
        """How often max-change limited this epoch's updates, over every worker (percent of
        layer updates scaled down by the per-layer limit, of minibatches by the global one),
        as Kaldi's progress logs report it; the counts then restart. Empty for an optimizer
        without max-change. At a high learning rate most updates are limited, so the update
        size no longer follows the rate."""
        counts = self.group.all_reduce_sum(
            [
                torch.tensor(w.max_change_counts, dtype=torch.float64, device=self.device)
                for w in self.workers
            ]
        ).tolist()
        for w in self.workers:
            w.max_change_counts = [0, 0, 0, 0]
        steps, global_hit, layers, layer_hit = counts
        if not steps:
            return {}
        return {
            "max_change_layer_pct": 100.0 * layer_hit / max(layers, 1.0),
            "max_change_global_pct": 100.0 * global_hit / steps,
        }

    def save_epoch_models(self, epoch: int) -> None:
        """`<exp>/epoch<E>/`: the global model and the averagers' models at the end of epoch
        E (not the last: that is `final/`), each with its priors, for decoding later."""
        out = self.exp / f"epoch{epoch}"
        if not self.group.is_main or is_done(out):
            return
        with atomic_path(out) as tmp:
            tmp.mkdir(parents=True)
            for name, vec in self.models():
                self.writer.write(tmp / f"{name}.safetensors", name, vec)
        mark_done(out, {"frames": self.state.frames})

    # ------------------------------------------------------------------ helpers
    def models(self) -> list[tuple[str, torch.Tensor]]:
        """Every model of the run: the global one, the averagers', the ablation's E."""
        assert self.sync.global_flat is not None
        out = [("global", self.sync.global_flat)]
        for a in self.averagers.values():
            out += a.models()
        if isinstance(self.sync, InterferingEma):
            out.append((self.sync.label, self.sync.emas.model(0)))
        return out

    def dev_metrics(self, flat: torch.Tensor) -> dict[str, float]:
        assert self.dev is not None and self.dev_start is not None
        self.dev.load_state_dict(self.dev_start)
        return evaluate(
            self.writer.load(flat), self.dev, self.device, self.config.evals.dev_max_minibatches
        )

    def evaluate(self) -> dict[str, dict[str, float]]:
        with self.timer.measure("eval", self.device):
            return {name: self.dev_metrics(vec) for name, vec in self.models()}

    def log_row(
        self, kind: str, loss: float, evals: dict[str, dict[str, float]], t0: float
    ) -> None:
        if self.mlog is None:
            return
        st, t = self.state, self.timer.as_dict()
        row: dict[str, Any] = {
            "kind": kind,
            "epoch": st.epoch + 1,
            "block": st.block,
            "global_step": st.global_step,
            "frames": st.frames,
            "train_loss": loss,
            "lr": self.lr,
            "wall": time.perf_counter() - t0,
        }
        row.update(
            {
                f"t_{k}": t.get(k, 0.0)
                for k in ("compute", "wait", "comm", "ema", "eval", "checkpoint")
            }
        )
        for name, m in evals.items():
            row[f"dev_ce_{name}"], row[f"dev_acc_{name}"] = m["ce"], m["acc"]
        self.mlog.row(row)

    def run_parts(self) -> RunParts:
        """What a checkpoint of this run holds (the trainer's own objects, not copies)."""
        return RunParts(
            self.state,
            self.settings,
            self.shapes,
            self.sync,
            self.averagers,
            self.workers,
            self.timer,
            self.group.world_size,
        )

    def checkpoint(self, t0: float) -> None:
        with self.timer.measure("checkpoint"):
            gstate, wstates = self.run_parts().state_dict(time.perf_counter() - t0)
            self.last_ckpt = ckpt.save_checkpoint(
                self.exp,
                self.state.block,
                self.group,
                gstate,
                wstates,
                self.config.run.keep_checkpoints,
            )

    def start(self) -> None:
        """G(0) = B(0) on every worker; then resume from the newest loadable checkpoint."""
        start = self.group.broadcast(self.workers[0].flat.get(), src=0)
        for w in self.workers:
            w.flat.set(start)
        self.sync.init(start)
        for a in self.averagers.values():
            a.init(start)
        self.last_ckpt = resume_newest(
            self.exp,
            self.config.run.resume,
            self.group,
            lambda ck: self.run_parts().load_state_dict(
                ck, self.device, self.config.run.resume_any_settings
            ),
        )

    def finish(self, wall: float) -> dict[str, Any]:
        if not self.group.is_main:
            return {}
        c, t, st = self.config, self.timer.as_dict(), self.state
        specs = c.averagers.ema_specs
        final = RunDir(self.exp).final
        assert self.sync.global_flat is not None
        comb = self.averagers.get("combine")
        if isinstance(comb, LastModelsCombination):
            comb.finish(self.sync.global_flat, st.global_step)
        extra = write_final_models(
            final,
            self.writer,
            self.models(),
            self.averagers,
            lambda v: self.dev_metrics(v)["ce"],
            self.sync.global_flat,
        )
        summary = {
            "model": self.cfg.get("type", "?"),
            "model_config": self.cfg,
            "sync": self.sync.name,
            "workers": self.group.world_size,
            "launcher": "torchrun"
            if self.group.is_real
            else ("simulate" if self.group.world_size > 1 else "single"),
            "block_minibatches": self.K,
            "syncs": self.sync.blocks,
            "epochs": c.schedule.epochs,
            "batch_size": c.data.batch_size,
            "seed": c.data.seed,
            "optimizer": c.optimizer.name,
            "lr_times_workers": c.schedule.lr_times_workers,
            "ddp_impl": c.sync.ddp_impl if self.sync.name == "ddp" else None,
            "ema_decays": [s.tag.profile for s in specs],
            "ema_alphas": [  # full block, after any warm-up
                s.alpha(10**9, self.frames_per_block, self.total_frames) for s in specs
            ],
            "ema_total_frames": self.total_frames,
            "ema_interfering": c.averagers.ema_interfering,
            "frames": st.frames,
            "history": st.history,
            "settings": self.settings,
            "final_models": sorted(p.name for p in final.glob("*.safetensors")),
            "final_priors": self.writer.shifts,
            **extra,
            # timing fields (differ between runs; everything else is reproducible)
            "wall_time_s": wall,
            "frames_per_s": st.frames / max(wall, 1e-9),
            "time_split_s": t,
            "time_share": {k: v / max(wall, 1e-9) for k, v in t.items()},
        }
        atomic_write_json(RunDir(self.exp).summary_path, summary)
        mark_done(final, {"summary": RunDir.SUMMARY})
        log.info(
            "done: %s (%.1f s, %.0f frames/s; comm %.2f %%, averagers %.3f %% of wall time)",
            final,
            wall,
            st.frames / max(wall, 1e-9),
            100 * t.get("comm", 0) / max(wall, 1e-9),
            100 * t.get("ema", 0) / max(wall, 1e-9),
        )
        return summary


def steps_per_epoch(workers: list[Any], group: Group, egs: Path, batch_size: int) -> int:
    """Minibatches per epoch every worker has (the smallest share)."""
    n = group.all_reduce_min_int([w.reader.minibatches_per_epoch for w in workers])
    if n < 1:
        raise TrainingError(
            f"{egs}: a worker's share has no full minibatch of "
            f"{batch_size}; lower --batch-size or use fewer workers"
        )
    return n


def prepare_exp_dir(run: RunConfig, group: Group) -> bool:
    """Logging; False when the run is already done. --force clears the run's old outputs."""
    exp = run.exp_dir
    if group.is_main:
        exp.mkdir(parents=True, exist_ok=True)
        setup_logging("train", exp / "log" / "train.log")
    else:
        setup_logging(f"train r{group.rank}", None, level=logging.WARNING)
    if RunDir(exp).is_finished() and not run.force:
        log.info("%s is done (final/.done exists); skipping, use --force to retrain", exp)
        return False
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    if run.force and restarted:
        log.info("torchrun restart: --force applies only to the first attempt; not deleting")
    elif run.force and group.is_main:
        for d in (
            *(p.name for p in exp.glob("epoch[0-9]*")),
            "checkpoints",
            "log/train.csv",
            "tensorboard",
            "final",
            "posthoc",
            "summary.json",
        ):
            p = exp / d
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        log.info("--force: removed old checkpoints, logs and final models in %s", exp)
    group.barrier()
    return True


def check_workers(sync: SyncConfig) -> None:
    """--workers agrees with how the workers were started (torchrun or --simulate)."""
    if sync.workers and launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) != sync.workers:
        raise TrainingError(
            f"--workers {sync.workers} but torchrun started {os.environ['WORLD_SIZE']} processes"
        )
    if sync.workers and sync.workers > 1 and not launched_by_torchrun() and not sync.simulate:
        raise TrainingError(
            f"--workers {sync.workers}: start with `torchrun --nproc_per_node "
            f"{sync.workers} -m steps_py.parallel.train ...` or add --simulate "
            f"{sync.workers}"
        )


def run_training(
    config: TrainConfig, backend: Backend | None = None, hooks: Hooks | None = None
) -> dict[str, Any]:
    """Train as `config` asks (on this process's share of the workers); the run's summary."""
    device = choose_device()
    check_workers(config.sync)
    exp = config.run.exp_dir
    group = init_group(config.sync.simulate, device)
    lock = None
    try:
        # one trainer per exp dir: a second one (a rerun while the first still trains) is refused
        if group.is_main:
            lock = hold_lock(exp, ".train.lock", "training")
        torch.set_num_threads(
            config.sync.threads
            or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        )
        if not prepare_exp_dir(config.run, group):
            rd = RunDir(exp)
            return rd.summary() if rd.summary_path.is_file() else {}
        trainer = Trainer(config, backend or NnetBackend(), group, device, hooks or Hooks())
        trainer.start()
        log.info(
            "%s: %s model (%d parameters), --sync %s, %d workers (%s), K=%d, %d "
            "minibatches/epoch/worker, models %s",
            exp,
            trainer.cfg.get("type"),
            trainer.workers[0].flat.numel,
            trainer.sync.name,
            group.world_size,
            "torch.distributed" if group.is_real else "simulated",
            trainer.K,
            trainer.steps_per_epoch,
            [n for n, _ in trainer.models()],
        )
        summary = trainer.fit()
        group.barrier()
        return summary
    finally:
        if lock is not None:
            lock.close()
        group.close()


def run(
    args: argparse.Namespace, backend: Backend | None = None, hooks: Hooks | None = None
) -> dict[str, Any]:
    """`run_training` of options `parse_args` has checked."""
    return run_training(from_args(args), backend, hooks)


def check_model_config(config: TrainConfig, backend: Backend) -> str | None:
    """Why --model-config cannot build a model for --egs (None when it can), before any work."""
    try:
        info = backend.egs_info(config.data.egs)
        backend.build_model(backend.model_config(info, config.model.overrides))
    except (TypeError, ValueError) as e:
        return str(e)
    return None


def main(
    argv: list[str] | None = None, backend: Backend | None = None, hooks: Hooks | None = None
) -> int:
    parser = build_parser()
    config = from_args(parse_args(parser, argv))
    backend = backend or NnetBackend()
    try:
        problem = check_model_config(config, backend)
    except StepError as e:  # no examples dir
        parser.error(f"argument --egs: {e}")
    if problem:
        parser.error(f"argument --model-config: {problem}")
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: stack dump
    try:
        run_training(config, backend, hooks)
    except DivergenceError as e:
        logging.getLogger("train").error("%s", e)
        return DivergenceError.exit_status
    except (StepError, OutputError) as e:
        logging.getLogger("train").error("%s", e)
        return 1
    except OSError as e:  # a full disk, a read-only --exp-dir: one line naming the file
        msg = describe_os_error(e)
        if msg is None:
            raise
        logging.getLogger("train").error("%s", msg)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
