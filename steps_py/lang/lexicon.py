"""The character lexicon: entries, disambiguation symbols, and Kaldi dict/lexicon files.

Words are single hanzi (plus the special words ``!SIL``, ``<SPOKEN_NOISE>`` and ``<UNK>``);
each hanzi gets every pronunciation from `steps_py.lang.pron`. All pronunciation
probabilities are 1.0 (Kaldi's default when a lexicon.txt has no probabilities).

`add_disambig_symbols` follows Kaldi's ``utils/add_lex_disambig.pl``: a pronunciation that
is shared by several words, or that is a proper prefix of another pronunciation, gets a
``#k`` suffix, numbered from 1 separately for each phone sequence; ``#0`` is reserved for
the LM's backoff arcs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from steps_py.fileio import atomic_write_text
from steps_py.lang.pron import char_pronunciations

SIL = "SIL"
SPN = "SPN"
SIL_WORD = "!SIL"
SPOKEN_NOISE = "<SPOKEN_NOISE>"
UNK = "<UNK>"
SPECIAL_ENTRIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (SIL_WORD, (SIL,)),
    (SPOKEN_NOISE, (SPN,)),
    (UNK, (SPN,)),
)
SILENCE_PHONES: tuple[str, ...] = (SIL, SPN)
OPTIONAL_SILENCE = SIL


class LexiconError(ValueError):
    """Bad lexicon input; the message names the item and the fix."""


@dataclass(frozen=True)
class LexEntry:
    word: str
    phones: tuple[str, ...]
    prob: float = 1.0


@dataclass
class Lexicon:
    """Ordered lexicon entries (specials first, then characters in code-point order)."""

    entries: list[LexEntry] = field(default_factory=list)

    @property
    def words(self) -> list[str]:
        """Distinct words in entry order."""
        return list(dict.fromkeys(e.word for e in self.entries))

    @property
    def phones(self) -> set[str]:
        return {p for e in self.entries for p in e.phones}

    def nonsilence_phones(self) -> list[str]:
        return sorted(self.phones - set(SILENCE_PHONES))

    def to_text(self, with_probs: bool = False) -> str:
        lines = []
        for e in self.entries:
            prob = f" {e.prob:g}" if with_probs else ""
            lines.append(f"{e.word}{prob} {' '.join(e.phones)}\n")
        return "".join(lines)


def collect_characters(text_files: Iterable[Path], has_utt_id: Sequence[bool]) -> dict[str, str]:
    """All tokens in Kaldi `text` files (`has_utt_id`) or plain LM text; token -> first place seen.

    Tokens are split on whitespace; the place is ``file:line`` for error messages.
    """
    seen: dict[str, str] = {}
    for path, with_id in zip(text_files, has_utt_id, strict=True):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                toks = line.split()
                if with_id:
                    toks = toks[1:]
                for t in toks:
                    if t not in seen:
                        seen[t] = f"{path}:{n}"
    return seen


def build_char_lexicon(tokens: Iterable[str], where: dict[str, str] | None = None) -> Lexicon:
    """Lexicon for the given tokens: specials, then every pronunciation of each hanzi.

    Special words in `tokens` are accepted (they already have entries). Any other token
    that is not one pronounceable character raises `LexiconError` listing them all.
    """
    specials = {w for w, _ in SPECIAL_ENTRIES}
    chars = sorted(set(tokens) - specials)
    bad = [c for c in chars if not char_pronunciations(c)]
    if bad:
        where = where or {}
        shown = ", ".join(f"'{c}' ({where.get(c, '?')})" for c in bad[:20])
        more = f" and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise LexiconError(
            f"{len(bad)} token(s) have no pronunciation: {shown}{more}. Every token must be one "
            "hanzi that pypinyin can read (or <UNK>); re-run stage 1 (steps_py.data.prepare), "
            "which rejects such utterances, or remove them from the text."
        )
    entries = [LexEntry(w, p) for w, p in SPECIAL_ENTRIES]
    for c in chars:
        entries.extend(LexEntry(c, p) for p in char_pronunciations(c))
    return Lexicon(entries)


def add_disambig_symbols(lex: Lexicon) -> tuple[list[tuple[str, tuple[str, ...]]], int]:
    """Entries with ``#k`` appended where needed (add_lex_disambig.pl); returns (entries, max k).

    A pronunciation needs a disambiguation symbol if it occurs more than once or is a
    proper prefix of another pronunciation. Max k is 0 when no entry needed one.
    """
    count = Counter(e.phones for e in lex.entries)
    prefixes: set[tuple[str, ...]] = set()
    for e in lex.entries:
        for i in range(1, len(e.phones)):
            prefixes.add(e.phones[:i])
    next_k: dict[tuple[str, ...], int] = {}
    out: list[tuple[str, tuple[str, ...]]] = []
    max_k = 0
    for e in lex.entries:
        if count[e.phones] == 1 and e.phones not in prefixes:
            out.append((e.word, e.phones))
            continue
        k = next_k.get(e.phones, 1)
        next_k[e.phones] = k + 1
        max_k = max(max_k, k)
        out.append((e.word, (*e.phones, f"#{k}")))
    return out, max_k


def read_lexicon(path: Path, with_probs: bool = False) -> Lexicon:
    """Read lexicon.txt (``word p1 p2 ...``) or lexiconp.txt (``word prob p1 p2 ...``)."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            need = 3 if with_probs else 2
            if len(parts) < need:
                raise LexiconError(
                    f"{path}:{n}: expected a word and its phones, got '{line.strip()}'"
                )
            if with_probs:
                try:
                    prob = float(parts[1])
                except ValueError:
                    raise LexiconError(
                        f"{path}:{n}: probability '{parts[1]}' is not a number"
                    ) from None
                entries.append(LexEntry(parts[0], tuple(parts[2:]), prob))
            else:
                entries.append(LexEntry(parts[0], tuple(parts[1:])))
    return Lexicon(entries)


def write_dict_dir(lex: Lexicon, dict_dir: Path) -> None:
    """Write Kaldi's ``data/local/dict``: lexicon(p).txt and the silence/nonsilence phone lists.

    nonsilence_phones.txt groups the tonal variants of one final on one line (Kaldi's
    convention for "the same base phone", used for tree questions).
    """
    dict_dir = Path(dict_dir)
    atomic_write_text(dict_dir / "lexicon.txt", lex.to_text())
    atomic_write_text(dict_dir / "lexiconp.txt", lex.to_text(with_probs=True))
    atomic_write_text(dict_dir / "silence_phones.txt", "".join(f"{p}\n" for p in SILENCE_PHONES))
    atomic_write_text(dict_dir / "optional_silence.txt", f"{OPTIONAL_SILENCE}\n")
    groups: dict[str, list[str]] = {}
    for p in lex.nonsilence_phones():
        base = p[:-1] if p[-1].isdigit() else p
        groups.setdefault(base, []).append(p)
    atomic_write_text(
        dict_dir / "nonsilence_phones.txt",
        "".join(" ".join(g) + "\n" for _, g in sorted(groups.items())),
    )
    questions = [" ".join(SILENCE_PHONES)]
    for tone in "12345":
        same_tone = [p for p in lex.nonsilence_phones() if p.endswith(tone)]
        if same_tone:
            questions.append(" ".join(same_tone))
    atomic_write_text(dict_dir / "extra_questions.txt", "".join(q + "\n" for q in questions))
