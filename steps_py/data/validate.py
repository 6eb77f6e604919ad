"""Per-utterance checks for stage 1: audio, transcript, and the rejection bookkeeping.

Every corpus importer (synthetic / AISHELL manifests, Kaldi dirs) produces a `RawSet`: the
utterances it could pair up (id, speaker, audio path, raw transcript) plus the ids it had to
reject already (duplicates, ids missing from one of the files). `check_utterance` then
checks each utterance and either returns the clean entry or a rejection reason.

Rejection reasons are short codes, optionally followed by ': detail'; `rejected.txt` holds
`<utt> <code>: <detail>` and the log summarises counts per code.

The WAV header check is done by hand (`wav_data_shortfall`) because soundfile/libsndfile
silently shortens a truncated file instead of reporting that the header promised more
samples than the file holds.
"""

from __future__ import annotations

import logging
import os
import struct
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf
from pypinyin import Style, pinyin


def pypinyin_pronunciations(ch: str) -> list[tuple[str, ...]]:
    """Readings of a single hanzi as 1-tuples of TONE3 pinyin; [] if pypinyin has none."""
    if len(ch) != 1:
        return []
    readings = pinyin(ch, style=Style.TONE3, heteronym=True, errors=lambda _: [])
    return [(r,) for r in readings[0]] if readings else []


try:  # the lexicon's own definition of "pronounceable" (stage 2), when present
    from steps_py.lang.pron import char_pronunciations
except ImportError:  # the same question asked of pypinyin directly
    char_pronunciations = pypinyin_pronunciations


log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MIN_DURATION_S = 0.1
FRAME_LENGTH = 400  # 25 ms at 16 kHz
FRAME_SHIFT = 160  # 10 ms at 16 kHz
FRAMES_PER_CHAR = 3  # an HMM needs >= 3 frames per (at least one-phone) character
MAX_REJECTED_FRACTION = 0.05

# Reason codes (first token of a rejected.txt reason).
MISSING_FILE = "missing-file"
CORRUPT_AUDIO = "corrupt-audio"
TRUNCATED_AUDIO = "truncated-audio"
WRONG_SAMPLE_RATE = "wrong-sample-rate"
TOO_SHORT = "too-short"
EMPTY_TRANSCRIPT = "empty-transcript"
NO_PRONUNCIATION = "no-pronunciation"
DUPLICATE_ID = "duplicate-id"
MISMATCHED_IDS = "mismatched-ids"


class RejectionLimitError(RuntimeError):
    """Too many utterances of a set were rejected; the message says where the list is."""


@dataclass(frozen=True)
class RawUtt:
    """An utterance as a corpus importer found it, before any check."""

    utt: str
    spk: str
    wav: str
    text: str


@dataclass
class RawSet:
    """One data set (train/dev/test) as imported, with the rejections found while importing."""

    name: str
    utts: list[RawUtt] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckedUtt:
    """Result of `check_utterance`: either `reason` is set, or `chars`/`duration` are."""

    raw: RawUtt
    chars: tuple[str, ...] = ()
    duration: float = 0.0
    reason: str | None = None


def num_frames(num_samples: int) -> int:
    """Kaldi frame count with snip_edges=true: 1 + (n - 400) // 160, or 0 if n < 400."""
    return 0 if num_samples < FRAME_LENGTH else 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT


def is_pronounceable(ch: str) -> bool:
    return bool(char_pronunciations(ch))


def normalize_text(raw: str) -> tuple[list[str], list[str]]:
    """Split a transcript into characters: (kept characters, characters with no pronunciation).

    NFKC folds full-width ASCII to half-width; whitespace, punctuation and symbols are
    dropped; everything else must be a hanzi with a pinyin reading.
    """
    kept: list[str] = []
    bad: list[str] = []
    for ch in unicodedata.normalize("NFKC", raw):
        cat = unicodedata.category(ch)
        if ch.isspace() or cat[0] in "PSZC":
            continue
        (kept if is_pronounceable(ch) else bad).append(ch)
    return kept, bad


def wav_data_shortfall(path: str) -> int:
    """Bytes that a RIFF/WAVE file's `data` chunk header promises but the file lacks (0 if fine).

    Returns 0 for files that are not RIFF/WAVE (soundfile checks those) and for the
    "unknown length" sizes (0 or 0xFFFFFFFF) that streaming writers leave.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
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


def check_audio(path: str) -> tuple[float, int, str | None]:
    """(duration in s, number of samples, rejection reason or None) for one audio file."""
    if not os.path.isfile(path):
        return 0.0, 0, f"{MISSING_FILE}: {path}"
    try:
        info = sf.info(path)
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        return 0.0, 0, f"{CORRUPT_AUDIO}: soundfile cannot read {path} ({msg})"
    if info.format == "WAV" or info.format == "WAVEX":
        short = wav_data_shortfall(path)
        if short:
            return (
                0.0,
                0,
                f"{TRUNCATED_AUDIO}: {path} header promises {short} more bytes than the file holds",
            )
    if info.samplerate != SAMPLE_RATE:
        return (
            0.0,
            0,
            f"{WRONG_SAMPLE_RATE}: {info.samplerate} Hz, expected {SAMPLE_RATE} (resample, e.g. sox in.wav -r 16000 out.wav)",
        )
    if info.frames <= 0:
        return 0.0, 0, f"{CORRUPT_AUDIO}: {path} holds no samples"
    return info.frames / info.samplerate, info.frames, None


def check_utterance(u: RawUtt) -> CheckedUtt:
    """Run every audio and transcript check on one utterance; the first failure is the reason."""
    duration, n, reason = check_audio(u.wav)
    if reason:
        return CheckedUtt(u, reason=reason)
    if duration < MIN_DURATION_S:
        return CheckedUtt(u, reason=f"{TOO_SHORT}: {duration:.3f} s < {MIN_DURATION_S} s")
    chars, bad = normalize_text(u.text)
    if bad:
        shown = "".join(dict.fromkeys(bad))
        return CheckedUtt(
            u, reason=f"{NO_PRONUNCIATION}: characters with no pronunciation '{shown}'"
        )
    if not chars:
        return CheckedUtt(u, reason=f"{EMPTY_TRANSCRIPT}: no characters left after normalisation")
    frames = num_frames(n)
    if frames < FRAMES_PER_CHAR * len(chars):
        return CheckedUtt(
            u,
            reason=f"{TOO_SHORT}: {frames} frames for {len(chars)} characters (need >= {FRAMES_PER_CHAR} per character)",
        )
    return CheckedUtt(u, chars=tuple(chars), duration=duration)


def reason_code(reason: str) -> str:
    return reason.split(":", 1)[0].split()[0]


def summarize_rejections(set_name: str, rejected: dict[str, str], total: int) -> None:
    """Log the count per reason code, and each rejection at DEBUG level."""
    if not rejected:
        log.info("%s: %d utterances, none rejected", set_name, total)
        return
    counts = Counter(reason_code(r) for r in rejected.values())
    parts = ", ".join(f"{c} {k}" for k, c in counts.most_common())
    log.warning("%s: rejected %d of %d utterances (%s)", set_name, len(rejected), total, parts)
    for utt, r in sorted(rejected.items()):
        log.debug("%s: rejected %s: %s", set_name, utt, r)


def enforce_rejection_limit(set_name: str, num_rejected: int, total: int, listing: Path) -> None:
    """Raise RejectionLimitError if more than 5 % of a set was rejected."""
    if total and num_rejected / total > MAX_REJECTED_FRACTION:
        raise RejectionLimitError(
            f"{set_name}: {num_rejected} of {total} utterances ({100 * num_rejected / total:.1f} %) were rejected, "
            f"more than {100 * MAX_REJECTED_FRACTION:.0f} %; see {listing} for each utterance and reason, "
            "fix the corpus and re-run"
        )
