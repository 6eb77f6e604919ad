"""local/recount_max_change.py: a run's last epoch retrained from its previous epoch's
checkpoint reproduces the run (bit-identical final model) and its max-change count."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from local.recount_max_change import RecountError, main
from tests.toy_nnet import toy_train_argv

ROOT = Path(__file__).resolve().parent.parent


def test_recount_reproduces_the_run_and_its_count(toy_egs: Path, tmp_path: Path) -> None:
    root = tmp_path / "exp" / "study_x"
    run = root / "toy_seed1"
    argv = toy_train_argv(
        toy_egs,
        run,
        optimizer="ngsgd",
        lr_initial=2.0,
        lr_final=0.1,
        momentum=None,
        simulate=2,
        block_minibatches=4,
        checkpoint_every_blocks=100,  # checkpoints at the epoch ends only
    )
    cmd = [sys.executable, "-m", "tests.toy_train", *argv]
    (run / "log").mkdir(parents=True)
    (run / "log" / "study_train.out").write_text(
        "# 2026-12-07 10:00:00 " + shlex.join(cmd) + "\n", encoding="utf-8"
    )
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    out = tmp_path / "recount.tsv"
    assert main(["--root", str(root), "--cwd", str(ROOT), "--out", str(out), "toy_seed1"]) == 0
    header, row = out.read_text(encoding="utf-8").splitlines()
    assert header.split("\t")[-1] == "final_global_bit_identical"
    name, epoch, layer, glob, same = row.split("\t")
    last = json.loads((run / "summary.json").read_text())["history"][-1]
    assert (name, epoch, same) == ("toy_seed1", "2", "True")
    assert float(layer) == pytest.approx(last["max_change_layer_pct"], abs=0.01)
    assert float(glob) == pytest.approx(last["max_change_global_pct"], abs=0.01)
    assert not (run / "recount").exists()  # the run itself untouched; the copy beside it
    assert (root / "recount" / "toy_seed1" / "final").is_dir()


def test_a_run_without_its_log_is_a_clear_error(tmp_path: Path) -> None:
    from local.recount_max_change import train_command

    (tmp_path / "r").mkdir()
    with pytest.raises(RecountError, match="study_train.out not found: r was not trained"):
        train_command(tmp_path / "r")
