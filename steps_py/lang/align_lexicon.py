"""``phones/align_lexicon.{txt,int}`` of a lang dir, as Kaldi's ``utils/prepare_lang.sh`` writes it.

Each line is ``<word> <word> <phone> <phone> ...`` (the word twice: Kaldi's
``lattice-align-words-lexicon`` format), plus ``<eps> <eps> <optional silence>`` for silence
between words; lines sorted and unique (C-locale sort = code-point order). The ``.int``
version maps fields 1-2 through words.txt and the rest through phones.txt. Word
boundaries of a phone alignment are read from it (``steps_py.kaldi.word_align``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from steps_py.fileio import atomic_write_text


def align_lexicon_lines(
    entries: Iterable[tuple[str, Sequence[str]]], optional_silence: str | None
) -> list[str]:
    """Sorted unique ``word word phones...`` lines (text form)."""
    lines = {f"{w} {w} {' '.join(p)}" for w, p in entries}
    if optional_silence:
        lines.add(f"<eps> <eps> {optional_silence}")
    return sorted(lines)


def write_align_lexicon(
    phones_dir: Path,
    entries: Iterable[tuple[str, Sequence[str]]],
    optional_silence: str | None,
    phone_ids: Mapping[str, int],
    word_ids: Mapping[str, int],
) -> int:
    """Write ``align_lexicon.txt`` and ``.int`` into `phones_dir`; returns the number of lines."""
    lines = align_lexicon_lines(entries, optional_silence)
    ints = []
    for ln in lines:
        f = ln.split()
        try:
            ints.append(
                " ".join(
                    [str(word_ids[f[0]]), str(word_ids[f[1]]), *(str(phone_ids[p]) for p in f[2:])]
                )
            )
        except KeyError as e:
            raise ValueError(
                f"align lexicon line {ln!r}: {e.args[0]!r} is not in words.txt/phones.txt"
            ) from None
    atomic_write_text(Path(phones_dir) / "align_lexicon.txt", "".join(x + "\n" for x in lines))
    atomic_write_text(Path(phones_dir) / "align_lexicon.int", "".join(x + "\n" for x in ints))
    return len(lines)


def read_align_lexicon_int(path: Path) -> dict[int, list[tuple[int, ...]]]:
    """``align_lexicon.int`` as word id -> pronunciations (tuples of phone ids); word 0 is silence."""
    out: dict[int, list[tuple[int, ...]]] = {}
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                ids = [int(x) for x in parts]
            except ValueError:
                raise ValueError(
                    f"{path}:{n}: non-integer field; align_lexicon.int holds ids only"
                ) from None
            if len(ids) < 2 or ids[0] != ids[1]:
                raise ValueError(
                    f"{path}:{n}: expected '<word> <word> <phone>...' with the word id twice"
                )
            out.setdefault(ids[0], []).append(tuple(ids[2:]))
    return out
