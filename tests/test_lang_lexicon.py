"""Lexicon, disambiguation symbols, lang directory files and the lexicon FSTs."""

from __future__ import annotations

from pathlib import Path

import kaldi_hmm_gmm
import kaldifst
import pytest

from local.mandarin.lexicon import SPECIAL_ENTRIES, pinyin_lexicon
from local.mandarin.prepare_dict import char_lexicon, mandarin_dict
from steps_py.lang.fst_build import transduce
from steps_py.lang.lexicon import (
    LexEntry,
    Lexicon,
    LexiconError,
    add_disambig_symbols,
    read_dict_dir,
    read_lexicon,
    write_dict_dir,
)
from steps_py.lang.prepare import prepare_lang


def read_table(path: Path) -> dict[str, int]:
    return {
        s: int(i)
        for s, i in (line.split() for line in path.read_text(encoding="utf-8").splitlines())
    }


def toy_lexicon() -> Lexicon:
    entries = [LexEntry(w, p) for w, p in SPECIAL_ENTRIES]
    entries += [
        LexEntry("北", ("b", "ei3")),
        LexEntry("京", ("j", "ing1")),
        LexEntry("天", ("t", "ian1")),
        LexEntry("行", ("x", "ing2")),
        LexEntry("行", ("h", "ang2")),
        LexEntry("一", ("i1",)),
        LexEntry("衣", ("i1",)),  # homophone of 一
    ]
    return Lexicon(entries)


@pytest.fixture(scope="module")
def lang_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lang")
    prepare_lang(mandarin_dict(toy_lexicon()), out, sil_prob=0.5)
    return out


def test_disambig_symbols_like_add_lex_disambig() -> None:
    lex = Lexicon(
        [
            LexEntry("A", ("a1",)),
            LexEntry("B", ("a1",)),
            LexEntry("C", ("a1", "b")),
            LexEntry("D", ("b", "a1")),
            LexEntry("E", ("b",)),
        ]
    )
    out, max_k = add_disambig_symbols(lex)
    assert out == [
        ("A", ("a1", "#1")),
        ("B", ("a1", "#2")),
        ("C", ("a1", "b")),
        ("D", ("b", "a1")),
        ("E", ("b", "#1")),
    ]
    assert max_k == 2


def test_char_lexicon_polyphones_and_errors() -> None:
    full = pinyin_lexicon("行北京")
    lex = char_lexicon({"行": "t:1", "北": "t:1", "<UNK>": "t:2"}, full)
    assert lex.words == ["!SIL", "<SPOKEN_NOISE>", "<UNK>", "北", "行"]
    assert {e.phones for e in lex.entries if e.word == "行"} >= {("x", "ing2"), ("h", "ang2")}
    assert lex.is_pronounceable("行") and not lex.is_pronounceable("京")
    with pytest.raises(LexiconError, match="'A' \\(text:3\\)"):
        char_lexicon({"北": "text:1", "A": "text:3"}, full)


def test_dict_dir_round_trip(tmp_path: Path) -> None:
    lex = toy_lexicon()
    write_dict_dir(mandarin_dict(lex), tmp_path)
    assert read_lexicon(tmp_path / "lexicon.txt").entries == lex.entries
    assert read_lexicon(tmp_path / "lexiconp.txt", with_probs=True).entries == lex.entries
    nonsil = (tmp_path / "nonsilence_phones.txt").read_text().split()
    assert sorted(nonsil) == sorted(lex.phones - {"SIL", "SPN"})
    assert (tmp_path / "silence_phones.txt").read_text().split() == ["SIL", "SPN"]
    back = read_dict_dir(tmp_path)
    assert back.lexicon.entries == lex.entries and back == mandarin_dict(lex)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("lexicon.txt", "<s> SIL\n", "lexicon.txt:1: word '<s>' is reserved"),
        ("lexicon.txt", "北 b ei3\n北 b ei3\n", "lexicon.txt:2: '北 b ei3' is repeated"),
        ("lexicon.txt", "北 b q\n", "phone\\(s\\) q of '北' are in neither"),
        (
            "silence_phones.txt",
            "SIL\nb\n",
            "nonsilence_phones.txt:1: phone 'b' is also in silence_phones.txt:2",
        ),
        ("optional_silence.txt", "SPX\n", "'SPX' is not in silence_phones.txt"),
        ("lexicon.txt", "北 b ei3\n\xff\n", "lexicon.txt:2: not valid UTF-8"),
    ],
)
def test_dict_dir_errors_name_file_and_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    write_dict_dir(mandarin_dict(toy_lexicon()), tmp_path)
    (tmp_path / "lexiconp.txt").unlink()
    (tmp_path / name).write_bytes(
        text.encode("utf-8", "surrogateescape").replace(b"\xc3\xbf", b"\xff")
    )
    with pytest.raises(LexiconError, match=message):
        read_dict_dir(tmp_path)


def test_lang_files_consistent(lang_dir: Path) -> None:
    phones = read_table(lang_dir / "phones.txt")
    words = read_table(lang_dir / "words.txt")
    assert list(phones)[:3] == ["<eps>", "SIL", "SPN"] and phones["<eps>"] == 0
    assert sorted(phones.values()) == list(range(len(phones)))
    disambig = [p for p in phones if p.startswith("#")]
    assert disambig[0] == "#0" and min(phones[d] for d in disambig) > max(
        i for p, i in phones.items() if not p.startswith("#")
    )
    # every lexicon phone (and every disambig symbol used) is in phones.txt
    for line in (lang_dir / "lexiconp_disambig.txt").read_text().splitlines():
        for p in line.split()[2:]:
            assert p in phones, line
    assert [int(x) for x in (lang_dir / "phones/disambig.int").read_text().split()] == [
        phones[d] for d in disambig
    ]
    assert (lang_dir / "phones/disambig.csl").read_text().strip() == ":".join(
        str(phones[d]) for d in disambig
    )
    assert list(words)[:4] == ["<eps>", "!SIL", "<SPOKEN_NOISE>", "<UNK>"]
    assert list(words)[-3:] == ["#0", "<s>", "</s>"]
    assert int((lang_dir / "oov.int").read_text()) == words["<UNK>"]
    nonsil = (lang_dir / "phones/nonsilence.txt").read_text().split()
    assert set(nonsil) == toy_lexicon().phones - {"SIL", "SPN"}


def test_topo_parses_with_kaldi(lang_dir: Path) -> None:
    phones = read_table(lang_dir / "phones.txt")
    topo = kaldi_hmm_gmm.HmmTopology()
    topo.read((lang_dir / "topo").read_text())
    real = [i for p, i in phones.items() if p != "<eps>" and not p.startswith("#")]
    assert sorted(topo.phones) == real
    assert topo.num_pdf_classes(phones["SIL"]) == 5
    assert topo.num_pdf_classes(phones["b"]) == 3
    assert topo.min_length(phones["b"]) == 3


def _words_for(fst_path: Path, lang_dir: Path, phone_seq: list[str]) -> list[str] | None:
    phones, words = read_table(lang_dir / "phones.txt"), read_table(lang_dir / "words.txt")
    inv = {i: w for w, i in words.items()}
    fst = kaldifst.StdVectorFst.read(str(fst_path))
    kaldifst.arcsort(fst, sort_type="ilabel")
    res = transduce(fst, [phones[p] for p in phone_seq])
    return None if res is None else [inv[i] for i in res[0]]


def test_l_fst_maps_phones_to_words(lang_dir: Path) -> None:
    L = lang_dir / "L.fst"
    assert _words_for(L, lang_dir, ["SIL", "b", "ei3", "j", "ing1", "SIL", "t", "ian1"]) == [
        "北",
        "京",
        "天",
    ]
    # both pronunciations of the polyphone reach the same word
    assert _words_for(L, lang_dir, ["x", "ing2", "h", "ang2"]) == ["行", "行"]
    assert _words_for(L, lang_dir, ["b", "j"]) is None
    assert _words_for(L, lang_dir, ["b", "ei3", "#0"]) is None


def test_l_fst_silence_costs(lang_dir: Path) -> None:
    phones = read_table(lang_dir / "phones.txt")
    fst = kaldifst.StdVectorFst.read(str(lang_dir / "L.fst"))
    kaldifst.arcsort(fst, sort_type="ilabel")
    _, cost_no_sil = transduce(fst, [phones[p] for p in ["b", "ei3"]])
    _, cost_sil = transduce(fst, [phones[p] for p in ["SIL", "b", "ei3", "SIL"]])
    ln2 = 0.6931472
    assert cost_no_sil == pytest.approx(2 * ln2, abs=1e-4)  # no-sil at start and after the word
    assert cost_sil == pytest.approx(2 * ln2, abs=1e-4)  # sil at start and after the word (p=0.5)


def test_lexicon_fsts_are_olabel_sorted(lang_dir: Path) -> None:
    for name in ("L.fst", "L_disambig.fst"):
        assert kaldifst.StdVectorFst.read(str(lang_dir / name)).is_olabel_sorted, name


def test_l_disambig_passes_symbols(lang_dir: Path) -> None:
    Ld = lang_dir / "L_disambig.fst"
    # homophones need their #k; G's #0 passes through the loop state as word #0
    assert _words_for(Ld, lang_dir, ["i1", "#1", "#0", "b", "ei3"]) == ["一", "#0", "北"]
    assert _words_for(Ld, lang_dir, ["i1", "#2"]) == ["衣"]
    assert _words_for(Ld, lang_dir, ["i1"]) is None
    assert (
        _words_for(Ld, lang_dir, ["SIL", "#2", "b", "ei3"]) is None
    )  # SIL is followed by the last #k
    last = [p for p in read_table(lang_dir / "phones.txt") if p.startswith("#")][-1]
    assert _words_for(Ld, lang_dir, ["SIL", last, "b", "ei3"]) == ["北"]
