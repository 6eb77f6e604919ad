"""The trainer's command line and its faults: every bad flag is an argparse error before any
work; damaged checkpoints, stale checkpoints and changed settings are clear."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steps_py.parallel.checkpoint import list_checkpoints
from steps_py.parallel.train import TrainingError, main
from tests.conftest import train_toy
from tests.toy_nnet import ToyBackend, toy_train_argv


@pytest.mark.parametrize(
    "flag,value,message",
    [
        ("--block-minibatches", "0", "must be an integer >= 1, got 0"),
        ("--block-minibatches", "-3", "must be an integer >= 1, got -3"),
        ("--block-frames", "-100", "must be a number > 0, got -100"),
        ("--simulate", "0", "must be an integer >= 1, got 0"),
        ("--simulate", "-2", "must be an integer >= 1, got -2"),
        ("--epochs", "0", "must be an integer >= 1, got 0"),
        ("--batch-size", "0", "must be an integer >= 1, got 0"),
        ("--ema-decays", "abc", "'abc' is not a number"),
        ("--ema-decays", "1.5", "1.5 is outside the allowed range [0, 1)"),
        ("--ema-decays", "-0.1", "-0.1 is outside the allowed range [0, 1)"),
        ("--ema-half-life-frames", "-5", "-5 is outside the allowed range > 0"),
        ("--model-config", "hidden=abc", "invalid literal for int()"),  # the toy model's message
        ("--model-config", "{bad json", "not valid JSON"),
        ("--bmuf-momentum", "1", "must be a number in [0, 1), got 1"),
        ("--prior-frames", "0", "must be an integer >= 1, got 0"),
    ],
)
def test_bad_flags_are_argparse_errors_before_any_work(
    toy_egs: Path, tmp_path: Path, capsys, flag: str, value: str, message: str
) -> None:
    exp = tmp_path / "run"
    argv = toy_train_argv(toy_egs, exp) + [flag, value]
    with pytest.raises(SystemExit) as e:
        main(argv, backend=ToyBackend())
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and message in err, err
    assert not exp.exists()


def test_ema_flags_that_contradict_each_other(toy_egs: Path, tmp_path: Path, capsys) -> None:
    argv = toy_train_argv(toy_egs, tmp_path / "x", ema_decays="0.9,0.99", ema_interfering=True)
    with pytest.raises(SystemExit):
        main(argv, backend=ToyBackend())
    assert "--ema-interfering broadcasts one EMA; 2 are asked for" in capsys.readouterr().err
    argv = toy_train_argv(toy_egs, tmp_path / "x", ema_decays="0.9,0.9")
    with pytest.raises(SystemExit):
        main(argv, backend=ToyBackend())
    assert "the same EMA is asked for twice" in capsys.readouterr().err


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(
    toy_egs: Path, tmp_path: Path, capsys
) -> None:
    opts = dict(simulate=2, block_minibatches=2, checkpoint_every_blocks=2)
    full = train_toy(toy_egs, tmp_path / "full", **opts)
    train_toy(toy_egs, tmp_path / "part", stop_after_blocks=6, **opts)
    cks = list_checkpoints(tmp_path / "part")
    assert [c.name for c in cks] == ["block-00000004", "block-00000006"]
    (cks[-1] / "global.pt").write_bytes((cks[-1] / "global.pt").read_bytes()[:100])  # truncated
    (cks[-1] / "worker-1.pt").write_bytes(b"")  # and an empty worker file
    capsys.readouterr()
    resumed = train_toy(toy_egs, tmp_path / "part", resume=True, **opts)
    log = capsys.readouterr().err
    assert "block-00000006/global.pt is damaged" in log and "trying the checkpoint before" in log
    assert "resumed from" in log and "block-00000004" in log
    assert resumed["history"] == full["history"]
    for name in ("global", "ema-0.9"):
        a = load_file(tmp_path / f"full/final/{name}.safetensors")
        b = load_file(tmp_path / f"part/final/{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "part/checkpoints/damaged-block-00000006").is_dir()


def test_no_loadable_checkpoint_is_an_error(toy_egs: Path, tmp_path: Path) -> None:
    train_toy(toy_egs, tmp_path / "r", stop_after_blocks=3, checkpoint_every_blocks=1)
    for c in list_checkpoints(tmp_path / "r"):
        (c / "global.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="no checkpoint .* could be loaded"):
        train_toy(toy_egs, tmp_path / "r", resume=True, checkpoint_every_blocks=1)


def test_fresh_start_over_old_checkpoints_is_refused(toy_egs: Path, tmp_path: Path) -> None:
    exp = tmp_path / "r"
    train_toy(toy_egs, exp, stop_after_blocks=2)
    with pytest.raises(
        TrainingError, match="holds checkpoints of an earlier run .* --resume .* --force"
    ):
        train_toy(toy_egs, exp)
    s = train_toy(toy_egs, exp, force=True)  # --force starts over
    assert "history" in s and len(list_checkpoints(exp)) <= 2


def test_resume_with_other_settings_is_refused_unless_asked(toy_egs: Path, tmp_path: Path) -> None:
    exp = tmp_path / "r"
    train_toy(toy_egs, exp, stop_after_blocks=2)
    with pytest.raises(TrainingError, match=r"other settings \(lr_initial: 0.1 -> 0.2\)"):
        train_toy(toy_egs, exp, resume=True, lr_initial=0.2)
    with pytest.raises(TrainingError, match="epochs: 2 -> 3"):
        train_toy(toy_egs, exp, resume=True, epochs=3)
    with pytest.raises(TrainingError, match="sync: 'ma' -> 'bmuf-cbm'"):
        train_toy(toy_egs, exp, resume=True, sync="bmuf-cbm")
    s = train_toy(toy_egs, exp, resume=True, lr_initial=0.2, resume_any_settings=True)
    assert s["settings"]["lr_initial"] == 0.2


def test_lr_times_workers_is_kaldis_convention(toy_egs: Path, tmp_path: Path) -> None:
    import csv

    train_toy(toy_egs, tmp_path / "a", simulate=2, epochs=1)
    train_toy(toy_egs, tmp_path / "b", simulate=2, epochs=1, lr_times_workers=True)
    lr = [
        [float(r["lr"]) for r in csv.DictReader((tmp_path / d / "log/train.csv").open())]
        for d in "ab"
    ]
    assert lr[1] == pytest.approx([2 * x for x in lr[0]])
    assert json.loads((tmp_path / "b/summary.json").read_text())["lr_times_workers"] is True


def test_a_second_trainer_on_one_exp_dir_is_refused(
    toy_egs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import os
    import subprocess
    import sys

    exp = tmp_path / "r"
    exp.mkdir()
    holder = subprocess.Popen(  # a trainer of this exp dir still running, as far as the lock says
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path;"
            "from steps_py.fileio import hold_lock; f = hold_lock(Path(sys.argv[1]), '.train.lock', "
            "'training'); print('held', flush=True); time.sleep(60)",
            str(exp),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main(toy_train_argv(toy_egs, exp), backend=ToyBackend()) == 1
        err = caplog.text
        assert f"{exp} is in use: training by another process (pid {holder.pid} on " in err, err
        assert not (exp / "checkpoints").exists() and not (exp / "final").exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(toy_train_argv(toy_egs, exp, epochs=1), backend=ToyBackend()) == 0
