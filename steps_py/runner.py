"""Kaldi's ``--cmd``: where a step's ``--nj`` jobs run, one log per job.

    --cmd local                                   # run.pl: every job a local (forked) process (default)
    --cmd "slurm -p cpu --mem 4G --time 1:00:00"  # slurm.pl: every job an `srun` with your options

A Kaldi ``cmd.sh`` value works as it is: ``run.pl`` is ``local``; ``srun OPTIONS`` is
``slurm OPTIONS`` (the options are `srun`'s own, e.g. ``-p``, ``--mem``, ``--gres=gpu:1``,
``--account``); ``slurm.pl OPTIONS`` too, its own ``--num-threads N`` and ``--gpu N`` made
``--cpus-per-task=N`` and ``--gres=gpu:N`` (`slurm_pl_options`). Job ``j`` of step ``name`` writes ``<log_dir>/<name>.<j>.log``
(Kaldi's ``log/<step>.JOB.log``): the command, its output, its exit status. A failed job
raises `JobError` naming its log and quoting its last lines.

A job is ``python -m steps_py.job_worker IN OUT``: the step writes each job's function and
arguments to ``IN`` (a pickle in the step's own temporary output dir, read back only by the
jobs it starts, as ``ProcessPoolExecutor`` pickles them through pipes) and reads its result
from ``OUT``. On Slurm the compute nodes must see the recipe, its venv and the output dirs
at the same paths (a shared file system), as with Kaldi.

Why not Kaldi's ``queue.pl``/``slurm.pl`` themselves: they are Perl scripts of a Kaldi
checkout; this is the part of them the steps need (start N jobs, wait, logs, exit status).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import pickle
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from steps_py.cli import StepError
from steps_py.log import setup_logging

log = logging.getLogger("runner")

LOCAL_NAMES = ("local", "run.pl")
SLURM_NAMES = ("slurm", "slurm.pl", "srun")
LOG_TAIL_LINES = 5


class JobError(StepError):
    """A job failed, or --cmd is not understood; the message names the log or the fix."""


def job_log(log_dir: Path, name: str, job: int) -> Path:
    return Path(log_dir) / f"{name}.{job}.log"


class Runner(Protocol):
    def command(self, name: str, job: int, argv: Sequence[str]) -> list[str]:
        """The command line that runs job `job` of `name`."""
        ...


@dataclass(frozen=True)
class LocalRunner:
    """run.pl: every job a process on this machine, all at once."""

    def command(self, name: str, job: int, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def __str__(self) -> str:
        return "local"


@dataclass(frozen=True)
class SlurmRunner:
    """slurm.pl: every job an ``srun`` with the user's options (blocking, so its exit status
    is the job's)."""

    options: tuple[str, ...] = field(default_factory=tuple)

    def command(self, name: str, job: int, argv: Sequence[str]) -> list[str]:
        return ["srun", *self.options, f"--job-name={name}.{job}", "--ntasks=1", *argv]

    def __str__(self) -> str:
        return shlex.join(["slurm", *self.options])


def slurm_pl_options(words: list[str], spec: str) -> list[str]:
    """srun options for Kaldi slurm.pl's own: ``--num-threads N`` (``--cpus-per-task``),
    ``--gpu N`` (``--gres=gpu:N``), ``--mem``/``--time`` as they are, ``--max-jobs-run``
    dropped (every job is started at once); anything else is passed to srun unchanged."""
    out: list[str] = []
    i = 0
    while i < len(words):
        w, val = words[i], words[i + 1] if i + 1 < len(words) else None
        if w in ("--num-threads", "--gpu", "--max-jobs-run", "--config"):
            if val is None:
                raise JobError(f"--cmd '{spec}': {w} needs a value")
            if w == "--config":
                raise JobError(
                    f"--cmd '{spec}': slurm.pl --config files are not read; give srun options"
                )
            if w == "--num-threads":
                out.append(f"--cpus-per-task={val}")
            elif w == "--gpu" and val != "0":
                out.append(f"--gres=gpu:{val}")
            i += 2
            continue
        out.append(w)
        i += 1
    return out


def is_local(spec: str) -> bool:
    """Whether ``--cmd`` asks for local jobs (``local`` / ``run.pl``); a bad value is a JobError."""
    return isinstance(parse_cmd(spec), LocalRunner)


def parse_cmd(spec: str) -> LocalRunner | SlurmRunner:
    """The runner of a ``--cmd`` value (see the module docstring)."""
    words = shlex.split(spec)
    if not words or words[0] in LOCAL_NAMES:
        if words[1:]:
            raise JobError(f"--cmd '{spec}': the local runner takes no options")
        return LocalRunner()
    if words[0] == "slurm.pl":
        return SlurmRunner(tuple(slurm_pl_options(words[1:], spec)))
    if words[0] in SLURM_NAMES:
        return SlurmRunner(tuple(words[1:]))
    raise JobError(
        f"--cmd '{spec}': unknown runner '{words[0]}'; use 'local' (run.pl) or "
        "'slurm <srun options>' (slurm.pl), e.g. --cmd \"slurm -p cpu --mem 4G\""
    )


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    lines = [ln for ln in lines if not ln.startswith("# ")]
    return "\n".join(f"  {ln}" for ln in lines[-LOG_TAIL_LINES:])


def run_commands(runner: Runner, name: str, argvs: Sequence[Sequence[str]], log_dir: Path) -> None:
    """Run job j = 1..N (`argvs[j-1]`) through `runner`, all at once; JobError if any fails."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for j, argv in enumerate(argvs, 1):
        cmd = runner.command(name, j, argv)
        f = open(job_log(log_dir, name, j), "w", encoding="utf-8")  # noqa: SIM115 (closed below)
        f.write(f"# {shlex.join(cmd)}\n# started at {time.strftime('%c')}\n")
        f.flush()
        try:
            p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            f.close()
            raise JobError(
                f"{name}: cannot start '{cmd[0]}' (--cmd {runner}): not on PATH"
            ) from None
        procs.append((j, p, f))
    failed = []
    for j, p, f in procs:
        rc = p.wait()
        f.write(f"# ended (exit {rc}) at {time.strftime('%c')}\n")
        f.close()
        if rc != 0:
            failed.append((j, rc))
    if failed:
        raise _failed(name, runner, failed, len(argvs), log_dir)


def run_python_jobs(
    runner: Runner,
    name: str,
    func: Callable[..., Any],
    job_args: Sequence[tuple[Any, ...]],
    work_dir: Path,
    log_dir: Path,
) -> list[Any]:
    """``func(*job_args[j])`` for every job through `runner`; the results in job order.

    `func` must be a module-level function (a job started by command imports it by name).
    Local jobs are forked processes (run.pl without the start-up cost of a new interpreter,
    which is most of a small job), each writing its own log; one local job runs in this
    process, its log lines also written to its job log."""
    work_dir = Path(work_dir)
    if isinstance(runner, LocalRunner):
        if len(job_args) == 1:
            return [_in_process(name, func, job_args[0], log_dir)]
        return _forked_jobs(name, func, job_args, work_dir, Path(log_dir))
    work_dir.mkdir(parents=True, exist_ok=True)
    argvs = []
    for j, args in enumerate(job_args, 1):
        spec = work_dir / f"{name}.{j}.in.pkl"
        with open(spec, "wb") as f:
            pickle.dump((module_of(func), func.__qualname__, args), f)
        out = work_dir / f"{name}.{j}.out.pkl"
        argvs.append([sys.executable, "-m", "steps_py.job_worker", str(spec), str(out)])
    run_commands(runner, name, argvs, log_dir)
    for j in range(1, len(job_args) + 1):
        os.remove(work_dir / f"{name}.{j}.in.pkl")
    return _collect(name, len(job_args), work_dir)


def module_of(func: Callable[..., Any]) -> str:
    """The importable module of `func`: a step run as ``python -m steps_py.x`` names its own
    functions ``__main__.f``, which a job process cannot import; its spec names the module."""
    if func.__module__ != "__main__":
        return func.__module__
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is None or not spec.name:
        raise JobError(f"{func.__qualname__}: run the step as python -m <module> to send its jobs")
    return spec.name


def _collect(name: str, n: int, work_dir: Path) -> list[Any]:
    """The jobs' results (``<work_dir>/<name>.<j>.out.pkl``, removed after reading)."""
    results = []
    for j in range(1, n + 1):
        out = work_dir / f"{name}.{j}.out.pkl"
        with open(out, "rb") as f:
            results.append(pickle.load(f))
        os.remove(out)
    with contextlib.suppress(OSError):
        work_dir.rmdir()
    return results


def _failed(
    name: str, runner: Runner, failed: list[tuple[int, int]], n: int, log_dir: Path
) -> JobError:
    j, rc = failed[0]
    path = job_log(log_dir, name, j)
    return JobError(
        f"{name}: {len(failed)} of {n} jobs failed (--cmd {runner}); job {j} exited "
        f"with {rc}, see {path}:\n{_tail(path)}"
    )


def _forked_jobs(
    name: str,
    func: Callable[..., Any],
    job_args: Sequence[tuple[Any, ...]],
    work_dir: Path,
    log_dir: Path,
) -> list[Any]:
    work_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("fork")
    procs = []
    for j, args in enumerate(job_args, 1):
        target = (
            func,
            args,
            job_log(log_dir, name, j),
            work_dir / f"{name}.{j}.out.pkl",
            f"{name}.{j}",
        )
        p = ctx.Process(target=_forked_job, args=target, name=f"{name}.{j}")
        p.start()
        procs.append((j, p))
    failed = []
    for j, p in procs:
        p.join()
        if p.exitcode != 0:
            failed.append((j, p.exitcode))
    if failed:
        raise _failed(name, LocalRunner(), failed, len(job_args), log_dir)
    return _collect(name, len(job_args), work_dir)


def _forked_job(
    func: Callable[..., Any], args: tuple[Any, ...], log_path: Path, out: Path, job: str
) -> None:
    """The body of a forked local job: its output (Python's and the C libraries') to its log."""
    log_to_job_log(log_path, job)
    print(f"# {module_of(func)}.{func.__qualname__} (local job, pid {os.getpid()})")
    print(f"# started at {time.strftime('%c')}")
    try:
        result = func(*args)
    except StepError as e:
        logging.getLogger(job).error("%s", e)
        print(f"# ended (exit 1) at {time.strftime('%c')}")
        sys.exit(1)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(result, f)
    os.replace(tmp, out)
    print(f"# ended (exit 0) at {time.strftime('%c')}")


# ---------------------------------------------------------------------- a job's own log
# Every way a step's jobs run writes job j's messages to ``<log dir>/<step>.<j>.log``: the
# jobs above (forked, or through --cmd), the GMM trainers' persistent workers
# (``steps_py.gmm.jobs.JobPool``) and the decoders' worker pool (``steps_py.decode.pool``).
def log_to_job_log(log_path: Path, job: str) -> None:
    """In a job's own process: stdout, stderr (Python's and the C libraries') and the
    logging lines, tagged `job` (e.g. ``align.2``), to `log_path` from now on."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 (the job's life)
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)
    sys.stdout = sys.stderr = log_file
    setup_logging(job)


@contextlib.contextmanager
def job_log_lines(
    log_path: Path, mode: str = "w", logger: str | None = None, label: str | None = None
) -> Iterator[None]:
    """A job run in the step's own process (``--nj 1``): while the body runs, the logging
    lines also go to the job's log (``mode`` "a" to add to it). With `logger`, only that
    logger's lines, and to the job's log alone (not the step's); `label` tags them."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, mode=mode, encoding="utf-8")
    tag = f"[{label}]" if label else "[%(name)s]"
    fmt = f"%(asctime)s {tag} %(levelname)s %(message)s"
    handler.setFormatter(logging.Formatter(fmt, "%Y-%m-%d %H:%M:%S"))  # as setup_logging
    target = logging.getLogger(logger)  # the root logger when None
    propagate = target.propagate
    if logger is not None:
        target.propagate = False
    target.addHandler(handler)
    try:
        yield
    finally:
        target.removeHandler(handler)
        target.propagate = propagate
        handler.close()


def job_error(name: str, job: int, what: str, log_path: Path) -> JobError:
    """The error of a failed job: which job of which step, why, and its log's last lines."""
    tail = _tail(Path(log_path))
    return JobError(
        f"{name}: job {job} failed ({what}); see {log_path}" + (f":\n{tail}" if tail else "")
    )


def _in_process(name: str, func: Callable[..., Any], args: tuple[Any, ...], log_dir: Path) -> Any:
    with job_log_lines(job_log(log_dir, name, 1)):
        return func(*args)
