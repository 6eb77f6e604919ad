"""Kaldi data directories: wav.scp, text, utt2spk, spk2utt (and optional utt2dur, rejected.txt).

Conventions used across the recipe:

* `text` holds one utterance per line, `<utt-id> <char> <char> ...`: the "words" of our
  character-level lexicon are single characters (and `<UNK>`), separated by one space.
* `wav.scp` maps an utterance to a file path (piped commands are rejected by the importer).
* Every utterance id of a speaker starts with the speaker id (Kaldi's sorting rule), and all
  files are sorted by utterance id.
* `rejected.txt` lists `<utt-id> <reason>` for utterances that a stage skipped.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from steps_py.fileio import atomic_write_text


class DataDirError(ValueError):
    """A Kaldi data directory is malformed; the message names the file, line and fix."""


def read_kaldi_map(path: Path, allow_empty_value: bool = False) -> dict[str, str]:
    """Read `<key> <value...>` lines. Duplicate keys and malformed lines are errors."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
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


def write_kaldi_map(path: Path, mapping: dict[str, str]) -> None:
    atomic_write_text(Path(path), "".join(f"{k} {mapping[k]}\n" for k in sorted(mapping)))


@dataclass
class KaldiDataDir:
    """In-memory form of a Kaldi data dir. `text` values are space-separated tokens."""

    wav: dict[str, str] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    utt2spk: dict[str, str] = field(default_factory=dict)
    utt2dur: dict[str, float] = field(default_factory=dict)

    @property
    def utts(self) -> list[str]:
        return sorted(self.utt2spk)

    def spk2utt(self) -> dict[str, list[str]]:
        s: dict[str, list[str]] = defaultdict(list)
        for u in sorted(self.utt2spk):
            s[self.utt2spk[u]].append(u)
        return dict(s)

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
        return cls(wav=wav, text=text, utt2spk=utt2spk, utt2dur=utt2dur)

    def write(self, d: Path) -> None:
        """Write wav.scp, text, utt2spk, spk2utt (and utt2dur if known), sorted."""
        d = Path(d)
        d.mkdir(parents=True, exist_ok=True)
        write_kaldi_map(d / "wav.scp", self.wav)
        write_kaldi_map(d / "text", self.text)
        write_kaldi_map(d / "utt2spk", self.utt2spk)
        write_kaldi_map(d / "spk2utt", {s: " ".join(u) for s, u in self.spk2utt().items()})
        if self.utt2dur:
            write_kaldi_map(d / "utt2dur", {k: f"{v:.3f}" for k, v in self.utt2dur.items()})

    def subset(self, keep: set[str]) -> KaldiDataDir:
        return KaldiDataDir(
            wav={k: v for k, v in self.wav.items() if k in keep},
            text={k: v for k, v in self.text.items() if k in keep},
            utt2spk={k: v for k, v in self.utt2spk.items() if k in keep},
            utt2dur={k: v for k, v in self.utt2dur.items() if k in keep},
        )


def read_rejected(d: Path) -> dict[str, str]:
    p = Path(d) / "rejected.txt"
    return read_kaldi_map(p, allow_empty_value=True) if p.is_file() else {}


def write_rejected(d: Path, rejected: dict[str, str]) -> None:
    """Write `rejected.txt` (`<utt-id> <reason>`); merges with reasons already there."""
    merged = read_rejected(d)
    merged.update(rejected)
    write_kaldi_map(Path(d) / "rejected.txt", merged) if merged else None
