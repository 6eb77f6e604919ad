"""Hanzi pronunciations as phone tuples (initial, tonal final), from pypinyin.

The Mandarin pronunciation source of every Mandarin corpus here (`local.mandarin.lexicon`
writes it out as a Kaldi lexicon; the synthetic corpus draws only words it can read).

Phone set (position-independent, tone on the final, as in Kaldi's AISHELL recipe):

* Initials: ``b p m f d t n l g k h j q x zh ch sh r z c s`` (21).
* ``y`` and ``w`` are NOT phones: they are spelling, folded into the final the way
  pypinyin's ``strict=True`` finals do (``yao -> iao``, ``you -> iou``, ``wu -> u``,
  ``yu -> v``).  A zero-initial syllable is therefore one phone: ``一 -> ("i1",)``.
* Finals are pypinyin's strict finals (``iu -> iou``, ``ui -> uei``, ``un -> uen``,
  ``ju -> j v``) with the tone digit appended, 1-4, and 5 for the neutral tone
  (``了 -> ("l", "e5")``).
* The apical vowel written ``i`` after ``z c s`` and after ``zh ch sh r`` is a different
  sound from the ``i`` of ``ji``/``yi``; it gets its own finals ``iy`` (after z c s) and
  ``ix`` (after zh ch sh r): ``字 -> ("z", "iy4")``, ``是 -> ("sh", "ix4")``.
* Syllabic nasals ``n``/``ng`` (嗯) map to ``en``, ``hng`` (哼) to ``h eng``; the rare
  ``m``/``hm`` and ``ê`` readings are dropped (a character whose only readings are those
  has no pronunciation).

``char_pronunciations`` returns every reading pypinyin knows (``heteronym=True``), so
polyphonic characters get all their pronunciations; the decoder's LM and acoustics pick.
"""

from __future__ import annotations

import re
from functools import cache

from pypinyin import Style, pinyin
from pypinyin.style import convert

INITIALS: tuple[str, ...] = (
    "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h",
    "j", "q", "x", "zh", "ch", "sh", "r", "z", "c", "s",
)  # fmt: skip

# Strict finals (pypinyin spelling: v = ü), plus the two apical vowels ix / iy.
FINALS: tuple[str, ...] = (
    "a", "o", "e", "ai", "ei", "ao", "ou", "an", "en", "ang", "eng", "ong", "er",
    "i", "ia", "ie", "iao", "iou", "ian", "in", "iang", "ing", "iong",
    "u", "ua", "uo", "uai", "uei", "uan", "uen", "uang", "ueng",
    "v", "ve", "van", "vn",
    "ix", "iy",
)  # fmt: skip

TONES: tuple[str, ...] = ("1", "2", "3", "4", "5")

TONAL_FINALS: tuple[str, ...] = tuple(f + t for f in FINALS for t in TONES)

# Every phone a pronunciation may use (silence phones SIL/SPN are added by the lang stage).
PHONE_SET: frozenset[str] = frozenset(INITIALS) | frozenset(TONAL_FINALS)

_RETROFLEX = frozenset({"zh", "ch", "sh", "r"})
_DENTAL = frozenset({"z", "c", "s"})
_TONE3_RE = re.compile(r"^([a-zê]+?)([1-5]?)$")


def is_phone(p: str) -> bool:
    """True if `p` is an initial or a tonal final of this phone set."""
    return p in PHONE_SET


def is_initial(p: str) -> bool:
    return p in INITIALS


def split_tone(phone: str) -> tuple[str, int | None]:
    """``"ang2" -> ("ang", 2)``; initials have no tone: ``"zh" -> ("zh", None)``."""
    if phone and phone[-1] in "12345":
        return phone[:-1], int(phone[-1])
    return phone, None


def syllable_to_phones(syllable: str) -> tuple[str, ...] | None:
    """Convert one pinyin syllable with tone marks (``"xíng"``) to phones.

    Returns None for readings outside the phone set (``m``, ``hm``, ``ê``).
    """
    tone3 = convert(syllable, Style.TONE3, True)
    m = _TONE3_RE.match(tone3)
    if m is None:
        return None
    base, tone = m.group(1), m.group(2) or "5"
    if base in ("n", "ng"):
        return ("en" + tone,)
    if base == "hng":
        return ("h", "eng" + tone)
    initial = convert(syllable, Style.INITIALS, True)
    final = convert(syllable, Style.FINALS, True)
    if not final or initial not in ("", *INITIALS):
        return None
    if final == "i" and initial in _RETROFLEX:
        final = "ix"
    elif final == "i" and initial in _DENTAL:
        final = "iy"
    phones = (initial, final + tone) if initial else (final + tone,)
    return phones if all(p in PHONE_SET for p in phones) else None


def char_pronunciations(ch: str) -> list[tuple[str, ...]]:
    """Every pronunciation of one hanzi as phone tuples, most common first, no duplicates.

    ``char_pronunciations("行")[:2] == [("x", "ing2"), ("h", "ang2")]``; an empty list for
    anything without a usable reading (latin letters, punctuation, several characters).
    """
    return list(_cached_pronunciations(ch))


@cache
def _cached_pronunciations(ch: str) -> tuple[tuple[str, ...], ...]:
    if len(ch) != 1:
        return ()
    readings = pinyin(ch, style=Style.TONE, heteronym=True, errors="ignore")
    if not readings:
        return ()
    out: list[tuple[str, ...]] = []
    for syl in readings[0]:
        phones = syllable_to_phones(syl)
        if phones is not None and phones not in out:
            out.append(phones)
    return tuple(out)


def is_pronounceable(ch: str, *, basic_block: bool = False) -> bool:
    """True if `ch` is one character with at least one pronunciation in this phone set.

    With `basic_block`, only characters of the basic CJK Unified Ideographs block
    (U+4E00-U+9FFF) count: the synthetic corpus keeps to those, leaving out the extension
    blocks and symbols such as ``〇`` that pypinyin also reads.
    """
    if basic_block and not (len(ch) == 1 and "\u4e00" <= ch <= "\u9fff"):
        return False
    return bool(_cached_pronunciations(ch))


def word_pronunciation(word: str) -> tuple[str, ...] | None:
    """One pronunciation of a multi-character word, each character read in context
    (pypinyin's phrase dictionary picks the reading of a polyphone: ``银行`` -> ``in2 h ang2``);
    None if a character has no reading in this phone set.

    This is what a word lexicon needs for a word-level LM (Kaldi's AISHELL ``lexicon.txt``
    gives one pronunciation per word as well).
    """
    readings = pinyin(word, style=Style.TONE, heteronym=False, errors=lambda s: [None] * len(s))
    if len(readings) != len(word):
        return None
    phones: list[str] = []
    for (syl,) in readings:
        got = syllable_to_phones(syl) if syl else None
        if got is None:
            return None
        phones.extend(got)
    return tuple(phones)
