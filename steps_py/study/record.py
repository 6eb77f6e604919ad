"""One committed record per finished study run: what the table needs, nothing else.

`results/study/runs/<run>.json` holds the run's summary figures (syncs, frames, wall time,
block) and, for every decoded model and set, the CER and the per-utterance error counts and
reference lengths (what the paired bootstrap resamples). The table is built from these
records only, so it can be rebuilt, and the study continued in a later session, from the
repository alone: a run with a record is not trained or decoded again.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from steps_py.cli import StepError
from steps_py.decode.artifact import DecodeDir
from steps_py.fileio import atomic_write_json, is_done
from steps_py.model_tag import ModelTag, TagKind
from steps_py.parallel.run_dir import RunDir

SUMMARY_KEYS = (
    "model",
    "sync",
    "workers",
    "block_minibatches",
    "syncs",
    "epochs",
    "frames",
    "batch_size",
    "seed",
    "wall_time_s",
    "frames_per_s",
    "combine",
    "ema_decays",
)


def decode_entry(decode_dir: Path) -> dict[str, Any] | None:
    """CER and per-utterance errors of a finished decode dir (None when not done)."""
    if not is_done(decode_dir):
        return None
    score = DecodeDir(decode_dir).score()
    if score is None or score.result is None:
        return None
    utts = sorted(score.result.utts)
    entry: dict[str, Any] = {
        "cer": score.cer,
        "utts": utts,
        "errors": [score.result.utts[u].errors for u in utts],
        "ref_len": [len(score.result.utts[u].ref) for u in utts],
    }
    info = DecodeDir(decode_dir).summary(missing_ok=True)
    if info:
        for k in ("best_lmwt", "best_wip", "oracle_cer", "rtf_per_core"):
            if k in info:
                entry[k] = info[k]
    return entry


def make_record(
    run_dir: Path,
    tags: list[str],
    epoch_tags: list[str] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """The record of a finished run: `tags` are its final models, `epoch_tags` the
    epoch-end models it decoded (`epoch<E>-<model>`)."""
    summary = RunDir(run_dir).summary()
    models: dict[str, dict[str, Any]] = {}
    for tag in [*tags, *epoch_tags]:
        for split in ("dev", "test"):
            e = decode_entry(run_dir / f"decode_{tag}_{split}")
            if e is not None:
                models.setdefault(tag, {})[split] = e
    rec = {
        "run": run_dir.name,
        "summary": {k: summary.get(k) for k in SUMMARY_KEYS},
        "final_models": tags,
        "models": models,
        "dev_curve": dev_curve(run_dir / "log/train.csv"),
    }
    curve = epoch_curve(summary)
    if curve:  # runs of the second study: whole-dev CE of every model at each epoch end
        rec["epoch_curve"] = curve
        settings = summary.get("settings", {})
        rec["lr"] = {k: settings.get(k) for k in ("lr_initial", "lr_final", "lr_times_workers")}
    mc = max_change_curve(summary)
    if mc:
        rec["max_change"] = mc
    fp = model_fingerprint(run_dir)
    if fp is not None:
        rec["fingerprint"] = fp
    egs = summary.get("settings", {}).get("egs")
    if egs and Path(egs).is_dir():
        rec["examples"] = examples_fingerprint(Path(egs))
    return rec


def _sha(paths: list[Path]) -> str:
    """sha256 (16 hex digits) of the files' contents, in order: content, not
    `fileio.input_stamp`'s sizes and times, so that two machines can agree on it."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()[:16]


def model_fingerprint(run_dir: Path) -> str | None:
    """sha256 (16 hex digits) of the run's final global model: two trainings with the same
    fingerprint made the same model, bit for bit. None before the run has a global model."""
    path = RunDir(run_dir).model_path(ModelTag(TagKind.GLOBAL))
    return _sha([path]) if path.is_file() else None


_EXAMPLES_FP: dict[tuple[str, float], str] = {}


def examples_fingerprint(egs: Path) -> str:
    """sha256 (16 hex digits) of an examples dir's targets and features, train and dev: runs
    with the same value trained on the same examples (a workdir rebuilt by other code, e.g.
    another GMM, gives other alignments and so another value). Cached per dir and .done."""
    done = egs / ".done"
    key = (str(egs.resolve()), done.stat().st_mtime if done.is_file() else 0.0)
    if key not in _EXAMPLES_FP:
        files = sorted(egs.glob("*/shard-*/targets.npy")) + sorted(egs.glob("*/shard-*/feats.npy"))
        _EXAMPLES_FP[key] = _sha(files)
    return _EXAMPLES_FP[key]


def same_training(old: dict[str, Any], new: dict[str, Any]) -> bool | None:
    """Whether two records of a run come from the same training: by their global models'
    fingerprints, or, for a record made before records had one, by the global model's final
    whole-dev CE (a bit-identical training evaluates to the same number). None when neither
    record says."""
    if "fingerprint" in old and "fingerprint" in new:
        return bool(old["fingerprint"] == new["fingerprint"])
    ce_old, ce_new = final_global_ce(old), final_global_ce(new)
    if ce_old is None or ce_new is None:
        return None
    return bool(ce_old == ce_new)


def final_global_ce(record: dict[str, Any]) -> float | None:
    """The global model's whole-dev CE at the end of training (None without an epoch curve)."""
    curve = record.get("epoch_curve")
    return curve[-1].get("global") if curve else None


def max_change_curve(summary: dict[str, Any]) -> list[dict[str, float]]:
    """[{"epoch": E, "layer_pct": %, "global_pct": %}]: how often max-change limited the
    updates in each epoch (runs trained since the trainer counts it; a resumed run's epoch
    counts from its last checkpoint when that checkpoint predates the counts)."""
    return [
        {
            "epoch": h["epoch"],
            "layer_pct": h["max_change_layer_pct"],
            "global_pct": h["max_change_global_pct"],
        }
        for h in summary.get("history", [])
        if "max_change_layer_pct" in h
    ]


def epoch_curve(summary: dict[str, Any]) -> list[dict[str, float]]:
    """[{"epoch": E, "frames": F, "<model>": dev CE}] from summary.json's epoch history."""
    out = []
    for h in summary.get("history", []):
        point = {"epoch": h["epoch"], "frames": float(h["frames"])}
        point.update(
            {k.removeprefix("dev_ce_"): v for k, v in h.items() if k.startswith("dev_ce_")}
        )
        if len(point) > 2:
            out.append(point)
    return out


def diverged_record(run_dir: Path) -> dict[str, Any]:
    """The record of a run that diverged: where and why (`diverged.json`), its dev curve up
    to there, and no models. It is a result like any other: the run is not tried again."""
    info = json.loads((run_dir / "diverged.json").read_text(encoding="utf-8"))
    return {
        "run": run_dir.name,
        "diverged": info,
        "summary": {},
        "final_models": [],
        "models": {},
        "dev_curve": dev_curve(run_dir / "log/train.csv"),
    }


def is_diverged(record: dict[str, Any] | None) -> bool:
    return record is not None and bool(record.get("diverged"))


def dev_curve(train_csv: Path) -> list[dict[str, float]]:
    """The dev cross entropy of every model at each evaluation: [{"frames": F, "<model>": CE}],
    by frames; an evaluation logged again by a resumed run counts once (the later row)."""
    if not train_csv.is_file():
        return []
    out: list[dict[str, float]] = []
    with open(train_csv, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row.get("kind") == "block" and row.get("dev_ce_global"):
                point = {"frames": float(row["frames"])}
                point.update(
                    {
                        k.removeprefix("dev_ce_"): float(v)
                        for k, v in row.items()
                        if k.startswith("dev_ce_") and v
                    }
                )
                out.append(point)
    return sorted({p["frames"]: p for p in out}.values(), key=lambda p: p["frames"])


def write_record(path: Path, record: dict[str, Any]) -> None:
    atomic_write_json(path, record)


class RecordError(StepError):
    """A study record that cannot be used; the message names the file and the fix."""


# what every record holds (``make_record``, ``diverged_record``), with its JSON type
RECORD_KEYS: dict[str, type] = {
    "run": str,
    "summary": dict,
    "final_models": list,
    "models": dict,
    "dev_curve": list,
}
ENTRY_KEYS: dict[str, type] = {"cer": (int, float), "utts": list, "errors": list, "ref_len": list}  # type: ignore[dict-item]


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path`` (None when there is none), checked: a truncated or malformed
    file, or one without what the table needs, is a ``RecordError`` naming the file."""
    if not path.is_file():
        return None
    fix = f"delete {path} to redo the run, or restore it (git checkout -- {path})"
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordError(
            f"{path} is not a study record: truncated or malformed JSON ({e}); {fix}"
        ) from None
    problem = record_problem(obj)
    if problem:
        raise RecordError(f"{path} is not a complete study record: {problem}; {fix}")
    return dict(obj)


def read_choices(path: Path) -> dict[str, Any]:
    """A JSON object the study wrote beside its records (``pilot.json``): {} when absent; a
    truncated or malformed file is a ``RecordError`` naming it."""
    if not path.is_file():
        return {}
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        obj = e
    if not isinstance(obj, dict):
        raise RecordError(
            f"{path} is not a JSON object ({obj}); delete it to choose again, or restore it "
            f"(git checkout -- {path})"
        )
    return obj


def record_problem(obj: Any) -> str | None:
    """What a record lacks (None when it has everything the table reads)."""
    if not isinstance(obj, dict):
        return f"a JSON {type(obj).__name__}, not an object"
    for key, kind in RECORD_KEYS.items():
        if key not in obj:
            return f"no '{key}'"
        if not isinstance(obj[key], kind):
            return f"'{key}' is a {type(obj[key]).__name__}, not a {kind.__name__}"
    for tag, splits in obj["models"].items():
        if not isinstance(splits, dict):
            return f"models.{tag} is not an object"
        for split, entry in splits.items():
            where = f"models.{tag}.{split}"
            if not isinstance(entry, dict):
                return f"{where} is not an object"
            for key, kind in ENTRY_KEYS.items():
                if not isinstance(entry.get(key), kind):
                    return f"{where} has no valid '{key}'"
            if not len(entry["utts"]) == len(entry["errors"]) == len(entry["ref_len"]):
                return f"{where}: utts, errors and ref_len differ in length"
    return None


def paired(
    records: list[dict[str, Any]], tag_a: str, tag_b: str, split: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(S, U) errors of model a and b over the seeds' records, and (U,) reference lengths,
    on the utterances every record has (None when a record lacks either decode)."""
    return paired_across([(r, r) for r in records], tag_a, tag_b, split)


def paired_across(
    pairs: list[tuple[dict[str, Any], dict[str, Any]]], tag_a: str, tag_b: str, split: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """As `paired`, with model a from the first record of each pair and b from the second
    (e.g. an ablation run and its baseline run of the same seed)."""
    entries = []
    for ra, rb in pairs:
        a, b = ra["models"].get(tag_a, {}).get(split), rb["models"].get(tag_b, {}).get(split)
        if a is None or b is None:
            return None
        entries.append((a, b))
    out = paired_entries(entries)
    return None if out is None else out[:3]


def paired_entries(
    entries: list[tuple[dict[str, Any], dict[str, Any]]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None:
    """(S, U) errors of the a and b decode entries of each seed, (U,) reference lengths and
    the U utterance ids, on the utterances every entry has (None when there are none)."""
    common = set(entries[0][0]["utts"])
    for a, b in entries:
        common &= set(a["utts"]) & set(b["utts"])
    utts = sorted(common)
    if not utts:
        return None

    def pick(e: dict[str, Any], key: str) -> list[int]:
        idx = {u: i for i, u in enumerate(e["utts"])}
        return [e[key][idx[u]] for u in utts]

    ea = np.array([pick(a, "errors") for a, _ in entries], dtype=np.float64)
    eb = np.array([pick(b, "errors") for _, b in entries], dtype=np.float64)
    n = np.array(pick(entries[0][0], "ref_len"), dtype=np.float64)
    return ea, eb, n, utts
