"""AISHELL-1: lhotse manifests of the corpus, with what lhotse would trip on set aside.

    python -m local.aishell.prepare --corpus-dir /data/aishell --out data/local/aishell --nj 4

Layout (as lhotse expects): `<corpus>/data_aishell/wav/{train,dev,test}/<spk>/<utt>.wav` and
`<corpus>/data_aishell/transcript/aishell_transcript_v0.8.txt` (`<utt> <words...>`).

lhotse's recipe stops at the first unreadable file and silently skips wavs without a
transcript (and keeps the last of duplicated transcript lines). So this step first
scans the corpus itself, rejects what lhotse cannot handle (unreadable audio, duplicate
ids, wavs without transcript), and runs `prepare_aishell` on a mirror of symlinks to the
remaining files. It writes `<out>/manifests/aishell_{recordings,supervisions}_<set>.jsonl.gz`
with the recordings' real paths and `<out>/manifests/rejected_<set>.txt`; data preparation reads
them like any lhotse corpus (`steps_py.data.prepare --manifests`). Utterance ids stay
AISHELL's own (``BAC009S0002W0122``; its speaker ``S0002`` is inside the id, so Kaldi's
sorting rule holds without a prefix).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import shutil
import sys
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf

from steps_py.cli import StepError, int_at_least, progress, step_main
from steps_py.data.kaldi_dir import write_kaldi_map
from steps_py.data.validate import CORRUPT_AUDIO, DUPLICATE_ID, MISMATCHED_IDS
from steps_py.fileio import atomic_path, mark_done

log = logging.getLogger("aishell.prepare")
SETS = ("train", "dev", "test")
TRANSCRIPT = Path("data_aishell/transcript/aishell_transcript_v0.8.txt")


class AishellError(StepError):
    """The corpus dir is not an AISHELL-1 layout; the message says what is missing."""


def _readable(path: str) -> str | None:
    """None if soundfile can read the header, else the error message."""
    try:
        sf.info(path)
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return None


def read_transcript_ids(path: Path) -> Counter[str]:
    with open(path, encoding="utf-8") as f:
        return Counter(line.split(maxsplit=1)[0] for line in f if line.strip())


def prepare_manifests(
    corpus_dir: Path, out: Path, sets: tuple[str, ...], nj: int = 1
) -> dict[str, int]:
    """Scan, reject, run lhotse's recipe on a clean mirror, write `out/manifests`; returns counts."""
    from lhotse.recipes import prepare_aishell  # heavy import, only needed here

    corpus_dir = Path(corpus_dir)
    transcript = corpus_dir / TRANSCRIPT
    if not transcript.is_file():
        raise AishellError(
            f"{corpus_dir}: no {TRANSCRIPT}; --corpus-dir must be the AISHELL-1 root that holds "
            "data_aishell/{wav,transcript} (untar data_aishell.tgz and the wav/*.tar.gz inside it)"
        )
    tr_counts = read_transcript_ids(transcript)
    mirror = Path(out) / "mirror"
    if mirror.exists():
        shutil.rmtree(mirror)
    (mirror / TRANSCRIPT).parent.mkdir(parents=True)
    os.symlink(transcript.resolve(), mirror / TRANSCRIPT)

    rejected: dict[str, dict[str, str]] = defaultdict(dict)
    origin: dict[str, str] = {}  # mirror path -> original path
    for part in sets:
        part_dir = corpus_dir / "data_aishell" / "wav" / part
        if not part_dir.is_dir():
            raise AishellError(
                f"{part_dir}: missing; AISHELL-1 has wav/train, wav/dev and wav/test"
            )
        wavs = sorted(part_dir.rglob("*.wav"))
        stems = Counter(p.stem for p in wavs)
        with ProcessPoolExecutor(max(1, nj)) as ex:
            errors = list(
                progress(
                    ex.map(_readable, map(str, wavs), chunksize=64),
                    total=len(wavs),
                    desc=f"scan {part}",
                )
            )
        for wav, err in zip(wavs, errors, strict=True):
            utt = wav.stem
            if stems[utt] > 1:
                rejected[part][utt] = f"{DUPLICATE_ID}: {stems[utt]} files named {utt}.wav"
            elif tr_counts[utt] > 1:
                rejected[part][utt] = f"{DUPLICATE_ID}: {tr_counts[utt]} transcript lines for {utt}"
            elif tr_counts[utt] == 0:
                rejected[part][utt] = f"{MISMATCHED_IDS}: {wav} has no line in {TRANSCRIPT.name}"
            elif err is not None:
                rejected[part][utt] = f"{CORRUPT_AUDIO}: soundfile cannot read {wav} ({err})"
            else:
                link = mirror / "data_aishell" / "wav" / part / wav.parent.name / wav.name
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(wav.resolve(), link)
                origin[str(link)] = str(wav)

    counts: dict[str, int] = {}
    with atomic_path(Path(out) / "manifests") as tmp:
        prepare_aishell(mirror, output_dir=tmp)
        for part in sets:
            for kind in ("recordings", "supervisions"):
                _unmirror(tmp / f"aishell_{kind}_{part}.jsonl.gz", origin)
            write_kaldi_map(tmp / f"rejected_{part}.txt", rejected[part])
            counts[part] = len(rejected[part])
        mark_done(tmp, {"rejected": counts})
    shutil.rmtree(mirror, ignore_errors=True)
    return counts


def _unmirror(path: Path, origin: dict[str, str]) -> None:
    """Point the recordings of a manifest at the corpus files instead of the symlink mirror."""
    if not path.is_file():
        return
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for r in rows:
        for src in r.get("sources") or []:
            if src.get("type") == "file" and src.get("source") in origin:
                src["source"] = str(Path(origin[src["source"]]).resolve())
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m local.aishell.prepare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--corpus-dir",
        type=Path,
        required=True,
        help="AISHELL-1 root holding data_aishell/{wav,transcript}",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("data/local/aishell"),
        help="where manifests/ goes (default: %(default)s)",
    )
    p.add_argument("--sets", nargs="+", default=list(SETS), help="sets (default: %(default)s)")
    p.add_argument(
        "--nj",
        type=int_at_least(1),
        default=2,
        help="processes scanning audio (default: %(default)s)",
    )
    p.add_argument("--force", action="store_true", help="redo even if <out>/manifests/.done exists")
    return p


def run(args: argparse.Namespace) -> int:
    counts = prepare_manifests(args.corpus_dir, args.out, tuple(args.sets), nj=args.nj)
    log.info(
        "wrote %s (set aside before lhotse: %s)",
        args.out / "manifests",
        ", ".join(f"{k} {v}" for k, v in counts.items()),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main(
        "aishell.prepare", build_parser(), run, argv, done_dir=lambda a: a.out / "manifests"
    )


if __name__ == "__main__":
    sys.exit(main())
