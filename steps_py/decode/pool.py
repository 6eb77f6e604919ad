"""One pool of decoding worker processes for GMM and NN models alike.

Each worker loads the graph once (``Search``), then serves tasks ``(model index, chunk of
utterances)`` for any number of acoustic models on one data dir: it loads each model the
first time a task names it and keeps it, opens each feature kind once, and for every
utterance computes the log-likelihoods, the word lattice, and from the lattice the best
path at every (LM weight, penalty) the model's grid asks for, the oracle error count and,
on request, an N-best list; the lattice search is searched once per utterance whatever the
grid. With ``SearchConfig(lattices=False)`` it runs Kaldi's FasterDecoder (with max-active)
once per LM weight instead and keeps only the best paths (penalty 0; no lattice, no oracle). Workers are spawned (one torch thread each) so that results do
not depend on the parent's threads; with ``nj == 1`` everything runs in this process.

A worker never raises for one bad utterance: the failure is recorded with its message and
the caller decides (``steps_py.decode.api`` stops when more than 5 % failed).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steps_py.decode.lattice import CompactLattice
from steps_py.decode.search import SearchConfig, Timing

Grid = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class PoolConfig:
    """Everything a worker needs (picklable)."""

    graph: Path
    num_pdfs: int
    data: Path
    search: SearchConfig
    models: tuple[Path, ...]
    grids: tuple[Grid, ...]  # per model: the (LM weight, penalty) pairs to score
    refs: dict[str, tuple[str, ...]]  # utterance -> reference scoring units (for the oracle)
    priors: str = "model"
    nbest: int = 0
    nbest_at: tuple[tuple[float, float] | None, ...] = ()  # per model, where to take the N-best
    threads: int = 1


@dataclass
class UttResult:
    utt: str
    frames: int = 0
    lattice: CompactLattice | None = None
    best: list[tuple[list[int], float, float]] = field(default_factory=list)  # one per grid point
    oracle_errors: int = 0
    nbest: list[tuple[list[int], float, float]] = field(default_factory=list)
    error: str | None = None
    partial: bool = False  # no final state of the graph reached; the lattice is kept


@dataclass
class ChunkResult:
    model: int
    utts: list[UttResult]
    timing: Timing


_W: dict[str, Any] = {}


JOB_NAME = "decode"  # job j logs to <log dir>/decode.<j>.log, as Kaldi's decode.sh
JOB_LOGGER = f"{__name__}.job"


def init_worker(cfg: PoolConfig, log_dir: Path | None = None, slots: Any = None) -> None:
    """Pool initializer. It never raises (a raising initializer makes multiprocessing start
    workers forever); the error is kept and raised by the first task. With `log_dir`, the
    worker takes its job number from `slots` (a queue of 1..nj) and from then on writes its
    messages, and the decoder libraries' output, to ``<log_dir>/decode.<j>.log``."""
    _W.clear()
    try:
        if log_dir is not None and slots is not None:
            from steps_py.runner import job_log, log_to_job_log

            j = int(slots.get(timeout=60))
            _W["job"] = (j, job_log(log_dir, JOB_NAME, j))
            log_to_job_log(_W["job"][1], f"{JOB_NAME}.{j}")
            logging.getLogger(JOB_LOGGER).info("decode job %d (pid %d)", j, os.getpid())
        import torch

        torch.set_num_threads(cfg.threads)
        from steps_py.decode.inputs import read_words
        from steps_py.decode.search import Search
        from steps_py.score.normalize import normalize_token

        words = read_words(cfg.graph / "words.txt")
        _W.update(
            cfg=cfg,
            search=Search(cfg.graph, cfg.search, cfg.num_pdfs),
            scorers={},
            readers={},
            units={i: tuple(normalize_token(w)) for i, w in words.items()},
        )
    except Exception as e:  # noqa: BLE001 - raised again by the first task
        _W["init_exc"] = e


def _scorer(i: int) -> Any:
    from steps_py.decode.scorers import load_scorer

    sc = _W["scorers"].get(i)
    if sc is None:
        sc = load_scorer(_W["cfg"].models[i], _W["cfg"].priors)
        _W["scorers"][i] = sc
    return sc


def _reader(kind: str, scorer: Any) -> Any:
    r = _W["readers"].get(kind)
    if r is None:
        r = scorer.open_features(_W["cfg"].data)
        _W["readers"][kind] = r
    return r


def decode_chunk(task: tuple[int, list[str]]) -> ChunkResult:
    """Decode `task`'s utterances with model `task[0]`; an utterance's failure is recorded,
    never raised; a failure of the job itself (set-up, model) is, naming the job's log."""
    jlog = logging.getLogger(JOB_LOGGER)
    try:
        if "init_exc" in _W:
            raise _W["init_exc"]
        result = _decode_chunk(task)
    except Exception as e:
        jlog.exception("job failed")
        if "job" not in _W:
            raise
        from steps_py.runner import job_error

        raise job_error(JOB_NAME, _W["job"][0], f"{type(e).__name__}: {e}", _W["job"][1]) from e
    failed = [r for r in result.utts if r.error]
    jlog.info(
        "model %d (%s): %d utterances, %d frames, %.2f s CPU%s",
        result.model,
        Path(*Path(_W["cfg"].models[result.model]).parts[-3:]),  # <run>/final/<tag>.safetensors
        len(result.utts),
        result.timing.frames,
        result.timing.total,
        f", {len(failed)} failed" if failed else "",
    )
    for r in failed:
        jlog.warning("%s: %s", r.utt, r.error)
    return result


def _decode_chunk(task: tuple[int, list[str]]) -> ChunkResult:
    model_i, utts = task
    cfg: PoolConfig = _W["cfg"]
    scorer = _scorer(model_i)
    reader = _reader(scorer.feature_kind, scorer)
    search = _W["search"]
    units = _W["units"]
    grid = cfg.grids[model_i]
    nbest_at = cfg.nbest_at[model_i] if cfg.nbest_at else None
    timing = Timing()
    out = []
    for utt in utts:
        r = UttResult(utt)
        try:
            t0 = time.process_time()
            ll = scorer.loglikes(reader, utt)
            t_fwd = time.process_time() - t0
            if not cfg.search.lattices:  # best path only: one search per LM weight
                t = Timing(frames=int(ll.shape[0]))
                for lmwt, _ in grid:
                    ids, tk = search.best_path(ll, 1.0 / lmwt)
                    t.search += tk.search
                    r.best.append((ids, 0.0, 0.0))
                t.forward, r.frames, r.oracle_errors = t_fwd, int(ll.shape[0]), -1
                timing.add(t)
                out.append(r)
                continue
            lat, t = search.lattice(ll)
            t.forward = t_fwd
            t0 = time.process_time()
            r.best = lat.best_paths(grid)
            r.oracle_errors = lat.oracle_errors(cfg.refs.get(utt, ()), lambda w: units.get(w, ()))
            if cfg.nbest > 0 and nbest_at is not None:
                r.nbest = lat.nbest(cfg.nbest, *nbest_at)
            t.score = time.process_time() - t0
            r.frames, r.lattice = int(ll.shape[0]), lat
            r.partial = bool(t.extra.get("partial"))
            timing.add(t)
        except Exception as e:  # noqa: BLE001 - one bad utterance must not stop the job
            r.error = f"{type(e).__name__}: {e}"
        out.append(r)
    return ChunkResult(model_i, out, timing)


def run_pool(
    cfg: PoolConfig,
    tasks: list[tuple[int, list[str]]],
    nj: int,
    on_result: Callable[[ChunkResult], None],
    log_dir: Path | None = None,
) -> None:
    """Run `tasks` over `nj` spawned workers (in this process when nj == 1); with `log_dir`,
    worker j's messages go to ``<log_dir>/decode.<j>.log``."""
    for r in _results(cfg, tasks, nj, log_dir):
        on_result(r)


def decode_job(cfg: PoolConfig, tasks: list[tuple[int, list[str]]]) -> list[ChunkResult]:
    """One job of a decode sent through ``--cmd`` (Kaldi's ``decode.JOB``): a worker's set-up,
    then its share of the tasks."""
    init_worker(cfg)
    try:
        return [decode_chunk(t) for t in tasks]
    finally:
        _W.clear()


def run_jobs(
    cfg: PoolConfig,
    tasks: list[tuple[int, list[str]]],
    nj: int,
    cmd: str,
    log_dir: Path,
    on_result: Callable[[ChunkResult], None],
) -> None:
    """Run `tasks` as `nj` jobs through the runner of ``--cmd`` (e.g. Slurm), job j logging to
    ``<log_dir>/decode.<j>.log``; a failed job is a ``JobError`` naming its log."""
    from steps_py.runner import parse_cmd, run_python_jobs

    shares = [tasks[j::nj] for j in range(nj)]
    jobs = [(cfg, share) for share in shares if share]
    work = log_dir / f".decode-jobs-{os.getpid()}"
    for results in run_python_jobs(parse_cmd(cmd), "decode", decode_job, jobs, work, log_dir):
        for r in results:
            on_result(r)


def _results(
    cfg: PoolConfig, tasks: list[tuple[int, list[str]]], nj: int, log_dir: Path | None
) -> Iterator[ChunkResult]:
    if nj <= 1:
        from steps_py.runner import job_log, job_log_lines

        lines = (
            job_log_lines(job_log(log_dir, JOB_NAME, 1), logger=JOB_LOGGER, label=f"{JOB_NAME}.1")
            if log_dir is not None
            else contextlib.nullcontext()
        )
        with lines:
            init_worker(cfg)
            if log_dir is not None:
                _W["job"] = (1, job_log(log_dir, JOB_NAME, 1))
            try:
                for t in tasks:
                    yield decode_chunk(t)
            finally:
                _W.clear()
        return
    ctx = mp.get_context("spawn")
    slots = ctx.Queue()
    for j in range(1, nj + 1):
        slots.put(j)
    initargs = (cfg, log_dir, slots if log_dir is not None else None)
    with ctx.Pool(nj, initializer=init_worker, initargs=initargs) as pool:
        yield from pool.imap_unordered(decode_chunk, tasks)


def make_tasks(
    num_models: int, utts: list[str], nj: int, chunk: int = 0
) -> list[tuple[int, list[str]]]:
    """Model-major chunks of utterances, small enough to keep `nj` workers busy."""
    size = chunk or max(1, min(16, len(utts) // (4 * max(nj, 1)) or 1))
    return [(m, utts[i : i + size]) for m in range(num_models) for i in range(0, len(utts), size)]
