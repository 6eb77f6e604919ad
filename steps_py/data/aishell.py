"""AISHELL-1 -> `RawSet`s, through `lhotse.recipes.prepare_aishell`.

Layout (as lhotse expects): `<corpus>/data_aishell/wav/{train,dev,test}/<spk>/<utt>.wav` and
`<corpus>/data_aishell/transcript/aishell_transcript_v0.8.txt` (`<utt> <words...>`).

lhotse's recipe stops at the first unreadable file and silently skips wavs without a
transcript (and keeps the last of duplicated transcript lines). So this module first
scans the corpus itself, rejects what lhotse cannot handle (unreadable audio, duplicate
ids, wavs without transcript), and runs `prepare_aishell` on a mirror of symlinks to the
remaining files; the manifests then go through the same path as every other corpus.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from steps_py.data.kaldi_dir import DataDirError
from steps_py.data.manifests import import_manifest_set
from steps_py.data.validate import CORRUPT_AUDIO, DUPLICATE_ID, MISMATCHED_IDS, RawSet, RawUtt

log = logging.getLogger(__name__)

TRANSCRIPT = Path("data_aishell/transcript/aishell_transcript_v0.8.txt")


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


def import_aishell(
    corpus_dir: Path, work_dir: Path, sets: tuple[str, ...], nj: int = 1
) -> dict[str, RawSet]:
    """Scan, reject, run lhotse's recipe on the clean mirror under `work_dir`, return RawSets."""
    from lhotse.recipes import prepare_aishell  # heavy import, only needed here

    corpus_dir = Path(corpus_dir)
    transcript = corpus_dir / TRANSCRIPT
    if not transcript.is_file():
        raise DataDirError(
            f"{corpus_dir}: no {TRANSCRIPT}; --corpus-dir must be the AISHELL-1 root that holds "
            "data_aishell/{wav,transcript} (untar data_aishell.tgz and the wav/*.tar.gz inside it)"
        )
    tr_counts = read_transcript_ids(transcript)
    mirror = Path(work_dir) / "mirror"
    if mirror.exists():
        shutil.rmtree(mirror)
    (mirror / TRANSCRIPT).parent.mkdir(parents=True)
    os.symlink(transcript.resolve(), mirror / TRANSCRIPT)

    rejected: dict[str, dict[str, str]] = defaultdict(dict)
    origin: dict[str, str] = {}  # mirror path -> original path
    for part in sets:
        part_dir = corpus_dir / "data_aishell" / "wav" / part
        if not part_dir.is_dir():
            raise DataDirError(
                f"{part_dir}: missing; AISHELL-1 has wav/train, wav/dev and wav/test"
            )
        wavs = sorted(part_dir.rglob("*.wav"))
        stems = Counter(p.stem for p in wavs)
        with ProcessPoolExecutor(max(1, nj)) as ex:
            errors = list(
                tqdm(
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

    manifest_dir = Path(work_dir) / "manifests"
    prepare_aishell(mirror, output_dir=manifest_dir)
    out: dict[str, RawSet] = {}
    for part in sets:
        raw = import_manifest_set(manifest_dir, part, base_dir=mirror)
        utts = [RawUtt(u.utt, u.spk, origin.get(u.wav, u.wav), u.text) for u in raw.utts]
        out[part] = RawSet(name=part, utts=utts, rejected={**rejected[part], **raw.rejected})
    return out
