"""Kaldi feature config files (``conf/mfcc.conf``, ``conf/fbank.conf``, ``conf/pitch.conf``).

    cfg = read_feature_conf("egs/digits/conf/mfcc.conf", "mfcc")   # FeatureConfig
    pitch = read_pitch_conf("conf/pitch.conf")                       # PitchConfig

The syntax is Kaldi's (``ParseOptions::ReadConfigFile``): one ``--name=value`` per line,
``--name`` alone for a true boolean, everything after ``#`` a comment, ``_`` and ``-`` alike
in names, booleans ``true/false/t/f/1/0``. The options are those of Kaldi's
``compute-mfcc-feats`` / ``compute-fbank-feats`` (frame, mel, MFCC or fbank options, and
``--channel``, ``--allow-downsample``, ``--allow-upsample``) and of
``compute-kaldi-pitch-feats`` + ``process-kaldi-pitch-feats`` for pitch; they are set on
kaldi-native-fbank's option objects, which mirror Kaldi's. An option Kaldi has but this
recipe does not implement (``--vtln-warp``, ``--subtract-mean``, ``--output-format`` ...) or a
misspelt one is an error naming the file and line.

Defaults: options a file does not set keep Kaldi's defaults, with one exception: ``--dither``
defaults to 0 (Kaldi: 1.0) so that features are reproducible; set it to dither. Without a
file (``conf=None``) the recipe's own defaults apply: MFCC ``--use-energy=false`` (13 ceps,
23 bins), fbank ``--num-mel-bins=40``, 16 kHz.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kaldi_native_fbank as knf

from steps_py.data.audio import AudioPolicy

KINDS: tuple[str, ...] = ("mfcc", "fbank")

# The recipe's defaults when no config file is given (Kaldi syntax, applied like a file).
DEFAULT_CONF: dict[str, str] = {
    "mfcc": "--use-energy=false\n",
    "fbank": "--num-mel-bins=40\n",
}


class ConfError(ValueError):
    """A config file line that cannot be used; the message names the file, line and fix."""


def _bool(v: str) -> bool:
    s = v.strip().lower()
    if s in ("true", "t", "1", ""):
        return True
    if s in ("false", "f", "0"):
        return False
    raise ValueError(f"'{v}' is not a boolean (true or false)")


def _int(v: str) -> int:
    return int(v, 0)


def _float(v: str) -> float:
    return float(v)


def _str(v: str) -> str:
    if not v:
        raise ValueError("needs a value")
    return v


# option -> (object path, attribute, converter); object path is resolved on the options
FRAME = {
    "sample-frequency": ("frame_opts", "samp_freq", _float),
    "frame-shift": ("frame_opts", "frame_shift_ms", _float),
    "frame-length": ("frame_opts", "frame_length_ms", _float),
    "dither": ("frame_opts", "dither", _float),
    "preemphasis-coefficient": ("frame_opts", "preemph_coeff", _float),
    "remove-dc-offset": ("frame_opts", "remove_dc_offset", _bool),
    "window-type": ("frame_opts", "window_type", _str),
    "round-to-power-of-two": ("frame_opts", "round_to_power_of_two", _bool),
    "blackman-coeff": ("frame_opts", "blackman_coeff", _float),
    "snip-edges": ("frame_opts", "snip_edges", _bool),
}
MEL = {
    "num-mel-bins": ("mel_opts", "num_bins", _int),
    "low-freq": ("mel_opts", "low_freq", _float),
    "high-freq": ("mel_opts", "high_freq", _float),
    "vtln-low": ("mel_opts", "vtln_low", _float),
    "vtln-high": ("mel_opts", "vtln_high", _float),
    "debug-mel": ("mel_opts", "debug_mel", _bool),
}
MFCC = {
    "num-ceps": ("", "num_ceps", _int),
    "use-energy": ("", "use_energy", _bool),
    "energy-floor": ("", "energy_floor", _float),
    "raw-energy": ("", "raw_energy", _bool),
    "cepstral-lifter": ("", "cepstral_lifter", _float),
    "htk-compat": ("", "htk_compat", _bool),
}
FBANK = {
    "use-energy": ("", "use_energy", _bool),
    "energy-floor": ("", "energy_floor", _float),
    "raw-energy": ("", "raw_energy", _bool),
    "htk-compat": ("", "htk_compat", _bool),
    "use-log-fbank": ("", "use_log_fbank", _bool),
    "use-power": ("", "use_power", _bool),
}
# options of the compute-*-feats programs themselves (not of the extractor)
PROGRAM = {"channel": _int, "allow-downsample": _bool, "allow-upsample": _bool}
PITCH = {
    "sample-frequency": ("pitch", "samp_freq", _float),
    "frame-shift": ("pitch", "frame_shift_ms", _float),
    "frame-length": ("pitch", "frame_length_ms", _float),
    "preemphasis-coefficient": ("pitch", "preemph_coeff", _float),
    "min-f0": ("pitch", "min_f0", _float),
    "max-f0": ("pitch", "max_f0", _float),
    "soft-min-f0": ("pitch", "soft_min_f0", _float),
    "penalty-factor": ("pitch", "penalty_factor", _float),
    "lowpass-cutoff": ("pitch", "lowpass_cutoff", _float),
    "resample-frequency": ("pitch", "resample_freq", _float),
    "delta-pitch": ("pitch", "delta_pitch", _float),
    "nccf-ballast": ("pitch", "nccf_ballast", _float),
    "nccf-ballast-online": ("pitch", "nccf_ballast_online", _bool),
    "lowpass-filter-width": ("pitch", "lowpass_filter_width", _int),
    "upsample-filter-width": ("pitch", "upsample_filter_width", _int),
    "max-frames-latency": ("pitch", "max_frames_latency", _int),
    "frames-per-chunk": ("pitch", "frames_per_chunk", _int),
    "simulate-first-pass-online": ("pitch", "simulate_first_pass_online", _bool),
    "recompute-frame": ("pitch", "recompute_frame", _int),
    "snip-edges": ("pitch", "snip_edges", _bool),
    "pitch-scale": ("process", "pitch_scale", _float),
    "pov-scale": ("process", "pov_scale", _float),
    "pov-offset": ("process", "pov_offset", _float),
    "delta-pitch-scale": ("process", "delta_pitch_scale", _float),
    "delta-pitch-noise-stddev": ("process", "delta_pitch_noise_stddev", _float),
    "normalization-left-context": ("process", "normalization_left_context", _int),
    "normalization-right-context": ("process", "normalization_right_context", _int),
    "delta-window": ("process", "delta_window", _int),
    "delay": ("process", "delay", _int),
    "add-pov-feature": ("process", "add_pov_feature", _bool),
    "add-normalized-log-pitch": ("process", "add_normalized_log_pitch", _bool),
    "add-delta-pitch": ("process", "add_delta_pitch", _bool),
    "add-raw-log-pitch": ("process", "add_raw_log_pitch", _bool),
}
WINDOWS = ("povey", "hamming", "hanning", "rectangular", "blackman", "sine")


def parse_conf_lines(text: str, where: str) -> list[tuple[int, str, str]]:
    """(line number, normalised name, value) of each option line, Kaldi's syntax."""
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not line.startswith("--") or line.startswith("--="):
            raise ConfError(
                f"{where}:{n}: '{raw.strip()}' is not an option line; write --name=value"
            )
        name, _, value = line[2:].partition("=")
        out.append((n, name.strip().replace("_", "-").lower(), value.strip()))
    return out


def _read_text(path: str | Path) -> str:
    p = Path(path)
    if not p.is_file():
        raise ConfError(f"config file {p} not found")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfError(f"config file {p} is not UTF-8 text") from None


@dataclass
class FeatureConfig:
    """MFCC or fbank options (knf objects) and the program options, from one config file."""

    kind: str
    opts: Any  # knf.MfccOptions | knf.FbankOptions
    channel: int = -1
    allow_downsample: bool = False
    allow_upsample: bool = False
    source: str = "defaults"
    lines: list[str] = field(default_factory=list)

    @property
    def sample_rate(self) -> int:
        return int(self.opts.frame_opts.samp_freq)

    @property
    def dim(self) -> int:
        if self.kind == "mfcc":
            return int(self.opts.num_ceps)
        return int(self.opts.mel_opts.num_bins) + (1 if self.opts.use_energy else 0)

    @property
    def frame_length(self) -> int:
        """Samples per frame (Kaldi's WindowSize)."""
        f = self.opts.frame_opts
        return int(f.samp_freq * 0.001 * f.frame_length_ms)

    @property
    def frame_shift(self) -> int:
        f = self.opts.frame_opts
        return int(f.samp_freq * 0.001 * f.frame_shift_ms)

    @property
    def policy(self) -> AudioPolicy:
        """What the audio must be (rate, channel) and may become (resampled)."""
        return AudioPolicy(
            self.sample_rate, self.allow_downsample, self.allow_upsample, self.channel
        )

    def as_dict(self) -> dict[str, Any]:
        """Every option value (for .done and for comparing two configs)."""
        return {
            "kind": self.kind,
            **self.opts.as_dict(),
            "channel": self.channel,
            "allow_downsample": self.allow_downsample,
            "allow_upsample": self.allow_upsample,
        }


def _set(obj: Any, path: str, attr: str, conv: Callable[[str], Any], value: str) -> None:
    target = getattr(obj, path) if path else obj
    setattr(target, attr, conv(value))


def read_feature_conf(path: str | Path | None, kind: str) -> FeatureConfig:
    """The options of `kind` ('mfcc' or 'fbank') from a Kaldi config file (None: defaults)."""
    if kind not in KINDS:
        raise ConfError(f"unknown feature kind '{kind}'; use one of {', '.join(KINDS)}")
    text = DEFAULT_CONF[kind] if path is None else _read_text(path)
    where = f"default {kind} options" if path is None else str(path)
    opts = knf.MfccOptions() if kind == "mfcc" else knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    cfg = FeatureConfig(kind=kind, opts=opts, source=where)
    table = {**FRAME, **MEL, **(MFCC if kind == "mfcc" else FBANK)}
    for n, name, value in parse_conf_lines(text, where):
        try:
            if name in PROGRAM:
                setattr(cfg, name.replace("-", "_"), PROGRAM[name](value))
            elif name in table:
                _set(opts, *table[name], value)
            else:
                raise ConfError(
                    f"{where}:{n}: --{name} is not an option of compute-{kind}-feats that this "
                    f"recipe implements; supported: {', '.join('--' + k for k in sorted({*table, *PROGRAM}))}"
                )
        except ValueError as e:
            if isinstance(e, ConfError):
                raise
            raise ConfError(f"{where}:{n}: --{name}={value}: {e}") from None
        cfg.lines.append(f"--{name}={value}")
    f = opts.frame_opts
    if f.window_type not in WINDOWS:
        raise ConfError(f"{where}: --window-type={f.window_type}; use one of {', '.join(WINDOWS)}")
    if f.samp_freq <= 0 or f.frame_length_ms <= 0 or f.frame_shift_ms <= 0:
        raise ConfError(f"{where}: sample frequency, frame length and shift must be positive")
    if cfg.channel < -1:
        raise ConfError(f"{where}: --channel={cfg.channel}; use -1 (mono expected) or 0, 1, ...")
    return cfg


def audio_policy_from_conf(path: str | Path) -> AudioPolicy:
    """The audio options (``--sample-frequency``, ``--allow-downsample``, ``--allow-upsample``,
    ``--channel``) of an MFCC or fbank config; its other options are left to ``steps_py.features.compute``."""
    where = str(path)
    values: dict[str, Any] = {
        "sample-frequency": 16000.0,
        "allow-downsample": False,
        "allow-upsample": False,
        "channel": -1,
    }
    for n, name, value in parse_conf_lines(_read_text(path), where):
        conv = {"sample-frequency": _float, **PROGRAM}.get(name)
        if conv is None:
            continue
        try:
            values[name] = conv(value)
        except ValueError as e:
            raise ConfError(f"{where}:{n}: --{name}={value}: {e}") from None
    if values["channel"] < -1 or values["sample-frequency"] <= 0:
        raise ConfError(f"{where}: --channel must be >= -1 and --sample-frequency > 0")
    return AudioPolicy(
        int(values["sample-frequency"]),
        values["allow-downsample"],
        values["allow-upsample"],
        values["channel"],
    )


@dataclass
class PitchConfig:
    """Kaldi pitch extraction and post-processing options (knf objects)."""

    pitch: Any  # knf.PitchExtractionOptions
    process: Any  # knf.ProcessPitchOptions
    source: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return int(self.process.dim)

    @property
    def sample_rate(self) -> int:
        return int(self.pitch.samp_freq)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "options": list(self.lines), "dim": self.dim}


def read_pitch_conf(path: str | Path) -> PitchConfig:
    """Pitch options from a Kaldi config file (both programs' options may be in it)."""
    text = _read_text(path)
    where = str(path)
    cfg = PitchConfig(
        pitch=knf.PitchExtractionOptions(), process=knf.ProcessPitchOptions(), source=where
    )
    objs = {"pitch": cfg.pitch, "process": cfg.process}
    for n, name, value in parse_conf_lines(text, where):
        if name not in PITCH:
            raise ConfError(
                f"{where}:{n}: --{name} is not an option of compute-kaldi-pitch-feats or "
                f"process-kaldi-pitch-feats; supported: {', '.join('--' + k for k in sorted(PITCH))}"
            )
        obj, attr, conv = PITCH[name]
        try:
            setattr(objs[obj], attr, conv(value))
        except ValueError as e:
            raise ConfError(f"{where}:{n}: --{name}={value}: {e}") from None
        cfg.lines.append(f"--{name}={value}")
    if cfg.dim == 0:
        raise ConfError(f"{where}: every pitch output is switched off (--add-*=false)")
    return cfg
