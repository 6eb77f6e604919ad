"""Corpus configuration: defaults, JSON loading with validation, and a stable hash."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

SPLITS = ("train", "dev", "test")

DEFAULT_CONFIG: dict[str, Any] = {
    "splits": {
        "train": {"hours": 1.0, "speakers": 40},
        "dev": {"hours": 0.1, "speakers": 8},
        "test": {"hours": 0.1, "speakers": 8},
    },
    "lm_sentences": 30000,
    # share of the sentence space (by text hash) reserved for each split and the LM text
    "text_buckets": {"train": 0.6, "dev": 0.05, "test": 0.05, "lm": 0.3},
    "lexicon": {"min_freq": 20, "power": 0.5, "max_words": 6000},
    "speakers": {
        "language": "cmn",
        "pitch": [20, 80],
        "range": [20, 90],
        "rate": [140, 230],
        "voices": {
            "m": [
                "m1",
                "m2",
                "m3",
                "m4",
                "m5",
                "m6",
                "m7",
                "m8",
                "Andy",
                "Denis",
                "Diogo",
                "Henrique",
                "Hugo",
                "Lee",
                "antonio",
                "david",
                "ed",
                "iven",
                "john",
                "michel",
                "miguel",
                "paul",
                "pedro",
                "robert",
                "sandro",
                "travis",
                "victor",
                "grandpa",
                "marcelo",
                "klatt",
            ],
            "f": [
                "f1",
                "f2",
                "f3",
                "f4",
                "f5",
                "Alicia",
                "Andrea",
                "Annie",
                "anika",
                "aunty",
                "belinda",
                "linda",
                "steph",
                "steph2",
                "steph3",
                "grandma",
                "shelby",
            ],
        },
    },
    "channel": {
        "sample_rate": 16000,
        "pad_s": [0.1, 0.5],
        "reverb_prob": 0.5,
        "rt60": [0.15, 0.7],
        "direct_to_reverb_db": [0.0, 10.0],
        "noise_types": {"white": 0.2, "pink": 0.3, "brown": 0.2, "babble": 0.3},
        "snr_bands": [[0.0, 5.0, 0.1], [5.0, 20.0, 0.75], [20.0, 30.0, 0.15]],
        "level_dbfs": [-32.0, -18.0],
        "babble_talkers": [3, 6],
        "babble_bank": 40,
    },
    "max_utterance_chars": 30,
}


class ConfigError(ValueError):
    """The corpus config is malformed; the message names the key and the fix."""


def _merge(base: dict[str, Any], over: dict[str, Any], where: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        key = f"{where}{k}"
        if k not in base:
            raise ConfigError(f"unknown config key {key!r}; known keys here: {sorted(base)}")
        if isinstance(base[k], dict) and k not in ("voices", "noise_types", "text_buckets"):
            if not isinstance(v, dict):
                raise ConfigError(f"config key {key!r} must be an object")
            out[k] = _merge(base[k], v, key + ".")
        else:
            out[k] = copy.deepcopy(v)
    return out


def validate(cfg: dict[str, Any]) -> None:
    for split in SPLITS:
        s = cfg["splits"].get(split)
        if not s or float(s.get("hours", 0)) <= 0 or int(s.get("speakers", 0)) < 1:
            raise ConfigError(f"splits.{split} needs hours > 0 and speakers >= 1, got {s}")
    buckets = cfg["text_buckets"]
    if set(buckets) != {*SPLITS, "lm"} or min(buckets.values()) <= 0:
        raise ConfigError(
            f"text_buckets needs positive shares for {[*SPLITS, 'lm']}, got {buckets}"
        )
    ch = cfg["channel"]
    unknown = set(ch["noise_types"]) - {"white", "pink", "brown", "babble"}
    if unknown or not ch["noise_types"]:
        raise ConfigError(
            f"channel.noise_types: unknown types {sorted(unknown)}; use white/pink/brown/babble"
        )
    for band in ch["snr_bands"]:
        if len(band) != 3 or band[0] > band[1] or band[2] < 0:
            raise ConfigError(
                f"channel.snr_bands entries are [low_db, high_db, weight], got {band}"
            )
    for g in ("m", "f"):
        if not cfg["speakers"]["voices"].get(g):
            raise ConfigError(f"speakers.voices.{g} must list at least one espeak variant")
    _check_variants(cfg["speakers"]["voices"])
    if int(cfg["lm_sentences"]) < 1:
        raise ConfigError("lm_sentences must be >= 1")


def _check_variants(voices: dict[str, list[str]]) -> None:
    """espeak silently ignores an unknown "+variant", so check the names against its data."""
    try:
        import espeakng_loader
    except ImportError:  # pragma: no cover - reported when the engine is loaded
        return
    vdir = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    if not vdir.is_dir():
        return
    missing = sorted({v for names in voices.values() for v in names if not (vdir / v).is_file()})
    if missing:
        raise ConfigError(f"speakers.voices: no espeak-ng variant named {missing} (see {vdir})")


def load_config(path: Path | None) -> dict[str, Any]:
    """DEFAULT_CONFIG overlaid with the JSON file at `path` (if any), validated."""
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    if path is not None:
        try:
            over = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"config file {path} not found") from e
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {path} is not valid JSON: {e}") from e
        over.pop("_comment", None)
        cfg = _merge(cfg, over)
    validate(cfg)
    return cfg


def config_hash(cfg: dict[str, Any], seed: int) -> str:
    blob = json.dumps({"config": cfg, "seed": seed}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
