"""Feature extraction: MFCC or fbank features (optionally + Kaldi pitch) and CMVN stats for a data dir.

    python -m steps_py.features.compute --data data/train --kind mfcc --nj 4
    python -m steps_py.features.compute --data data/train --kind mfcc --conf conf/mfcc.conf \\
        [--pitch-conf conf/pitch.conf] [--cmvn utterance]

The options come from a Kaldi config file (``--conf``, Kaldi's syntax and option names, see
`steps_py.features.conf`); without one, the recipe's defaults (16 kHz, 13 MFCCs without
energy, 40 log-mel bins). ``--pitch-conf`` appends Kaldi pitch features (POV, normalised
log pitch, delta pitch), pasted with a tolerance of 2 frames as Kaldi's
``make_mfcc_pitch.sh``. Audio is read as the config says (`steps_py.data.audio`): one channel
(``--channel``), the segment of ``segments``, resampled when ``--allow-downsample`` /
``--allow-upsample`` allow; what was done is counted in the log and in ``.done``.

Writes `<data>/<kind>/`: `raw_<kind>.<j>.{ark,scp}` per job, `feats.scp` (sorted),
`cmvn.{ark,scp}` (Kaldi 2 x (D+1) stats per speaker, or per utterance with
``--cmvn utterance`` as ``compute-cmvn-stats`` without ``--spk2utt``), `conf/` (copies of
the config files used), `rejected.txt` (utterances whose audio could not be used),
`.done` (options, counts). A finished dir is skipped unless --force or its options differ.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import kaldi_native_io as kio
import numpy as np
import soundfile as sf

from steps_py.cli import CMD_HELP, StepError, add_jobs_options, progress, step_main
from steps_py.data.audio import AudioError, open_audio, read_samples
from steps_py.data.kaldi_dir import DataDirError, KaldiDataDir, Segment, write_kaldi_map
from steps_py.features.cmvn import add_stats, merge_stats, utterance_stats, write_cmvn
from steps_py.features.conf import (
    KINDS,
    ConfError,
    FeatureConfig,
    PitchConfig,
    read_feature_conf,
    read_pitch_conf,
)
from steps_py.features.extract import ENGINES, FeatureExtractor, PitchExtractor
from steps_py.fileio import (
    atomic_path,
    atomic_write_text,
    disk_errors_named,
    is_done,
    mark_done,
)
from steps_py.runner import LocalRunner, Runner, parse_cmd, run_python_jobs

log = logging.getLogger("features")

MAX_FAILED_FRACTION = 0.05
PITCH_LENGTH_TOLERANCE = 2  # frames, as paste-feats --length-tolerance=2 in make_mfcc_pitch.sh
CMVN_TYPES = ("speaker", "utterance")

Item = tuple[str, str, str, Segment | None]  # utt, cmvn key, audio file, segment


class FeatureError(StepError):
    """Feature extraction cannot produce features for a data dir; the message names it and the fix."""


@dataclass
class JobResult:
    """What one extraction job returns to the parent."""

    stats: dict[str, np.ndarray] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    notes: Counter[str] = field(default_factory=Counter)
    frames: int = 0
    seconds: float = 0.0


def paste_pitch(feats: np.ndarray, pitch: np.ndarray) -> np.ndarray | None:
    """[feats | pitch] trimmed to the shorter one; None if they differ by more than 2 frames."""
    if abs(len(feats) - len(pitch)) > PITCH_LENGTH_TOLERANCE:
        return None
    n = min(len(feats), len(pitch))
    return np.concatenate([feats[:n], pitch[:n]], axis=1)


def non_finite(x: np.ndarray, what: str, wav: str) -> str | None:
    """A rejection reason when ``x`` holds NaN or inf (None when all finite)."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return None
    first = int(np.argmax(bad.reshape(-1)))
    return (
        f"non-finite: {int(bad.sum())} of {x.size} {what} of {wav} are NaN or inf (the first at "
        f"index {first}); fix or drop the recording"
    )


def run_job(
    job: int,
    cfg: FeatureConfig,
    pitch_cfg: PitchConfig | None,
    engine: str,
    items: list[Item],
    out_dir: str,
) -> JobResult:
    """Extract features of `items` into raw_<kind>.<job>.{ark,scp} in `out_dir`."""
    extract = FeatureExtractor(cfg, engine)
    pitch = PitchExtractor(pitch_cfg) if pitch_cfg is not None else None
    policy = cfg.policy
    res = JobResult()
    stem = Path(out_dir) / f"raw_{cfg.kind}.{job}"
    # kaldi-native-io says "Error in TableWriter::Write" on a full disk: name the file instead
    with (
        disk_errors_named(f"{stem}.ark"),
        kio.FloatMatrixWriter(f"ark,scp:{stem}.ark,{stem}.scp") as writer,
    ):
        for utt, key, wav, seg in items:
            try:
                src = open_audio(wav)  # a piped wav.scp command runs once, here
                info = sf.info(src)
                rate_note = policy.rate_note(info.samplerate)
                _, ch_note = policy.channel_of(info.channels, seg.channel if seg else None)
                if seg is None:
                    samples = read_samples(src, policy)
                else:
                    samples = read_samples(src, policy, seg.start, seg.end, seg.channel)
            except (sf.SoundFileError, RuntimeError, OSError, AudioError) as e:
                res.failed[utt] = (
                    f"unreadable-audio: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                )
                continue
            for note in (rate_note, ch_note):
                if note:
                    res.notes[note] += 1
            bad = non_finite(samples, "audio samples", wav)
            feats = extract(samples) if bad is None else samples[:0]
            bad = bad or non_finite(feats, "feature values", wav)
            if bad is not None:  # NaN would reach CMVN and the GMM, naming nothing
                res.failed[utt] = bad
                continue
            if feats.shape[0] == 0:
                res.failed[utt] = f"too-short: {samples.size} samples give no frame"
                continue
            if pitch is not None:
                pasted = paste_pitch(feats, pitch(samples))
                if pasted is None:
                    res.failed[utt] = (
                        "pitch-length: pitch and features differ by more than 2 frames"
                    )
                    continue
                feats = pasted
            writer[utt] = feats
            add_stats(res.stats, key, utterance_stats(feats))
            res.frames += feats.shape[0]
            res.seconds += samples.size / cfg.sample_rate
    return res


def split_items(items: list, nj: int) -> list[list]:
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


def feature_options(cfg: FeatureConfig, pitch_cfg: PitchConfig | None, cmvn: str) -> dict:
    """Everything the features depend on; a finished dir with other options is rebuilt."""
    return {
        "features": cfg.as_dict(),
        "conf_lines": cfg.lines,
        "pitch": pitch_cfg.lines if pitch_cfg is not None else None,
        "cmvn": cmvn,
    }


def load_items(data_dir: Path, cmvn: str) -> list[Item]:
    """(utt, CMVN key, wav.scp value, segment) of every utterance with audio."""
    try:
        kd = KaldiDataDir.load(data_dir)
    except DataDirError as e:
        raise FeatureError(str(e)) from None
    items: list[Item] = []
    for u in kd.utts:
        try:
            wav, seg = kd.audio(u)
        except KeyError:
            continue
        items.append((u, u if cmvn == "utterance" else kd.utt2spk[u], wav, seg))
    if not items:
        raise FeatureError(f"{data_dir}: no utterances with audio in wav.scp")
    return items


def check_failed(results: list[JobResult], n_items: int, tmp: Path, data_dir: Path) -> int:
    """Write rejected.txt; FeatureError above 5 % failed; the count and audio notes logged."""
    failed = {u: r for res in results for u, r in res.failed.items()}
    if failed:
        write_kaldi_map(tmp / "rejected.txt", failed)
        log.warning(
            "%s: %d of %d utterances failed (%s ...)",
            data_dir,
            len(failed),
            n_items,
            next(iter(failed.values())),
        )
    if len(failed) > MAX_FAILED_FRACTION * n_items:
        raise FeatureError(
            f"{data_dir}: {len(failed)} of {n_items} utterances failed feature extraction "
            f"(see the log; e.g. {next(iter(failed.values()))}); fix the audio or the config"
        )
    return len(failed)


def write_outputs(
    results: list[JobResult],
    tmp: Path,
    final_abs: str,
    kind: str,
    confs: list[tuple[str | None, str]],
) -> tuple[int, int]:
    """feats.scp, cmvn.{ark,scp} and conf/ in `tmp`; (utterances, CMVN keys)."""
    tmp_abs = str(tmp.resolve())
    scp_lines: list[str] = []
    for j in range(1, len(results) + 1):
        scp_lines += rewrite_scp(tmp / f"raw_{kind}.{j}.scp", tmp_abs, final_abs)
    atomic_write_text(tmp / "feats.scp", "".join(f"{line}\n" for line in sorted(scp_lines)))
    stats = merge_stats([r.stats for r in results])
    write_cmvn(stats, tmp)
    rewrite_scp(tmp / "cmvn.scp", tmp_abs, final_abs)
    (tmp / "conf").mkdir()
    for src, name in confs:
        if src and Path(src).is_file():
            shutil.copyfile(src, tmp / "conf" / name)
    return len(scp_lines), len(stats)


def compute_features(
    data_dir: Path,
    cfg: FeatureConfig,
    nj: int,
    force: bool = False,
    engine: str = "numpy",
    pitch_cfg: PitchConfig | None = None,
    cmvn: str = "speaker",
    runner: Runner | None = None,
) -> Path:
    """Extract the features of one data dir with `nj` jobs through `runner` (default: local);
    returns `<data_dir>/<kind>`. Job j logs to `<data_dir>/log/compute_<kind>.<j>.log`."""
    kind = cfg.kind
    feat_dir = data_dir / kind
    options = feature_options(cfg, pitch_cfg, cmvn)
    if is_done(feat_dir) and not force:
        done = json.loads((feat_dir / ".done").read_text(encoding="utf-8"))
        if done.get("options") == json.loads(json.dumps(options)):
            log.info("%s is done (.done present); skipping (use --force to redo)", feat_dir)
            return feat_dir
        log.info("%s/.done was made with other feature options; recomputing", feat_dir)
    if pitch_cfg is not None and pitch_cfg.sample_rate != cfg.sample_rate:
        raise FeatureError(
            f"{pitch_cfg.source}: --sample-frequency={pitch_cfg.sample_rate} but {cfg.source} has "
            f"{cfg.sample_rate}; pitch and {kind} must read the audio at one rate"
        )
    items = load_items(data_dir, cmvn)
    parts = split_items(items, nj)
    t0 = time.perf_counter()
    dim = cfg.dim + (pitch_cfg.dim if pitch_cfg is not None else 0)
    with atomic_path(feat_dir) as tmp:
        tmp.mkdir()
        tmp_abs = str(tmp.resolve())
        jobs = [(j + 1, cfg, pitch_cfg, engine, part, tmp_abs) for j, part in enumerate(parts)]
        bar = progress(total=len(parts), desc=f"{kind} {data_dir.name}", unit="job")
        results = run_python_jobs(
            runner or LocalRunner(),
            f"compute_{kind}",
            run_job,
            jobs,
            tmp / ".jobs",
            data_dir / "log",
        )
        shutil.rmtree(tmp / ".jobs", ignore_errors=True)
        bar.update(len(parts))
        bar.close()
        n_failed = check_failed(results, len(items), tmp, data_dir)
        notes: Counter[str] = Counter()
        for r in results:
            notes.update(r.notes)
        for note, count in sorted(notes.items()):
            log.warning("%s: %d utterances: %s", data_dir, count, note)
        confs = [
            (cfg.source, f"{kind}.conf"),
            (pitch_cfg.source if pitch_cfg else None, "pitch.conf"),
        ]
        n_utts, n_keys = write_outputs(results, tmp, str(feat_dir.resolve()), kind, confs)
        frames = sum(r.frames for r in results)
        seconds = sum(r.seconds for r in results)
        wall = time.perf_counter() - t0
        info = {
            "kind": kind, "engine": engine, "dim": dim, "sample_rate": cfg.sample_rate,
            "pitch": pitch_cfg is not None, "cmvn": cmvn, "utterances": n_utts,
            "cmvn_keys": n_keys, "frames": frames, "audio_seconds": round(seconds, 3),
            "failed": n_failed, "audio_notes": dict(notes), "nj": len(parts),
            "wall_seconds": round(wall, 3), "options": options,
        }  # fmt: skip
        mark_done(tmp, info)
    log.info(
        "%s: %d utterances, %d frames of %d-dim %s%s (%.1f h audio at %d Hz), CMVN per %s, in %.1f s (%.0fx real time with %d jobs)",
        feat_dir, n_utts, frames, dim, kind, "+pitch" if pitch_cfg else "", seconds / 3600,
        cfg.sample_rate, cmvn, wall, seconds / max(wall, 1e-9), len(parts),
    )  # fmt: skip
    return feat_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m steps_py.features.compute",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", type=Path, required=True, nargs="+", help="Kaldi data dir(s), e.g. data/train"
    )
    p.add_argument(
        "--kind", choices=KINDS, default="mfcc", help="feature type (default: %(default)s)"
    )
    p.add_argument(
        "--conf",
        type=Path,
        default=None,
        help="Kaldi config of compute-<kind>-feats, e.g. conf/mfcc.conf (default: the recipe's defaults)",
    )
    p.add_argument(
        "--pitch-conf",
        type=Path,
        default=None,
        help="Kaldi pitch config; appends pitch features (default: none)",
    )
    p.add_argument(
        "--cmvn",
        choices=CMVN_TYPES,
        default="speaker",
        help="CMVN stats per speaker (utt2spk) or per utterance (default: %(default)s)",
    )
    add_jobs_options(p, cmd_help=CMD_HELP)
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="numpy",
        help="numpy: vectorised Kaldi pipeline (faster); knf: kaldi-native-fbank frame by frame (default: %(default)s)",
    )
    p.add_argument("--force", action="store_true", help="recompute finished features")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        cfg = read_feature_conf(args.conf, args.kind)
        pitch_cfg = read_pitch_conf(args.pitch_conf) if args.pitch_conf else None
    except ConfError as e:
        raise FeatureError(str(e)) from None
    runner = parse_cmd(args.cmd)
    for d in args.data:
        compute_features(d, cfg, args.nj, args.force, args.engine, pitch_cfg, args.cmvn, runner)
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main(
        "features",
        build_parser(),
        run,
        argv,
        log_file=lambda a: a.data[0] / "log" / f"compute_{a.kind}.log",
    )


if __name__ == "__main__":
    sys.exit(main())
