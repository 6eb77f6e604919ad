"""Per-speaker CMVN statistics in Kaldi's format, and mean normalisation.

Kaldi stats for D-dim features are a 2 x (D+1) double matrix: row 0 = per-dim sums and the
frame count in the last column, row 1 = per-dim sums of squares (last column 0).
`compute-cmvn-stats --spk2utt` sums these over a speaker's utterances;
`apply-cmvn --norm-vars=false` subtracts the speaker mean.
"""

from __future__ import annotations

from pathlib import Path

import kaldi_native_fbank as knf
import kaldi_native_io as kio
import numpy as np


def utterance_stats(feats: np.ndarray) -> np.ndarray:
    """Kaldi CMVN stats (2, D+1) float64 of one feature matrix (T, D)."""
    return np.asarray(
        knf.compute_cmvn_stats(np.ascontiguousarray(feats, dtype=np.float32)), dtype=np.float64
    )


def add_stats(acc: dict[str, np.ndarray], key: str, stats: np.ndarray) -> None:
    """acc[key] += stats (creating it on first use)."""
    if key in acc:
        acc[key] += stats
    else:
        acc[key] = stats.astype(np.float64, copy=True)


def merge_stats(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for p in parts:
        for k, v in p.items():
            add_stats(out, k, v)
    return out


def write_cmvn(stats: dict[str, np.ndarray], feat_dir: Path) -> None:
    """cmvn.ark + cmvn.scp in `feat_dir`, keyed by speaker, sorted."""
    feat_dir = Path(feat_dir).resolve()
    with kio.DoubleMatrixWriter(f"ark,scp:{feat_dir / 'cmvn.ark'},{feat_dir / 'cmvn.scp'}") as w:
        for spk in sorted(stats):
            w[spk] = stats[spk]


def read_cmvn(feat_dir: Path) -> dict[str, np.ndarray]:
    """Speaker -> (2, D+1) stats, read from cmvn.ark in `feat_dir`."""
    ark = Path(feat_dir) / "cmvn.ark"
    if not ark.is_file():
        raise FileNotFoundError(
            f"{ark} not found; run `python -m steps_py.features.compute` for this data dir"
        )
    out: dict[str, np.ndarray] = {}
    with kio.SequentialDoubleMatrixReader(f"ark:{ark}") as r:
        for spk, m in r:
            out[spk] = np.array(m, dtype=np.float64)
    return out


def speaker_mean(stats: np.ndarray) -> np.ndarray:
    """The mean vector (float32, D) from Kaldi stats."""
    count = stats[0, -1]
    if count <= 0:
        raise ValueError("CMVN stats have a zero frame count")
    return (stats[0, :-1] / count).astype(np.float32)


def apply_mean_norm(feats: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """feats - mean (Kaldi `apply-cmvn --norm-vars=false`), float32."""
    return np.subtract(feats, mean, dtype=np.float32)
