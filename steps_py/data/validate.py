"""Per-utterance checks of data preparation: audio, transcript, and the rejection bookkeeping.

Every importer (lhotse manifests, Kaldi data dirs, a corpus's own ``local/`` code) produces
a `RawSet`: the utterances it could pair up (id, speaker, audio path and optional segment,
raw transcript), the ids it had to reject already (duplicates, ids missing from one of the
files, undecodable lines) and notes on what it did (a byte-order mark removed ...).
`check_audio` then checks each recording once against the `AudioPolicy` of the features,
and `check_utterance` each utterance (its span, its transcript against the corpus's
lexicon); each either passes, with notes on what was done (a channel chosen, resampling,
characters removed), or gets a rejection reason.

Rejection reasons are short codes, optionally followed by ': detail'; `rejected.txt` holds
`<utt> <code>: <detail>`, the log names the first few and counts the rest per code.

The WAV header check is done by hand (`wav_data_shortfall`) because soundfile/libsndfile
silently shortens a truncated file instead of reporting that the header promised more
samples than the file holds.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from steps_py.data.audio import AudioError, AudioPolicy, PipeError, is_piped, run_pipe, segment_samples
from steps_py.data.text import describe_removed, normalize_transcript
from steps_py.lang.lexicon import Lexicon

log = logging.getLogger("data.validate")

MIN_DURATION_S = 0.1
FRAMES_PER_TOKEN = 3  # an HMM needs >= 3 frames per (at least one-phone) token
MAX_REJECTED_FRACTION = 0.05
SHOW_REJECTED = 5  # rejected utterances named in the log before the pointer to rejected.txt

# Reason codes (first token of a rejected.txt reason).
MISSING_FILE = "missing-file"
CORRUPT_AUDIO = "corrupt-audio"
TRUNCATED_AUDIO = "truncated-audio"
WRONG_SAMPLE_RATE = "wrong-sample-rate"
BAD_CHANNEL = "bad-channel"
BAD_SEGMENT = "bad-segment"
TOO_SHORT = "too-short"
EMPTY_TRANSCRIPT = "empty-transcript"
NO_PRONUNCIATION = "no-pronunciation"
DUPLICATE_ID = "duplicate-id"
MISMATCHED_IDS = "mismatched-ids"
BAD_ENCODING = "bad-encoding"
PIPE_FAILED = "pipe-failed"
NON_FINITE_AUDIO = "non-finite-audio"
NUL_BYTE = "nul-byte"
TOO_LONG = "too-long"

# An utterance longer than this many frames per token (plus the allowance) is almost surely a
# transcript that covers only part of its audio: the GMM flat start would give one token hours.
MAX_FRAMES_PER_TOKEN = 100  # 1 s per character or word
LONG_ALLOWANCE_FRAMES = 1000  # 10 s of silence or pauses on top


class RejectionLimitError(RuntimeError):
    """Too many utterances of a set were rejected; the message says where the list is."""


@dataclass(frozen=True)
class RawUtt:
    """An utterance as an importer found it, before any check.

    `rec` is the recording id when the utterance is a segment of a longer recording
    (Kaldi's ``segments``: `start`, `end` in seconds, `end` None = to the end of the file,
    `channel` its optional fifth field); for a whole-file utterance `rec` is None.
    """

    utt: str
    spk: str
    wav: str
    text: str
    rec: str | None = None
    start: float = 0.0
    end: float | None = None
    channel: int | None = None


@dataclass
class RawSet:
    """One data set as imported, with the rejections and notes of importing."""

    name: str
    utts: list[RawUtt] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RecordingInfo:
    """`check_audio`'s verdict on one file: its format, or the reason it is unusable."""

    rate: int = 0
    channels: int = 0
    frames: int = 0
    reason: str | None = None
    rate_note: str | None = None


@dataclass(frozen=True)
class CheckedUtt:
    """Result of `check_utterance`: either `reason` is set, or `tokens`/`duration` are."""

    raw: RawUtt
    tokens: tuple[str, ...] = ()
    duration: float = 0.0
    reason: str | None = None
    audio_notes: tuple[str, ...] = ()
    removed: Counter[str] = field(default_factory=Counter)


def num_frames(num_samples: int, rate: int = 16000) -> int:
    """Kaldi frame count (25 ms / 10 ms, snip_edges=true): 1 + (n - L) // S, or 0 if n < L."""
    length, shift = int(0.025 * rate), int(0.010 * rate)
    return 0 if num_samples < length else 1 + (num_samples - length) // shift


def wav_data_shortfall(path: str | io.BytesIO) -> int:
    """Bytes that a RIFF/WAVE file's `data` chunk header promises but the file lacks (0 if fine).

    Returns 0 for files that are not RIFF/WAVE (soundfile checks those) and for the
    "unknown length" sizes (0 or 0xFFFFFFFF) that streaming writers leave. `path` may be
    the output of a piped wav.scp command.
    """
    if isinstance(path, io.BytesIO):
        return _shortfall(path, len(path.getbuffer()))
    with open(path, "rb") as f:
        return _shortfall(f, os.path.getsize(path))


def _shortfall(f: io.BufferedIOBase | io.BytesIO, size: int) -> int:
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return 0
    pos = 12
    while pos + 8 <= size:
        f.seek(pos)
        chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
        if chunk_id == b"data":
            if chunk_size in (0, 0xFFFFFFFF):
                return 0
            return max(0, pos + 8 + chunk_size - size)
        pos += 8 + chunk_size + (chunk_size & 1)
    return 0


def non_finite_samples(path: str, block: int = 1 << 20) -> str | None:
    """How many samples of a float audio file are NaN or inf, and where the first is (None: none)."""
    count, first, pos, rate = 0, -1, 0, 1
    with sf.SoundFile(path) as f:
        rate = f.samplerate
        for x in f.blocks(blocksize=block, dtype="float64", always_2d=True):
            bad = ~np.isfinite(x).all(axis=1)
            n = int(bad.sum())
            if n and first < 0:
                first = pos + int(np.argmax(bad))
            count, pos = count + n, pos + len(x)
    if not count:
        return None
    return f"{count} of {pos} samples are NaN or inf (the first at {first / rate:.3f} s); fix or drop it"


def check_audio(path: str, policy: AudioPolicy) -> RecordingInfo:
    """Check one audio file (or piped command's output, see `steps_py.data.audio`): exists
    (runs), readable, complete, a rate the policy accepts."""
    src: str | io.BytesIO = path
    if is_piped(path):
        try:
            src = io.BytesIO(run_pipe(path))
        except PipeError as e:
            return RecordingInfo(reason=f"{PIPE_FAILED}: {e}")
    elif not os.path.isfile(path):
        return RecordingInfo(reason=f"{MISSING_FILE}: {path}")
    try:
        info = sf.info(src)
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        return RecordingInfo(reason=f"{CORRUPT_AUDIO}: soundfile cannot read {path} ({msg})")
    if info.format in ("WAV", "WAVEX"):
        short = wav_data_shortfall(src)
        if short:
            return RecordingInfo(
                reason=f"{TRUNCATED_AUDIO}: {path} header promises {short} more bytes than the file holds"
            )
    if info.frames <= 0:
        return RecordingInfo(reason=f"{CORRUPT_AUDIO}: {path} holds no samples")
    if info.subtype in ("FLOAT", "DOUBLE"):  # only float samples can be NaN or inf
        bad = non_finite_samples(path)
        if bad:
            return RecordingInfo(reason=f"{NON_FINITE_AUDIO}: {path}: {bad}")
    try:
        note = policy.rate_note(info.samplerate)
    except AudioError as e:
        return RecordingInfo(reason=f"{WRONG_SAMPLE_RATE}: {e}")
    return RecordingInfo(info.samplerate, info.channels, info.frames, rate_note=note)


def check_utterance(
    u: RawUtt, rec: RecordingInfo, policy: AudioPolicy, lexicon: Lexicon | None, unit: str
) -> CheckedUtt:
    """Every check of one utterance given its recording's `check_audio` result; the first
    failure is the reason."""
    if rec.reason:
        return CheckedUtt(u, reason=rec.reason)
    notes: list[str] = []
    try:
        _, note = policy.channel_of(rec.channels, u.channel)
    except AudioError as e:
        return CheckedUtt(u, reason=f"{BAD_CHANNEL}: {e}")
    if note:
        notes.append(note)
    if rec.rate_note:
        notes.append(rec.rate_note)
    if u.rec is not None:
        try:
            s, e = segment_samples(u.start, u.end, rec.rate, rec.frames)
        except AudioError as err:
            return CheckedUtt(u, reason=f"{BAD_SEGMENT}: {err}")
        n = e - s
    else:
        n = rec.frames
    duration = n / rec.rate
    if duration < MIN_DURATION_S:
        return CheckedUtt(u, reason=f"{TOO_SHORT}: {duration:.3f} s < {MIN_DURATION_S} s")
    tokens, removed = normalize_transcript(u.text, unit)
    if lexicon is not None:
        bad = [t for t in tokens if not lexicon.is_pronounceable(t)]
        if bad:
            shown = " ".join(dict.fromkeys(bad)) if unit == "word" else "".join(dict.fromkeys(bad))
            return CheckedUtt(
                u, reason=f"{NO_PRONUNCIATION}: no lexicon entry for '{shown}'", removed=removed
            )
    if not tokens:
        return CheckedUtt(
            u, reason=f"{EMPTY_TRANSCRIPT}: no words left after normalisation", removed=removed
        )
    frames = num_frames(round(n * policy.sample_rate / rec.rate), policy.sample_rate)
    if frames < FRAMES_PER_TOKEN * len(tokens):
        return CheckedUtt(
            u,
            reason=f"{TOO_SHORT}: {frames} frames for {len(tokens)} tokens (need >= {FRAMES_PER_TOKEN} per token)",
            removed=removed,
        )
    if frames > MAX_FRAMES_PER_TOKEN * len(tokens) + LONG_ALLOWANCE_FRAMES:
        return CheckedUtt(
            u,
            reason=(f"{TOO_LONG}: {frames} frames ({duration:.1f} s) for {len(tokens)} tokens, more than "
                    f"{MAX_FRAMES_PER_TOKEN} per token + {LONG_ALLOWANCE_FRAMES}: the transcript "
                    "covers only part of the audio (segment the recording, or fix the text)"),
            removed=removed,
        )
    return CheckedUtt(u, tokens=tuple(tokens), duration=duration, audio_notes=tuple(notes),
                      removed=removed)


def reason_code(reason: str) -> str:
    return reason.split(":", 1)[0].split()[0]


def summarize_rejections(
    set_name: str, rejected: dict[str, str], total: int, listing: Path | None = None
) -> None:
    """Log the count per reason code and name the first few rejected utterances."""
    if not rejected:
        log.info("%s: %d utterances, none rejected", set_name, total)
        return
    counts = Counter(reason_code(r) for r in rejected.values())
    parts = ", ".join(f"{c} {k}" for k, c in counts.most_common())
    log.warning("%s: rejected %d of %d utterances (%s)", set_name, len(rejected), total, parts)
    for utt, r in sorted(rejected.items())[:SHOW_REJECTED]:
        log.info("%s: rejected %s: %s", set_name, utt, r)
    if len(rejected) > SHOW_REJECTED or listing is not None:
        more = f"{len(rejected) - SHOW_REJECTED} more; " if len(rejected) > SHOW_REJECTED else ""
        log.info("%s: %severy rejected utterance and its reason: %s", set_name, more,
                 listing or "rejected.txt")


def summarize_changes(checked: list[CheckedUtt]) -> list[str]:
    """Lines for the report (and the log) on what was done to accepted utterances."""
    lines = []
    audio: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for c in checked:
        if c.reason is None:
            for n in c.audio_notes:
                audio[n] += 1
                examples.setdefault(n, c.raw.utt)
    for note, count in sorted(audio.items()):
        lines.append(f"audio: {count} utterances: {note} (e.g. {examples[note]})")
    touched = [c for c in checked if describe_removed(c.removed)]
    if touched:
        total: Counter[str] = Counter()
        for c in touched:
            total.update(c.removed)
        first = touched[0]
        lines.append(
            f"text: {len(touched)} transcripts had characters removed ({describe_removed(total)}; "
            f"e.g. {first.raw.utt}: {describe_removed(first.removed)})"
        )
    return lines


def enforce_rejection_limit(set_name: str, num_rejected: int, total: int, listing: Path) -> None:
    """Raise RejectionLimitError if more than 5 % of a set was rejected."""
    if total and num_rejected / total > MAX_REJECTED_FRACTION:
        raise RejectionLimitError(
            f"{set_name}: {num_rejected} of {total} utterances ({100 * num_rejected / total:.1f} %) were rejected, "
            f"more than {100 * MAX_REJECTED_FRACTION:.0f} %; see {listing} for each utterance and reason, "
            "fix the corpus and re-run"
        )
