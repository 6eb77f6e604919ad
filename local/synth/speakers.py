"""Synthetic speakers: an espeak-ng voice variant plus a fixed pitch, pitch range and rate.

Each split draws its own speakers from a seeded generator, with split-prefixed ids, so
speakers of dev and test never occur in train.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SPLIT_CODES = {"train": 1, "dev": 2, "test": 3, "babble": 9}


@dataclass(frozen=True)
class Speaker:
    id: str
    gender: str  # "m" or "f"
    voice: str  # espeak voice name, e.g. "cmn+m3"
    pitch: int  # espeak 0-100 (50 = the variant's own base pitch)
    pitch_range: int  # espeak 0-100
    rate: int  # words per minute (espeak default 175)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def draw_speakers(split: str, count: int, seed: int, cfg: dict[str, Any]) -> list[Speaker]:
    """`count` speakers for `split`, alternating gender, each a fixed random draw.

    `cfg` holds `language` (espeak voice, "cmn"), `voices` {"m": [...], "f": [...]} (variants in
    espeak-ng-data/voices/!v), and `pitch`, `range`, `rate` as [low, high] integer intervals.
    """
    if split not in SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_CODES)}")
    rng = np.random.default_rng([seed, SPLIT_CODES[split], 2])
    out = []
    for i in range(count):
        gender = "mf"[i % 2]
        variants = cfg["voices"][gender]
        variant = variants[int(rng.integers(len(variants)))]
        pitch = int(rng.integers(cfg["pitch"][0], cfg["pitch"][1] + 1))
        prange = int(rng.integers(cfg["range"][0], cfg["range"][1] + 1))
        rate = int(rng.integers(cfg["rate"][0], cfg["rate"][1] + 1))
        out.append(
            Speaker(
                f"{split}-s{i + 1:03d}", gender, f"{cfg['language']}+{variant}", pitch, prange, rate
            )
        )
    return out
