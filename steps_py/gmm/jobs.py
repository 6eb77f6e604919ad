"""Parallel alignment and accumulation: one persistent worker per job (train_mono's --nj).

Each job owns a fixed share of the utterances: their features, their training graphs
(compiled once, as Kaldi's fsts.JOB.gz) and their current alignments. Per pass the main
process sends the model's numpy parameters; the job optionally realigns, accumulates
statistics and sends back plain arrays, which the main process sums. With nj == 1 the
job runs in-process. Worker processes are forked (they inherit the loaded features).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from steps_py.gmm.accumulate import GmmStats, accumulate, boost_silence
from steps_py.gmm.model_io import MonoModel
from steps_py.gmm.topo import GraphCompiler, Lang
from steps_py.runner import JobError, job_error, job_log, job_log_lines, log_to_job_log

log = logging.getLogger(__name__)


@dataclass
class AlignOptions:
    """gmm-align-compiled options, Kaldi's scales."""

    beam: float = 10.0
    retry_beam: float = 40.0
    careful: bool = False
    acoustic_scale: float = 0.1
    transition_scale: float = 1.0
    self_loop_scale: float = 0.1
    boost_silence: float = 1.0


@dataclass
class Utterance:
    utt: str
    feats: np.ndarray
    word_ids: list[int]


@dataclass
class PassResult:
    stats: GmmStats
    tid_counts: np.ndarray
    loglike: float = 0.0
    frames: int = 0
    failed: list[str] = field(default_factory=list)
    retried: int = 0


def align_compiled(
    cfg: khg.AlignConfig, u: Utterance, fst: object, decodable: object, acoustic_scale: float
) -> tuple[np.ndarray | None, int, float]:
    """gmm-align-compiled on one utterance (Kaldi's AlignUtteranceWrapper, retry beam
    included): (the path's input labels, or None when it failed or does not cover every
    frame; 1 if it was retried; its log-likelihood)."""
    done, _, retried, like, _, ali, _ = khg.align_utterance_wrapper(
        config=cfg,
        utt=u.utt,
        acoustic_scale=acoustic_scale,
        fst=fst,
        decodable=decodable,
        num_done=0,
        num_error=0,
        num_retried=0,
        tot_like=0.0,
        frame_count=0,
    )
    if done != 1 or len(ali) != len(u.feats):
        return None, retried, like
    return np.asarray(ali, dtype=np.int64), retried, like


class Job:
    """One share of the data with its graphs and alignments."""

    def __init__(self, lang_dir: str, utts: list[Utterance]) -> None:
        self.lang = Lang.load(lang_dir)
        self.compiler = GraphCompiler(self.lang)
        self.utts = utts
        self.graphs = {u.utt: self.compiler.compile(u.word_ids) for u in utts}
        self.ali: dict[str, np.ndarray] = {}
        self.failed_graph = [u for u in self.graphs if self.graphs[u].num_states == 0]

    def equal_align(self, seed: int = 3) -> list[str]:
        """align-equal-compiled: a random path of the right length through each graph."""
        failed = []
        for u in self.utts:
            ok, path = kaldifst.equal_align(
                ifst=self.graphs[u.utt], length=len(u.feats), rand_seed=seed, num_retries=10
            )
            if ok:
                ok, tids, _, _ = kaldifst.get_linear_symbol_sequence(path)
            if not ok or len(tids) != len(u.feats):
                failed.append(u.utt)
                continue
            self.ali[u.utt] = np.asarray(tids, dtype=np.int32)
        return failed

    def realign(
        self, tm: khg.TransitionModel, am: khg.AmDiagGmm, opts: AlignOptions
    ) -> tuple[list[str], int, float]:
        """gmm-align-compiled over this job; returns (failed utts, number retried, total loglike)."""
        am_b = boost_silence(am, tm, self.lang.silence_phones, opts.boost_silence)
        cfg = khg.AlignConfig(beam=opts.beam, retry_beam=opts.retry_beam, careful=opts.careful)
        failed: list[str] = []
        retried, tot_like = 0, 0.0
        for u in self.utts:
            fst = self.graphs[u.utt].copy()
            khg.add_transition_probs(
                trans_model=tm,
                transition_scale=opts.transition_scale,
                self_loop_scale=opts.self_loop_scale,
                fst=fst,
            )
            dec = khg.DecodableAmDiagGmmScaled(
                am=am_b, tm=tm, feats=u.feats, scale=opts.acoustic_scale
            )
            ali, ret, like = align_compiled(cfg, u, fst, dec, opts.acoustic_scale)
            retried += ret
            if ali is None:
                failed.append(u.utt)
                self.ali.pop(u.utt, None)
                continue
            tot_like += like
            self.ali[u.utt] = ali.astype(np.int32)
        return failed, retried, tot_like

    def align_model(
        self, model: MonoModel, opts: AlignOptions
    ) -> tuple[dict[str, np.ndarray], dict[str, str], int]:
        """Align this job with `model`; failures are told apart: too short for the transcript, or beam."""
        _, _, tm, am = model.build()
        failed, retried, _ = self.realign(tm, am, opts)
        reasons: dict[str, str] = {}
        lengths = {u.utt: len(u.feats) for u in self.utts}
        for utt in failed:
            ok, _ = kaldifst.equal_align(
                ifst=self.graphs[utt], length=lengths[utt], rand_seed=3, num_retries=10
            )
            reasons[utt] = (
                "alignment-failed: no path within the retry beam"
                if ok
                else "too-short: fewer frames than the transcript needs"
            )
        return {u: a for u, a in self.ali.items()}, reasons, retried

    def run_pass(self, model: MonoModel, realign: bool, opts: AlignOptions) -> PassResult:
        _, _, tm, am = model.build()
        res = PassResult(GmmStats.zeros(model.gmm), np.zeros(tm.num_transition_ids + 1))
        if realign:
            res.failed, res.retried, _ = self.realign(tm, am, opts)
        tid2pdf = _tid2pdf(tm)
        aligned = [u for u in self.utts if u.utt in self.ali]
        if not aligned:
            return res
        feats = np.concatenate([u.feats for u in aligned])
        tids = np.concatenate([self.ali[u.utt] for u in aligned])
        res.tid_counts = np.bincount(tids, minlength=tm.num_transition_ids + 1).astype(np.float64)
        res.loglike = accumulate(feats, tid2pdf[tids], model.gmm, res.stats)
        res.frames = len(tids)
        return res


def _tid2pdf(tm: khg.TransitionModel) -> np.ndarray:
    """Transition id -> pdf id lookup (entry 0 unused)."""
    arr = np.asarray(tm.transition_id_to_pdf_array(), dtype=np.int32)
    if len(arr) == tm.num_transition_ids + 1:
        return arr
    return np.concatenate([[0], arr]).astype(np.int32)


JobFactory = Callable[[str, list[Utterance]], Any]
JOB_LOGGER = f"{__name__}.job"  # a job's own lines: to its log, never to the step's


def _describe(method: str, value: Any, seconds: float) -> str:
    """One line of a job's log for one call: what it did, in Kaldi's gmm-acc-stats-ali terms."""
    line = f"{method}: {seconds:.2f} s"
    if isinstance(value, PassResult):
        per_frame = value.loglike / value.frames if value.frames else float("nan")
        line += (
            f", {value.frames} frames, avg loglike/frame {per_frame:.4f}, "
            f"{len(value.failed)} failed to align, {value.retried} retried"
        )
    elif method == "equal_align":
        line += f", {len(value)} too short for their transcript"
    elif method in ("realign", "align_model"):
        line += f", {len(value[0] if method == 'realign' else value[1])} failed to align"
    return line


def _serve(
    conn: Connection,
    factory: JobFactory,
    lang_dir: str,
    utts: list[Utterance],
    log_path: Path | None,
    label: str,
) -> None:
    """A forked job: its messages (and the C libraries' output) to its own log, when given."""
    if log_path is not None:
        log_to_job_log(log_path, label)
    jlog = logging.getLogger(JOB_LOGGER)
    try:
        job = factory(lang_dir, utts)
        if log_path is not None:
            jlog.info("%d utterances, training graphs compiled (pid %d)", len(utts), os.getpid())
        conn.send(("ready", None))
        while True:
            msg, args = conn.recv()
            if msg == "stop":
                break
            t0 = time.perf_counter()
            value = getattr(job, msg)(*args)
            if log_path is not None:
                jlog.info("%s", _describe(msg, value, time.perf_counter() - t0))
            conn.send(("ok", value))
    except Exception as e:  # send the error to the main process, which raises it
        if log_path is not None:
            jlog.exception("job failed")
        conn.send(("error", f"{type(e).__name__}: {e}"))


class JobPool:
    """`nj` jobs over a fixed split of `utts`; `call(method, *args)` runs it on every job.

    `factory(lang_dir, share)` makes a job (default: the monophone `Job`); the triphone
    trainer passes its own (steps_py.gmm.tri_jobs). With `log_dir`, job j writes what it did
    (each pass: frames, average log-likelihood, alignment failures) and its errors to
    ``<log_dir>/<name>.<j>.log`` (Kaldi's ``log/acc.JOB.log``, ``log/align.JOB.log``), and
    a failed job's error names that log.
    """

    def __init__(
        self,
        lang_dir: str,
        utts: list[Utterance],
        nj: int,
        factory: JobFactory | None = None,
        log_dir: Path | None = None,
        name: str = "acc",
    ):
        factory = factory or Job
        self.nj = max(1, min(nj, len(utts)))
        self.name, self.log_dir = name, log_dir
        shares = [utts[i :: self.nj] for i in range(self.nj)]
        self.local: Job | None = None
        self.local_log: contextlib.ExitStack | None = None
        self.procs: list[tuple[Any, Connection]] = []
        if self.nj == 1:
            self.local = factory(lang_dir, shares[0])
            path = self.log_path(1)
            if path is not None:
                self.local_log = contextlib.ExitStack()
                self.local_log.enter_context(
                    job_log_lines(path, logger=JOB_LOGGER, label=f"{name}.1")
                )
                logging.getLogger(JOB_LOGGER).info(
                    "%d utterances, training graphs compiled (in the step's process)", len(utts)
                )
            return
        ctx = mp.get_context("fork")
        for j, share in enumerate(shares, 1):
            parent, child = ctx.Pipe()
            target = (child, factory, lang_dir, share, self.log_path(j), f"{name}.{j}")
            p = ctx.Process(target=_serve, args=target, daemon=True)
            p.start()
            self.procs.append((p, parent))
        for j, (_, conn) in enumerate(self.procs, 1):
            self._check(j, conn.recv())

    def log_path(self, job: int) -> Path | None:
        return None if self.log_dir is None else job_log(self.log_dir, self.name, job)

    def _check(self, job: int, reply: tuple[str, Any]) -> Any:
        status, value = reply
        if status == "error":
            path = self.log_path(job)
            if path is None:
                raise JobError(f"GMM job {job} failed: {value}")
            raise job_error(self.name, job, value, path)
        return value

    def call(self, method: str, *args: Any) -> list[Any]:
        if self.local is not None:
            t0 = time.perf_counter()
            jlog = logging.getLogger(JOB_LOGGER) if self.local_log is not None else None
            try:
                value = getattr(self.local, method)(*args)
            except Exception:
                if jlog is not None:
                    jlog.exception("job failed")
                raise
            if jlog is not None:
                jlog.info("%s", _describe(method, value, time.perf_counter() - t0))
            return [value]
        for _, conn in self.procs:
            conn.send((method, args))
        return [self._check(j, conn.recv()) for j, (_, conn) in enumerate(self.procs, 1)]

    def close(self) -> None:
        for p, conn in self.procs:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("stop", None))
            p.join(timeout=10)
        self.procs = []
        if self.local_log is not None:
            self.local_log.close()
            self.local_log = None

    def __enter__(self) -> JobPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
