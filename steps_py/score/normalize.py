"""Text normalisation applied identically to reference and hypothesis before CER scoring.

The rules (in this order), for each whitespace-separated token of a transcript:

1. Non-lexical tokens are dropped: ``!SIL``, ``<SPOKEN_NOISE>``, ``<NOISE>``, ``<eps>``,
   ``<s>``, ``</s>`` and any ``#N`` disambiguation symbol.
2. Other bracketed tokens such as ``<UNK>`` are kept as ONE unit (an unknown word counts
   as one character error, not five).
3. Every other token is NFKC-normalised (full-width forms become half-width: ``Ａ`` -> ``A``,
   ``１`` -> ``1``, ``，`` -> ``,``, ideographic space -> space), Latin letters are upper-cased,
   punctuation is removed (Unicode categories ``P*``, which covers CJK punctuation such as
   ``。，、！？「」《》``, plus every ASCII punctuation character, including the symbols
   ``$+<=>^`|~``), spaces are removed, and what remains is split into single characters.

CER is then computed over these character units, so ``"打 开 导 航"``, ``"打开导航"`` and
``"打开，导航！"`` all score the same. Latin words count one unit per letter
(``GPS`` = 3 units), like Kaldi's character-level AISHELL scoring.
"""

from __future__ import annotations

import re
import string
import unicodedata

NON_LEXICAL = frozenset({"!SIL", "<SPOKEN_NOISE>", "<NOISE>", "<eps>", "<s>", "</s>", "<sil>"})
_DISAMBIG = re.compile(r"^#\d+$")
_BRACKETED = re.compile(r"^<[^<>\s]+>$")
_ASCII_PUNCT = frozenset(string.punctuation)


def _keep_char(c: str) -> bool:
    if c.isspace() or c in _ASCII_PUNCT:
        return False
    return not unicodedata.category(c).startswith("P")


def normalize_token(token: str) -> list[str]:
    """Units of one token after normalisation (possibly none)."""
    if token in NON_LEXICAL or _DISAMBIG.match(token):
        return []
    if _BRACKETED.match(token):
        return [token.upper()]
    token = unicodedata.normalize("NFKC", token).upper()
    return [c for c in token if _keep_char(c)]


def normalize_text(text: str) -> list[str]:
    """Normalised character units of a transcript (see the module docstring for the rules)."""
    units: list[str] = []
    for tok in text.split():
        units.extend(normalize_token(tok))
    return units
