"""What every step's ``main()`` does, in one place: logging, skip-done, errors -> exit codes.

A step is an argparse parser plus a body ``run(args) -> int | None``::

    def build_parser() -> argparse.ArgumentParser: ...
    def run(args: argparse.Namespace) -> int | None: ...   # raises StepError on bad input

    def main(argv: list[str] | None = None) -> int:
        return step_main("decode.nnet", build_parser(), run, argv,
                         log_file=lambda a: a.out / "log" / "decode.log",
                         done_dir=lambda a: a.out, done_state="already decoded")

``step_main`` parses the flags, sets up logging (stderr, plus the step's log file), skips the
step when ``done_dir(args)`` holds ``.done`` and ``--force`` was not given, runs the body and
maps failures to exit codes. With ``inputs=lambda a: [a.data, a.lang, ...]`` it also records
the stamps of those inputs in ``.done`` after a successful body and redoes the step when
one of them changed since (``steps_py/fileio.py``: a ``--force`` redo of an earlier stage
then propagates instead of leaving stale outputs downstream).

* ``StepError`` (and its subclasses, one per area: ``DecodeError``, ``EgsError``, ...) and the
  exception types listed in ``user_errors`` (input errors of shared readers, e.g.
  ``LangError``): the message is logged as one ERROR line (it names the item and the fix),
  exit code 1;

* ``OSError`` with ``ENOSPC``/``EDQUOT`` ("no space left on device writing <file>"),
  ``EROFS``/``EACCES`` ("cannot write <file>: read-only / permission denied"): one line,
  exit code 1, instead of a library traceback;
* ``KeyboardInterrupt``: exit code 130.

Library code raises ``StepError`` subclasses, never ``SystemExit``: only ``main()`` decides
how a process ends. Anything else is a bug and keeps its traceback. Nor does it take the
``argparse.Namespace``: ``run(args)`` builds the step's typed config once
(``dataclass_from_args``) and hands that on (tests/test_cli_layer.py).

``progress(iterable, ...)`` is tqdm on a terminal and silent otherwise, so log files never
fill with carriage-return frames (pass ``log_every`` to get a plain INFO line every so many
items instead).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from steps_py.fileio import (
    OutputError,
    final_name,
    input_stamps,
    is_done,
    read_done,
    set_current_step,
    skip_done,
    write_done,
)
from steps_py.log import setup_logging

T = TypeVar("T")
C = TypeVar("C")


def dataclass_from_args(cls: type[C], args: argparse.Namespace, **given: Any) -> C:
    """The config dataclass `cls` of parsed options: the fields in `given` as given, every
    other field the option of its name (``--lm-text`` -> ``lm_text``)."""
    rest = [f.name for f in dataclasses.fields(cls) if f.name not in given]
    return cls(**{name: getattr(args, name) for name in rest}, **given)


# ---------------------------------------------------------------------- shared options
def int_at_least(lo: int) -> Callable[[str], int]:
    """An argparse type: an integer >= lo (a usage error naming the flag otherwise)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {v}")
        return v

    return parse


CMD_HELP = "where the jobs run: local, or 'slurm <srun options>' (Kaldi's run.pl / slurm.pl; steps_py.runner)"


def add_jobs_options(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    nj_help: str = "parallel jobs",
    nj_default: int = 2,
    cmd_help: str | None = None,
) -> None:
    """``--nj`` (an integer >= 1) and, with `cmd_help`, ``--cmd`` (where the jobs run), as
    every step that splits its work into jobs declares them."""
    p.add_argument(
        "--nj", type=int_at_least(1), default=nj_default, help=f"{nj_help} (default %(default)s)"
    )
    if cmd_help is not None:
        p.add_argument("--cmd", default="local", help=f"{cmd_help} (default %(default)s)")


def add_output_options(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    out_help: str,
    default: Path | None = None,
    force_help: str = "redo even if --out is done",
) -> None:
    """``--out`` (the one dir the step writes, marked done when it is complete) and
    ``--force`` (redo it even when done), as every step with one output dir declares them;
    without a `default`, ``--out`` is required."""
    p.add_argument(
        "--out",
        type=Path,
        required=default is None,
        default=default,
        help=out_help if default is None else f"{out_help} (default %(default)s)",
    )
    p.add_argument("--force", action="store_true", help=force_help)


def add_alignment_options(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--beam``, ``--retry-beam``, ``--boost-silence``: Kaldi's alignment options, as the
    steps that align with a GMM declare them (``gmm.align``, ``gmm.train_mono``)."""
    p.add_argument("--beam", type=float, default=10.0, help="alignment beam (default %(default)s)")
    p.add_argument(
        "--retry-beam",
        type=float,
        default=40.0,
        help="beam of the second try for utterances that failed (default %(default)s)",
    )
    p.add_argument(
        "--boost-silence",
        type=float,
        default=1.0,
        help="factor on silence Gaussian weights during alignment (default %(default)s)",
    )


class StepError(Exception):
    """A user-facing failure of a step: the message names the item and the fix."""


def describe_os_error(e: OSError) -> str | None:
    """One line for the OS errors a user can fix (disk full, read-only, permissions)."""
    where = final_name(e.filename) if e.filename else "an output file"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on device writing {where}; free some space (df -h) and rerun"
    if e.errno == errno.EROFS:
        return (
            f"cannot write {where}: the file system is read-only; choose a writable --workdir/--out"
        )
    if e.errno == errno.EACCES:
        return f"cannot write {where}: permission denied; choose a writable --workdir/--out"
    return None


def step_main(
    name: str,
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int | None],
    argv: list[str] | None = None,
    *,
    log_file: Callable[[argparse.Namespace], Path | None] | None = None,
    done_dir: Callable[[argparse.Namespace], Path] | None = None,
    done_state: str = "done",
    inputs: Callable[[argparse.Namespace], Sequence[Path]] | None = None,
    user_errors: tuple[type[Exception], ...] = (),
) -> int:
    """Parse, set up logging, skip a done step, run ``body``; return the process exit code."""
    args = parser.parse_args(argv)
    log = logging.getLogger(name)
    set_current_step(name)
    try:
        setup_logging(name, log_file(args) if log_file is not None else None)
        out = done_dir(args) if done_dir is not None else None
        ins = list(inputs(args)) if inputs is not None else []
        if out is not None and skip_done(out, bool(getattr(args, "force", False)), done_state, ins):
            return 0
        stamps = input_stamps(out, ins) if out is not None and ins else {}
        rc = body(args)
        if stamps and not rc and out is not None and is_done(out):
            done = read_done(out)
            write_done(out, {**done, "inputs": {**done.get("inputs", {}), **stamps}})
    except (StepError, OutputError, *user_errors) as e:
        log.error("%s", e)
        return 1
    except OSError as e:
        msg = describe_os_error(e)
        if msg is None:
            raise
        log.error("%s", msg)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    finally:
        set_current_step(None)  # a later step in this process (tests) names its own
    return int(rc or 0)


def on_terminal() -> bool:
    return sys.stderr.isatty()


def progress(
    iterable: Iterable[T] | None = None,
    *,
    desc: str = "",
    total: int | None = None,
    unit: str = "it",
    log_every: int = 0,
    logger: logging.Logger | None = None,
    **tqdm_kwargs: Any,
) -> Any:
    """tqdm on a terminal; otherwise the plain iterable (or a counter), optionally logging.

    The returned object supports iteration (when ``iterable`` is given), ``update(n)`` and
    ``close()``, like tqdm.
    """
    if on_terminal():
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True, **tqdm_kwargs)
    return _Quiet(iterable, desc, total, unit, log_every, logger)


class _Quiet:
    """The non-terminal stand-in for tqdm: counts, and logs every ``log_every`` items."""

    def __init__(
        self,
        iterable: Iterable[Any] | None,
        desc: str,
        total: int | None,
        unit: str,
        log_every: int,
        logger: logging.Logger | None,
    ) -> None:
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.total = total if total is not None else _len_or_none(iterable)
        self.n = 0
        self.log_every = log_every
        self.log = logger or logging.getLogger("progress")
        self._next = log_every

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None
        for x in self.iterable:
            yield x
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.log_every and self.n >= self._next:
            of = f"/{self.total}" if self.total else ""
            self.log.info("%s: %d%s %s", self.desc or "progress", self.n, of, self.unit)
            while self._next <= self.n:
                self._next += self.log_every

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        return None

    def close(self) -> None:
        return None

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _len_or_none(x: Any) -> int | None:
    try:
        return len(x)
    except TypeError:
        return None
