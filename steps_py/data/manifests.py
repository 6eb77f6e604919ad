"""lhotse manifests (recordings + supervisions per set) -> `RawSet`s for data preparation.

Manifests are read line by line as dicts (gzip + json, what `lhotse.serialization.load_jsonl`
does, without the seconds lhotse's import takes) rather than through
`RecordingSet`/`SupervisionSet`, so that a duplicate id or a supervision without
a recording becomes a rejection of that utterance instead of an exception for the set.
A supervision that covers its whole recording is a whole-file utterance; one that covers
a part becomes a segment (the data dir then gets a ``segments`` file). A corpus's own preparation (local/<corpus>)
may leave ``rejected_<set>.txt`` (``<utt> <reason>``) beside the manifests for utterances it
found unusable before lhotse saw them (`local.aishell.prepare` does); they are counted as
rejections of the set.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Iterator
from collections import Counter
from pathlib import Path
from typing import Any

from steps_py.data.kaldi_dir import DataDirError, read_kaldi_map
from steps_py.data.validate import DUPLICATE_ID, MISMATCHED_IDS, RawSet, RawUtt

log = logging.getLogger(__name__)

UNSUPPORTED_AUDIO = "unsupported-audio"
COVERAGE_TOLERANCE_S = 0.02


def load_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a (gzipped) JSON-lines manifest; a bad line is an error naming it."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataDirError(f"{path}:{n}: not a JSON object ({e.msg})") from None


def find_manifest(manifest_dir: Path, kind: str, set_name: str) -> Path:
    """The single `*{kind}_{set}.jsonl.gz` in `manifest_dir` (e.g. aishell_recordings_dev...)."""
    found = sorted(Path(manifest_dir).glob(f"*{kind}_{set_name}.jsonl.gz"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(p.name for p in found)})"
        raise DataDirError(
            f"{manifest_dir}: found {what} {kind} manifest for '{set_name}'; expected exactly one "
            f"file named like {kind}_{set_name}.jsonl.gz (run the corpus preparation, local/<corpus>, first)"
        )
    return found[0]


def _audio_path(rec: dict[str, Any], base_dir: Path) -> str | None:
    """The file path of a single-source recording (relative to cwd when possible), a lhotse
    ``command`` source as a piped wav.scp entry (``cmd |``), else None."""
    sources = rec.get("sources") or []
    if len(sources) == 1 and sources[0].get("type") == "command":
        return f"{sources[0]['source']} |"
    if len(sources) != 1 or sources[0].get("type") != "file":
        return None
    path = str(sources[0]["source"])
    if not os.path.isabs(path) and not os.path.exists(path) and (base_dir / path).exists():
        path = os.path.relpath(base_dir / path)
    return path


def import_manifest_set(manifest_dir: Path, set_name: str, base_dir: Path | None = None) -> RawSet:
    """Pair recordings with supervisions of one set; relative audio paths are tried
    from the cwd first, then from `base_dir` (default: the manifest dir's parent)."""
    manifest_dir = Path(manifest_dir)
    base = Path(base_dir) if base_dir is not None else manifest_dir.parent
    recs = list(load_jsonl(find_manifest(manifest_dir, "recordings", set_name)))
    sups = list(load_jsonl(find_manifest(manifest_dir, "supervisions", set_name)))
    rec_counts = Counter(r["id"] for r in recs)
    sup_counts = Counter(s["id"] for s in sups)
    rec_by_id = {r["id"]: r for r in recs}
    rejected: dict[str, str] = {}
    for sid, c in sup_counts.items():
        if c > 1:
            rejected[sid] = f"{DUPLICATE_ID}: supervision id '{sid}' appears {c} times"
    used_recs = {s["recording_id"] for s in sups}
    for rid in rec_by_id:
        if rid not in used_recs and rid not in sup_counts:
            rejected.setdefault(rid, f"{MISMATCHED_IDS}: recording '{rid}' has no supervision")
    utts: list[RawUtt] = []
    seen: set[str] = set()
    for s in sups:
        sid, rid = s["id"], s["recording_id"]
        if sid in rejected or sid in seen:
            continue
        seen.add(sid)
        rec = rec_by_id.get(rid)
        if rec is None:
            rejected[sid] = (
                f"{MISMATCHED_IDS}: supervision refers to recording '{rid}', not in the recordings manifest"
            )
            continue
        if rec_counts[rid] > 1:
            rejected[sid] = f"{DUPLICATE_ID}: recording id '{rid}' appears {rec_counts[rid]} times"
            continue
        if not s.get("speaker"):
            rejected[sid] = f"{MISMATCHED_IDS}: supervision has no speaker"
            continue
        path = _audio_path(rec, base)
        if path is None:
            rejected[sid] = f"{UNSUPPORTED_AUDIO}: recording '{rid}' is not one audio file"
            continue
        start, dur = float(s.get("start", 0.0)), float(s.get("duration", 0.0))
        rec_dur = float(rec.get("duration", dur))
        channel = s.get("channel") if len(rec.get("channel_ids") or [0]) > 1 else None
        if isinstance(channel, list):
            rejected[sid] = f"{UNSUPPORTED_AUDIO}: supervision spans channels {channel}; use one"
            continue
        whole = start <= COVERAGE_TOLERANCE_S and abs(start + dur - rec_dur) <= COVERAGE_TOLERANCE_S
        utts.append(RawUtt(
            utt=sid, spk=str(s["speaker"]), wav=path, text=str(s.get("text") or ""),
            rec=None if whole else rid, start=0.0 if whole else start,
            end=None if whole else round(start + dur, 6),
            channel=int(channel) if channel is not None else None,
        ))
    listing = manifest_dir / f"rejected_{set_name}.txt"
    notes = []
    if listing.is_file():
        earlier = read_kaldi_map(listing, allow_empty_value=True)
        for k, v in earlier.items():
            rejected.setdefault(k, v)
        notes.append(f"{listing}: {len(earlier)} utterances rejected by the corpus preparation")
    return RawSet(name=set_name, utts=utts, rejected=rejected, notes=notes)
