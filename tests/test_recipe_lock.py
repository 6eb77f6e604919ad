"""run.sh as a process: one run per workdir (a second run.sh on a workdir in use is refused,
naming the holder), a SIGTERM to run.sh stops the step it runs too, and the workdir is free
again afterwards; flags reach the steps (--encoding).

run.sh runs under a stand-in virtual environment (path.sh honours VENV_DIR) whose ``python``
records its pid and arguments (and sleeps, with FAKE_SLEEP), so "a run in progress" is
deterministic and costs no work. Each run.sh call takes well under a second on an idle
machine; the waits are for conditions, with a limit (`LIMIT`) only a hang reaches, also on a
loaded machine that runs the (niced) tests in a small share of its cores.
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
LIMIT = 180.0  # seconds: a run.sh call or a wait that takes longer is a hang
STEP_SLEEP = 600  # the stand-in step of a run in progress outlives LIMIT (killed at the end)


def _sleeping_venv(d: Path) -> Path:
    """A VENV_DIR whose python appends "pid args" to $FAKE_LOG (and sleeps when $FAKE_SLEEP)."""
    (d / "bin").mkdir(parents=True)
    (d / "bin" / "activate").write_text(f'export PATH="{d}/bin:$PATH"\n')
    py = d / "bin" / "python"
    py.write_text(
        f'#!/bin/sh\necho "$$ $*" >> "$FAKE_LOG"\n[ -z "$FAKE_SLEEP" ] || exec sleep {STEP_SLEEP}\n'
    )
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


def _env(tmp_path: Path, fake_log: Path, sleep: bool) -> dict[str, str]:
    """run.sh's environment: the stand-in venv, installing nothing, whatever the caller's
    environment says (SKIP_INSTALL=1 would have path.sh run the stand-in python too)."""
    env = dict(
        os.environ,
        VENV_DIR=str(_sleeping_venv(tmp_path / "venv")),
        FAKE_LOG=str(fake_log),
        TORCH_SPEC="",
        FORCE_TORCH="",
        SKIP_INSTALL="",
    )
    env.pop("FAKE_SLEEP", None)
    return {**env, "FAKE_SLEEP": "1"} if sleep else env


def _wait_for(cond, timeout: float = LIMIT) -> None:  # type: ignore[no-untyped-def]
    t0 = time.time()
    while not cond():
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.05)


def _start(run_sh: Path, work: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """run.sh's stage 0 (its stand-in step sleeps) in the background."""
    return subprocess.Popen(
        ["bash", str(run_sh), "--conf-dir", str(TINY), "--workdir", str(work), "--stop-stage", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _step_pid(fake_log: Path) -> int:
    """The pid of the first step run.sh started (waits for it)."""
    _wait_for(lambda: fake_log.is_file() and fake_log.read_text())
    return int(fake_log.read_text().split()[0])


def _sigterm_stops_the_step(run: subprocess.Popen[str], step_pid: int, work: Path) -> None:
    """A SIGTERM to run.sh stops its step and run.sh (143, saying so); the workdir is free."""
    run.send_signal(signal.SIGTERM)
    out, _ = run.communicate(timeout=LIMIT)
    assert run.returncode == 143, out
    assert f"got SIGTERM; stopping 'python -m local.synth' (pid {step_pid}) and exiting" in out
    _wait_for(lambda: not _alive(step_pid))
    with open(work / ".run.lock") as f:  # released: a new run can take it
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _stop(run: subprocess.Popen[str], fake_log: Path) -> None:
    """After a failure: no stand-in step left sleeping (it holds run.sh's output open) and
    no run.sh."""
    for line in fake_log.read_text().splitlines() if fake_log.is_file() else []:
        if _alive(pid := int(line.split()[0])):
            os.kill(pid, signal.SIGKILL)
    if run.poll() is None:
        run.kill()
        run.communicate(timeout=LIMIT)


def test_a_second_run_on_a_busy_workdir_is_refused_and_sigterm_stops_the_step(
    tmp_path: Path,
) -> None:
    work, fake_log = tmp_path / "w", tmp_path / "step.pid"
    env = _env(tmp_path, fake_log, sleep=True)
    first = _start(ROOT / "run.sh", work, env)
    try:
        step_pid = _step_pid(fake_log)
        second = subprocess.run(
            ["bash", str(ROOT / "run.sh"), "--conf-dir", str(TINY), "--workdir", str(work)]
            + ["--stage", "9"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=LIMIT,
        )
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"--workdir '{work}' is in use by another run.sh (pid {first.pid} since" in (
            second.stderr
        )
        assert "--stop-stage 0" in second.stderr  # the holder's command
        assert "stage 9" not in second.stdout + second.stderr
        assert _alive(step_pid)  # the first run is untouched
        _sigterm_stops_the_step(first, step_pid, work)
    finally:
        _stop(first, fake_log)


def test_a_sigterm_as_a_step_starts_stops_it_too(tmp_path: Path) -> None:
    """A signal between the start of a step and run.sh taking its pid (`child=$!`) finds the
    step all the same: the window is held open here by a sleep in a copy of run.sh."""
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    text = (ROOT / "run.sh").read_text()
    start = '  python "$@" &\n'
    assert text.count(start) == 1, "run_py's start of a step moved: update this test"
    (recipe / "run.sh").write_text(text.replace(start, start + "  sleep 2\n"))
    for name in ("path.sh", "pyproject.toml"):
        (recipe / name).symlink_to(ROOT / name)
    work, fake_log = tmp_path / "w", tmp_path / "step.pid"
    run = _start(recipe / "run.sh", work, _env(tmp_path, fake_log, sleep=True))
    try:
        _sigterm_stops_the_step(run, _step_pid(fake_log), work)
    finally:
        _stop(run, fake_log)


def test_encoding_reaches_data_prep(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    for s in ("train", "dev", "test"):
        (corpus / s).mkdir(parents=True)
    calls = tmp_path / "calls"
    p = subprocess.run(
        ["bash", str(ROOT / "run.sh"), "--corpus", "kaldi", "--corpus-dir", str(corpus)]
        + ["--conf-dir", str(TINY), "--workdir", str(tmp_path / "w"), "--encoding", "gb18030"]
        + ["--stage", "1", "--stop-stage", "1"],
        cwd=ROOT,
        env=_env(tmp_path, calls, sleep=False),
        capture_output=True,
        text=True,
        timeout=LIMIT,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    (prep,) = [c for c in calls.read_text().splitlines() if "steps_py.data.prepare" in c]
    assert f"-m steps_py.data.prepare --kaldi-dirs {corpus} --encoding gb18030 " in prep, prep
