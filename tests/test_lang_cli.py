"""The stage-2 command lines: the Mandarin dict dir (local.mandarin.prepare_dict), the lang
dir from it (steps_py.lang.prepare) and the LM (ARPA + G.fst + perplexity)."""

from __future__ import annotations

from pathlib import Path

import kaldifst
import pytest

from local.mandarin import prepare_dict as dict_cli
from local.mandarin.lexicon import pinyin_lexicon
from steps_py.lang import lm as lm_cli
from steps_py.lang import prepare as prepare_cli

SENTS = [
    "导航到北京西站",
    "播放周杰伦的歌",
    "明天上海天气怎么样",
    "我想买一双运动鞋",
    "附近有没有好吃的餐厅",
    "今天北京天气怎么样",
    "帮我找一下最近的加油站",
    "导航去上海虹桥火车站",
]


def make_data(root: Path, extra_dev: str = "") -> Path:
    data = root / "data"
    for name, sents in (
        ("train", SENTS[:4]),
        ("dev", SENTS[4:6] + ([extra_dev] if extra_dev else [])),
        ("test", SENTS[6:7]),
    ):
        (data / name).mkdir(parents=True)
        (data / name / "text").write_text(
            "".join(f"{name}{i:02d} {' '.join(s)}\n" for i, s in enumerate(sents)), encoding="utf-8"
        )
    (data / "local").mkdir()
    (data / "local" / "lm_text.txt").write_text(
        "".join(" ".join(s) + "\n" for s in SENTS[:5] + SENTS[7:]), encoding="utf-8"
    )
    (data / "local" / "lexicon_pinyin.txt").write_text(
        pinyin_lexicon("".join(SENTS) + "雪人").to_text(), encoding="utf-8"
    )
    return data


def prepare(data: Path, lang: Path) -> int:
    """Stage 2a as run.sh runs it: the Mandarin dict dir, then the lang dir from it."""
    rc = dict_cli.main(
        [
            "--data",
            str(data),
            "--lexicon",
            str(data / "local/lexicon_pinyin.txt"),
            "--out",
            str(data / "local/dict"),
        ]
    )
    return rc or prepare_cli.main(["--dict-dir", str(data / "local/dict"), "--out", str(lang)])


def test_prepare_and_lm_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_data(tmp_path)
    lang, lang_test = data / "lang", data / "lang_test"
    assert prepare(data, lang) == 0
    words = (lang / "words.txt").read_text(encoding="utf-8").split()[::2]
    assert set("".join(SENTS[:7])) <= set(words)  # train/dev/test/lm characters all present
    for f in (
        "lexicon.txt",
        "lexiconp.txt",
        "nonsilence_phones.txt",
        "silence_phones.txt",
        "optional_silence.txt",
    ):
        assert (data / "local" / "dict" / f).is_file()
    stamp = (lang / "L.fst").stat().st_mtime_ns
    assert prepare(data, lang) == 0  # skipped: .done
    assert (lang / "L.fst").stat().st_mtime_ns == stamp

    assert lm_cli.main(["--data", str(data), "--lang", str(lang), "--out", str(lang_test)]) == 0
    assert "ppl=" in capsys.readouterr().out
    for f in ("G.fst", "L.fst", "L_disambig.fst", "words.txt", "phones.txt", "topo", ".done"):
        assert (lang_test / f).is_file(), f
    assert kaldifst.StdVectorFst.read(str(lang_test / "G.fst")).is_ilabel_sorted
    ppl_line = (data / "local" / "lm" / "perplexity.txt").read_text()
    ppl = float(ppl_line.split("ppl=")[1])
    assert 1.0 < ppl < len(words)  # better than uniform over the vocabulary
    assert (data / "local" / "lm" / "lm.arpa").read_text().startswith("\n\\data\\")

    # finished: nothing is redone; new text invalidates both stages without --force
    g_stamp = (lang_test / "G.fst").stat().st_mtime_ns
    assert lm_cli.main(["--data", str(data), "--lang", str(lang), "--out", str(lang_test)]) == 0
    assert (lang_test / "G.fst").stat().st_mtime_ns == g_stamp
    with open(data / "local" / "lm_text.txt", "a", encoding="utf-8") as f:
        f.write("雪 人\n")
    assert prepare(data, lang) == 0
    assert "雪" in (lang / "words.txt").read_text(encoding="utf-8")
    assert lm_cli.main(["--data", str(data), "--lang", str(lang), "--out", str(lang_test)]) == 0
    assert "雪" in (lang_test / "words.txt").read_text(encoding="utf-8")
    assert (lang_test / "G.fst").stat().st_mtime_ns != g_stamp


def test_prepare_rejects_unpronounceable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_data(tmp_path, extra_dev="去Q站")
    assert prepare(data, data / "lang") == 1
    err = capsys.readouterr().err  # setup_logging replaces handlers, so read stderr
    assert "'Q'" in err and "dev/text:3" in err
    assert not (data / "local/dict").exists() and not (data / "lang").exists()


def test_lang_from_a_non_mandarin_dict_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "dict"
    d.mkdir()
    (d / "lexicon.txt").write_text(
        "<unk> sil\nhello hh ah l ow\nworld w er l d\nhello hh eh l ow\n"
    )
    (d / "silence_phones.txt").write_text("sil\n")
    (d / "optional_silence.txt").write_text("sil\n")
    (d / "nonsilence_phones.txt").write_text("hh\nah eh\nl\now\nw\ner\nd\n")
    (d / "extra_questions.txt").write_text("")
    lang = tmp_path / "lang"
    assert (
        prepare_cli.main(
            ["--dict-dir", str(d), "--out", str(lang), "--oov", "<unk>", "--num-sil-states", "3"]
        )
        == 0
    )
    phones = (lang / "phones.txt").read_text().split()[::2]
    assert phones[:10] == ["<eps>", "sil", "hh", "ah", "eh", "l", "ow", "w", "er", "d"]
    assert (lang / "words.txt").read_text().split()[::2] == [
        "<eps>",
        "<unk>",
        "hello",
        "world",
        "#0",
        "<s>",
        "</s>",
    ]
    assert (lang / "phones/sets.txt").read_text().splitlines()[2] == "ah eh"  # one set per line
    assert (
        "<State> 2 <PdfClass> 2 <Transition> 2 0.75 <Transition> 3 0.25 </State>"
        in (lang / "topo").read_text()
    )
    # a dict that Kaldi's validate_dict_dir.pl refuses is refused with the file and line
    (d / "nonsilence_phones.txt").write_text("hh\n#ah eh\nl\now\nw\ner\nd\n")
    assert prepare_cli.main(["--dict-dir", str(d), "--out", str(lang), "--oov", "<unk>"]) == 1
    assert "nonsilence_phones.txt:2: phone '#ah' has a disallowed form" in capsys.readouterr().err
    (d / "nonsilence_phones.txt").write_text("hh\nah eh\nl\now\nw\ner\nd\n")
    assert prepare_cli.main(["--dict-dir", str(d), "--out", str(lang)]) == 1  # no <UNK> entry
    assert "OOV word '<UNK>' (--oov) has no lexicon entry" in capsys.readouterr().err


def test_lm_needs_lang(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_data(tmp_path)
    assert (
        lm_cli.main(
            ["--data", str(data), "--lang", str(data / "nolang"), "--out", str(data / "lt")]
        )
        == 1
    )
    assert "steps_py.lang.prepare" in capsys.readouterr().err
