"""Real worker processes: torchrun + gloo on loopback equals --simulate, kill-and-resume.

Both compare final global and EMA models bitwise with an in-process simulation: the
simulated all-reduce adds the two workers in rank order (w0 + w1), which is what gloo
computes for two ranks, and every worker runs with one thread.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import train_toy
from tests.toy_nnet import toy_train_argv

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def egs(toy_egs: Path) -> Path:
    return toy_egs


def _torchrun(argv: list[str], restarts: int = 0, **env_extra: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", **env_extra
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--max-restarts",
        str(restarts),
        "--monitor-interval",
        "0.2",
        "-m",
        "tests.toy_train",
        *argv,
    ]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-4000:]
    return p


def _assert_same_models(a: Path, b: Path) -> None:
    names = sorted(p.name for p in (a / "final").glob("*.safetensors"))
    assert names == sorted(p.name for p in (b / "final").glob("*.safetensors"))
    assert "global.safetensors" in names and len(names) >= 2
    for n in names:
        x, y = load_file(a / "final" / n), load_file(b / "final" / n)
        for k in x:
            assert torch.equal(x[k], y[k]), f"{n}:{k} differs by {(x[k] - y[k]).abs().max()}"


def test_two_gloo_processes_equal_simulation(egs: Path, tmp_path: Path) -> None:
    # ddp here (torch DistributedDataParallel); BMUF-NBM is compared in the kill test below
    sync = "ddp"
    opts = dict(sync=sync, block_minibatches=4, epochs=1)
    s = train_toy(egs, tmp_path / "sim", simulate=2, **opts)
    _torchrun(toy_train_argv(egs, tmp_path / "real", **opts))
    assert s["launcher"] == "simulate"
    real = json.loads((tmp_path / "real/summary.json").read_text())
    assert (real["launcher"], real["workers"]) == ("torchrun", 2)
    assert real["ddp_impl"] == "torch"  # DDP pre-divides by 2 (exact), then sums: same bits
    _assert_same_models(tmp_path / "sim", tmp_path / "real")
    assert real["history"] == s["history"]


def test_sigkilled_worker_restarts_and_resumes_to_the_same_models(
    egs: Path, tmp_path: Path
) -> None:
    # NG-SGD with max-change: its Fisher estimates (float64 rho included) are checkpointed
    opts = dict(
        sync="bmuf-nbm",
        optimizer="ngsgd",
        lr_initial=0.05,
        lr_final=0.01,
        block_minibatches=4,
        checkpoint_every_blocks=3,
    )
    train_toy(egs, tmp_path / "sim", simulate=2, **opts)
    p = _torchrun(
        toy_train_argv(egs, tmp_path / "real", resume=True, **opts),
        restarts=1,
        TOY_KILL_AT_BLOCK="5",
        TOY_KILL_RANK="1",
    )
    assert "SIGKILL to myself" in p.stderr
    assert "resumed from" in p.stderr and "block-00000003" in p.stderr
    _assert_same_models(tmp_path / "sim", tmp_path / "real")
    # the rows logged after the checkpoint by the killed attempt were dropped on resume
    steps = [
        [r["global_step"] for r in csv.DictReader((tmp_path / d / "log/train.csv").open())]
        for d in ("sim", "real")
    ]
    assert steps[0] == steps[1]


def _listening_sockets(pids: set[int]) -> list[str]:
    """'addr:port' of every TCP socket in LISTEN state owned by one of `pids` (from /proc)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    out = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] != "0A" or parts[9] not in inodes:  # 0A = LISTEN
                    continue
                addr, port = parts[1].split(":")
                raw = bytes.fromhex(addr)
                if width == 8:
                    ip = ".".join(str(b) for b in raw[::-1])
                else:  # four little-endian 32-bit words
                    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
                    ip = ":".join(b"".join(words).hex()[i : i + 4] for i in range(0, 32, 4))
                out.append(f"{ip}:{int(port, 16)}")
    return out


def _tree(root: int) -> set[int]:
    pids, todo = {root}, [root]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        pids.update(kids)
        todo += kids
    return pids


def test_single_machine_launch_listens_on_loopback_only(egs: Path, tmp_path: Path) -> None:
    """`python -m steps_py.parallel.launch` (torchrun): every socket of the agent and its two
    workers listens on 127.0.0.1 (plain torchrun's agent stores listen on every interface)."""
    import time

    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    argv = toy_train_argv(
        egs, tmp_path / "run", epochs=6, block_minibatches=1, checkpoint_every_blocks=1
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "steps_py.parallel.launch",
            "--nproc_per_node",
            "2",
            "--monitor-interval",
            "0.2",
            "-m",
            "tests.toy_train",
            *argv,
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    seen: set[str] = set()
    while proc.poll() is None:
        seen.update(_listening_sockets(_tree(proc.pid)))
        time.sleep(0.05)
    out = proc.stdout.read().decode() if proc.stdout else ""
    assert proc.returncode == 0, out[-3000:]
    assert len(seen) >= 2, seen  # the agent's stores (and any gloo listener) were seen
    assert all(s.startswith(("127.", "0000:0000:0000:0000:0000:0000:0000:0001")) for s in seen), (
        seen
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _agents(argv: list[str], port: int, **env_extra: str) -> list[subprocess.Popen]:
    """Two `steps_py.parallel.launch` agents of a 2-node run, both on this host (loopback)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **env_extra)
    return [
        subprocess.Popen(
            [sys.executable, "-m", "steps_py.parallel.launch", "--nnodes", "2"]
            + ["--node-rank", str(r), "--nproc_per_node", "1", "--rdzv-backend", "c10d"]
            + ["--rdzv-endpoint", f"127.0.0.1:{port}", "--monitor-interval", "0.2"]
            + ["-m", "tests.toy_train", *argv],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in (0, 1)
    ]


def _finish(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    """Wait for every agent; when one fails, stop the others at once (no rendezvous wait)."""
    import time

    t0 = time.time()
    while any(p.poll() is None for p in procs) and time.time() - t0 < timeout:
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.1)
    for p in procs:
        if p.poll() is None:
            p.kill()
    return [p.communicate()[0] for p in procs]


def test_two_agents_on_one_host_equal_simulation(egs: Path, tmp_path: Path) -> None:
    """Multi-node on one machine: node 1's agent finds node 0 serving the rendezvous store and
    joins it as a client (it used to die with 'Address already in use')."""
    opts = dict(sync="ma", block_minibatches=4, epochs=1)
    train_toy(egs, tmp_path / "sim", simulate=2, **opts)
    procs = _agents(toy_train_argv(egs, tmp_path / "real", **opts), _free_port())
    outs = _finish(procs, timeout=150)
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    real = json.loads((tmp_path / "real/summary.json").read_text())
    assert (real["launcher"], real["workers"]) == ("torchrun", 2)
    _assert_same_models(tmp_path / "sim", tmp_path / "real")


def _workers_of(exp: Path) -> list[int]:
    """Pids of live training processes of `exp` (by their command line)."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"tests.toy_train" in cmd and str(exp).encode() in cmd and state != "Z":
            pids.append(int(d.name))
    return pids


def test_a_killed_agent_stops_the_run_at_once(egs: Path, tmp_path: Path) -> None:
    """SIGKILL of one agent alone: its worker ends with it and the other node fails within
    seconds (it used to train on with an orphan and then wait 300 s in the exit barrier)."""
    import signal
    import time

    exp = tmp_path / "real"
    argv = toy_train_argv(egs, exp, sync="ma", block_minibatches=1, epochs=400)
    procs = _agents(argv, _free_port())
    try:
        t0 = time.time()
        while not (exp / "log" / "train.csv").is_file():
            assert time.time() - t0 < 90 and all(p.poll() is None for p in procs)
            time.sleep(0.1)
        procs[1].send_signal(signal.SIGKILL)
        t_kill = time.time()
        procs[0].communicate(timeout=60)
        assert procs[0].returncode not in (0, None)
        assert time.time() - t_kill < 30
        while _workers_of(exp):  # the orphan is gone too
            assert time.time() - t_kill < 40, _workers_of(exp)
            time.sleep(0.1)
        assert not (exp / "final").exists()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
