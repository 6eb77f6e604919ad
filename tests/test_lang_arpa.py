"""Your own ARPA LM (steps_py.lang.lm --arpa): words outside the lexicon are listed and their
n-grams removed (Kaldi's format_lm.sh), entropy pruning (--prune) gives a smaller G.fst,
and a word-level LM works with a word lexicon (local.mandarin.prepare_dict --words),
its hypotheses scored as CER."""

from __future__ import annotations

from pathlib import Path

import kaldifst
import pytest

from local.mandarin import prepare_dict as dict_cli
from steps_py.lang import lm as lm_cli
from steps_py.lang import prepare as prepare_cli
from steps_py.lang.ngram import read_arpa, train_mkn
from steps_py.score.cer import score_texts
from tests.test_lang_cli import SENTS, make_data, prepare


def g_arcs(lang_test: Path) -> int:
    g = kaldifst.StdVectorFst.read(str(lang_test / "G.fst"))
    return sum(g.num_arcs(s) for s in range(g.num_states))


def lm_main(data: Path, lang: Path, out: Path, *extra: str) -> int:
    return lm_cli.main(["--data", str(data), "--lang", str(lang), "--out", str(out), *extra])


def test_arpa_with_oov_words_and_pruning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_data(tmp_path)
    lang = data / "lang"
    assert prepare(data, lang) == 0
    # a character 3-gram that also knows 雪人 (not in the lang dir)
    arpa = tmp_path / "my.arpa"
    train_mkn([list(s) for s in SENTS] + [list("雪人到北京")] * 3, order=3, unk="<UNK>").write_arpa(
        arpa
    )

    assert lm_main(data, lang, data / "lang_test", "--arpa", str(arpa)) == 0
    err = capsys.readouterr().err
    lm_dir = data / "local" / "lm"
    assert (lm_dir / "oovs_lm.txt").read_text(encoding="utf-8").split() == ["人", "雪"]
    assert "2 words of the LM are not in the lexicon (人 雪;" in err
    kept = read_arpa(lm_dir / "lm.arpa")
    assert not any({"人", "雪"} & set(g) for g in kept.logprob)
    assert ("到", "北", "京") in kept.logprob  # n-grams without an OOV are kept as they were
    assert kept.logprob[("到", "北", "京")] == pytest.approx(
        read_arpa(arpa).logprob[("到", "北", "京")], abs=1e-6
    )
    full = g_arcs(data / "lang_test")

    assert (
        lm_main(data, lang, data / "lang_test_pruned", "--arpa", str(arpa), "--prune", "1e-2") == 0
    )
    pruned = g_arcs(data / "lang_test_pruned")
    assert pruned < full
    # the same ARPA and pruning: skipped; another threshold: redone
    assert (
        lm_main(data, lang, data / "lang_test_pruned", "--arpa", str(arpa), "--prune", "1e-2") == 0
    )
    assert "already done" in capsys.readouterr().err
    assert (
        lm_main(data, lang, data / "lang_test_pruned", "--arpa", str(arpa), "--prune", "1e-4") == 0
    )
    assert "another LM or pruning; rebuilding" in capsys.readouterr().err
    assert pruned <= g_arcs(data / "lang_test_pruned") <= full


def test_word_lm_with_a_word_lexicon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_data(tmp_path)
    words = [
        ["导航", "到", "北京", "西站"],
        ["今天", "北京", "天气", "怎么样"],
        ["明天", "上海", "天气", "怎么样"],
    ]
    arpa = tmp_path / "word.arpa"
    train_mkn(words * 2 + [["Ｘ光", "北京"]], order=2, unk="<UNK>").write_arpa(arpa)
    dict_dir, lang = data / "local" / "dict", data / "lang"
    lexicon = data / "local" / "lexicon_pinyin.txt"
    args = [
        "--data",
        str(data),
        "--lexicon",
        str(lexicon),
        "--out",
        str(dict_dir),
        "--words",
        str(arpa),
    ]
    assert dict_cli.main(args) == 0
    lex = (dict_dir / "lexicon.txt").read_text(encoding="utf-8")
    assert "北京 b ei3 j ing1\n" in lex and "怎么样 z en3 m e5 iang4\n" in lex
    assert "Ｘ光" not in lex and "1 cannot be pronounced" in capsys.readouterr().err
    assert prepare_cli.main(["--dict-dir", str(dict_dir), "--out", str(lang)]) == 0

    assert lm_main(data, lang, data / "lang_test", "--arpa", str(arpa)) == 0
    assert (data / "local" / "lm" / "oovs_lm.txt").read_text(encoding="utf-8").split() == ["Ｘ光"]
    g = kaldifst.StdVectorFst.read(str(data / "lang_test" / "G.fst"))
    word_ids = dict(
        ln.split() for ln in (lang / "words.txt").read_text(encoding="utf-8").splitlines()
    )
    labels = {a.olabel for s in range(g.num_states) for a in kaldifst.ArcIterator(g, s)}
    assert int(word_ids["北京"]) in labels and int(word_ids["怎么样"]) in labels
    # a word hypothesis is scored by characters against a character reference
    res = score_texts({"u": "今 天 北 京 天 气"}, {"u": "今天 北京 天汽"})
    assert (res.ref_len, res.errors) == (6, 1)
