"""Transcript normalisation for data preparation (``steps_py.data.prepare``): raw transcript -> tokens, and what was removed.

    tokens, removed = normalize_transcript("今天，天气😀很好", unit="char")
    # tokens == ['今', '天', '天', '气', '很', '好'], removed == {'punctuation': 1, 'emoji/symbol': 1}

Applied to every transcript (and to LM text): Unicode NFKC (full-width ASCII to half-width,
compatibility forms folded), then characters are sorted into what is kept and what is
removed, by Unicode category:

* whitespace separates tokens;
* punctuation (P*) is removed: with ``unit="char"`` all of it, with ``unit="word"`` only at
  the edges of a token (``don't`` keeps its apostrophe);
* removed AND REPORTED (``steps_py.data.prepare`` counts the utterances and says so in the log and in
  ``data/<set>/report.txt``): emoji and other symbols (S*, plus emoji variation selectors
  U+FE00-FE0F and U+E0100-E01EF), private-use characters (Co), control and format characters
  (Cc, Cf: zero-width spaces and joiners, a byte-order mark U+FEFF inside a line ...),
  unassigned code points (Cn) and lone surrogates (Cs).

``unit="char"`` makes every remaining character a token (character-level words, as the
Mandarin recipes use); ``unit="word"`` keeps whitespace-separated words, as Kaldi's ``text``.
Whether a token has a pronunciation is not decided here but by the corpus's lexicon.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from typing import Literal

TokenUnit = Literal["char", "word"]
TOKEN_UNITS: tuple[str, ...] = ("char", "word")

PUNCTUATION = "punctuation"
EMOJI = "emoji/symbol"
PRIVATE_USE = "private-use"
CONTROL = "control/format"
UNASSIGNED = "unassigned"
# the removals a user is told about (punctuation removal is the normal case)
REPORTED = (EMOJI, PRIVATE_USE, CONTROL, UNASSIGNED)


def char_class(ch: str) -> str | None:
    """The removal class of one character, or None if it is kept (letters, digits, marks)."""
    if "\ufe00" <= ch <= "\ufe0f" or "\U000e0100" <= ch <= "\U000e01ef":
        return EMOJI
    cat = unicodedata.category(ch)
    if cat[0] == "P":
        return PUNCTUATION
    if cat[0] == "S":
        return EMOJI
    if cat == "Co":
        return PRIVATE_USE
    if cat in ("Cc", "Cf"):
        return CONTROL
    if cat in ("Cn", "Cs"):
        return UNASSIGNED
    return None


def normalize_transcript(raw: str, unit: str = "char") -> tuple[list[str], Counter[str]]:
    """(tokens, removed characters per class) of one transcript; see the module docstring."""
    if unit not in TOKEN_UNITS:
        raise ValueError(f"unknown token unit '{unit}'; use one of {', '.join(TOKEN_UNITS)}")
    removed: Counter[str] = Counter()
    words: list[str] = []
    for word in unicodedata.normalize("NFKC", raw).split():
        kept = []
        for ch in word:
            cls = char_class(ch)
            if cls is None or (cls == PUNCTUATION and unit == "word"):
                kept.append(ch)
            else:
                removed[cls] += 1
        token = "".join(kept)
        if unit == "word":
            stripped = token.strip("".join(c for c in set(token) if char_class(c) == PUNCTUATION))
            removed[PUNCTUATION] += len(token) - len(stripped)
            token = stripped
        if token:
            words.append(token)
    if unit == "char":
        return [ch for w in words for ch in w], removed
    return words, removed


def describe_removed(removed: Counter[str]) -> str:
    """'2 emoji/symbol, 1 private-use' for the reported classes (empty if none)."""
    return ", ".join(f"{removed[c]} {c}" for c in REPORTED if removed[c])
