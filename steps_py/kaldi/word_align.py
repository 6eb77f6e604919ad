"""Word boundaries of a phone alignment, with ``phones/align_lexicon.int``.

Kaldi's ``lattice-align-words-lexicon`` on one path: the phone instances of an utterance
(from ``steps_py.kaldi.alignment.split_to_phones``) are parsed into lexicon entries whose
words, silence entries (word ``<eps>`` = 0) left out, are the transcript. The parse is a
small dynamic programme over (phone position, word position); the first parse found in
the order "word first, then silence" is kept (all parses agree for non-ambiguous
lexicons). A word's start is its first phone's first frame, its duration the frames up
to the end of its last phone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class WordSegment:
    word: int
    start: int  # first frame
    frames: int


class WordAlignError(ValueError):
    """The phones of an alignment do not spell the transcript with the align lexicon."""


def align_words(
    phone_segments: Sequence[tuple[int, int, int]],
    words: Sequence[int],
    lexicon: Mapping[int, Sequence[tuple[int, ...]]],
) -> list[WordSegment]:
    """Word segments of `words` over `phone_segments` ((phone, start, frames) in order)."""
    phones = [p for p, _, _ in phone_segments]
    n, m = len(phones), len(words)
    silences = [pr for pr in lexicon.get(0, []) if pr]
    failed: set[tuple[int, int]] = set()

    def parse(i: int, j: int) -> list[tuple[int, int, int]] | None:
        """Entries (word, first phone, number of phones) covering phones[i:] and words[j:]."""
        stack: list[tuple[int, int, list[tuple[int, int, int]]]] = [(i, j, [])]
        while stack:
            i, j, done = stack.pop()
            if (i, j) in failed:
                continue
            if i == n and j == m:
                return done
            options: list[tuple[int, int, int]] = []
            for pr in silences:
                if tuple(phones[i : i + len(pr)]) == pr:
                    options.append((0, i, len(pr)))
            if j < m:
                for pr in lexicon.get(words[j], []):
                    if len(pr) and tuple(phones[i : i + len(pr)]) == pr:
                        options.append((words[j], i, len(pr)))
            if not options:
                failed.add((i, j))
            for w, a, k in options:  # pushed last = tried first: words before silence
                stack.append((a + k, j + (w != 0), [*done, (w, a, k)]))
        return None

    parsed = parse(0, 0)
    if parsed is None:
        missing = [w for w in words if w not in lexicon]
        hint = (
            f"words {missing[:5]} have no entry in align_lexicon.int"
            if missing
            else "the phones do not spell the transcript (alignment of another text?)"
        )
        raise WordAlignError(hint)
    out = []
    for w, a, k in parsed:
        if w == 0:
            continue
        start = phone_segments[a][1]
        last = phone_segments[a + k - 1]
        out.append(WordSegment(w, start, last[1] + last[2] - start))
    return out
