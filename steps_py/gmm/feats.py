"""Features for the GMM system: CMVN'd MFCC plus deltas and delta-deltas (39 dims).

`add_deltas` is Kaldi's `add-deltas` (window 2, order 2), computed by kaldi-native-fbank's
`compute_deltas` (>= 1.23; the tests check it equals the numpy definition this module
used before: the order-i filter is the order-(i-1) filter convolved with the delta window,
frames clamped at the edges).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import kaldi_native_fbank as knf
import numpy as np

from steps_py.gmm.errors import GmmError


class FeatureSource(Protocol):
    """What the GMM code needs from a feature reader (steps_py.features.io.FeatureReader)."""

    @property
    def utts(self) -> Iterable[str]: ...

    def __getitem__(self, utt: str) -> np.ndarray: ...


def add_deltas(feats: np.ndarray, order: int = 2, window: int = 2) -> np.ndarray:
    """(T, D) -> (T, D * (order + 1)) float32, as Kaldi's add-deltas."""
    x = np.ascontiguousarray(feats, dtype=np.float32)
    if x.shape[0] == 0:
        return np.zeros((0, x.shape[1] * (order + 1)), dtype=np.float32)
    return np.asarray(
        knf.compute_deltas(knf.DeltaOptions(order=order, window=window), x), dtype=np.float32
    )


def open_mfcc(data_dir: Path) -> FeatureSource:
    """The MFCC reader of a data dir, with per-speaker CMVN applied."""
    try:
        from steps_py.features.io import FeatureReader
    except ImportError as e:  # pragma: no cover - depends on the features code being installed
        raise GmmError(f"steps_py.features.io is missing ({e})") from e
    if not (Path(data_dir) / "mfcc" / "feats.scp").is_file():
        raise GmmError(
            f"{data_dir}/mfcc/feats.scp not found: run `python -m steps_py.features.compute --data {data_dir} --kind mfcc` first"
        )
    try:
        return FeatureReader(Path(data_dir), "mfcc", cmvn=True)
    except (FileNotFoundError, ValueError) as e:  # the reader's messages name the file and the fix
        raise GmmError(str(e)) from None
