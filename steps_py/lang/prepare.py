"""Stage 2a: character lexicon (data/local/dict) and the lang directory (data/lang).

    python -m steps_py.lang.prepare --data data --out data/lang [--sil-prob 0.5] [--force]

Reads the characters of data/{train,dev,test}/text and data/local/lm_text.txt, gives each
every pypinyin pronunciation (steps_py.lang.pron), and writes what Kaldi's
``utils/prepare_lang.sh`` writes (position-independent phones): phones.txt, words.txt,
topo, L.fst, L_disambig.fst (OpenFst binary, olabel-sorted), oov.{txt,int},
phones/{silence,nonsilence,optional_silence,disambig,context_indep}.{txt,int,csl},
phones/{sets,roots,extra_questions}.{txt,int}, phones/align_lexicon.{txt,int}, phones/wdisambig*.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import kaldifst

from steps_py.fileio import atomic_path, atomic_write_text, is_done, mark_done
from steps_py.lang.align_lexicon import write_align_lexicon
from steps_py.lang.fst_build import add_disambig_self_loop, make_lexicon_fst, make_topo, write_fst
from steps_py.lang.lexicon import (
    OPTIONAL_SILENCE,
    SILENCE_PHONES,
    UNK,
    Lexicon,
    LexiconError,
    add_disambig_symbols,
    build_char_lexicon,
    collect_characters,
    write_dict_dir,
)
from steps_py.lang.pron import INITIALS
from steps_py.log import setup_logging

log = logging.getLogger("lang.prepare")


def ordered_phones(lex: Lexicon) -> list[str]:
    """Non-silence phones in phones.txt order: initials (conventional order), then finals."""
    nonsil = lex.nonsilence_phones()
    initials = [p for p in INITIALS if p in nonsil]
    finals = sorted(p for p in nonsil if p not in INITIALS)
    return initials + finals


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


def text_sources(data: Path) -> tuple[list[Path], list[bool]]:
    """The text files whose characters become words; missing optional ones are logged."""
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
        raise LexiconError(f"no text found under {data}: run stage 1 (steps_py.data.prepare) first")
    return files, has_id


def tokens_fingerprint(tokens: Iterable[str], sil_prob: float) -> str:
    """sha1 of the sorted token set and options: a finished lang dir is reused only if it matches."""
    h = hashlib.sha1(f"sil_prob={sil_prob}\n".encode())
    h.update("\n".join(sorted(tokens)).encode("utf-8"))
    return h.hexdigest()


def prepare_lang(lex: Lexicon, out: Path, sil_prob: float = 0.5) -> dict[str, int]:
    """Write a complete lang dir for `lex` into `out` (an empty or fresh directory)."""
    out.mkdir(parents=True, exist_ok=True)
    phones_dir = out / "phones"
    phones_dir.mkdir(exist_ok=True)
    dis_entries, max_k = add_disambig_symbols(lex)
    ndisambig = max_k + 1  # one more for the silence arc of L_disambig, as prepare_lang.sh does
    disambig = [f"#{k}" for k in range(ndisambig + 1)]
    nonsil = ordered_phones(lex)
    phones = ["<eps>", *SILENCE_PHONES, *nonsil, *disambig]
    phone_ids = {p: i for i, p in enumerate(phones)}
    words = ["<eps>", *lex.words, "#0", "<s>", "</s>"]
    word_ids = {w: i for i, w in enumerate(words)}
    if len(word_ids) != len(words):
        raise LexiconError(
            "a word is duplicated among the special symbols (#0, <s>, </s>); remove it from the text"
        )

    atomic_write_text(out / "phones.txt", symbol_table_text(phones))
    atomic_write_text(out / "words.txt", symbol_table_text(words))
    atomic_write_text(out / "oov.txt", f"{UNK}\n")
    atomic_write_text(out / "oov.int", f"{word_ids[UNK]}\n")
    atomic_write_text(
        out / "topo",
        make_topo([phone_ids[p] for p in nonsil], [phone_ids[p] for p in SILENCE_PHONES]),
    )
    atomic_write_text(out / "lexiconp.txt", lex.to_text(with_probs=True))
    atomic_write_text(
        out / "lexiconp_disambig.txt",
        "".join(
            f"{w} {e.prob:g} {' '.join(p)}\n"
            for (w, p), e in zip(dis_entries, lex.entries, strict=True)
        ),
    )

    write_phone_set(phones_dir, "silence", SILENCE_PHONES, phone_ids)
    write_phone_set(phones_dir, "nonsilence", nonsil, phone_ids)
    write_phone_set(phones_dir, "optional_silence", [OPTIONAL_SILENCE], phone_ids)
    write_align_lexicon(phones_dir, [(e.word, e.phones) for e in lex.entries], OPTIONAL_SILENCE, phone_ids, word_ids)
    write_phone_set(phones_dir, "disambig", disambig, phone_ids)
    write_phone_set(phones_dir, "context_indep", SILENCE_PHONES, phone_ids)
    sets = [*SILENCE_PHONES, *nonsil]
    write_phone_lines(phones_dir, "sets", sets, phone_ids)
    write_phone_lines(phones_dir, "roots", [f"shared split {p}" for p in sets], phone_ids)
    questions = [" ".join(SILENCE_PHONES)]
    for tone in "12345":
        same = [p for p in nonsil if p.endswith(tone)]
        if same:
            questions.append(" ".join(same))
    write_phone_lines(phones_dir, "extra_questions", questions, phone_ids)
    atomic_write_text(phones_dir / "wdisambig.txt", "#0\n")
    atomic_write_text(phones_dir / "wdisambig_phones.int", f"{phone_ids['#0']}\n")
    atomic_write_text(phones_dir / "wdisambig_words.int", f"{word_ids['#0']}\n")

    plain = [(e.word, e.phones, e.prob) for e in lex.entries]
    L = make_lexicon_fst(plain, phone_ids, word_ids, sil_prob=sil_prob)
    kaldifst.arcsort(L, sort_type="olabel")
    write_fst(L, out / "L.fst")
    with_dis = [(w, p, e.prob) for (w, p), e in zip(dis_entries, lex.entries, strict=True)]
    Ld = make_lexicon_fst(
        with_dis, phone_ids, word_ids, sil_prob=sil_prob, sil_disambig=disambig[-1]
    )
    add_disambig_self_loop(Ld, phone_ids["#0"], word_ids["#0"])
    kaldifst.arcsort(Ld, sort_type="olabel")
    write_fst(Ld, out / "L_disambig.fst")
    return {
        "words": len(words),
        "lexicon_entries": len(lex.entries),
        "phones": len(phones),
        "nonsilence_phones": len(nonsil),
        "disambig_symbols": len(disambig),
        "L_states": L.num_states,
        "L_disambig_states": Ld.num_states,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", type=Path, default=Path("data"), help="data root with train/dev/test and local/"
    )
    ap.add_argument("--out", type=Path, default=Path("data/lang"), help="lang directory to write")
    ap.add_argument(
        "--dict-dir", type=Path, default=None, help="dict dir (default: <data>/local/dict)"
    )
    ap.add_argument(
        "--sil-prob", type=float, default=0.5, help="optional-silence probability in L.fst"
    )
    ap.add_argument("--force", action="store_true", help="redo even if <out>/.done exists")
    args = ap.parse_args(argv)
    setup_logging("lang.prepare")
    dict_dir = args.dict_dir or args.data / "local" / "dict"
    try:
        files, has_id = text_sources(args.data)
        where = collect_characters(files, has_id)
    except (LexiconError, OSError) as e:
        log.error("%s", e)
        return 1
    fingerprint = tokens_fingerprint(where, args.sil_prob)
    if is_done(args.out) and not args.force:
        done = json.loads((args.out / ".done").read_text(encoding="utf-8"))
        if done.get("fingerprint") == fingerprint:
            log.info(
                "%s is already done for these texts (.done); skipping. Use --force to redo.",
                args.out,
            )
            return 0
        log.info("%s/.done is for other texts or options; rebuilding", args.out)
    try:
        lex = build_char_lexicon(where, where)
    except LexiconError as e:
        log.error("%s", e)
        return 1
    n_chars = len(lex.words) - 3
    n_prons = Counter(e.word for e in lex.entries)
    n_poly = sum(1 for w in lex.words[3:] if n_prons[w] > 1)
    log.info(
        "%d characters from %s; %d lexicon entries, %d polyphonic characters",
        n_chars,
        ", ".join(map(str, files)),
        len(lex.entries),
        n_poly,
    )
    write_dict_dir(lex, dict_dir)
    log.info("wrote %s", dict_dir)
    with atomic_path(args.out) as tmp:
        info = prepare_lang(lex, tmp, sil_prob=args.sil_prob)
        info.update(
            {
                "characters": n_chars,
                "polyphonic_characters": n_poly,
                "sil_prob": args.sil_prob,
                "fingerprint": fingerprint,
            }
        )
        mark_done(tmp, info)
    log.info("wrote %s: %s", args.out, ", ".join(f"{k}={v}" for k, v in sorted(info.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
