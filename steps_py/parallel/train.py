"""Stage 6: the one parallel training loop (MA / BMUF / DDP / none) with non-interfering EMAs.

Run one of:
  torchrun --standalone --nproc_per_node 2 -m steps_py.parallel.train --egs exp/egs/dnn \
      --exp-dir exp/dnn_ma_n2 --sync ma --block-minibatches 16 --ema-decays 0.9,0.99
  python -m steps_py.parallel.train --simulate 4 --egs exp/egs/dnn --exp-dir exp/dnn_ma_n4 --sync ma
  python -m steps_py.parallel.train --egs exp/egs/dnn --exp-dir exp/dnn_none_n1 --sync none
Multi-node: on every node `torchrun --nnodes M --nproc_per_node N --rdzv-backend c10d
--rdzv-endpoint HOST:PORT -m steps_py.parallel.train ...` with --exp-dir on a shared
filesystem. On one machine the rendezvous stays on loopback (`--standalone`, or
`--rdzv-endpoint 127.0.0.1:PORT` / `--master-addr 127.0.0.1`; MASTER_ADDR defaults to
127.0.0.1 when unset). gloo on CPU, NCCL on GPU, chosen automatically.
Fault tolerance: `torchrun --max-restarts 3 ... --resume`: a worker that dies makes
torchrun restart all workers, which continue from the latest complete checkpoint.

Each worker (a process, or a virtual worker of `--simulate N` run one after another in
one process) trains its own model copy with its own optimizer on its own data shard
`EgsReader(rank, world_size)`. Every block of K minibatches the sync object
(`sync.py`) turns the workers' models into the global model G(t) and the next start
B(t); the EMAs (`ema.py`) then read G(t) and never feed back.

At the end, final/ holds global.safetensors and one file per EMA, each with its own
adjusted log priors (its mean posterior over --prior-frames training frames, as Kaldi
nnet3's adjust-priors) for decoding and the alignment-count priors beside them
(`--priors counts` stores only those).
"""

from __future__ import annotations

import argparse
import copy
import faulthandler
import json
import logging
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from steps_py.fileio import atomic_path, atomic_write_json, is_done, mark_done
from steps_py.log import setup_logging
from steps_py.nnet.optim import add_optimizer_args, lr_at, optimizer_kwargs
from steps_py.parallel.backend import Backend, Reader, get_backend
from steps_py.parallel.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_global,
    load_worker,
    save_checkpoint,
)
from steps_py.parallel.ema import EmaSet, parse_floats
from steps_py.parallel.flat import FlatState
from steps_py.parallel.group import (
    Group,
    choose_device,
    init_group,
    launched_by_torchrun,
    local_world_size,
)
from steps_py.parallel.metrics import IGNORE_LABEL, MetricsLog, TimeSplit, evaluate, frame_loss
from steps_py.parallel.sync import SYNC_CHOICES, Sync, make_sync

log = logging.getLogger("train")


class TrainingError(RuntimeError):
    """A clear, user-facing failure (diverged loss, dims mismatch, bad resume)."""


@dataclass
class Worker:
    rank: int
    model: nn.Module
    flat: FlatState
    opt: torch.optim.Optimizer
    reader: Reader
    rng: torch.Tensor
    cuda_rng: torch.Tensor | None = None
    it: Any = None
    fwd: nn.Module | None = None  # torch DDP wrapper (--sync ddp under torchrun)
    loss_sum: float = 0.0
    frames: int = 0


@dataclass
class Progress:
    epoch: int = 0
    step_in_epoch: int = 0
    block: int = 0
    global_step: int = 0
    frames: int = 0
    wall_before: float = 0.0
    ep_loss: float = 0.0  # this epoch's summed frame CE so far (all workers)
    ep_frames: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------- CLI


def parse_model_config(text: str | None) -> dict[str, Any]:
    """A JSON file, inline JSON, or `key=val,key=val` (values parsed as JSON when possible)."""
    if not text:
        return {}
    p = Path(text)
    if p.is_file():
        return json.loads(p.read_text(encoding="utf-8"))
    if text.lstrip().startswith("{"):
        return json.loads(text)
    cfg: dict[str, Any] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise SystemExit(f"--model-config: {item!r} is not key=val (or give a JSON file)")
        k, v = item.split("=", 1)
        try:
            cfg[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            cfg[k.strip()] = v.strip()
    return cfg


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m steps_py.parallel.train",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    io = p.add_argument_group("data and outputs")
    io.add_argument("--egs", type=Path, required=True, help="examples dir from stage 5")
    io.add_argument("--exp-dir", type=Path, required=True, help="run dir, e.g. exp/dnn_ma_n4")
    io.add_argument("--model-config", default=None,
                    help="JSON file, inline JSON or key=val,... overriding the defaults from "
                         "the egs info.json")
    io.add_argument("--backend", default="nnet", choices=["nnet", "toy"],
                    help="nnet: steps_py.nnet models/egs (default); toy: tiny MLP for tests")
    tr = p.add_argument_group("training")
    tr.add_argument("--epochs", type=int, default=4)
    tr.add_argument("--batch-size", type=int, default=256, help="minibatch size per worker")
    tr.add_argument("--seed", type=int, default=1)
    add_optimizer_args(p)  # --optimizer, --lr-initial/--lr-final (exponential decay), ...
    sy = p.add_argument_group("parallelism and synchronization")
    sy.add_argument("--sync", default="ma", choices=SYNC_CHOICES)
    sy.add_argument("--simulate", type=int, default=None, metavar="N",
                    help="run N virtual workers one after another in this process")
    sy.add_argument("--workers", type=int, default=None,
                    help="expected number of workers (checked against torchrun / --simulate)")
    sy.add_argument("--block-minibatches", type=int, default=None, metavar="K",
                    help="local minibatches per block (default 16)")
    sy.add_argument("--block-frames", type=float, default=None, metavar="F",
                    help="frames per worker per block (alternative to --block-minibatches)")
    sy.add_argument("--ddp-impl", default="torch", choices=["torch", "flat"],
                    help="--sync ddp with real processes: torch DistributedDataParallel "
                         "(bucketed, overlapped with backward; its time counts as compute) or "
                         "one flat-gradient all-reduce per step (simulation always uses flat)")
    sy.add_argument("--bmuf-momentum", type=float, default=None,
                    help="block momentum eta (default 1 - 1/N)")
    sy.add_argument("--bmuf-lr", type=float, default=1.0, help="block learning rate zeta")
    sy.add_argument("--warmup-blocks", type=int, default=0,
                    help="BMUF: plain model averaging for the first W blocks")
    sy.add_argument("--threads", type=int, default=None,
                    help="torch threads per process (default max(1, cores // local workers))")
    em = p.add_argument_group("EMA model")
    em.add_argument("--ema-decays", default="0.99",
                    help="comma-separated decays alpha; each gives final/ema-<alpha>.safetensors")
    em.add_argument("--ema-half-life-frames", default="",
                    help="comma-separated half-lives in training frames (all workers): "
                         "alpha = 0.5 ** (frames_per_sync / half_life); final/ema-hl<H>")
    em.add_argument("--ema-warmup", action="store_true",
                    help="alpha_t = min(alpha, (1 + t) / (10 + t))")
    em.add_argument("--ema-interfering", action="store_true",
                    help="ablation: broadcast the (first) EMA as the next start, B(t) = E(t)")
    pr = p.add_argument_group("priors of the final models")
    pr.add_argument("--priors", default="adjusted", choices=["adjusted", "counts"],
                    help="log priors stored with each final model for decoding: 'adjusted' = the "
                         "model's own mean posterior over training frames (Kaldi nnet3's "
                         "adjust-priors; the alignment-count priors are kept beside them), "
                         "'counts' = the alignment-count priors of stage 5 (default %(default)s)")
    pr.add_argument("--prior-frames", type=int, default=30000,
                    help="training frames used for the adjusted priors (default %(default)s)")
    lg = p.add_argument_group("checkpoints and logs")
    lg.add_argument("--checkpoint-every-blocks", type=int, default=50)
    lg.add_argument("--keep-checkpoints", type=int, default=2)
    lg.add_argument("--resume", action="store_true",
                    help="continue from the latest complete checkpoint if there is one")
    lg.add_argument("--eval-every-blocks", type=int, default=0,
                    help="also evaluate dev CE/accuracy every N blocks (0: per epoch only)")
    lg.add_argument("--dev-max-minibatches", type=int, default=0,
                    help="cap on dev minibatches per evaluation (0: all)")
    lg.add_argument("--no-tensorboard", action="store_true")
    lg.add_argument("--force", action="store_true", help="retrain even if final/ is done")
    # Testing hooks, hidden from --help.
    p.add_argument("--stop-after-blocks", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--debug-kill-at-block", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--debug-kill-rank", type=int, default=1, help=argparse.SUPPRESS)
    return p


# ----------------------------------------------------------------------------- helpers


def lr_for_step(step: int, total: int, lr0: float, lr1: float) -> float:
    """Exponential decay from lr0 (first minibatch) to lr1 (last), as Kaldi's nnet3 recipes."""
    return lr_at(step / max(1, total - 1), lr0, lr1)


def _set_rng(w: Worker) -> None:
    torch.set_rng_state(w.rng)
    if w.cuda_rng is not None:
        torch.cuda.set_rng_state(w.cuda_rng)


def _save_rng(w: Worker) -> None:
    w.rng = torch.get_rng_state()
    if w.cuda_rng is not None:
        w.cuda_rng = torch.cuda.get_rng_state()


def _check_model_dims(model: nn.Module, reader: Reader, num_pdfs: int, device: torch.device,
                      egs: Path) -> None:
    state = reader.state_dict()
    x, _ = next(iter(reader))
    reader.load_state_dict(state)
    try:
        with torch.no_grad():
            out = model(x.to(device))
    except RuntimeError as e:
        raise TrainingError(
            f"the model does not accept the examples in {egs} (input shape {tuple(x.shape)}): "
            f"{str(e).splitlines()[0]}; check --model-config against {egs}/info.json") from None
    if out.shape[-1] != num_pdfs:
        raise TrainingError(f"model outputs {out.shape[-1]} classes but {egs} has {num_pdfs} "
                            "pdfs; fix --model-config")


def _label(name: str) -> str:
    return name if name == "global" else f"ema-{name}"


# ----------------------------------------------------------------------------- the run


def run(args: argparse.Namespace, backend: Backend | None = None) -> dict[str, Any]:
    if args.priors == "adjusted" and args.prior_frames <= 0:
        raise SystemExit(f"--prior-frames {args.prior_frames}: give a positive number of training "
                         "frames for the adjusted priors, or --priors counts")
    device = choose_device()
    if args.workers and launched_by_torchrun():
        ws = int(os.environ["WORLD_SIZE"])
        if ws != args.workers:
            raise SystemExit(f"--workers {args.workers} but torchrun started {ws} processes")
    if args.workers and args.workers > 1 and not launched_by_torchrun() and not args.simulate:
        raise SystemExit(f"--workers {args.workers}: start with `torchrun --nproc_per_node "
                         f"{args.workers} -m steps_py.parallel.train ...` or add --simulate "
                         f"{args.workers}")
    group = init_group(args.simulate, device)
    try:
        return _run(args, backend or get_backend(args.backend), group, device)
    finally:
        group.close()


def _run(args: argparse.Namespace, backend: Backend, group: Group, device: torch.device) -> dict:
    exp: Path = args.exp_dir
    threads = args.threads or max(1, (os.cpu_count() or 1) // local_world_size())
    torch.set_num_threads(threads)
    if group.is_main:
        exp.mkdir(parents=True, exist_ok=True)
        setup_logging("train", exp / "log" / "train.log")
    else:
        setup_logging(f"train r{group.rank}", None, level=logging.WARNING)
    final_dir = exp / "final"
    if is_done(final_dir) and not args.force:
        log.info("%s is done (final/.done exists); skipping, use --force to retrain", exp)
        s = exp / "summary.json"
        return json.loads(s.read_text()) if s.is_file() else {}
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    if args.force and restarted:
        log.info("torchrun restart: --force applies only to the first attempt; not deleting")
    if args.force and group.is_main and not restarted:
        for d in ("checkpoints", "log/train.csv", "tensorboard", "final"):
            pth = exp / d
            if pth.is_dir():
                shutil.rmtree(pth)
            elif pth.exists():
                pth.unlink()
        log.info("--force: removed old checkpoints, logs and final models in %s", exp)
    group.barrier()

    # Model, workers, data.
    info = backend.egs_info(args.egs)
    cfg = backend.model_config(info, parse_model_config(args.model_config))
    torch.manual_seed(args.seed)
    base = backend.build_model(cfg).to(device)
    workers: list[Worker] = []
    for r in group.local_ranks:
        model = copy.deepcopy(base)
        flat = FlatState(model, share=True)  # before the optimizer sees the parameters
        reader = backend.make_reader(args.egs, r, group.world_size, args.batch_size, args.seed,
                                     "train")
        torch.manual_seed(args.seed * 7919 + 17 * r + 1)
        cuda_rng = torch.cuda.get_rng_state() if device.type == "cuda" else None
        opt = backend.make_optimizer(model, **optimizer_kwargs(args))
        workers.append(Worker(r, model, flat, opt, reader, torch.get_rng_state(), cuda_rng))
    if args.sync == "ddp" and group.is_real and args.ddp_impl == "torch":
        from torch.nn.parallel import DistributedDataParallel

        for w in workers:
            w.fwd = DistributedDataParallel(w.model, broadcast_buffers=False)
    eval_model = copy.deepcopy(base)
    eval_flat = FlatState(eval_model)
    dev_reader = (backend.make_reader(args.egs, 0, 1, args.batch_size, args.seed, "dev")
                  if group.is_main else None)
    dev_state0 = dev_reader.state_dict() if dev_reader is not None else None
    num_pdfs = int(info.get("num_pdfs", 0))
    if num_pdfs:
        _check_model_dims(base, workers[0].reader, num_pdfs, device, args.egs)

    steps_per_epoch = group.all_reduce_min_int([w.reader.minibatches_per_epoch for w in workers])
    if steps_per_epoch < 1:
        raise TrainingError(f"{args.egs}: a worker's share has no full minibatch of "
                            f"{args.batch_size}; lower --batch-size or use fewer workers")
    r0 = workers[0].reader
    frames_per_mb = r0.frames_per_epoch / max(1, r0.minibatches_per_epoch)
    if args.block_minibatches:
        K = args.block_minibatches
    elif args.block_frames:
        K = max(1, round(args.block_frames / frames_per_mb))
    else:
        K = 16
    sync: Sync = make_sync(args.sync, group.world_size, args.bmuf_momentum, args.bmuf_lr,
                           args.warmup_blocks)
    frames_per_update = group.world_size * frames_per_mb * (1 if sync.sync_every_step else K)
    ema = EmaSet.from_args(parse_floats(args.ema_decays), parse_floats(args.ema_half_life_frames),
                           frames_per_update, args.ema_warmup)
    if args.ema_interfering and len(ema) == 0:
        raise SystemExit("--ema-interfering needs at least one EMA decay")
    hold_ema = group.is_main or args.ema_interfering
    labels = ["global"] + [_label(x) for x in ema.labels]

    # Initial model: identical everywhere (broadcast from rank 0).
    start = group.broadcast(workers[0].flat.get(), src=0)
    for w in workers:
        w.flat.set(start)
    sync.init(start)
    if hold_ema:
        ema.init(start)
    prog = Progress()
    timer = TimeSplit()

    # Resume.
    ck = latest_checkpoint(exp) if args.resume else None
    if ck is not None:
        _resume(ck, workers, sync, ema, hold_ema, prog, timer, group, device, cfg)
        log.info("resumed from %s: epoch %d, block %d, step %d", ck, prog.epoch, prog.block,
                 prog.global_step)
    elif args.resume:
        log.info("--resume: no checkpoint in %s/checkpoints, starting from scratch", exp)

    log.info("%s: model %s (%d parameters), --sync %s, %d workers (%s), K=%d minibatches/block, "
             "%d minibatches/epoch/worker, %d threads, EMAs %s (alpha %s)",
             exp, cfg.get("type", cfg.get("model_type", "?")), workers[0].flat.numel, sync.name,
             group.world_size, "torch.distributed" if group.is_real else "simulated", K,
             steps_per_epoch, threads, ema.labels, [f"{a:.6g}" for a in ema.alphas])
    mlog = (MetricsLog(exp, labels, tensorboard=not args.no_tensorboard,
                       resume_step=prog.global_step if ck is not None else None)
            if group.is_main else None)
    total_steps = args.epochs * steps_per_epoch
    bar = tqdm(total=total_steps, initial=prog.global_step, disable=not group.is_main,
               desc=f"train {sync.name} n{group.world_size}", unit="mb", dynamic_ncols=True)
    t_run0 = time.perf_counter()
    last_ckpt: Path | None = ck

    def do_eval() -> dict[str, dict[str, float]]:
        assert dev_reader is not None and dev_state0 is not None
        res: dict[str, dict[str, float]] = {}
        vecs = [("global", sync.global_flat)] + list(
            zip([_label(x) for x in ema.labels], ema.values, strict=True))
        for name, vec in vecs:
            eval_flat.set(vec)
            dev_reader.load_state_dict(dev_state0)
            res[name] = evaluate(eval_model, dev_reader, device, args.dev_max_minibatches)
        return res

    def do_sync() -> None:
        if group.is_real and not sync.sync_every_step:
            with timer.measure("wait", device):  # load imbalance, kept apart from comm
                group.barrier()
        with timer.measure("comm", device):
            flats = [w.flat.get() for w in workers]
            new_start = sync.on_block_end(group, flats)
        if hold_ema:
            with timer.measure("ema", device):
                ema.update(sync.global_flat)
        if args.ema_interfering:
            new_start = ema.values[0].clone()
            sync.override_start(new_start)
        if not sync.sync_every_step or args.ema_interfering:
            with timer.measure("comm", device):
                for w in workers:
                    w.flat.set(new_start)

    def checkpoint() -> Path:
        with timer.measure("checkpoint"):
            gstate = {
                "version": 1, "world_size": group.world_size, "epoch": prog.epoch,
                "step_in_epoch": prog.step_in_epoch, "block": prog.block,
                "global_step": prog.global_step, "frames": prog.frames,
                "ep_loss": prog.ep_loss, "ep_frames": prog.ep_frames,
                "wall": prog.wall_before + time.perf_counter() - t_run0,
                "shapes": json.dumps(workers[0].flat.describe()), "config": json.dumps(cfg),
                "sync": sync.state_dict(), "ema": ema.state_dict() if hold_ema else {},
                "history": json.dumps(prog.history), "time": timer.as_dict(),
            }
            wstates = {}
            for w in workers:
                wstates[w.rank] = {"optimizer": w.opt.state_dict(), "reader": w.reader.state_dict(),
                                   "rng": w.rng, **({"cuda_rng": w.cuda_rng} if w.cuda_rng
                                                    is not None else {})}
            return save_checkpoint(exp, prog.block, group, gstate, wstates, args.keep_checkpoints)

    stopped_early = False
    for epoch in range(prog.epoch, args.epochs):
        if epoch != prog.epoch or prog.step_in_epoch >= steps_per_epoch:
            if epoch == prog.epoch:
                continue
            prog.epoch, prog.step_in_epoch = epoch, 0
            prog.ep_loss, prog.ep_frames = 0.0, 0
        for w in workers:
            w.reader.set_epoch(epoch)
            w.it = iter(w.reader)
        while prog.step_in_epoch < steps_per_epoch:
            n = min(K, steps_per_epoch - prog.step_in_epoch)
            for w in workers:
                w.loss_sum, w.frames = 0.0, 0
            for _ in range(n):
                lr = lr_for_step(prog.global_step, total_steps, args.lr_initial, args.lr_final)
                _local_step(workers, sync, group, timer, device, lr, prog, last_ckpt)
                if sync.sync_every_step:
                    do_sync()
                prog.step_in_epoch += 1
                prog.global_step += 1
                bar.update(1)
            if (args.debug_kill_at_block and prog.block + 1 == args.debug_kill_at_block
                    and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
                    and args.debug_kill_rank in group.local_ranks):
                log.warning("debug: SIGKILL to myself (rank %d) in block %d",
                            args.debug_kill_rank, prog.block + 1)
                os.kill(os.getpid(), signal.SIGKILL)
            if not sync.sync_every_step:
                do_sync()
            prog.block += 1
            with timer.measure("comm", device):
                stats = group.all_reduce_sum(
                    [torch.tensor([w.loss_sum, float(w.frames)], dtype=torch.float64,
                                  device=device) for w in workers]).tolist()
            block_loss = stats[0] / max(stats[1], 1.0)
            prog.ep_loss += stats[0]
            prog.ep_frames += int(stats[1])
            prog.frames += int(stats[1])
            evals = {}
            if group.is_main and args.eval_every_blocks and prog.block % args.eval_every_blocks == 0:
                with timer.measure("eval", device):
                    evals = do_eval()
            if mlog is not None:
                mlog.row(_row("block", prog, block_loss, lr, timer, evals,
                              prog.wall_before + time.perf_counter() - t_run0))
            end_of_epoch = prog.step_in_epoch >= steps_per_epoch
            stop = bool(args.stop_after_blocks and prog.block >= args.stop_after_blocks)
            if not end_of_epoch and (stop or (args.checkpoint_every_blocks and
                                              prog.block % args.checkpoint_every_blocks == 0)):
                last_ckpt = checkpoint()
            if stop and not end_of_epoch:
                stopped_early = True
                break
        if stopped_early:
            break
        # End of epoch: evaluate, record, checkpoint.
        evals = {}
        if group.is_main:
            with timer.measure("eval", device):
                evals = do_eval()
            train_loss = prog.ep_loss / max(prog.ep_frames, 1)
            h: dict[str, Any] = {"epoch": epoch + 1, "train_loss": train_loss,
                                 "blocks": prog.block, "frames": prog.frames}
            for name, m in evals.items():
                h[f"dev_ce_{name}"] = m["ce"]
                h[f"dev_acc_{name}"] = m["acc"]
            prog.history.append(h)
            log.info("epoch %d: train CE %.4f | %s", epoch + 1, train_loss, " | ".join(
                f"{k} dev CE {v['ce']:.4f} acc {v['acc']:.4f}" for k, v in evals.items()))
            if mlog is not None:
                mlog.row(_row("epoch", prog, train_loss, lr, timer, evals,
                              prog.wall_before + time.perf_counter() - t_run0))
        last_ckpt = checkpoint()
        if args.stop_after_blocks and prog.block >= args.stop_after_blocks \
                and epoch + 1 < args.epochs:
            stopped_early = True
            break
    bar.close()
    if mlog is not None:
        mlog.close()
    wall = prog.wall_before + time.perf_counter() - t_run0
    summary: dict[str, Any] = {}
    if stopped_early:
        log.info("stopped after block %d as asked (--stop-after-blocks); resume with --resume",
                 prog.block)
        summary = {"stopped_at_block": prog.block, "checkpoint": str(last_ckpt)}
    elif group.is_main:
        summary = _finish(args, backend, exp, cfg, eval_model, eval_flat, sync, ema, group, K,
                          prog, timer, wall)
    group.barrier()
    return summary


def _local_step(workers: list[Worker], sync: Sync, group: Group, timer: TimeSplit,
                device: torch.device, lr: float, prog: Progress, last_ckpt: Path | None) -> None:
    """One minibatch on every local worker (gradient all-reduce first for ddp)."""
    with timer.measure("compute", device):
        for w in workers:
            _set_rng(w)
            try:
                x, y = next(w.it)
            except StopIteration:
                raise TrainingError(f"worker {w.rank}: data ran out at minibatch "
                                    f"{prog.step_in_epoch} of epoch {prog.epoch + 1}") from None
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            for g in w.opt.param_groups:
                g["lr"] = lr
            loss, frames = frame_loss((w.fwd or w.model)(x), y)
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise TrainingError(
                    f"non-finite training loss ({lv}) on worker {w.rank} at epoch "
                    f"{prog.epoch + 1}, minibatch {prog.step_in_epoch + 1}; last good checkpoint: "
                    f"{last_ckpt or 'none'}. Lower --lr-initial, then rerun with --resume "
                    "(or --force to start over)")
            loss.backward()
            w.loss_sum += lv * frames
            w.frames += frames
            if not sync.averages_gradients or w.fwd is not None:
                w.opt.step()
                w.opt.zero_grad(set_to_none=True)
            _save_rng(w)
    if sync.averages_gradients and workers[0].fwd is None:
        with timer.measure("comm", device):
            g = sync.average_gradients(group, [w.flat.grads() for w in workers])
            for w in workers:
                w.flat.set_grads(g)
        with timer.measure("compute", device):
            for w in workers:
                w.opt.step()
                w.opt.zero_grad(set_to_none=True)


def _row(kind: str, prog: Progress, loss: float, lr: float, timer: TimeSplit,
         evals: dict[str, dict[str, float]], wall: float) -> dict[str, Any]:
    t = timer.as_dict()
    row: dict[str, Any] = {"kind": kind, "epoch": prog.epoch + 1, "block": prog.block,
                           "global_step": prog.global_step, "frames": prog.frames,
                "ep_loss": prog.ep_loss, "ep_frames": prog.ep_frames,
                           "train_loss": loss, "lr": lr, "wall": wall}
    for k in ("compute", "wait", "comm", "ema", "eval", "checkpoint"):
        row[f"t_{k}"] = t.get(k, 0.0)
    for name, m in evals.items():
        row[f"dev_ce_{name}"] = m["ce"]
        row[f"dev_acc_{name}"] = m["acc"]
    return row


def _resume(ck: Path, workers: list[Worker], sync: Sync, ema: EmaSet, hold_ema: bool,
            prog: Progress, timer: TimeSplit, group: Group, device: torch.device,
            cfg: dict[str, Any]) -> None:
    try:
        g = load_global(ck, device)
        shapes = json.loads(g["shapes"])
        mine = workers[0].flat.describe()
        if shapes != mine:
            diff = [k for k in sorted(set(shapes) | set(mine)) if shapes.get(k) != mine.get(k)]
            raise TrainingError(
                f"checkpoint {ck} was written for a model whose parameters differ from the one "
                f"built now from --model-config/--egs (first differences: {diff[:3]}: "
                f"{[shapes.get(k) for k in diff[:3]]} vs {[mine.get(k) for k in diff[:3]]}); "
                "use the same egs and model config, a new --exp-dir, or --force")
        if int(g["world_size"]) != group.world_size:
            raise TrainingError(f"checkpoint {ck} has {g['world_size']} workers, this run "
                                f"{group.world_size}; resume with the same number of workers")
        sync.load_state_dict(g["sync"])
        if hold_ema:
            ema.load_state_dict(g["ema"])
        for w in workers:
            ws = load_worker(ck, w.rank, "cpu")  # RNG states must stay on the CPU
            w.flat.set(sync.start_flat)
            w.opt.load_state_dict(ws["optimizer"])
            w.reader.load_state_dict(ws["reader"])
            w.rng = ws["rng"]
            if "cuda_rng" in ws and w.cuda_rng is not None:
                w.cuda_rng = ws["cuda_rng"].cpu()
    except (CheckpointError, ValueError, KeyError) as e:
        raise TrainingError(f"cannot resume from {ck}: {e}") from None
    prog.epoch, prog.step_in_epoch = int(g["epoch"]), int(g["step_in_epoch"])
    prog.block, prog.global_step = int(g["block"]), int(g["global_step"])
    prog.frames, prog.wall_before = int(g["frames"]), float(g["wall"])
    prog.ep_loss, prog.ep_frames = float(g["ep_loss"]), int(g["ep_frames"])
    prog.history = json.loads(g["history"])
    for k, v in g["time"].items():
        timer.seconds[k] = float(v)


def _finish(args: argparse.Namespace, backend: Backend, exp: Path, cfg: dict[str, Any],
            eval_model: nn.Module, eval_flat: FlatState, sync: Sync, ema: EmaSet, group: Group,
            K: int, prog: Progress, timer: TimeSplit, wall: float) -> dict[str, Any]:
    priors = backend.log_priors(args.egs)
    final = exp / "final"
    prior_info: dict[str, Any] = {"priors": args.priors}
    with atomic_path(final) as tmp:
        tmp.mkdir(parents=True)
        assert sync.global_flat is not None
        names = [("global", sync.global_flat)] + list(
            zip([_label(x) for x in ema.labels], ema.values, strict=True))
        for name, vec in names:
            eval_flat.set(vec)
            if args.priors == "counts":
                backend.save_model(tmp / f"{name}.safetensors", eval_model, cfg, priors)
                continue
            adjusted, frames = _adjusted_priors(args, backend, eval_model)
            prior_info[name] = _prior_shift(name, adjusted, priors, frames)
            backend.save_model(tmp / f"{name}.safetensors", eval_model, cfg, adjusted, priors)
    t = timer.as_dict()
    summary = {
        "model": cfg.get("type", cfg.get("model_type", "?")), "model_config": cfg,
        "sync": sync.name, "workers": group.world_size,
        "launcher": "torchrun" if group.is_real else ("simulate" if group.world_size > 1
                                                      else "single"),
        "block_minibatches": 1 if sync.sync_every_step else K, "epochs": args.epochs,
        "ddp_impl": ("torch" if group.is_real and args.ddp_impl == "torch" else "flat")
        if sync.name == "ddp" else None,
        "batch_size": args.batch_size, "optimizer": args.optimizer,
        "ema_decays": ema.labels, "ema_alphas": ema.alphas, "ema_interfering": args.ema_interfering,
        "wall_time_s": wall, "frames": prog.frames, "frames_per_s": prog.frames / max(wall, 1e-9),
        "time_split_s": t, "time_share": {k: v / max(wall, 1e-9) for k, v in t.items()},
        "history": prog.history,
        "final_models": sorted(p.name for p in final.glob("*.safetensors")),
        "final_priors": prior_info,
    }
    atomic_write_json(exp / "summary.json", summary)
    mark_done(final, {"summary": "summary.json"})
    log.info("done: %s (%.1f s, %.0f frames/s; comm %.2f %%, EMA %.3f %% of wall time)",
             final, wall, summary["frames_per_s"], 100 * t.get("comm", 0) / max(wall, 1e-9),
             100 * t.get("ema", 0) / max(wall, 1e-9))
    return summary


def _adjusted_priors(args: argparse.Namespace, backend: Backend, model: nn.Module) -> tuple[np.ndarray, int]:
    """The model's mean posterior over the first --prior-frames training frames (fixed order)."""
    from steps_py.nnet.priors import average_log_posteriors

    reader = backend.make_reader(args.egs, 0, 1, args.batch_size, args.seed, "train")
    reader.set_epoch(0)
    device = next(model.parameters()).device
    return average_log_posteriors(model, reader, args.prior_frames, device, IGNORE_LABEL)


def _prior_shift(name: str, adjusted: np.ndarray, counts: np.ndarray, frames: int) -> dict[str, Any]:
    """How far a model's adjusted priors are from the count priors (logged and kept in summary.json)."""
    seen = counts != 0  # count priors store 0 for pdfs never seen in the alignments
    diff = adjusted[seen] - counts[seen]
    p = np.exp(adjusted[seen].astype(np.float64))
    info = {"frames": frames, "kl_adjusted_vs_counts": float(np.sum(p * diff)),
            "pdfs_raised_over_e": int((diff > 1.0).sum()), "max_raise_nats": float(diff.max())}
    log.info("adjusted priors of %s from %d training frames: KL to the count priors %.3f nats; "
             "%d pdfs above e x their count prior (max %+.2f nats)", name, frames,
             info["kl_adjusted_vs_counts"], info["pdfs_raised_over_e"], info["max_raise_nats"])
    return info


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: stack dump
    try:
        run(args)
    except TrainingError as e:
        logging.getLogger("train").error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
