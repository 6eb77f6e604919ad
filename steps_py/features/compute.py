"""Stage 3: MFCC or fbank features + per-speaker CMVN stats for one Kaldi data dir.

    python -m steps_py.features.compute --data data/train --kind mfcc --nj 4
    python -m steps_py.features.compute --data data/train --kind fbank --nj 4

Writes `<data>/<kind>/`: `raw_<kind>.<j>.{ark,scp}` per job, `feats.scp` (sorted),
`cmvn.{ark,scp}` (per speaker, Kaldi 2 x (D+1) stats), `rejected.txt` (utterances whose
audio could not be read), `.done`. The directory is built under a temporary name and
renamed when complete; a finished one is skipped unless --force.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import kaldi_native_io as kio
import numpy as np
import soundfile as sf
from tqdm import tqdm

from steps_py.data.kaldi_dir import DataDirError, KaldiDataDir, write_kaldi_map
from steps_py.features.cmvn import add_stats, merge_stats, utterance_stats, write_cmvn
from steps_py.features.extract import (
    DIMS,
    ENGINES,
    KINDS,
    SAMPLE_RATE,
    FeatureExtractor,
    read_audio,
)
from steps_py.fileio import atomic_path, atomic_write_text, mark_done, skip_done
from steps_py.log import setup_logging

log = logging.getLogger("features")

MAX_FAILED_FRACTION = 0.05


@dataclass
class JobResult:
    """What one extraction job returns to the parent."""

    stats: dict[str, np.ndarray] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0


def run_job(
    job: int,
    kind: str,
    engine: str,
    items: list[tuple[str, str, str]],
    out_dir: str,
    show_progress: bool,
) -> JobResult:
    """Extract features of `items` (utt, spk, wav) into raw_<kind>.<job>.{ark,scp} in `out_dir`."""
    extract = FeatureExtractor(kind, engine)
    res = JobResult()
    stem = Path(out_dir) / f"raw_{kind}.{job}"
    with kio.FloatMatrixWriter(f"ark,scp:{stem}.ark,{stem}.scp") as writer:
        for utt, spk, wav in tqdm(
            items,
            desc=f"{kind} job {job}",
            position=job - 1,
            disable=not show_progress,
            leave=False,
        ):
            try:
                samples = read_audio(wav)
            except (sf.SoundFileError, RuntimeError, OSError, ValueError) as e:
                res.failed[utt] = (
                    f"unreadable-audio: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                )
                continue
            feats = extract(samples)
            if feats.shape[0] == 0:
                res.failed[utt] = f"too-short: {samples.size} samples give no 25 ms frame"
                continue
            writer[utt] = feats
            add_stats(res.stats, spk, utterance_stats(feats))
            res.frames += feats.shape[0]
            res.seconds += samples.size / SAMPLE_RATE
    return res


def split_items(items: list[tuple[str, str, str]], nj: int) -> list[list[tuple[str, str, str]]]:
    """nj contiguous, nearly equal parts (fewer if there are fewer items)."""
    nj = max(1, min(nj, len(items)))
    bounds = np.linspace(0, len(items), nj + 1).round().astype(int)
    return [items[bounds[j] : bounds[j + 1]] for j in range(nj)]


def rewrite_scp(path: Path, old_dir: str, new_dir: str) -> list[str]:
    """Replace the temporary dir in scp locations by the final one; returns the new lines."""
    lines = [
        line.replace(f" {old_dir}/", f" {new_dir}/", 1)
        for line in path.read_text(encoding="utf-8").splitlines()
        if line
    ]
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))
    return lines


def compute_features(
    data_dir: Path, kind: str, nj: int, force: bool = False, engine: str = "numpy"
) -> Path:
    """Run stage 3 for one data dir; returns `<data_dir>/<kind>`."""
    feat_dir = data_dir / kind
    if skip_done(feat_dir, force):
        return feat_dir
    kd = KaldiDataDir.load(data_dir)
    piped = [u for u in kd.utts if kd.wav.get(u, "").endswith("|")]
    if piped:
        raise DataDirError(
            f"{data_dir}/wav.scp: {len(piped)} piped entries (e.g. {piped[0]}); re-run stage 1, which lists audio files"
        )
    items = [(u, kd.utt2spk[u], kd.wav[u]) for u in kd.utts if u in kd.wav]
    if not items:
        raise DataDirError(f"{data_dir}: no utterances with audio in wav.scp")
    parts = split_items(items, nj)
    final_abs = str(feat_dir.resolve())
    t0 = time.perf_counter()
    with atomic_path(feat_dir) as tmp:
        tmp.mkdir()
        tmp_abs = str(tmp.resolve())
        args = [(j + 1, kind, engine, part, tmp_abs, True) for j, part in enumerate(parts)]
        if len(parts) == 1:
            results = [run_job(*args[0])]
        else:
            with ProcessPoolExecutor(len(parts)) as ex:
                results = list(ex.map(run_job, *zip(*args, strict=True)))
        failed = {u: r for res in results for u, r in res.failed.items()}
        if failed:
            write_kaldi_map(tmp / "rejected.txt", failed)
            log.warning(
                "%s: %d of %d utterances failed (%s ...)",
                data_dir,
                len(failed),
                len(items),
                next(iter(failed.values())),
            )
        if len(failed) > MAX_FAILED_FRACTION * len(items):
            raise DataDirError(
                f"{data_dir}: {len(failed)} of {len(items)} utterances failed feature extraction; see the log and fix the audio"
            )
        scp_lines: list[str] = []
        for j in range(1, len(parts) + 1):
            scp_lines += rewrite_scp(tmp / f"raw_{kind}.{j}.scp", tmp_abs, final_abs)
        atomic_write_text(tmp / "feats.scp", "".join(f"{line}\n" for line in sorted(scp_lines)))
        stats = merge_stats([r.stats for r in results])
        write_cmvn(stats, tmp)
        rewrite_scp(tmp / "cmvn.scp", tmp_abs, final_abs)
        frames = sum(r.frames for r in results)
        seconds = sum(r.seconds for r in results)
        wall = time.perf_counter() - t0
        info = {
            "kind": kind, "engine": engine, "dim": DIMS[kind], "utterances": len(scp_lines), "speakers": len(stats),
            "frames": frames, "audio_seconds": round(seconds, 3), "failed": len(failed), "nj": len(parts),
            "wall_seconds": round(wall, 3),
        }  # fmt: skip
        mark_done(tmp, info)
    log.info(
        "%s: %d utterances, %d speakers, %d frames of %d-dim %s (%.1f h audio) in %.1f s (%.0fx real time with %d jobs)",
        feat_dir, info["utterances"], info["speakers"], frames, DIMS[kind], kind, seconds / 3600, wall,
        seconds / max(wall, 1e-9), len(parts),
    )  # fmt: skip
    return feat_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data", type=Path, required=True, nargs="+", help="Kaldi data dir(s), e.g. data/train"
    )
    p.add_argument("--kind", choices=KINDS, default="mfcc", help="feature type (default mfcc)")
    p.add_argument("--nj", type=int, default=2, help="parallel jobs (default 2)")
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="numpy",
        help="numpy: vectorised Kaldi pipeline (default, faster); knf: kaldi-native-fbank frame by frame",
    )
    p.add_argument("--force", action="store_true", help="recompute finished features")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("features", args.data[0] / "log" / f"compute_{args.kind}.log")
    try:
        for d in args.data:
            compute_features(d, args.kind, args.nj, args.force, args.engine)
    except (DataDirError, FileNotFoundError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
