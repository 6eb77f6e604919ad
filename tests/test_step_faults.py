"""Faults a step meets as one line and exit code 1: a full disk, a missing earlier stage."""

from __future__ import annotations

import errno
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from steps_py.gmm import align as gmm_align
from steps_py.gmm import train_mono
from steps_py.nnet import egs

P = 5


@pytest.fixture
def egs_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A 3-utterance alignment dir and a stand-in for the stage-3 feature reader."""
    import kaldi_native_io

    lengths = {"a-1": 9, "a-2": 12, "b-1": 7}
    feats = {
        u: np.random.default_rng(n).normal(size=(t, 3)).astype(np.float32)
        for n, (u, t) in enumerate(lengths.items())
    }
    ali_dir = tmp_path / "ali" / "train"
    ali_dir.mkdir(parents=True)
    with kaldi_native_io.Int32VectorWriter(f"ark,scp:{ali_dir}/pdf.ark,{ali_dir}/pdf.scp") as w:
        for u, t in lengths.items():
            w.write(u, (np.arange(t) % P).tolist())
    (tmp_path / "ali" / "num_pdfs").write_text(f"{P}\n")

    class FakeReader(dict):
        def __init__(self, data_dir: Path, kind: str, cmvn: bool = True) -> None:
            super().__init__(feats)
            self.utts, self.dim = sorted(feats), 3

    monkeypatch.setitem(
        sys.modules, "steps_py.features.io", types.SimpleNamespace(FeatureReader=FakeReader)
    )
    return [
        "--feats",
        str(tmp_path / "data"),
        "--ali",
        str(ali_dir),
        "--model-type",
        "dnn",
        "--out",
        str(tmp_path / "egs" / "dnn"),
        "--num-shards",
        "2",
    ]


def _errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [
        line.split(" ERROR ", 1)[1]
        for line in capsys.readouterr().err.splitlines()
        if " ERROR " in line
    ]


def test_full_disk_is_one_line_naming_the_file(
    tmp_path: Path,
    egs_inputs: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real_save = np.save

    def full_disk(path: object, arr: object, *a: object, **k: object) -> None:
        if str(path).endswith("examples.npy"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_save(path, arr, *a, **k)

    monkeypatch.setattr(np, "save", full_disk)
    assert egs.main(egs_inputs) == 1
    errors = _errors(capsys)
    out = tmp_path / "egs"
    assert errors == [
        f"no space left on device writing {out}/dnn/train/shard-0/examples.npy; "
        "free some space (df -h) and rerun"
    ]
    assert not (out / "dnn").exists()  # nothing half-written is left as the output
    assert [p.name for p in out.iterdir() if p.name != "log"] == []
    monkeypatch.setattr(np, "save", real_save)
    assert egs.main(egs_inputs) == 0 and (out / "dnn" / ".done").is_file()


def test_egs_redoes_when_its_alignments_were_redone(
    tmp_path: Path, egs_inputs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from steps_py.fileio import mark_done

    ali = tmp_path / "ali" / "train"
    mark_done(ali, {"aligned": 3})
    assert egs.main(egs_inputs) == 0
    first = (tmp_path / "egs" / "dnn" / "info.json").stat().st_mtime_ns
    capsys.readouterr()
    assert egs.main(egs_inputs) == 0
    assert "skipping" in capsys.readouterr().err
    assert (tmp_path / "egs" / "dnn" / "info.json").stat().st_mtime_ns == first
    mark_done(ali, {"aligned": 3})  # stage 4 was redone (--force)
    assert egs.main(egs_inputs) == 0
    err = capsys.readouterr().err
    assert "inputs changed" in err and f"{ali} (redone or changed since)" in err
    assert (tmp_path / "egs" / "dnn" / "info.json").stat().st_mtime_ns != first


def test_gmm_steps_without_earlier_stages_name_the_command_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        train_mono.main(
            [
                "--data",
                str(tmp_path / "data"),
                "--lang",
                str(tmp_path / "lang"),
                "--out",
                str(tmp_path / "mono"),
            ]
        )
        == 1
    )
    errors = _errors(capsys)
    assert len(errors) == 1 and "run `python -m steps_py.lang.prepare` first" in errors[0], errors
    rc = gmm_align.main(
        [
            "--data",
            str(tmp_path / "data"),
            "--lang",
            str(tmp_path / "lang"),
            "--model",
            str(tmp_path / "mono"),
            "--out",
            str(tmp_path / "ali"),
        ]
    )
    errors = _errors(capsys)
    assert (
        rc == 1 and len(errors) == 1 and "run `python -m steps_py.lang.prepare` first" in errors[0]
    ), errors
    assert not (tmp_path / "ali" / ".done").exists()


def test_egs_names_a_damaged_or_missing_pdf_scp(
    tmp_path: Path, egs_inputs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    scp = tmp_path / "ali" / "train" / "pdf.scp"
    scp.write_text(f"a-1 {scp.parent}/pdf.ark:999999\n")
    assert egs.main(egs_inputs) == 1
    errors = _errors(capsys)
    assert len(errors) == 1 and errors[0].startswith(f"cannot read {scp} as Kaldi int32 vectors"), (
        errors
    )
    scp.unlink()
    assert egs.main(egs_inputs) == 1
    errors = _errors(capsys)
    assert len(errors) == 1 and errors[0].startswith(f"{scp} not found: run the alignment step"), (
        errors
    )


def test_egs_without_alignments_is_one_line(
    tmp_path: Path, egs_inputs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Neither --ali nor --ali-dir: the step's message, not a traceback of the input stamps."""
    i = egs_inputs.index("--ali")
    assert egs.main(egs_inputs[:i] + egs_inputs[i + 2 :]) == 1
    assert _errors(capsys) == [
        "give exactly one of --ali (project alignments) and --ali-dir (a Kaldi exp dir)"
    ]
