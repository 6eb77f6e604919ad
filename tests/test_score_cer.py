"""CER scoring against hand-computed cases, normalisation rules and the scoring CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps_py.score.__main__ import main as score_main
from steps_py.score.cer import (
    ScoreError,
    per_speaker,
    read_text,
    score_texts,
    speaker_of,
)
from steps_py.score.normalize import normalize_text


def test_substitution_insertion_deletion_counts() -> None:
    # ref 打开导航 vs hyp 打关导航去: 1 sub (开->关), 1 ins (去)
    # ref 你好世界 vs hyp 你世界: 1 del (好)
    res = score_texts(
        {"u1": "打 开 导 航", "u2": "你好世界"}, {"u1": "打关导航去", "u2": "你 世 界"}
    )
    assert (res.subs, res.ins, res.dels, res.errors, res.ref_len) == (1, 1, 1, 3, 8)
    assert res.utts["u1"].ops == ["C", "S", "C", "C", "I"]
    assert res.utts["u2"].ops == ["C", "D", "C", "C"]
    assert res.line() == "%CER 37.50 [ 3 / 8, 1 ins, 1 del, 1 sub ]"


def test_perfect_and_empty_hyp() -> None:
    res = score_texts({"a": "播放音乐", "b": "天气"}, {"a": "播放音乐", "b": ""})
    assert res.utts["a"].errors == 0
    assert res.utts["b"].dels == 2
    assert res.line() == "%CER 33.33 [ 2 / 6, 0 ins, 2 del, 0 sub ]"
    assert res.missing == []


def test_missing_utterance_counts_as_deletions_and_is_listed() -> None:
    res = score_texts({"a": "一二三", "b": "四五"}, {"a": "一二三"})
    assert res.missing == ["b"]
    assert (res.dels, res.errors, res.ref_len) == (2, 2, 5)


def test_unknown_hyp_ids_error_names_ids_and_file() -> None:
    with pytest.raises(ScoreError, match=r"hyp\.txt.*zz1, zz2"):
        score_texts({"a": "一"}, {"a": "一", "zz1": "二", "zz2": "三"}, hyp_name="hyp.txt")


def test_empty_ref_is_error_naming_utterance_or_skipped() -> None:
    with pytest.raises(ScoreError, match="'e1'.*empty reference"):
        score_texts({"e1": "，。", "a": "好"}, {"a": "好"}, ref_name="text")
    res = score_texts({"e1": "", "a": "好"}, {"a": "好"}, empty_ref="skip")
    assert res.skipped_empty_ref == ["e1"] and res.ref_len == 1 and res.errors == 0


def test_normalisation_rules() -> None:
    assert normalize_text("打 开，导航！") == list("打开导航")
    assert normalize_text("ＡＢＣ１２ gps.") == list("ABC12GPS")  # full-width -> half, upper
    assert normalize_text("「你好」、《歌》?") == list("你好歌")
    assert normalize_text("!SIL 我 <UNK> <SPOKEN_NOISE> 去 #0") == ["我", "<UNK>", "去"]
    # identical normalisation on both sides: punctuation/case/width differences are not errors
    res = score_texts({"u": "播放ｍｐ３，好吗？"}, {"u": "播 放 MP3 好 吗"})
    assert res.errors == 0 and res.ref_len == 7  # 播 放 M P 3 好 吗


def test_speaker_of_and_per_speaker() -> None:
    assert speaker_of("spk1-utt2") == "spk1"
    assert speaker_of("S0002_W01") == "S0002"
    assert speaker_of("plain") == "plain"
    assert speaker_of("x-1", {"x-1": "other"}) == "other"
    res = score_texts(
        {"a-1": "一二", "a-2": "三", "b-1": "四五"}, {"a-1": "一二", "a-2": "四", "b-1": "四"}
    )
    rows = {r.speaker: r for r in per_speaker(res)}
    assert (rows["a"].utts, rows["a"].ref_len, rows["a"].errors) == (2, 3, 1)
    assert (rows["b"].ref_len, rows["b"].dels) == (2, 1)


def test_read_text_errors(tmp_path: Path) -> None:
    p = tmp_path / "text"
    p.write_text("a 一 二\na 三\n", encoding="utf-8")
    with pytest.raises(ScoreError, match="duplicate.*'a'"):
        read_text(p)
    p.write_text("a 一\nb\n", encoding="utf-8")
    assert read_text(p) == {"a": "一", "b": ""}
    with pytest.raises(ScoreError, match="'b'.*empty"):
        read_text(p, allow_empty=False)


def test_score_cli_writes_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref, hyp, out = tmp_path / "ref", tmp_path / "hyp", tmp_path / "scoring"
    ref.write_text("s1-a 打 开 导 航\ns1-b 天 气\ns2-a 音 乐\n", encoding="utf-8")
    hyp.write_text("s1-a 打 开 导 航 吧\ns2-a 音 月\n", encoding="utf-8")
    assert score_main(["--ref", str(ref), "--hyp", str(hyp), "--out-dir", str(out)]) == 0
    line = "%CER 50.00 [ 4 / 8, 1 ins, 2 del, 1 sub ]"
    assert capsys.readouterr().out.strip() == line
    assert (out / "cer").read_text(encoding="utf-8").strip() == line
    per_utt = (out / "per_utt").read_text(encoding="utf-8")
    assert "s2-a op   C S" in per_utt and "s1-b #csid 0 0 0 2 (missing from hyp)" in per_utt
    assert (out / "missing.txt").read_text(encoding="utf-8") == "s1-b\n"
    spk = (out / "per_spk").read_text(encoding="utf-8").splitlines()
    assert spk[1].split()[:3] == ["s1", "2", "6"] and spk[2].split()[:3] == ["s2", "1", "2"]
    hyp.write_text("s9-z 好\n", encoding="utf-8")
    assert score_main(["--ref", str(ref), "--hyp", str(hyp)]) == 1


def test_utf8_bom_is_removed_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "text"
    p.write_bytes(
        "\ufeffs1-a 打 开\ns1-b 导 航\n\ufeffs2-a 音 乐\n".encode()
    )  # two files cat-ed together
    with caplog.at_level("WARNING"):
        got = read_text(p)
    assert sorted(got) == ["s1-a", "s1-b", "s2-a"] and all("\ufeff" not in u for u in got)
    assert "byte-order mark" in caplog.text and "1, 3" in caplog.text


def test_utf16_and_gb18030_are_clear_errors_or_read_with_encoding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    ref.write_text("s1-a 打 开 导 航\ns1-b 天 气\n", encoding="utf-16")
    with pytest.raises(ScoreError, match=r"is UTF-16.*iconv -f UTF-16 -t UTF-8.*--encoding utf-16"):
        read_text(ref)
    assert read_text(ref, encoding="utf-16") == {"s1-a": "打 开 导 航", "s1-b": "天 气"}
    ref.write_text("s1-a 打 开 导 航\ns1-b 天 气\n", encoding="gb18030")
    hyp.write_text("s1-a 打 开 导 航\ns1-b 天 汽\n", encoding="gb18030")
    with pytest.raises(
        ScoreError, match=rf"{ref}:1: not utf-8 .*iconv -f GB18030 -t UTF-8.*--encoding gb18030"
    ):
        read_text(ref)
    assert score_main(["--ref", str(ref), "--hyp", str(hyp)]) == 1
    err = capsys.readouterr().err
    assert (
        f"{ref}:1: not utf-8" in err and "Traceback" not in err and "UnicodeDecodeError" not in err
    )
    gb = ["--encoding", "gb18030", "--ref-encoding", "gb18030"]
    assert score_main(["--ref", str(ref), "--hyp", str(hyp), *gb]) == 0
    assert capsys.readouterr().out.strip() == "%CER 16.67 [ 1 / 6, 0 ins, 0 del, 1 sub ]"
    assert (
        score_main(["--ref", str(ref), "--hyp", str(hyp), *gb[2:], "--encoding", "nonesuch"]) == 1
    )
    assert "unknown encoding 'nonesuch'" in capsys.readouterr().err


def test_encoding_is_the_hypothesis_s_the_reference_stays_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--encoding reads another system's GB18030 output against our UTF-8 data-dir text."""
    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    ref.write_text("s1-a 打 开 导 航\ns1-b 天 气\n", encoding="utf-8")
    hyp.write_text("s1-a 打 开 导 航\ns1-b 天 汽\n", encoding="gb18030")
    assert score_main(["--ref", str(ref), "--hyp", str(hyp), "--encoding", "gb18030"]) == 0
    assert capsys.readouterr().out.strip() == "%CER 16.67 [ 1 / 6, 0 ins, 0 del, 1 sub ]"
    ref.write_text("s1-a 打 开 导 航\ns1-b 天 气\n", encoding="gb18030")  # an external reference
    assert score_main(["--ref", str(ref), "--hyp", str(hyp), "--encoding", "gb18030"]) == 1
    assert f"{ref}:1: not utf-8" in capsys.readouterr().err  # names the file: the ref
    argv = ["--ref", str(ref), "--hyp", str(hyp), "--encoding", "gb18030"]
    assert score_main([*argv, "--ref-encoding", "gb18030"]) == 0
