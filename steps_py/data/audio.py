"""Audio as the features see it: one channel, one span, at the feature sample rate.

`AudioPolicy` holds what Kaldi's ``compute-mfcc-feats`` takes as options (and a config
file may set): ``--sample-frequency``, ``--allow-downsample``, ``--allow-upsample`` and
``--channel`` (-1: mono expected, a multi-channel file uses channel 0 with a warning, as
Kaldi does; N: channel N). Data preparation checks every recording against it and counts what will
be done (resampled, channel chosen); feature extraction reads samples through `read_samples`, which
applies the same decisions, so nothing happens to audio that the data-preparation report does not
list.

Segments follow Kaldi's ``extract-segments``: sample indices ``int(start * rate)`` and
``int(end * rate)`` of the recording's own rate, ``end = -1`` means the end of the file, an
end up to 0.5 s past the file is truncated, further is an error. Resampling uses
``scipy.signal.resample_poly`` (Kaldi's own resampler is a windowed-sinc
``LinearResample``; the features of resampled audio are therefore close to, not equal to,
Kaldi's). Samples are returned in the 16-bit integer range, as Kaldi reads WAV files.

A wav.scp value that ends in ``|`` (``sph2pipe -f wav x.sph |``, ``flac -c -d -s x.flac |``,
``sox x.mp3 -t wav - |``) is a command whose standard output is the audio, as in Kaldi and
lhotse: `open_audio` runs it with ``/bin/sh`` from the current directory (so only use data
dirs you trust, as with Kaldi) and hands its output to soundfile, which then checks it as
it checks a file (rate, channels, length). A command that fails or prints nothing raises
`PipeError`, naming the command, its exit status and the end of its stderr.
"""

from __future__ import annotations

import io
import math
import subprocess
from dataclasses import dataclass

import numpy as np
import soundfile as sf

MAX_OVERSHOOT_S = 0.5
PIPE_TIMEOUT_S = 600


class AudioError(ValueError):
    """Audio that cannot be used as the policy says; the message names the file and the fix."""


class PipeError(AudioError):
    """A piped wav.scp command failed; the message names the command and its stderr."""


def is_piped(value: str) -> bool:
    """True for a wav.scp value that is a command (``... |``), not a path."""
    return value.rstrip().endswith("|")


def run_pipe(value: str) -> bytes:
    """The standard output of the wav.scp command `value` (``cmd ... |``); PipeError if it fails."""
    cmd = value.rstrip()[:-1].strip()
    try:
        proc = subprocess.run(
            cmd, shell=True, capture_output=True, timeout=PIPE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise PipeError(f"command '{cmd}' did not finish in {PIPE_TIMEOUT_S} s") from None
    err = proc.stderr.decode("utf-8", errors="replace").strip()
    tail = " | ".join(err.splitlines()[-3:])
    if proc.returncode != 0:
        raise PipeError(
            f"command '{cmd}' failed (exit {proc.returncode})" + (f": {tail}" if tail else "")
        )
    if not proc.stdout:
        raise PipeError(f"command '{cmd}' wrote no audio" + (f" (stderr: {tail})" if tail else ""))
    return proc.stdout


def open_audio(value: str | io.BytesIO) -> str | io.BytesIO:
    """What soundfile reads for a wav.scp value: the path, or the piped command's output
    (audio already read is rewound and returned as it is)."""
    if isinstance(value, io.BytesIO):
        value.seek(0)
        return value
    return io.BytesIO(run_pipe(value)) if is_piped(value) else value


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
    path: str | io.BytesIO,
    policy: AudioPolicy,
    start: float = 0.0,
    end: float | None = None,
    channel: int | None = None,
) -> np.ndarray:
    """float32 samples (16-bit range) of one channel and span, at `policy.sample_rate`.

    `path` is a wav.scp value (a file or a piped command, run here) or `open_audio`'s result."""
    src = open_audio(path)
    info = sf.info(src)
    policy.rate_note(info.samplerate)
    ch, _ = policy.channel_of(info.channels, channel)
    s, e = (0, info.frames) if start == 0.0 and end is None else segment_samples(
        start, end, info.samplerate, info.frames)
    x, _ = sf.read(open_audio(src), start=s, stop=e, dtype="float32", always_2d=True)
    return resample(x[:, ch] * 32768.0, info.samplerate, policy.sample_rate)
