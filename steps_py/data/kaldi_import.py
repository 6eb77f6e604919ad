"""Import existing Kaldi data dirs (`<dir>/{train,dev,test}/`) as `RawSet`s.

Unlike `kaldi_dir.read_kaldi_map`, which stops at the first problem, this reader is
tolerant, so that one bad line does not stop a corpus:

* duplicate ids and ids missing from one of the files become rejections of those
  utterances (``segments``, when present, says which utterances exist and which recording
  of ``wav.scp`` each is a span of; a bad segments line rejects its utterance);
* a line that is not valid in the given ``--encoding`` (default UTF-8; GB18030 is common in
  Chinese corpora) rejects its utterance as ``bad-encoding``, naming the file and line; when
  most lines of a file fail, the log says which encoding would decode them;
* a UTF-8 byte-order mark at the start of a file is removed (and said); a UTF-16 file
  (byte-order mark FF FE / FE FF) is decoded as UTF-16 (and said).

Piped wav.scp entries (`cmd ... |`) are kept as they are: data preparation runs each command and
checks its output as it checks a file (a failing command rejects its utterances as
``pipe-failed``, naming the command and its stderr), feature extraction runs it again to read the
samples (`steps_py.data.audio`), as Kaldi does. Relative wav.scp paths are taken from the
current directory, else from the data dir.
"""

from __future__ import annotations

import codecs
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from steps_py.data.audio import is_piped
from steps_py.data.kaldi_dir import DataDirError, parse_segment
from steps_py.data.validate import (
    BAD_ENCODING,
    BAD_SEGMENT,
    DUPLICATE_ID,
    MISMATCHED_IDS,
    NUL_BYTE,
    RawSet,
    RawUtt,
)

log = logging.getLogger("data.kaldi_import")

REQUIRED_FILES = ("wav.scp", "text", "utt2spk")
SUGGEST_ENCODINGS = ("utf-8", "gb18030", "big5", "latin-1")


@dataclass
class TolerantMap:
    """What `read_lines_tolerant` found in one file."""

    values: dict[str, str] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    undecodable: dict[str, str] = field(default_factory=dict)  # id -> reason
    notes: list[str] = field(default_factory=list)


def _guess_encoding(raw: list[bytes], tried: str) -> str | None:
    """An encoding (other than `tried`) that decodes every one of `raw`, if any."""
    for enc in SUGGEST_ENCODINGS:
        if codecs.lookup(enc).name == codecs.lookup(tried).name:
            continue
        try:
            for b in raw:
                b.decode(enc)
        except UnicodeDecodeError:
            continue
        return enc
    return None


def _split_lines(path: Path, encoding: str) -> tuple[list[tuple[int, bytes | str]], list[str]]:
    """(line number, bytes to decode or already decoded str) and notes for one file."""
    data = path.read_bytes()
    notes: list[str] = []
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise DataDirError(f"{path}: starts with a UTF-16 byte-order mark but is not UTF-16 ({e})") from None
        notes.append(f"{path}: UTF-16 file (byte-order mark), decoded as UTF-16")
        parts: list[bytes | str] = list(text.split("\n"))
    else:
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8):]
            notes.append(f"{path}: UTF-8 byte-order mark at the start of the file removed")
        parts = list(data.split(b"\n"))
    if parts and not parts[-1]:
        parts.pop()  # the end of the last line
    return list(enumerate(parts, 1)), notes


def read_lines_tolerant(path: Path, encoding: str = "utf-8") -> TolerantMap:
    """Read `<id> <value...>` lines: first value per id, duplicates, undecodable lines."""
    out = TolerantMap()
    counts: dict[str, int] = defaultdict(int)
    lines, out.notes = _split_lines(path, encoding)
    bad_raw: list[bytes] = []
    first_bad: str | None = None
    for n, raw in lines:
        if isinstance(raw, bytes):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as e:
                key = raw.split(maxsplit=1)[0].decode(encoding, errors="backslashreplace") if raw.strip() else ""
                bad_raw.append(raw)
                reason = (f"{BAD_ENCODING}: {path}:{n} is not valid {encoding} "
                          f"(byte 0x{raw[e.start]:02x} at column {e.start + 1})")
                first_bad = first_bad or f"{path}:{n}"
                if key:
                    counts[key] += 1
                    out.undecodable.setdefault(key, reason)
                continue
        else:
            line = raw
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        key = parts[0]
        if "\0" in line:  # a NUL would become part of an id, a speaker or a path
            key = key.replace("\0", "\\0")
            counts[key] += 1
            out.undecodable.setdefault(
                key, f"{NUL_BYTE}: {path}:{n} holds a NUL byte (a damaged or binary file?); fix the line"
            )
            continue
        counts[key] += 1
        out.values.setdefault(key, parts[1].strip() if len(parts) > 1 else "")
    out.duplicates = {k: c for k, c in counts.items() if c > 1}
    if bad_raw:
        guess = _guess_encoding(bad_raw, encoding)
        non_ascii = sum(1 for _, raw in lines if isinstance(raw, bytes) and not raw.isascii())
        if 2 * len(bad_raw) > non_ascii:  # most non-ASCII lines fail: the file's encoding
            hint = (f"; they decode as {guess}: if the file is in {guess}, pass --encoding {guess}"
                    if guess else "; convert the file to UTF-8 (e.g. iconv)")
            per_utt = f"; try --encoding {guess}" if guess else ""
        else:  # a few stray lines in an otherwise fine file
            hint = (f"; the other lines are valid {encoding}: fix these lines"
                    + (f" (they decode as {guess})" if guess else ""))
            per_utt = ""
        out.notes.append(f"{path}: {len(bad_raw)} of {len(lines)} lines are not valid {encoding} "
                         f"(first: {first_bad}); their utterances are rejected{hint}")
        for k, r in out.undecodable.items():
            out.undecodable[k] = r + per_utt
    return out


def import_kaldi_set(set_dir: Path, name: str, encoding: str = "utf-8") -> RawSet:
    """Read one Kaldi data dir into a RawSet (no audio is touched here)."""
    set_dir = Path(set_dir)
    for fname in REQUIRED_FILES:
        if not (set_dir / fname).is_file():
            raise DataDirError(
                f"{set_dir}: missing {fname}; a Kaldi data dir needs {', '.join(REQUIRED_FILES)}"
            )
    has_segments = (set_dir / "segments").is_file()
    utt_files = ("segments", "text", "utt2spk") if has_segments else REQUIRED_FILES
    maps: dict[str, TolerantMap] = {}
    rejected: dict[str, str] = {}
    notes: list[str] = []
    for fname in dict.fromkeys((*REQUIRED_FILES, *utt_files)):
        m = read_lines_tolerant(set_dir / fname, encoding)
        maps[fname] = m
        notes += m.notes
        for k, reason in m.undecodable.items():
            if fname == "wav.scp" and has_segments:  # a recording: reject its segments below
                continue
            rejected.setdefault(k, reason)
        for k, c in m.duplicates.items():
            if fname == "wav.scp" and has_segments:
                continue
            rejected.setdefault(k, f"{DUPLICATE_ID}: '{k}' appears {c} times in {fname}")
    segments = {}
    if has_segments:
        wav = maps["wav.scp"]
        for utt, value in maps["segments"].values.items():
            if utt in rejected:
                continue
            try:
                seg = parse_segment(value)
            except ValueError as e:
                rejected[utt] = f"{BAD_SEGMENT}: {set_dir / 'segments'}: {e}"
                continue
            if seg.rec in wav.undecodable:
                rejected[utt] = f"{wav.undecodable[seg.rec]} (its recording '{seg.rec}')"
            elif seg.rec in wav.duplicates:
                rejected[utt] = f"{DUPLICATE_ID}: recording '{seg.rec}' appears {wav.duplicates[seg.rec]} times in wav.scp"
            elif seg.rec not in wav.values:
                rejected[utt] = f"{MISMATCHED_IDS}: its recording '{seg.rec}' (segments) is not in wav.scp"
            else:
                segments[utt] = seg
        unused = set(wav.values) - {s.rec for s in segments.values()}
        notes.append(
            f"{set_dir}: segments file: {len(maps['segments'].values)} utterances are spans of "
            f"{len(wav.values)} recordings" + (f" ({len(unused)} recordings have no segment)" if unused else "")
        )
    all_ids = set().union(*(set(maps[f].values) | set(maps[f].undecodable) for f in utt_files))
    for utt in sorted(all_ids):
        present = [f for f in utt_files if utt in maps[f].values or utt in maps[f].undecodable]
        if len(present) < len(utt_files):
            missing = [f for f in utt_files if f not in present]
            rejected.setdefault(
                utt, f"{MISMATCHED_IDS}: in {', '.join(present)} but not in {', '.join(missing)}"
            )
    if (set_dir / "spk2utt").is_file():
        log.info("%s: spk2utt is ignored and rebuilt from utt2spk", set_dir)
    utts = []
    for utt in sorted(all_ids - set(rejected)):
        seg = segments.get(utt)
        rec = seg.rec if seg is not None else utt
        wav_path = maps["wav.scp"].values[rec]
        # a command runs from the current directory, as in Kaldi
        if not is_piped(wav_path) and not Path(wav_path).is_absolute() and not Path(wav_path).exists() and (set_dir / wav_path).exists():
            wav_path = os.path.relpath(set_dir / wav_path)
        utts.append(RawUtt(
            utt=utt, spk=maps["utt2spk"].values[utt], wav=wav_path, text=maps["text"].values[utt],
            rec=seg.rec if seg else None, start=seg.start if seg else 0.0,
            end=seg.end if seg else None, channel=seg.channel if seg else None,
        ))
    return RawSet(name=name, utts=utts, rejected=rejected, notes=notes)


def import_kaldi_corpus(corpus_dir: Path, sets: tuple[str, ...], encoding: str = "utf-8") -> dict[str, RawSet]:
    corpus_dir = Path(corpus_dir)
    missing = [s for s in sets if not (corpus_dir / s).is_dir()]
    if missing:
        raise DataDirError(
            f"{corpus_dir}: missing data dirs {', '.join(missing)}; --kaldi-dirs expects "
            f"{', '.join(s + '/' for s in sets)} each with {', '.join(REQUIRED_FILES)}"
        )
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataDirError(f"--encoding {encoding}: unknown encoding (e.g. utf-8, gb18030)") from None
    return {s: import_kaldi_set(corpus_dir / s, s, encoding) for s in sets}
