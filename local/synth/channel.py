"""Channel simulation: resampling, silence padding, reverberation, coloured/babble noise
at a target SNR, and a random playback gain.

All randomness comes from the `numpy.random.Generator` passed in, so an utterance's
channel is a pure function of its seed.  SNR is defined over the whole utterance:
``10*log10(mean(speech**2) / mean(noise**2))`` with `speech` the (reverberant) padded
speech as written to the file and `noise` the added noise, both after the gain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.signal import fftconvolve, resample_poly

NOISE_TYPES = ("white", "pink", "brown", "babble")


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (scipy), float64 in and out."""
    if sr_in == sr_out:
        return x.astype(np.float64)
    g = np.gcd(sr_in, sr_out)
    return resample_poly(x.astype(np.float64), sr_out // g, sr_in // g)


def coloured_noise(kind: str, n: int, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """Unit-power white, pink (1/f power) or brown (1/f^2 power) noise by FFT shaping."""
    white = rng.standard_normal(n)
    if kind == "white":
        y = white
    else:
        exponent = {"pink": 0.5, "brown": 1.0}.get(kind)
        if exponent is None:
            raise ValueError(f"unknown noise colour {kind!r}")
        spec = np.fft.rfft(white)
        f = np.fft.rfftfreq(n, 1.0 / sr)
        spec *= np.maximum(f, 20.0) ** -exponent
        y = np.fft.irfft(spec, n)
    return y / (np.sqrt(np.mean(y**2)) + 1e-12)


def babble_noise(
    bank: list[np.ndarray], n: int, talkers: int, rng: np.random.Generator
) -> np.ndarray:
    """Sum of `talkers` randomly shifted clips from `bank` (unit-RMS speech), unit power."""
    if not bank:
        raise ValueError("babble noise needs a non-empty bank of speech clips")
    y = np.zeros(n)
    for _ in range(talkers):
        clip = bank[int(rng.integers(len(bank)))]
        reps = -(-n // len(clip)) + 1
        tiled = np.tile(clip, reps)
        start = int(rng.integers(len(clip)))
        y += tiled[start : start + n]
    return y / (np.sqrt(np.mean(y**2)) + 1e-12)


def exponential_ir(
    rt60: float, sr: int, rng: np.random.Generator, direct_to_reverb_db: float
) -> np.ndarray:
    """Synthetic room impulse response: a direct path followed by exponentially decaying noise."""
    n = max(int(rt60 * sr), 2)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # -60 dB at rt60
    tail[: int(0.002 * sr)] = 0.0  # first reflections arrive after ~2 ms
    tail *= 10 ** (-direct_to_reverb_db / 20) / (np.sqrt(np.sum(tail**2)) + 1e-12)
    tail[0] = 1.0
    return tail


@dataclass
class ChannelResult:
    audio: np.ndarray  # float64 at the output rate, in [-1, 1]
    speech: np.ndarray  # the speech component of `audio`
    noise: np.ndarray  # the noise component of `audio`
    lead_s: float  # seconds of silence added before the speech
    info: dict[str, Any]


def draw_snr(rng: np.random.Generator, bands: list[list[float]]) -> float:
    """SNR from a mixture of uniform bands [[low, high, weight], ...]."""
    w = np.array([b[2] for b in bands], dtype=np.float64)
    i = int(
        np.searchsorted(np.cumsum(w / w.sum()), rng.random(), side="right").clip(0, len(bands) - 1)
    )
    return float(rng.uniform(bands[i][0], bands[i][1]))


def apply_channel(
    samples: np.ndarray,
    sr_in: int,
    cfg: dict[str, Any],
    rng: np.random.Generator,
    babble_bank: list[np.ndarray],
) -> ChannelResult:
    """Turn clean int16/float synthesizer output into a noisy, reverberant 16 kHz recording."""
    sr = int(cfg["sample_rate"])
    arr = np.asarray(samples)
    x = arr.astype(np.float64) / 32768.0 if arr.dtype.kind in "iu" else arr.astype(np.float64)
    x = resample(x, sr_in, sr)
    lead = float(rng.uniform(*cfg["pad_s"]))
    trail = float(rng.uniform(*cfg["pad_s"]))
    n_lead = int(lead * sr)
    x = np.concatenate([np.zeros(n_lead), x, np.zeros(int(trail * sr))])
    n = len(x)

    rt60 = 0.0
    if rng.random() < cfg["reverb_prob"]:
        rt60 = float(rng.uniform(*cfg["rt60"]))
        drr = float(rng.uniform(*cfg["direct_to_reverb_db"]))
        x = fftconvolve(x, exponential_ir(rt60, sr, rng, drr))[:n]

    kinds = sorted(cfg["noise_types"])
    w = np.array([cfg["noise_types"][k] for k in kinds], dtype=np.float64)
    kind = kinds[
        int(
            np.searchsorted(np.cumsum(w / w.sum()), rng.random(), side="right").clip(
                0, len(kinds) - 1
            )
        )
    ]
    if kind == "babble":
        noise = babble_noise(
            babble_bank,
            n,
            int(rng.integers(cfg["babble_talkers"][0], cfg["babble_talkers"][1] + 1)),
            rng,
        )
    else:
        noise = coloured_noise(kind, n, rng, sr)
    snr = draw_snr(rng, cfg["snr_bands"])
    p_speech = float(np.mean(x**2)) + 1e-20
    noise *= np.sqrt(p_speech / 10 ** (snr / 10))

    level = float(rng.uniform(*cfg["level_dbfs"]))
    mix = x + noise
    gain = 10 ** (level / 20) / (np.sqrt(np.mean(mix**2)) + 1e-20)
    peak = np.abs(mix).max() * gain
    if peak > 0.98:  # never clip: lower the level instead
        gain *= 0.98 / peak
    info = {
        "snr_db": round(snr, 2),
        "noise_type": kind,
        "rt60_s": round(rt60, 3),
        "gain_db": round(float(20 * np.log10(gain)), 2),
    }
    return ChannelResult(mix * gain, x * gain, noise * gain, n_lead / sr, info)


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
