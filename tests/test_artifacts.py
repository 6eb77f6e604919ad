"""The artifacts that cross stages: a decode dir (`DecodeDir`) and a training run dir
(`RunDir`), each read only through its class, whose errors name the command that writes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steps_py.decode.artifact import DecodeDir, DecodeDirError
from steps_py.decode.inputs import DecodeError
from steps_py.model_tag import ModelTag
from steps_py.parallel.run_dir import RunDir, RunDirError


def _decode(d: Path) -> DecodeDir:
    d.mkdir(parents=True)
    (d / "ref.txt").write_text("u1 a b c\nu2 d e\n", encoding="utf-8")
    (d / "hyp.txt").write_text("u1 a b\nu2 d e\n", encoding="utf-8")
    (d / "summary.json").write_text(json.dumps({"cer": 20.0, "oracle_cer": 5.0}), "utf-8")
    for name, wer in (("cer_10_0", "20.00"), ("cer_8_0.5", "20.00"), ("cer_9_0", "40.00")):
        (d / name).write_text(f"%WER {wer} [ 1 / 5, 0 ins, 1 del, 0 sub ]\n", encoding="utf-8")
    (d / "best_lmwt").write_text("10\n", encoding="utf-8")
    (d / "best_wip").write_text("0.0\n", encoding="utf-8")
    return DecodeDir(d)


def test_decode_dir_reads_what_the_decode_wrote(tmp_path: Path) -> None:
    dd = _decode(tmp_path / "decode_ema-hl100_dev")
    assert DecodeDir.parse_name(dd.path.name) == ("ema-hl100", "dev")
    assert DecodeDir.parse_name("decode_test") == ("", "test")
    assert DecodeDir.parse_name("graph") is None
    assert DecodeDir.of(tmp_path, "ema-hl100", "dev") == dd
    assert DecodeDir.cer_name(10, 0.0) == "cer_10_0.0"
    assert dd.summary()["oracle_cer"] == 5.0
    assert dd.cer_by_file() == {"cer_10_0": "20.00", "cer_8_0.5": "20.00", "cer_9_0": "40.00"}
    # best_wer.sh's order: penalty, then LM weight; the first of equal lines wins
    assert dd.best_kaldi_line().endswith("cer_10_0")  # type: ignore[union-attr]
    score = dd.score()
    assert score is not None and score.cer == pytest.approx(20.0) and score.oracle == 5.0
    chosen = dd.chosen()
    assert (chosen.lm_weight, chosen.penalty) == (10.0, 0.0)
    assert [p.name for p in dd.scored_files()][:4] == [
        "ref.txt",
        "hyp.txt",
        "summary.json",
        "cer_10_0",
    ]


def test_decode_dir_errors_name_the_decode_command(tmp_path: Path) -> None:
    dd = DecodeDir(tmp_path / "decode_global_dev")
    dd.path.mkdir()
    assert dd.summary(missing_ok=True) == {}
    with pytest.raises(DecodeDirError, match="steps_py.decode.nnet"):
        dd.summary()
    (dd.path / "summary.json").write_text("{", encoding="utf-8")
    assert dd.summary(missing_ok=True, damaged_ok=True) == {}
    with pytest.raises(DecodeDirError, match="decode again with python -m steps_py.decode"):
        dd.summary()
    with pytest.raises(DecodeError, match="--lm-weight-from"):
        dd.chosen()
    assert dd.score() is None


def test_run_dir_models_summary_and_errors(tmp_path: Path) -> None:
    rd = RunDir(tmp_path / "dnn_ma_n2")
    with pytest.raises(RunDirError, match="python -m steps_py.parallel.train --exp-dir"):
        rd.summary()
    (rd.final).mkdir(parents=True)
    for t in ("global", "ema-hl100", "posthoc-hl50"):
        (rd.final / f"{t}.safetensors").write_bytes(b"")
    assert not rd.is_finished()
    (rd.final / ".done").write_text("{}", encoding="utf-8")
    assert rd.is_finished()
    assert rd.model_tags() == ["ema-hl100", "global", "posthoc-hl50"]
    assert rd.model_tags(posthoc=False) == ["ema-hl100", "global"]
    assert rd.model_tags(posthoc=True) == ["posthoc-hl50"]
    assert rd.model_path(ModelTag.parse("ema-hl100")) == rd.final / "ema-hl100.safetensors"
    assert rd.model_path(ModelTag.parse("epoch2-global")) == rd.path / "epoch2/global.safetensors"
    for e in (1, 2, 10):
        (rd.path / f"epoch{e}").mkdir()
        (rd.path / f"epoch{e}" / ".done").write_text("{}", encoding="utf-8")
    (rd.path / "epoch3").mkdir()  # not finished
    assert rd.epochs() == [1, 2, 10]
    rd.summary_path.write_text('{"epochs": 2}', encoding="utf-8")
    assert rd.summary() == {"epochs": 2}
    rd.summary_path.write_text("[]", encoding="utf-8")
    with pytest.raises(RunDirError, match="not a JSON object"):
        rd.summary()
