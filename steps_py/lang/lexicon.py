"""Pronunciation lexicons and Kaldi dict dirs (``data/local/dict``), for any language.

A corpus's ``local/`` code writes the dict dir that Kaldi's ``utils/prepare_lang.sh`` reads:

* ``lexicon.txt`` (``word p1 p2 ...``) and/or ``lexiconp.txt`` (``word prob p1 p2 ...``);
  when both exist they must agree, and ``lexiconp.txt`` is used (as prepare_lang.sh does);
* ``silence_phones.txt``, ``nonsilence_phones.txt``: one line per base phone, its variants
  on that line (each line becomes one ``phones/sets.txt`` line and shares a tree root);
* ``optional_silence.txt``: the one phone of optional silence between words;
* ``extra_questions.txt`` (may be empty): extra phone sets for tree questions.

`read_dict_dir` checks what ``utils/validate_dict_dir.pl`` checks (disjoint phone lists,
no phone written ``#...``, ``..._B/_E/_I/_S`` or ``<eps>``, every lexicon phone listed, no
``<s> </s> <eps> #0`` words, probabilities in (0, 1], no repeated lines) and names the
file and line of the first problem of each kind.

`Lexicon.is_pronounceable(word)` is the one answer to "does this word have a
pronunciation": ``steps_py.data.prepare`` asks it of the corpus's lexicon file (``--lexicon``),
``steps_py.lang.prepare`` of the dict dir. `add_disambig_symbols` follows ``utils/add_lex_disambig.pl``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from steps_py.fileio import atomic_write_text

FORBIDDEN_WORDS = frozenset({"<s>", "</s>", "<eps>", "#0"})


class LexiconError(ValueError):
    """Bad lexicon or dict-dir input; the message names the file, line and fix."""


@dataclass(frozen=True)
class LexEntry:
    word: str
    phones: tuple[str, ...]
    prob: float = 1.0


@dataclass
class Lexicon:
    """Lexicon entries in file order (a word may have several)."""

    entries: list[LexEntry] = field(default_factory=list)

    @property
    def words(self) -> list[str]:
        """Distinct words in entry order."""
        return list(dict.fromkeys(e.word for e in self.entries))

    @cached_property
    def _word_set(self) -> frozenset[str]:
        return frozenset(e.word for e in self.entries)

    def is_pronounceable(self, word: str) -> bool:
        """True if `word` has at least one entry."""
        return word in self._word_set

    @property
    def phones(self) -> set[str]:
        return {p for e in self.entries for p in e.phones}

    def restricted(self, words: Iterable[str]) -> Lexicon:
        """The entries of `words` only, in this lexicon's order."""
        keep = set(words)
        return Lexicon([e for e in self.entries if e.word in keep])

    def to_text(self, with_probs: bool = False) -> str:
        lines = []
        for e in self.entries:
            prob = f" {e.prob:g}" if with_probs else ""
            lines.append(f"{e.word}{prob} {' '.join(e.phones)}\n")
        return "".join(lines)


def _read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file; a decoding error names the line."""
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for n, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise LexiconError(
                f"{path}:{n}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                "convert the file to UTF-8 (e.g. iconv -f gb18030 -t utf-8)"
            ) from None
        if n == 1 and line.startswith("\ufeff"):
            line = line[1:]
        out.append(line.rstrip("\r"))
    return out


def read_lexicon(path: Path, with_probs: bool = False) -> Lexicon:
    """Read lexicon.txt (``word p1 p2 ...``) or lexiconp.txt (``word prob p1 p2 ...``)."""
    entries = []
    need = 3 if with_probs else 2
    for n, line in enumerate(_read_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < need:
            raise LexiconError(f"{path}:{n}: expected a word and its phones, got '{line.strip()}'")
        if with_probs:
            try:
                prob = float(parts[1])
            except ValueError:
                raise LexiconError(
                    f"{path}:{n}: probability '{parts[1]}' is not a number"
                ) from None
            if not 0.0 < prob <= 1.0:
                raise LexiconError(f"{path}:{n}: probability {parts[1]} is not in (0, 1]")
            entries.append(LexEntry(parts[0], tuple(parts[2:]), prob))
        else:
            entries.append(LexEntry(parts[0], tuple(parts[1:])))
    return Lexicon(entries)


def collect_words(text_files: Iterable[Path], has_utt_id: Sequence[bool]) -> dict[str, str]:
    """All tokens of Kaldi `text` files (`has_utt_id`) or plain text; token -> first ``file:line``."""
    seen: dict[str, str] = {}
    for path, with_id in zip(text_files, has_utt_id, strict=True):
        for n, line in enumerate(_read_lines(path), 1):
            toks = line.split()
            if with_id:
                toks = toks[1:]
            for t in toks:
                seen.setdefault(t, f"{path}:{n}")
    return seen


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


@dataclass
class DictDir:
    """A Kaldi dict dir in memory: the lexicon and the phone lists (one list per line)."""

    lexicon: Lexicon
    silence_phones: list[list[str]]
    nonsilence_phones: list[list[str]]
    optional_silence: str
    extra_questions: list[list[str]] = field(default_factory=list)

    @property
    def silence(self) -> list[str]:
        return [p for line in self.silence_phones for p in line]

    @property
    def nonsilence(self) -> list[str]:
        return [p for line in self.nonsilence_phones for p in line]

    def validate(self, where: str = "dict dir") -> None:
        """Raise LexiconError on what validate_dict_dir.pl rejects."""
        seen: dict[str, str] = {}
        for name, lines in (
            ("silence_phones.txt", self.silence_phones),
            ("nonsilence_phones.txt", self.nonsilence_phones),
        ):
            if not lines:
                raise LexiconError(f"{where}/{name} is empty; it needs at least one phone")
            for n, line in enumerate(lines, 1):
                if not line:
                    raise LexiconError(f"{where}/{name}:{n}: empty line")
                for p in line:
                    if p.startswith("#") or p == "<eps>" or p[-2:] in ("_B", "_E", "_I", "_S"):
                        raise LexiconError(
                            f"{where}/{name}:{n}: phone '{p}' has a disallowed form (Kaldi reserves "
                            "'#...' for disambiguation symbols, '_B/_E/_I/_S' for word positions); rename it"
                        )
                    if p in seen:
                        raise LexiconError(f"{where}/{name}:{n}: phone '{p}' is also in {seen[p]}")
                    seen[p] = f"{name}:{n}"
        if self.optional_silence not in self.silence:
            raise LexiconError(
                f"{where}/optional_silence.txt: '{self.optional_silence}' is not in silence_phones.txt"
            )
        lines_seen: set[tuple[str, tuple[str, ...]]] = set()
        for n, e in enumerate(self.lexicon.entries, 1):
            if e.word in FORBIDDEN_WORDS:
                raise LexiconError(
                    f"{where}/lexicon.txt:{n}: word '{e.word}' is reserved (<s> </s> <eps> #0 are "
                    "added by the lang stage); remove the entry"
                )
            missing = [p for p in e.phones if p not in seen]
            if missing:
                raise LexiconError(
                    f"{where}/lexicon.txt:{n}: phone(s) {' '.join(missing)} of '{e.word}' are in "
                    "neither silence_phones.txt nor nonsilence_phones.txt"
                )
            if (e.word, e.phones) in lines_seen:
                raise LexiconError(
                    f"{where}/lexicon.txt:{n}: '{e.word} {' '.join(e.phones)}' is repeated"
                )
            lines_seen.add((e.word, e.phones))
        for n, q in enumerate(self.extra_questions, 1):
            missing = [p for p in q if p not in seen]
            if missing:
                raise LexiconError(
                    f"{where}/extra_questions.txt:{n}: phone(s) {' '.join(missing)} are not in "
                    "silence_phones.txt or nonsilence_phones.txt"
                )


def _phone_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in _read_lines(path) if line.strip()]


def read_dict_dir(d: Path) -> DictDir:
    """Read and validate a Kaldi dict dir (see the module docstring)."""
    d = Path(d)
    for name in ("silence_phones.txt", "nonsilence_phones.txt", "optional_silence.txt"):
        if not (d / name).is_file():
            raise LexiconError(
                f"{d}/{name} is missing; a dict dir needs lexicon.txt, silence_phones.txt, "
                "nonsilence_phones.txt, optional_silence.txt (and extra_questions.txt); see "
                "docs/NEW_CORPUS.md"
            )
    lex_path, lexp_path = d / "lexicon.txt", d / "lexiconp.txt"
    if lexp_path.is_file():
        lex = read_lexicon(lexp_path, with_probs=True)
        if lex_path.is_file():
            plain = read_lexicon(lex_path)
            if [(e.word, e.phones) for e in plain.entries] != [
                (e.word, e.phones) for e in lex.entries
            ]:
                raise LexiconError(
                    f"{d}: lexicon.txt and lexiconp.txt differ; delete the stale one"
                )
    elif lex_path.is_file():
        lex = read_lexicon(lex_path)
    else:
        raise LexiconError(f"{d}: neither lexicon.txt nor lexiconp.txt exists")
    if not lex.entries:
        raise LexiconError(f"{d}/lexicon.txt has no entries")
    opt = [p for line in _phone_lines(d / "optional_silence.txt") for p in line]
    if len(opt) != 1:
        raise LexiconError(f"{d}/optional_silence.txt must hold exactly one phone, not {len(opt)}")
    eq = d / "extra_questions.txt"
    out = DictDir(
        lexicon=lex,
        silence_phones=_phone_lines(d / "silence_phones.txt"),
        nonsilence_phones=_phone_lines(d / "nonsilence_phones.txt"),
        optional_silence=opt[0],
        extra_questions=_phone_lines(eq) if eq.is_file() else [],
    )
    out.validate(str(d))
    return out


def write_dict_dir(dd: DictDir, d: Path) -> None:
    """Write lexicon.txt, lexiconp.txt and the phone lists (after validating them)."""
    dd.validate(str(d))
    d = Path(d)

    def lines(rows: list[list[str]]) -> str:
        return "".join(" ".join(r) + "\n" for r in rows)

    atomic_write_text(d / "lexicon.txt", dd.lexicon.to_text())
    atomic_write_text(d / "lexiconp.txt", dd.lexicon.to_text(with_probs=True))
    atomic_write_text(d / "silence_phones.txt", lines(dd.silence_phones))
    atomic_write_text(d / "nonsilence_phones.txt", lines(dd.nonsilence_phones))
    atomic_write_text(d / "optional_silence.txt", f"{dd.optional_silence}\n")
    atomic_write_text(d / "extra_questions.txt", lines(dd.extra_questions))
