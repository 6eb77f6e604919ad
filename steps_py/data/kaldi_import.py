"""Import existing Kaldi data dirs (`<corpus-dir>/{train,dev,test}/`) as `RawSet`s.

Unlike `kaldi_dir.read_kaldi_map`, which stops at the first problem, this reader is
tolerant: duplicate ids and ids missing from one of wav.scp/text/utt2spk become
rejections of those utterances, so one bad line does not stop a whole corpus.
Piped wav.scp entries (`cmd ... |`) are refused with a clear error: running arbitrary
shell commands from a data file is not safe, and stage 3 reads audio files directly.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path

from steps_py.data.kaldi_dir import DataDirError
from steps_py.data.validate import DUPLICATE_ID, MISMATCHED_IDS, RawSet, RawUtt

log = logging.getLogger(__name__)

REQUIRED_FILES = ("wav.scp", "text", "utt2spk")


def read_lines_tolerant(path: Path) -> tuple[dict[str, str], dict[str, int]]:
    """Read `<id> <value...>` lines; returns (first value per id, count per duplicated id)."""
    values: dict[str, str] = {}
    counts: dict[str, int] = defaultdict(int)
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            key = parts[0]
            counts[key] += 1
            values.setdefault(key, parts[1].strip() if len(parts) > 1 else "")
    return values, {k: c for k, c in counts.items() if c > 1}


def resolve_wav_path(value: str, where: str) -> str:
    """A wav.scp value as a file path; a piped command is an error naming the fix."""
    if value.endswith("|"):
        raise DataDirError(
            f"{where}: piped wav.scp entry '{value}' is not supported; convert the audio to 16 kHz "
            "WAV files first (e.g. `sox in.flac -r 16000 -b 16 out.wav`) and list the file paths"
        )
    return value


def import_kaldi_set(set_dir: Path, name: str) -> RawSet:
    """Read one Kaldi data dir into a RawSet (no audio is touched here)."""
    set_dir = Path(set_dir)
    for fname in REQUIRED_FILES:
        if not (set_dir / fname).is_file():
            raise DataDirError(
                f"{set_dir}: missing {fname}; a Kaldi data dir needs {', '.join(REQUIRED_FILES)}"
            )
    maps: dict[str, dict[str, str]] = {}
    rejected: dict[str, str] = {}
    for fname in REQUIRED_FILES:
        values, dups = read_lines_tolerant(set_dir / fname)
        maps[fname] = values
        for utt, c in dups.items():
            rejected.setdefault(utt, f"{DUPLICATE_ID}: '{utt}' appears {c} times in {fname}")
    all_ids = set().union(*(set(m) for m in maps.values()))
    for utt in sorted(all_ids):
        present = [f for f in REQUIRED_FILES if utt in maps[f]]
        if len(present) < len(REQUIRED_FILES):
            missing = [f for f in REQUIRED_FILES if f not in present]
            rejected.setdefault(
                utt, f"{MISMATCHED_IDS}: in {', '.join(present)} but not in {', '.join(missing)}"
            )
    if (set_dir / "spk2utt").is_file():
        log.info("%s: spk2utt is ignored and rebuilt from utt2spk", set_dir)
    utts = []
    for utt in sorted(all_ids - set(rejected)):
        wav = resolve_wav_path(maps["wav.scp"][utt], f"{set_dir / 'wav.scp'} ({utt})")
        if not Path(wav).is_absolute() and not Path(wav).exists() and (set_dir / wav).exists():
            wav = os.path.relpath(set_dir / wav)
        utts.append(RawUtt(utt=utt, spk=maps["utt2spk"][utt], wav=wav, text=maps["text"][utt]))
    return RawSet(name=name, utts=utts, rejected=rejected)


def import_kaldi_corpus(corpus_dir: Path, sets: tuple[str, ...]) -> dict[str, RawSet]:
    corpus_dir = Path(corpus_dir)
    missing = [s for s in sets if not (corpus_dir / s).is_dir()]
    if missing:
        raise DataDirError(
            f"{corpus_dir}: missing data dirs {', '.join(missing)}; --corpus kaldi expects "
            f"{', '.join(s + '/' for s in sets)} each with {', '.join(REQUIRED_FILES)}"
        )
    return {s: import_kaldi_set(corpus_dir / s, s) for s in sets}
