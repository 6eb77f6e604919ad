"""Kaldi's log layout where a step splits its work into --nj jobs: job j's own messages in
``<dir>/log/<step>.<j>.log`` (GMM accumulation, alignment, decoding; features and the
--cmd jobs in tests/test_runner.py), and a failed job's error naming its log."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest

from steps_py.decode.pool import PoolConfig, make_tasks, run_pool
from steps_py.decode.search import SearchConfig
from steps_py.gmm.jobs import JobPool, Utterance
from steps_py.gmm.topo import Lang
from steps_py.gmm.train_mono import train
from steps_py.runner import JobError
from tests.test_gmm_train import _utts
from tests.toy_decode import build_graph, toy_data
from tests.toy_gmm import make_toy_lang


def _frames_logged(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"run_pass: [0-9.]+ s, (\d+) frames", text)]


def test_gmm_training_with_two_jobs_leaves_one_log_per_job(tmp_path: Path) -> None:
    lang = Lang.load(make_toy_lang(tmp_path / "lang"))
    utts = _utts(lang, 12, seed=5)
    log_dir = tmp_path / "exp/mono/log"
    _, rows, _ = train(lang, utts, nj=2, num_iters=2, max_gauss=30, log_dir=log_dir)
    assert sorted(p.name for p in log_dir.iterdir()) == ["acc.1.log", "acc.2.log"]
    logs = [(log_dir / f"acc.{j}.log").read_text(encoding="utf-8") for j in (1, 2)]
    for j, text in enumerate(logs, 1):
        assert f"[acc.{j}]" in text and "6 utterances, training graphs compiled" in text
        assert "equal_align" in text and len(_frames_logged(text)) == 2  # one line per pass
    for p, row in enumerate(rows):  # the jobs' frames add up to the pass's
        assert sum(_frames_logged(t)[p] for t in logs) == row["frames"]


def test_one_job_in_the_steps_process_logs_to_its_own_log_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lang = Lang.load(make_toy_lang(tmp_path / "lang"))
    utts = _utts(lang, 6, seed=5)
    log_dir = tmp_path / "log"
    with caplog.at_level(logging.INFO):
        _, rows, _ = train(lang, utts, nj=1, num_iters=2, max_gauss=30, log_dir=log_dir)
    text = (log_dir / "acc.1.log").read_text(encoding="utf-8")
    assert _frames_logged(text) == [r["frames"] for r in rows]
    assert "run_pass" not in caplog.text  # the step's own log is as before


class _FailsOnU3:
    """A GMM job that cannot read one of its utterances."""

    def __init__(self, lang_dir: str, utts: list[Utterance]) -> None:
        self.utts = utts

    def check(self) -> int:
        for u in self.utts:
            if u.utt == "u3":
                raise ValueError(f"{u.utt} has no features")
        return len(self.utts)


def test_a_failed_gmm_job_names_its_log(tmp_path: Path) -> None:
    utts = [Utterance(f"u{i}", np.zeros((3, 2), np.float32), []) for i in range(6)]
    log_dir = tmp_path / "log"
    with (
        pytest.raises(JobError, match=r"acc: job 2 failed \(ValueError: u3 has no features\)") as e,
        JobPool("lang", utts, 2, _FailsOnU3, log_dir) as pool,
    ):
        pool.call("check")
    assert str(log_dir / "acc.2.log") in str(e.value)
    text = (log_dir / "acc.2.log").read_text(encoding="utf-8")
    assert "job failed" in text and "Traceback" in text and "u3 has no features" in text
    assert "check: " in (log_dir / "acc.1.log").read_text(encoding="utf-8")  # job 1 did its work


def _pool_config(tmp_path: Path, model: Path, n: int = 6) -> tuple[PoolConfig, list[str]]:
    graph, _ = build_graph(tmp_path / "toy")
    data = toy_data(tmp_path / "dev", n=n, seed=3)
    utts = sorted(line.split()[0] for line in (data / "text").read_text().splitlines())
    cfg = PoolConfig(
        graph=graph,
        num_pdfs=int((graph / "num_pdfs").read_text()),
        data=data,
        search=SearchConfig(),
        models=(model,),
        grids=(((10.0, 0.0),),),
        refs={},
    )
    return cfg, utts


def test_a_decode_with_two_jobs_leaves_one_log_per_job(tmp_path: Path) -> None:
    _, gmm = build_graph(tmp_path / "toy")
    cfg, utts = _pool_config(tmp_path, gmm, n=8)
    got: list[str] = []
    log_dir = tmp_path / "decode_dev/log"
    run_pool(
        cfg,
        make_tasks(1, utts, 2, chunk=2),
        2,
        lambda r: got.extend(u.utt for u in r.utts),
        log_dir,
    )
    assert sorted(got) == utts
    assert sorted(p.name for p in log_dir.iterdir()) == ["decode.1.log", "decode.2.log"]
    counted = 0
    for j in (1, 2):
        text = (log_dir / f"decode.{j}.log").read_text(encoding="utf-8")
        assert f"[decode.{j}]" in text and f"decode job {j} (pid" in text
        counted += sum(int(x) for x in re.findall(r"\): (\d+) utterances, \d+ frames", text))
    assert counted == len(utts)  # each chunk logged by the job that decoded it


@pytest.mark.parametrize("nj", [1, 2])
def test_a_failed_decode_job_names_its_log(tmp_path: Path, nj: int) -> None:
    cfg, utts = _pool_config(tmp_path, tmp_path / "missing.safetensors")
    log_dir = tmp_path / "decode_dev/log"
    with pytest.raises(JobError, match=r"decode: job [12] failed .*missing\.safetensors") as e:
        run_pool(cfg, make_tasks(1, utts, nj, chunk=2), nj, lambda r: None, log_dir)
    path = re.search(r"see (\S+decode\.\d\.log)", str(e.value))
    assert path is not None and "job failed" in Path(path.group(1)).read_text(encoding="utf-8")


def test_decode_step_with_two_jobs_logs_per_job_and_its_own_summary(tmp_path: Path) -> None:
    """python -m steps_py.decode.gmm --nj 2: decode.1.log and decode.2.log hold the jobs' lines,
    the step's decode.log what the step did (not the jobs' lines)."""
    from steps_py.decode import gmm as decode_gmm

    graph, model = build_graph(tmp_path / "toy")
    dev = toy_data(tmp_path / "dev", n=6, seed=3)
    out = tmp_path / "decode_dev"
    argv = ["--model", str(model), "--graph", str(graph), "--data", str(dev), "--out", str(out)]
    assert decode_gmm.main([*argv, "--nj", "2"]) == 0
    step = (out / "log/decode.log").read_text(encoding="utf-8")
    assert "%CER" in step and "utterances, " not in step
    n = 0
    for j in (1, 2):
        text = (out / f"log/decode.{j}.log").read_text(encoding="utf-8")
        assert f"[decode.{j}]" in text
        n += sum(int(x) for x in re.findall(r"final\.npz\): (\d+) utterances", text))
    assert n == 6
