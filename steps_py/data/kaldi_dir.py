"""Kaldi data directories: wav.scp, text, utt2spk, spk2utt, optional segments and utt2dur.

Conventions used across the recipe (Kaldi's, see ``utils/validate_data_dir.sh``):

* ``text`` holds one utterance per line, ``<utt-id> <word> <word> ...``; the Mandarin recipes
  use characters as words, separated by one space.
* ``wav.scp`` maps a recording to a file path or a piped command (``cmd ... |``, run as Kaldi does).
  Without ``segments`` every utterance is a whole recording and shares its id; with
  ``segments`` (``<utt> <recording> <start> <end> [<channel>]``, seconds, ``end = -1`` = to
  the end of the file) utterances are spans of the recordings.
* Utterance ids are the corpus's own. All files are sorted by their first field in C-locale
  (byte) order; ``spk2utt`` is sorted by speaker. Kaldi also wants utt2spk, sorted by
  utterance, to be sorted by speaker as well (speaker ids as prefixes of utterance ids make
  that true); `speaker_order_violation` finds a pair that breaks it.
* ``rejected.txt`` lists ``<utt-id> <reason>`` for utterances that a stage skipped.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from steps_py.fileio import atomic_write_text


class DataDirError(ValueError):
    """A Kaldi data directory is malformed; the message names the file, line and fix."""


@dataclass(frozen=True)
class Segment:
    """One ``segments`` line: the recording, start and end in seconds (end None = to the end)."""

    rec: str
    start: float
    end: float | None = None
    channel: int | None = None

    def to_text(self) -> str:
        end = "-1" if self.end is None else f"{self.end:.10g}"
        ch = "" if self.channel is None else f" {self.channel}"
        return f"{self.rec} {self.start:.10g} {end}{ch}"


def read_kaldi_map(path: Path, allow_empty_value: bool = False) -> dict[str, str]:
    """Read `<key> <value...>` lines. Duplicate keys and malformed lines are errors."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if n == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            key = parts[0]
            value = parts[1].strip() if len(parts) > 1 else ""
            if not value and not allow_empty_value:
                raise DataDirError(f"{path}:{n}: '{key}' has no value; each line must be '<id> <value>'")
            if key in out:
                raise DataDirError(f"{path}:{n}: duplicate id '{key}'; ids must be unique")
            out[key] = value
    return out


def c_sorted(keys: object) -> list[str]:
    """Keys in C-locale (byte) order, Kaldi's sort order (= code-point order for str)."""
    return sorted(keys)  # type: ignore[call-overload]


def write_kaldi_map(path: Path, mapping: dict[str, str]) -> None:
    atomic_write_text(Path(path), "".join(f"{k} {mapping[k]}\n" for k in c_sorted(mapping)))


def parse_segment(value: str) -> Segment:
    """The part of a segments line after the utterance id; ValueError names what is wrong."""
    parts = value.split()
    if len(parts) not in (3, 4):
        raise ValueError(f"expected '<recording> <start> <end> [<channel>]', got '{value}'")
    try:
        start, end = float(parts[1]), float(parts[2])
    except ValueError:
        raise ValueError(f"start/end '{parts[1]} {parts[2]}' are not numbers") from None
    if start < 0 or (end != -1 and end <= start):
        raise ValueError(f"start {parts[1]} / end {parts[2]} do not make a segment")
    channel = None
    if len(parts) == 4:
        if not parts[3].isdigit():
            raise ValueError(f"channel '{parts[3]}' is not a non-negative integer")
        channel = int(parts[3])
    return Segment(parts[0], start, None if end == -1 else end, channel)


def speaker_order_violation(utt2spk: dict[str, str]) -> tuple[str, str] | None:
    """Two utterances whose order by id disagrees with their speakers' order (Kaldi's
    validate_data_dir.sh rule), or None if utt2spk sorted by utterance is sorted by speaker."""
    prev: tuple[str, str] | None = None
    for u in c_sorted(utt2spk):
        s = utt2spk[u]
        if prev is not None and s < prev[1]:
            return prev[0], u
        prev = (u, s)
    return None


@dataclass
class KaldiDataDir:
    """In-memory form of a Kaldi data dir. `text` values are space-separated tokens; `wav` is
    keyed by recording (= utterance id when there are no segments)."""

    wav: dict[str, str] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    utt2spk: dict[str, str] = field(default_factory=dict)
    utt2dur: dict[str, float] = field(default_factory=dict)
    segments: dict[str, Segment] = field(default_factory=dict)

    @property
    def utts(self) -> list[str]:
        return c_sorted(self.utt2spk)

    def spk2utt(self) -> dict[str, list[str]]:
        s: dict[str, list[str]] = defaultdict(list)
        for u in self.utts:
            s[self.utt2spk[u]].append(u)
        return dict(s)

    def audio(self, utt: str) -> tuple[str, Segment | None]:
        """(audio file, segment or None for the whole file) of one utterance."""
        seg = self.segments.get(utt)
        return (self.wav[seg.rec], seg) if seg is not None else (self.wav[utt], None)

    @classmethod
    def load(cls, d: Path) -> KaldiDataDir:
        d = Path(d)
        for name in ("wav.scp", "text", "utt2spk"):
            if not (d / name).is_file():
                raise DataDirError(f"{d}: missing {name}; a Kaldi data dir needs wav.scp, text and utt2spk")
        wav = read_kaldi_map(d / "wav.scp")
        text = read_kaldi_map(d / "text", allow_empty_value=True)
        utt2spk = read_kaldi_map(d / "utt2spk")
        utt2dur = {k: float(v) for k, v in read_kaldi_map(d / "utt2dur").items()} if (d / "utt2dur").is_file() else {}
        segments: dict[str, Segment] = {}
        if (d / "segments").is_file():
            for utt, value in read_kaldi_map(d / "segments").items():
                try:
                    segments[utt] = parse_segment(value)
                except ValueError as e:
                    raise DataDirError(f"{d / 'segments'}: {utt}: {e}") from None
                if segments[utt].rec not in wav:
                    raise DataDirError(
                        f"{d / 'segments'}: {utt} refers to recording '{segments[utt].rec}', "
                        "which is not in wav.scp"
                    )
        return cls(wav=wav, text=text, utt2spk=utt2spk, utt2dur=utt2dur, segments=segments)

    def write(self, d: Path) -> None:
        """Write wav.scp, text, utt2spk, spk2utt (and segments, utt2dur if known), sorted."""
        d = Path(d)
        d.mkdir(parents=True, exist_ok=True)
        write_kaldi_map(d / "wav.scp", self.wav)
        write_kaldi_map(d / "text", self.text)
        write_kaldi_map(d / "utt2spk", self.utt2spk)
        write_kaldi_map(d / "spk2utt", {s: " ".join(u) for s, u in self.spk2utt().items()})
        if self.segments:
            write_kaldi_map(d / "segments", {u: s.to_text() for u, s in self.segments.items()})
        if self.utt2dur:
            write_kaldi_map(d / "utt2dur", {k: f"{v:.3f}" for k, v in self.utt2dur.items()})

    def subset(self, keep: set[str]) -> KaldiDataDir:
        segments = {k: v for k, v in self.segments.items() if k in keep}
        recs = {s.rec for s in segments.values()} if self.segments else keep
        return KaldiDataDir(
            wav={k: v for k, v in self.wav.items() if k in recs},
            text={k: v for k, v in self.text.items() if k in keep},
            utt2spk={k: v for k, v in self.utt2spk.items() if k in keep},
            utt2dur={k: v for k, v in self.utt2dur.items() if k in keep},
            segments=segments,
        )


def read_rejected(d: Path) -> dict[str, str]:
    p = Path(d) / "rejected.txt"
    return read_kaldi_map(p, allow_empty_value=True) if p.is_file() else {}


def write_rejected(d: Path, rejected: dict[str, str]) -> None:
    """Write `rejected.txt` (`<utt-id> <reason>`); merges with reasons already there."""
    merged = read_rejected(d)
    merged.update(rejected)
    write_kaldi_map(Path(d) / "rejected.txt", merged) if merged else None
