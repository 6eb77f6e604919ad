"""Stage 1: Kaldi data dirs `<out>/{train,dev,test}/` and `<out>/local/lm_text.txt` from a corpus.

    python -m steps_py.data.prepare --corpus synth --corpus-dir corpus/synth --out data
    python -m steps_py.data.prepare --corpus aishell --corpus-dir /data/aishell --out data --nj 4
    python -m steps_py.data.prepare --corpus kaldi --corpus-dir /data/mydirs --out data

Each utterance is checked (audio readable, not truncated, 16 kHz, long enough for its
transcript; transcript non-empty and pronounceable; ids unique and present everywhere).
Failures are skipped, listed in `<out>/<set>/rejected.txt` and counted in the log; the stage
fails if more than 5 % of a set is rejected. Transcripts become space-separated characters.
Utterance ids that do not start with their speaker id get `<spk>-` prepended (Kaldi's
sorting rule). Finished sets hold a `.done` marker; re-running skips them unless --force.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from steps_py.data.kaldi_dir import DataDirError, KaldiDataDir, write_kaldi_map
from steps_py.data.validate import (
    CheckedUtt,
    RawSet,
    RejectionLimitError,
    check_utterance,
    enforce_rejection_limit,
    normalize_text,
    summarize_rejections,
)
from steps_py.fileio import atomic_path, atomic_write_text, is_done, mark_done
from steps_py.log import setup_logging

log = logging.getLogger("prepare")

SETS = ("train", "dev", "test")


def check_all(raw: RawSet, nj: int) -> list[CheckedUtt]:
    """`check_utterance` over a set, in `nj` processes, in input order."""
    desc = f"check {raw.name}"
    if nj <= 1 or len(raw.utts) < 64:
        return [check_utterance(u) for u in tqdm(raw.utts, desc=desc)]
    with ProcessPoolExecutor(nj) as ex:
        return list(
            tqdm(ex.map(check_utterance, raw.utts, chunksize=32), total=len(raw.utts), desc=desc)
        )


def build_data_dir(checked: Iterable[CheckedUtt]) -> tuple[KaldiDataDir, int]:
    """KaldiDataDir of the accepted utterances; returns (dir, number of ids given a speaker prefix)."""
    kd = KaldiDataDir()
    renamed = 0
    for c in checked:
        utt, spk = c.raw.utt, c.raw.spk
        if not utt.startswith(spk):
            utt = f"{spk}-{utt}"
            renamed += 1
        kd.wav[utt] = c.raw.wav
        kd.text[utt] = " ".join(c.chars)
        kd.utt2spk[utt] = spk
        kd.utt2dur[utt] = c.duration
    return kd, renamed


def prepare_set(raw: RawSet, out_dir: Path, nj: int) -> KaldiDataDir:
    """Check, write `out_dir` atomically (with rejected.txt and .done), enforce the 5 % limit."""
    checked = check_all(raw, nj)
    rejected = dict(raw.rejected)
    rejected.update({c.raw.utt: c.reason for c in checked if c.reason})
    total = len(raw.utts) + len(raw.rejected)
    summarize_rejections(raw.name, rejected, total)
    try:
        enforce_rejection_limit(raw.name, len(rejected), total, out_dir / "rejected.txt")
    except RejectionLimitError:
        with atomic_path(out_dir) as tmp:  # leave only the listing, no .done
            tmp.mkdir()
            write_kaldi_map(tmp / "rejected.txt", rejected)
        raise
    kd, renamed = build_data_dir(c for c in checked if c.reason is None)
    if not kd.utt2spk:
        raise DataDirError(f"{raw.name}: no utterances left; see {out_dir / 'rejected.txt'}")
    if renamed:
        log.info(
            "%s: %d utterance ids prefixed with '<speaker>-' (Kaldi sorting rule)",
            raw.name,
            renamed,
        )
    with atomic_path(out_dir) as tmp:
        kd.write(tmp)
        if rejected:
            write_kaldi_map(tmp / "rejected.txt", rejected)
        hours = sum(kd.utt2dur.values()) / 3600
        mark_done(
            tmp,
            {"utterances": len(kd.utt2spk), "rejected": len(rejected), "hours": round(hours, 4)},
        )
    log.info(
        "%s: wrote %s (%d utterances, %d speakers, %.2f h)",
        raw.name,
        out_dir,
        len(kd.utt2spk),
        len(kd.spk2utt()),
        hours,
    )
    return kd


def normalize_lm_lines(lines: Iterable[str], source: str) -> list[str]:
    """Space-separated characters per line; lines with unpronounceable characters are dropped."""
    out: list[str] = []
    dropped = empty = 0
    for line in lines:
        chars, bad = normalize_text(line)
        if bad:
            dropped += 1
        elif not chars:
            empty += 1
        else:
            out.append(" ".join(chars))
    if dropped or empty:
        log.warning(
            "LM text %s: dropped %d lines with characters with no pronunciation, %d empty lines",
            source,
            dropped,
            empty,
        )
    return out


def write_lm_text(args: argparse.Namespace, train: KaldiDataDir | None) -> None:
    target = args.out / "local" / "lm_text.txt"
    lm_file: Path | None = args.lm_text
    if lm_file is None and args.corpus == "synth":
        lm_file = args.corpus_dir / "lm_text.txt"
    if lm_file is not None:
        if not lm_file.is_file():
            raise DataDirError(
                f"LM text {lm_file} not found; pass --lm-text FILE (one sentence per line)"
            )
        with open(lm_file, encoding="utf-8") as f:
            lines = normalize_lm_lines(f, str(lm_file))
    else:
        if train is None:
            train = KaldiDataDir.load(args.out / "train")
        lines = [train.text[u] for u in train.utts]
        log.info("LM text: using the %d train transcripts", len(lines))
    if not lines:
        raise DataDirError(
            f"LM text from {lm_file or 'train transcripts'} is empty after normalisation"
        )
    atomic_write_text(target, "".join(line + "\n" for line in lines))
    log.info(
        "wrote %s (%d sentences, %d characters)",
        target,
        len(lines),
        sum(len(x.split()) for x in lines),
    )


def import_corpus(args: argparse.Namespace, sets: tuple[str, ...]) -> dict[str, RawSet]:
    if not args.corpus_dir.is_dir():
        raise DataDirError(f"--corpus-dir {args.corpus_dir} does not exist")
    if args.corpus == "synth":
        from steps_py.data.manifests import import_manifest_set

        return {
            s: import_manifest_set(args.corpus_dir / "manifests", s, base_dir=args.corpus_dir)
            for s in sets
        }
    if args.corpus == "aishell":
        from steps_py.data.aishell import import_aishell

        return import_aishell(args.corpus_dir, args.out / "local" / "aishell", sets, nj=args.nj)
    from steps_py.data.kaldi_import import import_kaldi_corpus

    return import_kaldi_corpus(args.corpus_dir, sets)


def run(args: argparse.Namespace) -> None:
    sets = tuple(args.sets)
    lm_target = args.out / "local" / "lm_text.txt"
    todo = [s for s in sets if args.force or not is_done(args.out / s)]
    if not todo and lm_target.is_file() and not args.force:
        log.info(
            "%s: data dirs %s and %s already done; skipping (use --force to redo)",
            args.out,
            ", ".join(sets),
            lm_target,
        )
        return
    for s in sets:
        if s not in todo:
            log.info("%s already done; skipping it (use --force to redo)", args.out / s)
    raw_sets = import_corpus(args, tuple(todo)) if todo else {}
    prepared: dict[str, KaldiDataDir] = {}
    errors: list[str] = []
    for s in todo:
        try:
            prepared[s] = prepare_set(raw_sets[s], args.out / s, args.nj)
        except (RejectionLimitError, DataDirError) as e:
            errors.append(str(e))
    if errors:
        raise RejectionLimitError("\n".join(errors))
    write_lm_text(args, prepared.get("train"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--corpus",
        choices=("synth", "aishell", "kaldi"),
        default="synth",
        help="corpus type (default synth)",
    )
    p.add_argument(
        "--corpus-dir",
        type=Path,
        default=Path("corpus/synth"),
        help="corpus root (default corpus/synth)",
    )
    p.add_argument("--out", type=Path, default=Path("data"), help="output root (default data)")
    p.add_argument(
        "--lm-text",
        type=Path,
        default=None,
        help="LM sentences, one per line (default: corpus lm_text.txt for synth, train transcripts otherwise)",
    )
    p.add_argument(
        "--nj", type=int, default=2, help="parallel processes for audio checks (default 2)"
    )
    p.add_argument(
        "--sets", nargs="+", default=list(SETS), help="sets to prepare (default train dev test)"
    )
    p.add_argument("--force", action="store_true", help="redo finished sets")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("prepare", args.out / "log" / "prepare.log")
    try:
        run(args)
    except (DataDirError, RejectionLimitError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
