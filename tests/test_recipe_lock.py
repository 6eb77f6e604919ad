"""run.sh as a process: one run per workdir (a second run.sh on a workdir in use is refused,
naming the holder), a SIGTERM to run.sh stops the step it runs too, and the workdir is free
again afterwards; flags reach the steps (--encoding).

run.sh runs under a stand-in virtual environment (path.sh honours VENV_DIR) whose ``python``
records its pid and arguments (and sleeps, with FAKE_SLEEP), so "a run in progress" is
deterministic and costs no work.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "egs/synth/conf_tiny"


def _sleeping_venv(d: Path) -> Path:
    """A VENV_DIR whose python appends "pid args" to $FAKE_LOG (and sleeps when $FAKE_SLEEP)."""
    (d / "bin").mkdir(parents=True)
    (d / "bin" / "activate").write_text(f'export PATH="{d}/bin:$PATH"\n')
    py = d / "bin" / "python"
    py.write_text('#!/bin/sh\necho "$$ $*" >> "$FAKE_LOG"\n[ -z "$FAKE_SLEEP" ] || exec sleep 60\n')
    py.chmod(0o755)
    # path.sh's stamp of a finished install (see path.sh): nothing is installed again
    # (the tests run it with TORCH_SPEC and FORCE_TORCH empty)
    want = f"{(ROOT / 'pyproject.toml').read_text().rstrip(chr(10))} TORCH_SPEC= FORCE_TORCH="
    (d / ".ema-asr-installed").write_text(want)
    return d


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def _wait_for(cond, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    t0 = time.time()
    while not cond():
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.05)


def test_a_second_run_on_a_busy_workdir_is_refused_and_sigterm_stops_the_step(
    tmp_path: Path,
) -> None:
    work = tmp_path / "w"
    env = dict(
        os.environ,
        VENV_DIR=str(_sleeping_venv(tmp_path / "venv")),
        FAKE_LOG=str(tmp_path / "step.pid"),
        FAKE_SLEEP="1",
        TORCH_SPEC="",
        FORCE_TORCH="",
    )
    args = ["bash", str(ROOT / "run.sh"), "--conf-dir", str(TINY), "--workdir", str(work)]
    first = subprocess.Popen(
        [*args, "--stop-stage", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(lambda: (tmp_path / "step.pid").is_file() and (tmp_path / "step.pid").read_text())
        step_pid = int((tmp_path / "step.pid").read_text().split()[0])
        second = subprocess.run(
            [*args, "--stage", "9"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
        )
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"--workdir '{work}' is in use by another run.sh (pid {first.pid} since" in (
            second.stderr
        )
        assert "--stop-stage 0" in second.stderr  # the holder's command
        assert "stage 9" not in second.stdout + second.stderr
        assert _alive(step_pid)  # the first run is untouched

        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, out
    assert f"got SIGTERM; stopping 'python -m local.synth' (pid {step_pid}) and exiting" in out
    _wait_for(lambda: not _alive(step_pid), timeout=5)
    with open(work / ".run.lock") as f:  # released: a new run can take it
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_encoding_reaches_data_prep(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    for s in ("train", "dev", "test"):
        (corpus / s).mkdir(parents=True)
    calls = tmp_path / "calls"
    env = dict(
        os.environ,
        VENV_DIR=str(_sleeping_venv(tmp_path / "venv")),
        FAKE_LOG=str(calls),
        TORCH_SPEC="",
        FORCE_TORCH="",
    )
    env.pop("FAKE_SLEEP", None)
    p = subprocess.run(
        ["bash", str(ROOT / "run.sh"), "--corpus", "kaldi", "--corpus-dir", str(corpus)]
        + ["--conf-dir", str(TINY), "--workdir", str(tmp_path / "w"), "--encoding", "gb18030"]
        + ["--stage", "1", "--stop-stage", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    (prep,) = [c for c in calls.read_text().splitlines() if "steps_py.data.prepare" in c]
    assert f"-m steps_py.data.prepare --kaldi-dirs {corpus} --encoding gb18030 " in prep, prep
