"""The --cmd runner contract (steps_py.runner): N jobs, one log per job under log/, a failed
job naming its log; the local runner and a Slurm runner (a fake `srun` on PATH records its
arguments and runs the command) give the same features and alignments."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from steps_py.features.compute import main as compute_main
from steps_py.features.io import FeatureReader
from steps_py.gmm.align import align_utterances
from steps_py.gmm.jobs import AlignOptions
from steps_py.gmm.topo import Lang
from steps_py.runner import JobError, LocalRunner, SlurmRunner, parse_cmd, run_python_jobs
from tests.runner_jobs import fail_on_three, square_plus
from tests.test_features_compute import make_data_dir
from tests.test_gmm_train import _oracle_model, _utts
from tests.toy_gmm import make_toy_lang

ROOT = Path(__file__).resolve().parent.parent

FAKE_SRUN = f"""#!{sys.executable}
import os, sys
args = sys.argv[1:]
with open(os.environ["SRUN_LOG"], "a") as f:
    f.write(" ".join(args) + "\\n")
cmd = args[args.index("--ntasks=1") + 1:]
os.execv(cmd[0], cmd)
"""


@pytest.fixture
def fake_srun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(FAKE_SRUN)
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SRUN_LOG", str(tmp_path / "srun_calls.txt"))
    return tmp_path / "srun_calls.txt"


def test_parse_cmd_reads_kaldi_cmd_sh_values() -> None:
    assert parse_cmd("run.pl") == parse_cmd("local") == LocalRunner()
    assert parse_cmd("slurm.pl -p cpu --mem 4G") == SlurmRunner(("-p", "cpu", "--mem", "4G"))
    assert parse_cmd("slurm.pl --mem 2G --num-threads 4 --gpu 1 --max-jobs-run 10") == SlurmRunner(
        ("--mem", "2G", "--cpus-per-task=4", "--gres=gpu:1")
    )
    assert parse_cmd("slurm -p gpu --gres=gpu:1") == SlurmRunner(("-p", "gpu", "--gres=gpu:1"))
    with pytest.raises(JobError, match="unknown runner 'queue.pl'; use 'local'"):
        parse_cmd("queue.pl -q all.q")


@pytest.mark.parametrize("runner", [LocalRunner(), SlurmRunner(("-p", "cpu", "--mem=4G"))])
def test_jobs_results_and_one_log_per_job(tmp_path: Path, fake_srun: Path, runner) -> None:
    out = run_python_jobs(
        runner, "toy", square_plus, [(1, 10), (2, 20), (3, 30)], tmp_path / "w", tmp_path / "log"
    )
    assert out == [11, 24, 39]
    for j in (1, 2, 3):
        text = (tmp_path / "log" / f"toy.{j}.log").read_text()
        assert f"job says {j}" in text and "# ended (exit 0)" in text
    assert not (tmp_path / "w").exists()  # job files removed
    calls = sorted(fake_srun.read_text().splitlines()) if fake_srun.is_file() else []
    if isinstance(runner, SlurmRunner):
        assert len(calls) == 3
        assert calls[1].startswith("-p cpu --mem=4G --job-name=toy.2 --ntasks=1 ")
        assert calls[1].endswith("toy.2.out.pkl")
    else:
        assert calls == []


@pytest.mark.parametrize("runner", [LocalRunner(), SlurmRunner(("-p", "cpu"))])
def test_a_failed_job_names_its_log(tmp_path: Path, fake_srun: Path, runner) -> None:
    with pytest.raises(JobError) as e:
        run_python_jobs(
            runner, "toy", fail_on_three, [(1,), (3,)], tmp_path / "w", tmp_path / "log"
        )
    log2 = tmp_path / "log" / "toy.2.log"
    assert str(e.value).startswith(
        f"toy: 1 of 2 jobs failed (--cmd {runner}); job 2 exited with 1, see {log2}:"
    )
    assert "input 3 is bad: give another" in str(e.value)
    assert "# ended (exit 1)" in log2.read_text()


def test_no_srun_on_path_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JobError, match=r"cannot start 'srun' \(--cmd slurm -p x\): not on PATH"):
        run_python_jobs(
            SlurmRunner(("-p", "x")),
            "toy",
            fail_on_three,
            [(1,), (2,)],
            tmp_path / "w",
            tmp_path / "log",
        )


def test_features_through_slurm_equal_local(tmp_path: Path, fake_srun: Path) -> None:
    make_data_dir(tmp_path / "a")
    make_data_dir(tmp_path / "b")
    local, slurm = tmp_path / "a" / "data" / "train", tmp_path / "b" / "data" / "train"
    assert compute_main(["--data", str(local), "--kind", "mfcc", "--nj", "2"]) == 0
    # as a user runs it: python -m (the job function is then __main__.run_job in the parent)
    args = ["--data", str(slurm), "--kind", "mfcc", "--nj", "2", "--cmd", "slurm -p cpu --mem=2G"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "steps_py.features.compute", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    calls = fake_srun.read_text().splitlines()
    assert sorted(c.split(" --ntasks=1")[0] for c in calls) == [
        f"-p cpu --mem=2G --job-name=compute_mfcc.{j}" for j in (1, 2)
    ]
    for d in (local, slurm):
        assert (d / "log" / "compute_mfcc.1.log").is_file() and (
            d / "log" / "compute_mfcc.2.log"
        ).is_file()
        assert not list((d / "mfcc").glob(".jobs*"))
    a, b = FeatureReader(local, "mfcc"), FeatureReader(slurm, "mfcc")
    assert list(a) == list(b)
    for u in a:
        np.testing.assert_array_equal(a[u], b[u])


def test_alignment_jobs_through_slurm_equal_the_worker_pool(
    tmp_path: Path, fake_srun: Path
) -> None:
    lang = Lang.load(make_toy_lang(tmp_path / "lang"))
    model = _oracle_model(lang, tmp_path / "oracle.npz")
    utts = _utts(lang, 6)
    pool = align_utterances(lang, model, utts, 2, AlignOptions())
    out = tmp_path / "ali"
    jobs = align_utterances(lang, model, utts, 2, AlignOptions(), SlurmRunner(("-p", "cpu")), out)
    assert pool[1] == jobs[1] and pool[2] == jobs[2] and sorted(pool[0]) == sorted(jobs[0])
    for u, a in pool[0].items():
        np.testing.assert_array_equal(a, jobs[0][u])
    assert "aligned" in (out / "log" / "align.2.log").read_text()
    assert len(fake_srun.read_text().splitlines()) == 2


def test_decoding_jobs_through_slurm_equal_the_local_pool(tmp_path: Path, fake_srun: Path) -> None:
    """decode.gmm --cmd slurm: two srun jobs, one log each, the same decode dir as the pool."""
    from steps_py.decode import gmm as decode_gmm
    from tests.toy_decode import build_graph, toy_data

    graph, model = build_graph(tmp_path / "toy")
    dev = toy_data(tmp_path / "dev", n=6, seed=3)
    common = ["--model", str(model), "--graph", str(graph), "--data", str(dev), "--nj", "2"]
    local, slurm = tmp_path / "decode_local", tmp_path / "decode_slurm"
    assert decode_gmm.main([*common, "--out", str(local)]) == 0
    assert decode_gmm.main([*common, "--out", str(slurm), "--cmd", "slurm -p cpu"]) == 0
    assert len(fake_srun.read_text().splitlines()) == 2
    assert "-p cpu" in fake_srun.read_text()
    for j in (1, 2):
        assert "decode_job" in (slurm / "log" / f"decode.{j}.log").read_text()
    for name in ("hyp.txt", "cer", "cer_10_0.5", "lat.1.gz", "lat.2.gz"):
        assert (local / name).read_bytes() == (slurm / name).read_bytes(), name


def test_an_unknown_decode_cmd_is_refused_before_decoding(tmp_path: Path, capsys) -> None:
    from steps_py.decode import gmm as decode_gmm

    rc = decode_gmm.main(
        ["--model", "m", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--cmd", "qsub"]
    )
    assert rc == 1
    assert "--cmd 'qsub': unknown runner 'qsub'" in capsys.readouterr().err
