"""Pronunciations of hanzi as (initial, tonal final) phone tuples."""

from __future__ import annotations

import pytest

from local.mandarin.pron import PHONE_SET, char_pronunciations, is_pronounceable, split_tone


@pytest.mark.parametrize(
    ("ch", "expected"),
    [
        ("行", [("x", "ing2"), ("h", "ang2")]),  # polyphone: xing2 / hang2
        ("了", [("l", "e5"), ("l", "iao3")]),  # neutral tone is 5
        ("长", [("ch", "ang2"), ("zh", "ang3")]),
        ("一", [("i1",)]),  # y folded into the final: one phone
        ("五", [("u3",)]),  # w folded into the final
        ("玉", [("v4",)]),
        ("有", [("iou3",)]),  # strict final iou, not iu
        ("字", [("z", "iy4")]),  # apical vowel after z c s
        ("是", [("sh", "ix4")]),  # apical vowel after zh ch sh r
        ("去", [("q", "v4")]),  # qu is q + v
    ],
)
def test_known_pronunciations(ch: str, expected: list[tuple[str, ...]]) -> None:
    prons = char_pronunciations(ch)
    for p in expected:
        assert p in prons, (ch, p, prons)


def test_polyphones_have_several_and_no_duplicates() -> None:
    for ch in "行长了还重":
        prons = char_pronunciations(ch)
        assert len(prons) >= 2, (ch, prons)
        assert len(prons) == len(set(prons))


def test_no_pronunciation_for_non_hanzi() -> None:
    for tok in ["a", "，", "1", "", "北京", "<UNK>"]:
        assert char_pronunciations(tok) == []
        assert not is_pronounceable(tok)


def test_basic_block_keeps_to_u4e00_u9fff() -> None:
    """The synthetic corpus's check: pypinyin reads 〇 (U+3007) and 㐀 (extension A) too."""
    for ch in "〇㐀":
        assert is_pronounceable(ch) and not is_pronounceable(ch, basic_block=True)
    assert is_pronounceable("行", basic_block=True)
    assert not is_pronounceable("北京", basic_block=True)


def test_all_phones_in_phone_set_and_no_y_w() -> None:
    text = "导航到北京西站播放周杰伦的歌明天上海天气怎么样我想买一双运动鞋嗯哼儿女绿"
    for ch in text:
        prons = char_pronunciations(ch)
        assert prons, ch
        for pron in prons:
            assert 1 <= len(pron) <= 2
            assert all(p in PHONE_SET for p in pron), (ch, pron)
            assert split_tone(pron[-1])[1] in (1, 2, 3, 4, 5)
    assert "y" not in PHONE_SET and "w" not in PHONE_SET


def test_result_is_a_copy() -> None:
    first = char_pronunciations("行")
    first.clear()
    assert char_pronunciations("行")


def test_split_tone() -> None:
    assert split_tone("ang2") == ("ang", 2)
    assert split_tone("zh") == ("zh", None)
