"""Worker groups: real torch.distributed processes or N virtual workers in one process.

The sync algorithms (`sync.py`) talk only to a `Group`. A group owns `local_size`
workers of a world of `world_size`: a real process (torchrun) owns one worker, the
simulated group owns all N virtual workers, which the training loop runs one after
another. Every collective takes the list of the local workers' tensors, so one
implementation of MA/BMUF/gradient averaging serves both:

* `all_reduce_sum([t_local...]) -> total` (identical on every rank),
* `all_reduce_mean` = sum / world_size,
* `broadcast(t, src=0)`, `barrier()`, `all_reduce_min_int(n)`.

Summation order: the simulated group adds worker tensors in rank order
(w0 + w1 + ...); gloo's all-reduce for two ranks computes w0 + w1 too, so N=2
simulation and real processes agree bitwise (for N>2 the ring order may differ in
the last bit).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


class Group(ABC):
    """Interface shared by the real and the simulated group."""

    rank: int  # rank of the first local worker
    world_size: int
    local_size: int
    is_real: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def local_ranks(self) -> list[int]:
        return list(range(self.rank, self.rank + self.local_size))

    @abstractmethod
    def all_reduce_sum(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """Implemented by SimulatedGroup and DistGroup."""

    def all_reduce_mean(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        total = self.all_reduce_sum(tensors)
        return total.div_(self.world_size)

    @abstractmethod
    def all_reduce_min_int(self, values: list[int]) -> int:
        """Implemented by SimulatedGroup and DistGroup."""

    @abstractmethod
    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Implemented by SimulatedGroup and DistGroup."""

    @abstractmethod
    def barrier(self) -> None:
        """Implemented by SimulatedGroup and DistGroup."""

    def close(self) -> None:  # noqa: B027 (optional hook: only DistGroup has something to close)
        return None


def _local_sum(tensors: list[torch.Tensor]) -> torch.Tensor:
    if not tensors:
        raise ValueError("all_reduce needs at least one local tensor")
    acc = tensors[0].detach().clone()
    for t in tensors[1:]:
        acc.add_(t)
    return acc


@dataclass
class SimulatedGroup(Group):
    """N virtual workers in one process; collectives are Python sums over them."""

    world_size: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"--simulate needs N >= 1, got {self.world_size}")
        self.rank = 0
        self.local_size = self.world_size

    def all_reduce_sum(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        if len(tensors) != self.local_size:
            raise ValueError(f"simulated group of {self.local_size} got {len(tensors)} tensors")
        return _local_sum(tensors)

    def all_reduce_min_int(self, values: list[int]) -> int:
        return min(values)

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        return tensor

    def barrier(self) -> None:
        pass


class DistGroup(Group):
    """One worker per process over torch.distributed (gloo on CPU, NCCL on GPU)."""

    is_real = True

    def __init__(self, device: torch.device) -> None:
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.local_size = 1
        self.device = device

    def all_reduce_sum(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        if len(tensors) != 1:
            raise ValueError(f"a process owns one worker, got {len(tensors)} tensors")
        acc = tensors[0].detach().clone()
        dist.all_reduce(acc, op=dist.ReduceOp.SUM)
        return acc

    def all_reduce_min_int(self, values: list[int]) -> int:
        t = torch.tensor([min(values)], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        dist.broadcast(tensor, src=src)
        return tensor

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def choose_device() -> torch.device:
    """cuda:<LOCAL_RANK> when a GPU is visible, else CPU."""
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _attempt_store(timeout: datetime.timedelta) -> dist.Store:
    """The rendezvous store, under a prefix unique to this torchrun restart attempt.

    When this process hosts it (no agent store) and the host is loopback, it listens on
    127.0.0.1 only (`launch.loopback_tcp_store`).

    torchrun (c10d rendezvous) keeps one agent store across restarts; without a fresh
    prefix, restarted gloo workers read the dead workers' addresses from the previous
    attempt and fail with "connectFullMesh ... Connection refused".
    """
    from steps_py.parallel.launch import loopback_tcp_store

    use_agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    rank = int(os.environ["RANK"])
    store = loopback_tcp_store(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        int(os.environ["WORLD_SIZE"]),
        is_master=not use_agent and rank == 0,
        timeout=timeout,
        multi_tenant=not use_agent,
    )
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"ema_asr_attempt_{attempt}", store)


def end_with_agent() -> None:
    """Linux: this worker gets SIGTERM when its torchrun agent dies (even by SIGKILL).

    An orphaned worker would go on training with the other nodes, so the death of one agent
    went unnoticed until its peers waited 300 s in torchrun's exit barrier. Now its workers
    end with it, the other workers' next collective fails at once ("Connection closed by
    peer") and their agents stop the run.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() == 1:  # the agent died before the call above
        os.kill(os.getpid(), signal.SIGTERM)


def init_group(simulate: int | None, device: torch.device, timeout_s: float = 1800.0) -> Group:
    """Real group under torchrun (env:// rendezvous), else a simulated group of `simulate`.

    Without torchrun and without --simulate, a group of one worker is returned.
    MASTER_ADDR defaults to 127.0.0.1 (loopback) when the user set none.
    """
    if launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1:
        if simulate not in (None, 1):
            raise SystemExit("--simulate cannot be combined with torchrun (one worker per process)")
        end_with_agent()
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        backend = "nccl" if device.type == "cuda" else "gloo"
        if not dist.is_initialized():
            timeout = datetime.timedelta(seconds=timeout_s)
            dist.init_process_group(
                backend=backend,
                store=_attempt_store(timeout),
                rank=int(os.environ["RANK"]),
                world_size=int(os.environ["WORLD_SIZE"]),
                timeout=timeout,
            )
        g = DistGroup(device)
        log.info("rank %d/%d: torch.distributed backend %s", g.rank, g.world_size, backend)
        return g
    return SimulatedGroup(world_size=simulate or 1)
