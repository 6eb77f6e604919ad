"""The lang directory from a Kaldi dict dir, as ``utils/prepare_lang.sh``.

    python -m steps_py.lang.prepare --dict-dir data/local/dict --out data/lang [--oov '<UNK>']

The dict dir (``lexicon.txt`` or ``lexiconp.txt``, ``silence_phones.txt``,
``nonsilence_phones.txt``, ``optional_silence.txt``, ``extra_questions.txt``) is written by
the corpus's ``local/`` code (Mandarin: ``python -m local.mandarin.prepare_dict``); see
docs/NEW_CORPUS.md. Writes, with position-independent phones: phones.txt (``<eps>``,
silence phones, non-silence phones in the dict's order, ``#0 #1 ...``), words.txt (``<eps>``,
the lexicon's words in C-locale order, ``#0 <s> </s>``), topo (``utils/gen_topo.pl``),
L.fst and L_disambig.fst (OpenFst binary, olabel-sorted), oov.{txt,int},
phones/{silence,nonsilence,optional_silence,disambig,context_indep}.{txt,int,csl},
phones/{sets,roots,extra_questions}.{txt,int} (one set per dict line), phones/align_lexicon.{txt,int},
phones/wdisambig*. A finished lang dir is reused only if the dict dir and the options are unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import kaldifst

from steps_py.cli import StepError, add_output_options, step_main
from steps_py.fileio import atomic_path, atomic_write_text, is_done, mark_done
from steps_py.lang.align_lexicon import write_align_lexicon
from steps_py.lang.fst_build import add_disambig_self_loop, make_lexicon_fst, make_topo, write_fst
from steps_py.lang.lang_dir import LangDir
from steps_py.lang.lexicon import DictDir, LexiconError, add_disambig_symbols, read_dict_dir

log = logging.getLogger("lang.prepare")

DICT_FILES = (
    "lexicon.txt",
    "lexiconp.txt",
    "silence_phones.txt",
    "nonsilence_phones.txt",
    "optional_silence.txt",
    "extra_questions.txt",
)


class LangPrepError(StepError):
    """The dict dir or the options cannot make a lang dir; the message says why."""


def symbol_table_text(symbols: Sequence[str]) -> str:
    return "".join(f"{s} {i}\n" for i, s in enumerate(symbols))


def write_phone_set(
    phones_dir: Path, name: str, phones: Sequence[str], ids: dict[str, int]
) -> None:
    """Kaldi's phones/<name>.{txt,int,csl}."""
    atomic_write_text(phones_dir / f"{name}.txt", "".join(f"{p}\n" for p in phones))
    atomic_write_text(phones_dir / f"{name}.int", "".join(f"{ids[p]}\n" for p in phones))
    atomic_write_text(phones_dir / f"{name}.csl", ":".join(str(ids[p]) for p in phones) + "\n")


def write_phone_lines(
    phones_dir: Path, name: str, lines: Sequence[str], ids: dict[str, int]
) -> None:
    """Kaldi's phones/<name>.{txt,int} where each line is a set of phones (sets, roots...)."""

    def to_int(line: str) -> str:
        return " ".join(
            t if t in ("shared", "not-shared", "split", "not-split") else str(ids[t])
            for t in line.split()
        )

    atomic_write_text(phones_dir / f"{name}.txt", "".join(f"{ln}\n" for ln in lines))
    atomic_write_text(phones_dir / f"{name}.int", "".join(f"{to_int(ln)}\n" for ln in lines))


def dict_fingerprint(dict_dir: Path, options: dict[str, object]) -> str:
    """sha1 of the dict files and options: a finished lang dir is reused only if it matches."""
    h = hashlib.sha1(json.dumps(options, sort_keys=True).encode())
    for name in DICT_FILES:
        p = dict_dir / name
        h.update(f"\n{name}\n".encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def prepare_lang(
    dd: DictDir,
    out: Path,
    oov: str = "<UNK>",
    sil_prob: float = 0.5,
    num_sil_states: int = 5,
    num_nonsil_states: int = 3,
) -> dict[str, int]:
    """Write a complete lang dir for the dict `dd` into `out` (an empty or fresh directory)."""
    lex = dd.lexicon
    if not lex.is_pronounceable(oov):
        raise LexiconError(
            f"the OOV word '{oov}' (--oov) has no lexicon entry; add one such as "
            f"'{oov} {dd.optional_silence}' to lexicon.txt, or pass --oov WORD"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "phones").mkdir(exist_ok=True)
    dis_entries, max_k = add_disambig_symbols(lex)
    ndisambig = max_k + 1  # one more for the silence arc of L_disambig, as prepare_lang.sh does
    disambig = [f"#{k}" for k in range(ndisambig + 1)]
    silence, nonsil = dd.silence, dd.nonsilence
    phones = ["<eps>", *silence, *nonsil, *disambig]
    phone_ids = {p: i for i, p in enumerate(phones)}
    if len(phone_ids) != len(phones):
        raise LexiconError("a phone is written like a disambiguation symbol (#k); rename it")
    # words.txt in C-locale (byte) order, as prepare_lang.sh's `sort` under LC_ALL=C
    words = ["<eps>", *sorted(lex.words, key=lambda w: w.encode("utf-8")), "#0", "<s>", "</s>"]
    word_ids = {w: i for i, w in enumerate(words)}
    ids = _Ids(phone_ids, word_ids)

    _write_tables(out, dd, ids, phones, words, oov, dis_entries, num_sil_states, num_nonsil_states)
    _write_phones_dir(out / "phones", dd, ids, disambig)
    L, Ld = _write_lexicon_fsts(out, dd, ids, dis_entries, disambig[-1], sil_prob)
    return {
        "words": len(words),
        "lexicon_entries": len(lex.entries),
        "phones": len(phones),
        "nonsilence_phones": len(nonsil),
        "disambig_symbols": len(disambig),
        "L_states": L.num_states,
        "L_disambig_states": Ld.num_states,
    }


@dataclass(frozen=True)
class _Ids:
    phones: dict[str, int]
    words: dict[str, int]


def _write_tables(
    out: Path,
    dd: DictDir,
    ids: _Ids,
    phones: list[str],
    words: list[str],
    oov: str,
    dis_entries: list[tuple[str, tuple[str, ...]]],
    num_sil_states: int,
    num_nonsil_states: int,
) -> None:
    """phones.txt, words.txt, oov.{txt,int}, topo, lexiconp{,_disambig}.txt."""
    lex = dd.lexicon
    atomic_write_text(out / LangDir.PHONES, symbol_table_text(phones))
    atomic_write_text(out / LangDir.WORDS, symbol_table_text(words))
    atomic_write_text(out / LangDir.OOV, f"{oov}\n")
    atomic_write_text(out / LangDir.OOV_INT, f"{ids.words[oov]}\n")
    atomic_write_text(
        out / LangDir.TOPO,
        make_topo(
            [ids.phones[p] for p in dd.nonsilence],
            [ids.phones[p] for p in dd.silence],
            num_nonsil_states=num_nonsil_states,
            num_sil_states=num_sil_states,
        ),
    )
    atomic_write_text(out / LangDir.LEXICONP, lex.to_text(with_probs=True))
    atomic_write_text(
        out / LangDir.LEXICONP_DISAMBIG,
        "".join(
            f"{w} {e.prob:g} {' '.join(p)}\n"
            for (w, p), e in zip(dis_entries, lex.entries, strict=True)
        ),
    )


def _write_phones_dir(phones_dir: Path, dd: DictDir, ids: _Ids, disambig: list[str]) -> None:
    """phones/: the phone sets, the align lexicon, roots, questions, word disambiguation."""
    phone_ids, silence = ids.phones, dd.silence
    write_phone_set(phones_dir, "silence", silence, phone_ids)
    write_phone_set(phones_dir, "nonsilence", dd.nonsilence, phone_ids)
    write_phone_set(phones_dir, "optional_silence", [dd.optional_silence], phone_ids)
    write_align_lexicon(
        phones_dir,
        [(e.word, e.phones) for e in dd.lexicon.entries],
        dd.optional_silence,
        phone_ids,
        ids.words,
    )
    write_phone_set(phones_dir, "disambig", disambig, phone_ids)
    write_phone_set(phones_dir, "context_indep", silence, phone_ids)
    sets = [" ".join(line) for line in (*dd.silence_phones, *dd.nonsilence_phones)]
    write_phone_lines(phones_dir, "sets", sets, phone_ids)
    write_phone_lines(phones_dir, "roots", [f"shared split {s}" for s in sets], phone_ids)
    write_phone_lines(
        phones_dir, "extra_questions", [" ".join(q) for q in dd.extra_questions], phone_ids
    )
    atomic_write_text(phones_dir / "wdisambig.txt", "#0\n")
    atomic_write_text(phones_dir / "wdisambig_phones.int", f"{phone_ids['#0']}\n")
    atomic_write_text(phones_dir / "wdisambig_words.int", f"{ids.words['#0']}\n")


def _write_lexicon_fsts(
    out: Path,
    dd: DictDir,
    ids: _Ids,
    dis_entries: list[tuple[str, tuple[str, ...]]],
    sil_disambig: str,
    sil_prob: float,
) -> tuple[kaldifst.StdVectorFst, kaldifst.StdVectorFst]:
    """L.fst and L_disambig.fst (olabel-sorted), as prepare_lang.sh's make_lexicon_fst.py."""
    lex, sil = dd.lexicon, dd.optional_silence
    plain = [(e.word, e.phones, e.prob) for e in lex.entries]
    L = make_lexicon_fst(plain, ids.phones, ids.words, sil_prob=sil_prob, sil_phone=sil)
    kaldifst.arcsort(L, sort_type="olabel")
    write_fst(L, out / LangDir.L)
    with_dis = [(w, p, e.prob) for (w, p), e in zip(dis_entries, lex.entries, strict=True)]
    Ld = make_lexicon_fst(
        with_dis, ids.phones, ids.words, sil_prob=sil_prob, sil_phone=sil, sil_disambig=sil_disambig
    )
    add_disambig_self_loop(Ld, ids.phones["#0"], ids.words["#0"])
    kaldifst.arcsort(Ld, sort_type="olabel")
    write_fst(Ld, out / LangDir.L_DISAMBIG)
    return L, Ld


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m steps_py.lang.prepare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--dict-dir",
        type=Path,
        default=Path("data/local/dict"),
        help="Kaldi dict dir written by the corpus's local/ code (default: %(default)s)",
    )
    add_output_options(
        ap,
        "lang directory to write",
        Path("data/lang"),
        force_help="redo even if <out>/.done matches",
    )
    ap.add_argument(
        "--oov",
        default="<UNK>",
        help="word that out-of-lexicon words map to; needs a lexicon entry (default: %(default)s)",
    )
    ap.add_argument(
        "--sil-prob",
        type=float,
        default=0.5,
        help="optional-silence probability in L.fst (default: %(default)s)",
    )
    ap.add_argument(
        "--num-sil-states",
        type=int,
        default=5,
        help="HMM states of silence phones, >= 3 (default: %(default)s)",
    )
    ap.add_argument(
        "--num-nonsil-states",
        type=int,
        default=3,
        help="HMM states of non-silence phones (default: %(default)s)",
    )
    return ap


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.sil_prob < 1.0:
        raise LangPrepError(f"--sil-prob must be in [0, 1), got {args.sil_prob}")
    if args.num_sil_states < 3 or args.num_nonsil_states < 1:
        raise LangPrepError("--num-sil-states must be >= 3 and --num-nonsil-states >= 1")
    if not args.dict_dir.is_dir():
        raise LangPrepError(
            f"dict dir {args.dict_dir} not found; write it with the corpus's local/ code first "
            "(Mandarin: python -m local.mandarin.prepare_dict)"
        )
    options = {
        "oov": args.oov,
        "sil_prob": args.sil_prob,
        "num_sil_states": args.num_sil_states,
        "num_nonsil_states": args.num_nonsil_states,
    }
    fingerprint = dict_fingerprint(args.dict_dir, options)
    if is_done(args.out) and not args.force:
        done = json.loads((args.out / ".done").read_text(encoding="utf-8"))
        if done.get("fingerprint") == fingerprint:
            log.info(
                "%s is already done for this dict dir (.done); skipping. Use --force to redo.",
                args.out,
            )
            return 0
        log.info("%s/.done is for another dict dir or other options; rebuilding", args.out)
    try:
        dd = read_dict_dir(args.dict_dir)
        with atomic_path(args.out) as tmp:
            info = prepare_lang(
                dd,
                tmp,
                oov=args.oov,
                sil_prob=args.sil_prob,
                num_sil_states=args.num_sil_states,
                num_nonsil_states=args.num_nonsil_states,
            )
            info.update({**options, "dict_dir": str(args.dict_dir), "fingerprint": fingerprint})
            mark_done(tmp, info)
    except (LexiconError, ValueError) as e:
        raise LangPrepError(str(e)) from None
    log.info(
        "wrote %s: %s",
        args.out,
        ", ".join(f"{k}={v}" for k, v in sorted(info.items()) if k != "fingerprint"),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main("lang.prepare", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
