"""Atomic outputs, stage markers and input stamps.

Every stage writes its outputs so that they appear only when it succeeded: files are
written to a temporary sibling and renamed; directories are built as
``.<dir>.tmp-<pid>@<host>`` and renamed into place. Temporary siblings left by a killed
process (its PID no longer alive on this host) are removed the next time the same output
is written.

A stage is "done" when its directory holds a ``.done`` marker: a JSON object with the
step's own summary, the time it was made (``done_at``, so every redo changes the marker)
and, for steps that record them, the stamps of its inputs (``inputs``: path relative to
the output dir -> stamp). The stamp of an input directory is a hash of its own ``.done``;
of anything else its size and modification time (for a directory without ``.done``: of
every file under it). ``skip_done(d, force, inputs=[...])`` then skips only when ``d`` is
done *and* none of its inputs changed since, so a ``--force`` redo of an earlier stage
makes the later stages redo their work instead of reusing stale outputs.

Which steps record inputs: ``gmm.train_mono``, ``gmm.align``, ``nnet.egs`` (through
``step_main(..., inputs=...)`` in ``steps_py/cli.py``), and run.sh's own skip check of the
training stage (``python -m steps_py.fileio is-current`` / ``record-inputs``). Other steps
still skip on ``.done`` alone until they pass ``inputs`` too.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("steps_py.fileio")


class OutputError(Exception):
    """An output that may not be written (someone else's directory, a busy lock): the message
    names the path and the fix. ``step_main`` reports it as one line, exit code 1."""


class ForeignOutputError(OutputError):
    """Writing a directory output would replace a non-empty directory the step did not make."""


class BusyError(OutputError):
    """Another live process holds the lock of a directory."""


# The step running in this process (set by ``step_main``): ``mark_done`` records it in
# ``.done`` so that a later run of the same step may replace the directory.
_current_step: str | None = None


def set_current_step(name: str | None) -> None:
    global _current_step
    _current_step = name


_HOST = socket.gethostname().replace("/", "_").replace("~", "_")
# .<name>.tmp-<pid>[@<host>][~<random>] (atomic_path, atomic_write_text) and .<name>.old-<pid>...
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)(?:@(?P<host>[^~]*))?(?:~.*)?$")


def _tag() -> str:
    return f"{os.getpid()}@{_HOST}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OverflowError:
        return False
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove temporary siblings of ``path`` made by processes that are no longer alive.

    Only names of the form ``.<path.name>.tmp-<pid>...`` / ``.<path.name>.old-<pid>...``
    are considered, and only those made on this host (or with no host in the name) whose
    PID is not running. Returns what was removed.
    """
    path = Path(path)
    parent = path.parent
    removed: list[Path] = []
    prefix = f".{path.name}."
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(prefix)]
    except FileNotFoundError:
        return removed
    for e in entries:
        m = _TMP_RE.match(e.name)
        if m is None or m["name"] != path.name:
            continue
        host = m["host"]
        if host not in (None, "", _HOST) or _pid_alive(int(m["pid"])):
            continue
        p = parent / e.name
        if e.is_dir(follow_symlinks=False):
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(p)
    if removed:
        log.info(
            "removed %d temporary leftover(s) of killed processes: %s",
            len(removed),
            ", ".join(str(p) for p in removed[:3]) + (" ..." if len(removed) > 3 else ""),
        )
    return removed


# below this much free space a failed write is taken for a full disk
FULL_DISK_BYTES = 1 << 20


def disk_error(path: str | os.PathLike[str]) -> OSError | None:
    """An ``OSError`` (ENOSPC or EROFS, naming ``path``) when the file system that holds
    ``path`` is full or read-only, else None.

    Writers in other libraries (kaldi-native-io's TableWriter, torch.save, safetensors) report
    a full disk in their own words (``Error in TableWriter::Write``, ``unexpected pos``) or as a
    long traceback; the write helpers ask this after a failed write and raise the plain
    ``OSError`` instead, which ``step_main`` reports as "no space left on device writing FILE".
    """
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
    free = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
    if free < FULL_DISK_BYTES:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return None


@contextlib.contextmanager
def disk_errors_named(path: str | os.PathLike[str]) -> Iterator[None]:
    """Around a write of ``path`` by another library: a failure on a full or read-only file
    system becomes ``disk_error(path)``; other failures pass unchanged."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            if e.filename is None:  # a failed write() names no file
                raise OSError(e.errno, e.strerror, str(path)) from e
            raise
        err = disk_error(path)
        if err is None:
            raise
        raise err from e
    except Exception as e:
        err = disk_error(path)
        if err is None:
            raise
        raise err from e


def final_name(path: str | os.PathLike[str]) -> str:
    """``path`` with temporary components (``.<name>.tmp-<pid>...``) shown as the output they become."""
    parts = str(path).split(os.sep)
    return os.sep.join(m["name"] if (m := _TMP_RE.match(x)) else x for x in parts)


def temp_sibling(path: Path) -> Path:
    """A temporary name next to ``path`` for this process (``.<name>.tmp-<pid>@<host>``),
    after removing the leftovers of killed processes; for writers that rename by themselves."""
    path = Path(path)
    remove_stale_temps(path)
    return path.with_name(f".{path.name}.tmp-{_tag()}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same directory and `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{_tag()}~", dir=path.parent)
    try:
        with disk_errors_named(path), os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be readable
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it to `path`.

    Works for files and directories (an existing target directory is replaced). Leftover
    temporaries of killed processes writing the same `path` are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.tmp-{_tag()}")
    if tmp.is_dir():
        shutil.rmtree(tmp)
    elif tmp.exists():
        tmp.unlink()
    try:
        with disk_errors_named(path):
            yield tmp
        if path.is_dir() and tmp.is_dir():
            check_replaceable(path, tmp)
            old = path.with_name(f".{path.name}.old-{_tag()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def check_replaceable(path: Path, new: Path) -> None:
    """Raise ``ForeignOutputError`` unless the directory ``path`` may be replaced by ``new``.

    It may when it is empty, when its ``.done`` says the running step made it, or when every
    entry in it is one the new output has too (an earlier run of the same step). Anything else,
    a Kaldi exp dir given as ``--out`` or a user's own directory, would lose files: refused.
    """
    try:
        entries = sorted(os.listdir(path))
    except FileNotFoundError:
        return
    if not entries:
        return
    maker = made_by(path)
    if maker is not None and maker == _current_step:
        return
    markers = (".done", ".undone")  # a step's own bookkeeping, never a user's data
    foreign = [
        e
        for e in entries
        if e not in markers and not (new / e).exists() and not (new / e).is_symlink()
    ]
    if not foreign:
        return
    shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
    by = f" (it was made by {maker})" if maker else ""
    raise ForeignOutputError(
        f"--out {final_name(path)} is a non-empty directory this step did not make{by}: writing "
        f"there would delete {shown}; give an --out of its own (a new or empty directory), or "
        "remove it yourself if its contents are not needed"
    )


def hold_lock(d: Path, lock_name: str, what: str) -> Any:
    """Take an exclusive ``flock`` on ``d/<lock_name>`` for the life of this process (the
    kernel drops it when the process ends, however it ends) and write who holds it there.

    Raises ``BusyError`` naming the holder's pid and command when another process has it.
    Returns the open lock file; keep a reference to it as long as the lock is wanted.
    """
    import fcntl

    d.mkdir(parents=True, exist_ok=True)
    f = open(d / lock_name, "a+", encoding="utf-8")  # noqa: SIM115 - held until the process ends
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "a process that did not say who it is"
        f.close()
        raise BusyError(
            f"{d} is in use: {what} by another process ({holder}); wait for it to finish or "
            "stop it (kill its pid), then rerun"
        ) from None
    f.seek(0)
    f.truncate()
    now = datetime.datetime.now().isoformat(sep=" ", timespec="seconds")
    f.write(f"pid {os.getpid()} on {_HOST} since {now}: {' '.join(sys.argv)}\n")
    f.flush()
    return f


# ---------------------------------------------------------------------------------
# stage markers and input stamps


def is_done(d: Path) -> bool:
    return (Path(d) / ".done").is_file()


def read_done(d: Path) -> dict[str, Any]:
    """The ``.done`` marker of ``d`` as a dict ({} when missing or not a JSON object)."""
    try:
        obj = json.loads((Path(d) / ".done").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return obj if isinstance(obj, dict) else {}


def input_stamp(p: Path) -> str:
    """What identifies the current version of an input (see the module docstring)."""
    p = Path(p)
    done = p / ".done"
    if done.is_file():
        return "done:" + hashlib.sha256(done.read_bytes()).hexdigest()[:16]
    if p.is_file():
        st = p.stat()
        return f"file:{st.st_size}:{st.st_mtime_ns}"
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            st = f.stat()
            h.update(f"{f.relative_to(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return "dir:" + h.hexdigest()[:16]
    return "missing"


def _key(d: Path, p: Path) -> str:
    """An input's key in ``d/.done``: its path relative to ``d`` (stable if the workdir moves)."""
    return os.path.relpath(os.path.abspath(p), os.path.abspath(d))


def input_stamps(d: Path, inputs: Iterable[Path]) -> dict[str, str]:
    return {_key(d, Path(p)): input_stamp(Path(p)) for p in inputs}


def changed_inputs(d: Path, inputs: Iterable[Path]) -> list[str]:
    """Inputs of the done dir ``d`` that differ from what its ``.done`` recorded (why, each)."""
    recorded = read_done(d).get("inputs")
    if not isinstance(recorded, dict):  # made by a step (or version) that records no inputs
        log.info(
            "%s records no input stamps (made before they were recorded); taking it as current", d
        )
        return []
    why: list[str] = []
    for p in inputs:
        key, now = _key(d, Path(p)), input_stamp(Path(p))
        if key not in recorded:
            why.append(f"{p} (not recorded when {d} was made)")
        elif recorded[key] != now:
            why.append(
                f"{p} (redone or changed since)" if now != "missing" else f"{p} (now missing)"
            )
    return why


def unmark_done(d: Path) -> None:
    """Remove ``d/.done``; which step made ``d`` stays known (``.undone``) so that step may
    still replace ``d`` (``check_replaceable``)."""
    step = read_done(d).get("step")
    with contextlib.suppress(FileNotFoundError):
        (Path(d) / ".done").unlink()
    if isinstance(step, str):
        atomic_write_json(Path(d) / ".undone", {"step": step})


def mark_unfinished(d: Path) -> None:
    """Say in ``d`` which step made it although it is not done (a listing of what went wrong):
    the step may replace ``d`` when it is rerun."""
    if _current_step:
        atomic_write_json(Path(d) / ".undone", {"step": _current_step})


def made_by(d: Path) -> str | None:
    """The step that made ``d`` as its ``.done`` (or, after a redo began, ``.undone``) says."""
    for name in (".done", ".undone"):
        with contextlib.suppress(OSError, ValueError):
            obj = json.loads((Path(d) / name).read_text(encoding="utf-8"))
            if isinstance(obj, dict) and isinstance(obj.get("step"), str):
                return str(obj["step"])
    return None


def skip_done(
    d: Path, force: bool, state: str = "done", inputs: Sequence[Path] | None = None
) -> bool:
    """True (and says so in the log) when ``d`` is done, its inputs unchanged, and no ``--force``.

    When the step is to be redone although ``d`` is done (``--force``, or an input changed),
    the old marker is removed first, so a redo that fails half-way is not taken for done.
    """
    if not is_done(d):
        return False
    if force:
        unmark_done(d)
        return False
    stale = changed_inputs(d, inputs) if inputs else []
    if stale:
        log.info("%s is %s but its inputs changed: %s; redoing it", d, state, "; ".join(stale))
        unmark_done(d)
        return False
    log.info("%s is %s (.done present); skipping (use --force to redo)", d, state)
    return True


def mark_done(
    d: Path, info: dict[str, Any] | None = None, inputs: Sequence[Path] | None = None
) -> None:
    """Write ``d/.done``: ``info``, the time, and the stamps of ``inputs`` (when given)."""
    obj = dict(info or {})
    if _current_step and "step" not in obj:
        obj["step"] = _current_step
    obj["done_at"] = datetime.datetime.now().isoformat(timespec="microseconds")
    if inputs:
        obj["inputs"] = input_stamps(d, inputs)
    write_done(d, obj)


def write_done(d: Path, obj: dict[str, Any]) -> None:
    """Replace ``d/.done`` with ``obj`` as it is (``mark_done`` adds the time and stamps)."""
    atomic_write_json(Path(d) / ".done", obj)


def record_inputs(d: Path, inputs: Sequence[Path]) -> None:
    """Add the stamps of ``inputs`` to an existing ``d/.done`` (for steps that do not record them)."""
    if not is_done(d):
        raise FileNotFoundError(f"{d}/.done not found: the step did not finish")
    obj = read_done(d)
    stamps = obj.get("inputs") if isinstance(obj.get("inputs"), dict) else {}
    write_done(d, {**obj, "inputs": {**stamps, **input_stamps(d, inputs)}})


# ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """run.sh's skip checks. ``is-current DIR INPUT...``: exit 0 when DIR is done and its inputs
    unchanged, 1 when it is not done, 3 when it is done but an input changed (says which);
    ``record-inputs DIR INPUT...``: add the inputs' stamps to DIR/.done."""
    ap = argparse.ArgumentParser(prog="python -m steps_py.fileio", description=main.__doc__)
    ap.add_argument("command", choices=("is-current", "record-inputs"))
    ap.add_argument("dir", type=Path)
    ap.add_argument("inputs", type=Path, nargs="*")
    args = ap.parse_args(argv)
    if args.command == "record-inputs":
        if not is_done(args.dir):
            print(
                f"{args.dir}/.done not found: the step that writes {args.dir} did not finish",
                file=sys.stderr,
            )
            return 1
        record_inputs(args.dir, args.inputs)
        return 0
    if not is_done(args.dir):
        return 1
    stale = changed_inputs(args.dir, args.inputs)
    if stale:
        print(f"{args.dir} is done but its inputs changed: {'; '.join(stale)}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
