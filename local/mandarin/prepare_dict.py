"""Mandarin lang preparation: the Kaldi dict dir of the characters the texts use.

    python -m local.mandarin.prepare_dict --data data --lexicon data/local/lexicon_pinyin.txt \\
        --out data/local/dict

Reads the tokens of ``<data>/{train,dev,test}/text`` and ``<data>/local/lm_text.txt`` and
takes their entries (every reading of a polyphone) and the special words from the
pronunciation lexicon (`local.mandarin.lexicon`). A token without an entry is an error
naming the file and line (data preparation, steps_py.data.prepare, rejects such utterances, so this means the text was
edited after it). Writes (``steps_py.lang.lexicon.write_dict_dir``):

* ``lexicon.txt``, ``lexiconp.txt``: specials first, then characters in code-point order;
* ``silence_phones.txt``: ``SIL``, ``SPN`` (one per line); ``optional_silence.txt``: ``SIL``;
* ``nonsilence_phones.txt``: the initials used (conventional order), then the tonal finals
  used (sorted), ONE PHONE PER LINE: each tonal final is its own phone set with its own
  tree root (Kaldi's AISHELL dict puts a final's tones on one line instead, which ties
  them in a monophone system and leaves the tone to questions);
* ``extra_questions.txt``: the silence phones, then one line per tone (its finals).

With ``--words FILE`` (a word list, one word first on each line, or an ARPA LM whose
unigrams are taken) the lexicon also gets those words, for a word-level LM as Kaldi's
AISHELL recipe uses: a single character with its readings, a longer word with one
pronunciation, its characters read in context (``local.mandarin.pron.word_pronunciation``).
Words that cannot be pronounced are counted and logged (``steps_py.lang.lm --arpa`` then
removes their n-grams). Decoding then outputs words; scoring splits them into characters (CER).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path

from local.mandarin.lexicon import OPTIONAL_SILENCE, SILENCE_PHONES, SPECIAL_ENTRIES
from local.mandarin.pron import INITIALS, word_pronunciation
from steps_py.cli import StepError, step_main
from steps_py.fileio import atomic_path, is_done, mark_done
from steps_py.lang.lexicon import (
    DictDir,
    LexEntry,
    Lexicon,
    LexiconError,
    collect_words,
    read_lexicon,
    write_dict_dir,
)

log = logging.getLogger("mandarin.prepare_dict")


class DictPrepError(StepError):
    """The texts or the lexicon cannot make a dict dir; the message names the item."""


def text_sources(data: Path) -> tuple[list[Path], list[bool]]:
    """The text files whose tokens become words; missing optional ones are logged."""
    files: list[Path] = []
    has_id: list[bool] = []
    for s in ("train", "dev", "test"):
        p = data / s / "text"
        if p.is_file():
            files.append(p)
            has_id.append(True)
        else:
            log.warning("%s not found; its characters are not in the lexicon", p)
    lm = data / "local" / "lm_text.txt"
    if lm.is_file():
        files.append(lm)
        has_id.append(False)
    else:
        log.warning("%s not found; the lexicon covers only the data dirs", lm)
    if not files:
        raise DictPrepError(
            f"no text found under {data}: run the data preparation (steps_py.data.prepare) first"
        )
    return files, has_id


def char_lexicon(tokens: dict[str, str], full: Lexicon) -> Lexicon:
    """The specials and the entries of `tokens` (token -> where it was seen) from `full`."""
    specials = {w for w, _ in SPECIAL_ENTRIES}
    bad = sorted(t for t in tokens if t not in specials and not full.is_pronounceable(t))
    if bad:
        shown = ", ".join(f"'{c}' ({tokens[c]})" for c in bad[:20])
        more = f" and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise LexiconError(
            f"{len(bad)} token(s) have no pronunciation: {shown}{more}. Every token must be a "
            "character of the pronunciation lexicon (or <UNK>); re-run the data preparation "
            "(steps_py.data.prepare --lexicon ...), which rejects such utterances, or remove them."
        )
    return full.restricted(specials | set(tokens))


def read_word_list(path: Path) -> list[str]:
    """The words of a word list (first field of each line) or of an ARPA LM (its unigrams)."""
    from steps_py.lang.ngram import ArpaError, read_arpa

    if not path.is_file():
        raise DictPrepError(f"--words {path} not found")
    with open(path, encoding="utf-8") as f:
        head = f.read(4096)
    if "\\data\\" in head:
        try:
            return sorted(read_arpa(path).vocab)
        except ArpaError as e:
            raise DictPrepError(str(e)) from None
    return [ln.split()[0] for ln in path.read_text(encoding="utf-8").splitlines() if ln.split()]


def with_words(lex: Lexicon, words: list[str], full: Lexicon) -> tuple[Lexicon, int]:
    """`lex` plus `words` (see the module docstring); also how many could not be pronounced."""
    have = set(lex.words)
    chars = {w for w in words if len(w) == 1 and w not in have and full.is_pronounceable(w)}
    out = Lexicon(lex.entries + full.restricted(chars).entries)
    bad = 0
    for w in words:
        if len(w) < 2 or w in have or w.startswith("<"):
            continue
        pron = word_pronunciation(w)
        if pron is None:
            bad += 1
        else:
            out.entries.append(LexEntry(w, pron))
    return out, bad


def mandarin_dict(lex: Lexicon) -> DictDir:
    """The dict dir of a character lexicon (see the module docstring for the phone lists)."""
    used = lex.phones - set(SILENCE_PHONES)
    initials = [p for p in INITIALS if p in used]
    finals = sorted(used - set(INITIALS))
    questions = [list(SILENCE_PHONES)]
    for tone in "12345":
        same = [p for p in finals if p.endswith(tone)]
        if same:
            questions.append(same)
    return DictDir(
        lexicon=lex,
        silence_phones=[[p] for p in SILENCE_PHONES],
        nonsilence_phones=[[p] for p in initials + finals],
        optional_silence=OPTIONAL_SILENCE,
        extra_questions=questions,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m local.mandarin.prepare_dict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data",
        type=Path,
        default=Path("data"),
        help="data root with train/dev/test and local/lm_text.txt (default: %(default)s)",
    )
    p.add_argument(
        "--lexicon",
        type=Path,
        default=Path("data/local/lexicon_pinyin.txt"),
        help="pronunciation lexicon (python -m local.mandarin.lexicon) (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("data/local/dict"),
        help="dict dir to write (default: %(default)s)",
    )
    p.add_argument(
        "--words",
        type=Path,
        default=None,
        help="also these words (a word list or an ARPA LM's unigrams), for a word-level LM "
        "(default: characters only)",
    )
    p.add_argument("--force", action="store_true", help="redo even if <out>/.done matches")
    return p


def run(args: argparse.Namespace) -> int:
    if not args.lexicon.is_file():
        raise DictPrepError(
            f"{args.lexicon} not found; write it with python -m local.mandarin.lexicon --out {args.lexicon}"
        )
    try:
        files, has_id = text_sources(args.data)
        tokens = collect_words(files, has_id)
        h = hashlib.sha1(args.lexicon.read_bytes())
        h.update("\n".join(sorted(tokens)).encode("utf-8"))
        if args.words is not None:
            h.update(args.words.read_bytes() if args.words.is_file() else b"")
        fingerprint = h.hexdigest()
        if is_done(args.out) and not args.force:
            done = json.loads((args.out / ".done").read_text(encoding="utf-8"))
            if done.get("fingerprint") == fingerprint:
                log.info(
                    "%s is already done for these texts (.done); skipping. Use --force to redo.",
                    args.out,
                )
                return 0
            log.info("%s/.done is for other texts or another lexicon; rebuilding", args.out)
        full = read_lexicon(args.lexicon)
        lex = char_lexicon(tokens, full)
        if args.words is not None:
            words = read_word_list(args.words)
            lex, bad = with_words(lex, words, full)
            log.info(
                "%s: %d words; lexicon now %d entries; %d cannot be pronounced and are left out",
                args.words,
                len(words),
                len(lex.entries),
                bad,
            )
        dd = mandarin_dict(lex)
        n_prons: dict[str, int] = {}
        for e in lex.entries:
            n_prons[e.word] = n_prons.get(e.word, 0) + 1
        specials = {w for w, _ in SPECIAL_ENTRIES}
        n_chars = sum(1 for w in n_prons if w not in specials)
        n_poly = sum(1 for w, n in n_prons.items() if n > 1 and w not in specials)
        with atomic_path(args.out) as tmp:
            write_dict_dir(dd, tmp)
            mark_done(
                tmp,
                {
                    "characters": n_chars,
                    "polyphonic_characters": n_poly,
                    "lexicon_entries": len(lex.entries),
                    "lexicon": str(args.lexicon),
                    "fingerprint": fingerprint,
                },
            )
    except LexiconError as e:
        raise DictPrepError(str(e)) from None
    log.info(
        "%d characters from %s; %d lexicon entries, %d polyphonic characters; wrote %s",
        n_chars,
        ", ".join(map(str, files)),
        len(lex.entries),
        n_poly,
        args.out,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main("mandarin.prepare_dict", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
