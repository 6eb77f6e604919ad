"""A full disk and a read-only directory, for real: a tiny tmpfs (or a read-only bind mount)
in a private mount namespace. Each fault ends in one line naming the file, no traceback."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.toy_nnet import make_toy_egs, toy_train_argv

ROOT = Path(__file__).resolve().parents[1]


def _can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(
    not _can_mount(), reason="needs root and mount namespaces (unshare -m) to make a full disk"
)


def _under_mount(mount: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `argv` in a private mount namespace after the shell command `mount`."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    cmd = f"{mount} && exec {shlex.join(argv)}"
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", cmd],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _tiny_tmpfs(d: Path, size: str) -> str:
    d.mkdir(parents=True, exist_ok=True)
    return f"mount -t tmpfs -o size={size} tmpfs '{d}'"


def _read_only(d: Path) -> str:
    d.mkdir(parents=True, exist_ok=True)
    return f"mount --bind '{d}' '{d}' && mount -o remount,ro,bind '{d}' '{d}'"


def _train(egs: Path, exp: Path) -> list[str]:
    argv = toy_train_argv(egs, exp, checkpoint_every_blocks=1, epochs=1)
    return [sys.executable, str(ROOT / "tests" / "toy_train.py"), *argv]


@pytest.mark.parametrize(
    ("size", "where"),
    [("48k", "checkpoints/block-00000001/"), ("80k", "final; free some space")],
    ids=["checkpoint", "final-models"],
)
def test_full_disk_under_training_is_one_line_naming_the_file(
    tmp_path: Path, size: str, where: str
) -> None:
    """torch.save said "unexpected pos ...", safetensors a 28-line traceback."""
    egs = make_toy_egs(tmp_path / "egs", frames=256, dev_frames=32)
    exp = tmp_path / "full" / "run"
    p = _under_mount(_tiny_tmpfs(exp.parent, size), _train(egs, exp))
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert f"no space left on device writing {exp}/{where}" in out, out
    assert "; free some space (df -h) and rerun" in out
    assert "Traceback" not in out and "unexpected pos" not in out


def test_read_only_exp_dir_is_one_line(tmp_path: Path) -> None:
    egs = make_toy_egs(tmp_path / "egs", frames=256, dev_frames=32)
    exp = tmp_path / "ro" / "run"
    p = _under_mount(_read_only(exp.parent), _train(egs, exp))
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert f"cannot write {exp}" in out and "the file system is read-only" in out, out
    assert "Traceback" not in out


def test_read_only_scoreboard_out_is_one_line(tmp_path: Path) -> None:
    exp = tmp_path / "exp" / "dnn_ma_n2" / "decode_global_dev"
    exp.mkdir(parents=True)
    out_dir = tmp_path / "results"
    argv = [sys.executable, "-m", "steps_py.score.scoreboard", "--exp", str(tmp_path / "exp")]
    p = _under_mount(_read_only(out_dir), [*argv, "--out", str(out_dir)])
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert f"cannot write {out_dir}/scoreboard.json: the file system is read-only" in out, out
    assert "Traceback" not in out, out


def test_full_disk_under_feature_extraction_names_the_ark(tmp_path: Path) -> None:
    from tests.test_features_compute import make_data_dir

    make_data_dir(tmp_path / "src", n_spk=3, per_spk=8)
    disk = tmp_path / "disk"
    mount = _tiny_tmpfs(disk, "40k") + f" && cp -r '{tmp_path}/src/data/train' '{disk}/train'"
    argv = [sys.executable, "-m", "steps_py.features.compute", "--data", str(disk / "train")]
    p = _under_mount(mount, [*argv, "--kind", "fbank", "--nj", "1"])
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert f"no space left on device writing {disk}/train/fbank/raw_fbank.1.ark" in out, out
    # kaldi-native-io's C++ prints its own lines first; the step's verdict is one line, last
    assert (
        out.strip()
        .splitlines()[-1]
        .endswith(
            f"ERROR no space left on device writing {disk}/train/fbank/raw_fbank.1.ark; free some "
            "space (df -h) and rerun"
        )
    )
    assert "Traceback (most recent call last)" not in out
