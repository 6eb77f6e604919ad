"""Feature extraction speed, as multiples of real time on one core (MFCC and fbank, ark writing included).

    python benchmarks/bench_features.py --seconds 120 --utt-seconds 5

Synthesises `--seconds` of audio (tones + noise, 16 kHz, int16 range) in utterances of
`--utt-seconds`, then for each kind and engine (vectorised numpy, kaldi-native-fbank) times: extraction with steps_py.features.extract and
writing every matrix to a Kaldi ark/scp with kaldi-native-io, in this one process. With
`--from-wav` the audio is written to WAV files first and reading them is timed too.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import kaldi_native_io as kio
import numpy as np
import soundfile as sf

from steps_py.features.extract import ENGINES, SAMPLE_RATE, FeatureExtractor, read_audio


def synth_utterances(total_s: float, utt_s: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    n = max(1, round(total_s / utt_s))
    t = np.arange(int(utt_s * SAMPLE_RATE)) / SAMPLE_RATE
    out = []
    for _ in range(n):
        f0 = rng.uniform(100, 300)
        x = (
            sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * 4000
            + rng.standard_normal(t.size) * 300
        )
        out.append(np.clip(x, -32767, 32767).astype(np.float32))
    return out


def bench(
    kind: str,
    engine: str,
    utts: list[np.ndarray],
    wavs: list[str] | None,
    out_dir: Path,
    repeats: int,
) -> float:
    """Best-of-`repeats` real-time factor (audio seconds / wall seconds) for one kind."""
    extract = FeatureExtractor(kind, engine)
    audio_s = sum(u.size for u in utts) / SAMPLE_RATE
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        with kio.FloatMatrixWriter(f"ark,scp:{out_dir}/{kind}{r}.ark,{out_dir}/{kind}{r}.scp") as w:
            for i, u in enumerate(utts):
                x = read_audio(wavs[i]) if wavs else u
                w[f"utt{i:05d}"] = extract(x)
        best = min(best, time.perf_counter() - t0)
    return audio_s / best


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=120.0, help="total audio (default 120)")
    p.add_argument("--utt-seconds", type=float, default=5.0, help="utterance length (default 5)")
    p.add_argument(
        "--repeats", type=int, default=3, help="timed repeats, best is reported (default 3)"
    )
    p.add_argument("--from-wav", action="store_true", help="also time reading WAV files")
    p.add_argument(
        "--engines",
        nargs="+",
        choices=ENGINES,
        default=list(ENGINES),
        help="engines to time (default both)",
    )
    args = p.parse_args()
    utts = synth_utterances(args.seconds, args.utt_seconds)
    with tempfile.TemporaryDirectory() as tmp:
        wavs = None
        if args.from_wav:
            wavs = [f"{tmp}/u{i}.wav" for i in range(len(utts))]
            for path, u in zip(wavs, utts, strict=True):
                sf.write(path, (u / 32768).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        print(
            f"{len(utts)} utterances x {args.utt_seconds:g} s = {args.seconds:g} s of audio, 1 process"
            f"{', reading WAV files' if wavs else ''}, best of {args.repeats}"
        )
        for engine in args.engines:
            for kind in ("mfcc", "fbank"):
                rtf = bench(kind, engine, utts, wavs, Path(tmp), args.repeats)
                print(f"{kind:6s} engine={engine:6s} {rtf:8.0f}x real time per core")


if __name__ == "__main__":
    main()
