"""Audio as the features see it: one channel, one span, at the feature sample rate.

`AudioPolicy` holds what Kaldi's ``compute-mfcc-feats`` takes as options (and a config
file may set): ``--sample-frequency``, ``--allow-downsample``, ``--allow-upsample`` and
``--channel`` (-1: mono expected, a multi-channel file uses channel 0 with a warning, as
Kaldi does; N: channel N). Stage 1 checks every recording against it and counts what will
be done (resampled, channel chosen); stage 3 reads samples through `read_samples`, which
applies the same decisions, so nothing happens to audio that the stage-1 report does not
list.

Segments follow Kaldi's ``extract-segments``: sample indices ``int(start * rate)`` and
``int(end * rate)`` of the recording's own rate, ``end = -1`` means the end of the file, an
end up to 0.5 s past the file is truncated, further is an error. Resampling uses
``scipy.signal.resample_poly`` (Kaldi's own resampler is a windowed-sinc
``LinearResample``; the features of resampled audio are therefore close to, not equal to,
Kaldi's). Samples are returned in the 16-bit integer range, as Kaldi reads WAV files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import soundfile as sf

MAX_OVERSHOOT_S = 0.5


class AudioError(ValueError):
    """Audio that cannot be used as the policy says; the message names the file and the fix."""


@dataclass(frozen=True)
class AudioPolicy:
    sample_rate: int = 16000
    allow_downsample: bool = False
    allow_upsample: bool = False
    channel: int = -1

    def rate_note(self, rate: int) -> str | None:
        """None if `rate` is the target; a note if it will be resampled; AudioError if not allowed."""
        if rate == self.sample_rate:
            return None
        if rate > self.sample_rate and self.allow_downsample:
            return f"resampled {rate} -> {self.sample_rate} Hz"
        if rate < self.sample_rate and self.allow_upsample:
            return f"resampled {rate} -> {self.sample_rate} Hz"
        flag = "--allow-downsample=true" if rate > self.sample_rate else "--allow-upsample=true"
        raise AudioError(
            f"{rate} Hz, the features expect {self.sample_rate} Hz: set --sample-frequency={rate} "
            f"in the feature config, or {flag} to resample, or resample the files "
            f"(sox in.wav -r {self.sample_rate} out.wav)"
        )

    def channel_of(self, channels: int, override: int | None = None) -> tuple[int, str | None]:
        """(channel index to use, a note when a choice was made); AudioError if impossible."""
        want = self.channel if override is None else override
        if want == -1:
            if channels == 1:
                return 0, None
            return 0, f"{channels} channels: channel 0 used (--channel=N picks another)"
        if want >= channels:
            raise AudioError(f"channel {want} requested (--channel) but the file has {channels}")
        if channels == 1:
            return 0, None
        return want, f"{channels} channels: channel {want} used (--channel={want})"


def segment_samples(start: float, end: float | None, rate: int, num_samples: int) -> tuple[int, int]:
    """Kaldi extract-segments' sample span [s, e) of a segment; AudioError if it is unusable."""
    s = int(start * rate)
    e = num_samples if end is None or end == -1 else int(end * rate)
    if start < 0 or s >= num_samples:
        raise AudioError(
            f"segment starts at {start:.2f} s, the recording is {num_samples / rate:.2f} s long"
        )
    if e > num_samples:
        if e >= num_samples + int(MAX_OVERSHOOT_S * rate):
            raise AudioError(
                f"segment ends at {end:.2f} s, more than {MAX_OVERSHOOT_S} s after the end of the "
                f"{num_samples / rate:.2f} s recording"
            )
        e = num_samples
    if e <= s:
        raise AudioError(f"segment {start:.2f}-{end} s is empty")
    return s, e


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return x
    from scipy.signal import resample_poly  # a slow import, needed only here

    g = math.gcd(rate_in, rate_out)
    return resample_poly(x, rate_out // g, rate_in // g).astype(np.float32)


def read_samples(
    path: str,
    policy: AudioPolicy,
    start: float = 0.0,
    end: float | None = None,
    channel: int | None = None,
) -> np.ndarray:
    """float32 samples (16-bit range) of one channel and span, at `policy.sample_rate`."""
    info = sf.info(path)
    policy.rate_note(info.samplerate)
    ch, _ = policy.channel_of(info.channels, channel)
    s, e = (0, info.frames) if start == 0.0 and end is None else segment_samples(
        start, end, info.samplerate, info.frames)
    x, _ = sf.read(path, start=s, stop=e, dtype="float32", always_2d=True)
    return resample(x[:, ch] * 32768.0, info.samplerate, policy.sample_rate)
