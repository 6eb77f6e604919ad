"""Test helpers for the Kaldi-written files of ../shared/corpora/mandarin_digits.

Features as that corpus's Kaldi recipe made them (its README): Kaldi MFCC at the file's
8 kHz, ``--use-energy=false``, 13 cepstra (kaldi-native-fbank, dither 0 instead of Kaldi's
random dither), per-utterance mean normalisation, deltas. ``write_feature_dir`` stores such
features the way stage 3 does (feats.scp + cmvn.scp) with every utterance its own
"speaker", so the project's readers apply exactly the per-utterance CMN.
"""

from __future__ import annotations

from pathlib import Path

import kaldi_native_fbank as knf
import kaldi_native_io as kio
import numpy as np
import pytest
import soundfile as sf

DIGITS = Path(__file__).resolve().parents[1].parent / "shared" / "corpora" / "mandarin_digits"
if not DIGITS.is_dir():
    DIGITS = Path("/work/shared/corpora/mandarin_digits")
KALDI_EXP = DIGITS / "kaldi_exp_mono"
KALDI_LANG = DIGITS / "kaldi_lang"

needs_digits = pytest.mark.skipif(
    not (KALDI_EXP / "final.mdl").is_file(), reason="mandarin_digits corpus not present"
)


def read_map(path: Path) -> dict[str, list[str]]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        f = line.split()
        if f:
            out[f[0]] = f[1:]
    return out


def wav_path(utt: str) -> Path:
    return DIGITS / read_map(DIGITS / "wav.scp")[utt][0]


def raw_features(utt: str, kind: str = "mfcc") -> np.ndarray:
    """Kaldi MFCC (13, no energy) or fbank (40 bins) of one digits utterance, before CMN."""
    x, sr = sf.read(str(wav_path(utt)), dtype="int16")
    if kind == "mfcc":
        o = knf.MfccOptions()
        o.use_energy = False
    else:
        o = knf.FbankOptions()
        o.mel_opts.num_bins = 40
    o.frame_opts.samp_freq = sr
    o.frame_opts.dither = 0.0
    comp = knf.OnlineMfcc(o) if kind == "mfcc" else knf.OnlineFbank(o)
    comp.accept_waveform(sr, x.astype(np.float32).tolist())
    comp.input_finished()
    return np.array([comp.get_frame(i) for i in range(comp.num_frames_ready)], dtype=np.float32)


def gmm_features(utt: str) -> np.ndarray:
    """What Kaldi's digits model was trained on: MFCC, per-utterance CMN, deltas (39 dims)."""
    from steps_py.gmm.feats import add_deltas

    f = raw_features(utt, "mfcc")
    return add_deltas(f - f.mean(0))


def write_feature_dir(data_dir: Path, utts: list[str], kinds: tuple[str, ...] = ("mfcc",)) -> None:
    """A data dir (text, utt2spk = per-utterance speakers, wav.scp) with stage-3 style features."""
    from steps_py.features.cmvn import utterance_stats, write_cmvn

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    text = read_map(DIGITS / "text")
    (data_dir / "text").write_text(
        "".join(f"{u} {' '.join(text[u])}\n" for u in utts), encoding="utf-8"
    )
    (data_dir / "utt2spk").write_text("".join(f"{u} {u}\n" for u in utts), encoding="utf-8")
    (data_dir / "spk2utt").write_text("".join(f"{u} {u}\n" for u in utts), encoding="utf-8")
    (data_dir / "wav.scp").write_text(
        "".join(f"{u} {wav_path(u)}\n" for u in utts), encoding="utf-8"
    )
    for kind in kinds:
        d = (data_dir / kind).resolve()
        d.mkdir(exist_ok=True)
        feats = {u: raw_features(u, kind) for u in utts}
        with kio.FloatMatrixWriter(f"ark,scp:{d / 'feats.ark'},{d / 'feats.scp'}") as w:
            for u in sorted(feats):
                w[u] = feats[u]
        write_cmvn({u: utterance_stats(feats[u]) for u in feats}, d)


def spread(utts: list[str], n: int) -> list[str]:
    """`n` utterances spread evenly over the sorted list (all speakers, all lengths)."""
    utts = sorted(utts)
    step = max(1, len(utts) // n)
    return utts[::step][:n]
