"""The Mandarin pronunciation lexicon: every hanzi pypinyin reads, with all its readings.

    python -m local.mandarin.lexicon --out data/local/lexicon_pinyin.txt

This file is to the Mandarin corpora what ``resource_aishell/lexicon.txt`` is to Kaldi's
AISHELL recipe: data preparation rejects transcripts with characters that have no entry here
(``steps_py.data.prepare --lexicon``), and the dict dir takes the entries of the characters the
texts use from it (``local.mandarin.prepare_dict``). Words are single characters plus the
special words ``!SIL`` (SIL), ``<SPOKEN_NOISE>`` and ``<UNK>`` (SPN); phones are initials and
tonal finals (`local.mandarin.pron`), all pronunciation probabilities 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

from local.mandarin.pron import char_pronunciations
from steps_py.cli import step_main
from steps_py.fileio import atomic_write_text
from steps_py.lang.lexicon import LexEntry, Lexicon

log = logging.getLogger("mandarin.lexicon")

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


def all_hanzi() -> list[str]:
    """Every character pypinyin has a reading for, in code-point order."""
    from pypinyin.pinyin_dict import pinyin_dict

    return [chr(c) for c in sorted(pinyin_dict)]


def pinyin_lexicon(chars: Iterable[str] | None = None) -> Lexicon:
    """Specials, then every pronunciation of each character (all of pypinyin's by default)
    in code-point order; characters without a reading in the phone set are left out."""
    entries = [LexEntry(w, p) for w, p in SPECIAL_ENTRIES]
    for c in sorted(set(all_hanzi() if chars is None else chars)):
        entries.extend(LexEntry(c, p) for p in char_pronunciations(c))
    return Lexicon(entries)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m local.mandarin.lexicon",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("data/local/lexicon_pinyin.txt"),
        help="lexicon file to write (default: %(default)s)",
    )
    p.add_argument("--force", action="store_true", help="rewrite an existing file")
    return p


def run(args: argparse.Namespace) -> int:
    if args.out.is_file() and not args.force:
        log.info("%s exists; skipping (use --force to rewrite)", args.out)
        return 0
    lex = pinyin_lexicon()
    atomic_write_text(args.out, lex.to_text())
    log.info("wrote %s: %d entries, %d words", args.out, len(lex.entries), len(lex.words))
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main("mandarin.lexicon", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
