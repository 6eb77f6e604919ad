"""Features for the GMM system: CMVN'd MFCC plus deltas and delta-deltas (39 dims).

`add_deltas` follows Kaldi's `add-deltas` (window 2, order 2): the order-i filter is the
order-(i-1) filter convolved with the delta window, applied to the static features with
frames clamped at the edges. Written here with numpy because no listed package exposes
it (kaldi-native-fbank computes MFCCs but not deltas).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

from steps_py.gmm.errors import GmmError


class FeatureSource(Protocol):
    """What the GMM code needs from a feature reader (steps_py.features.io.FeatureReader)."""

    @property
    def utts(self) -> Iterable[str]: ...

    def __getitem__(self, utt: str) -> np.ndarray: ...


def _delta_filters(order: int, window: int) -> list[np.ndarray]:
    base = np.arange(-window, window + 1, dtype=np.float64)
    base /= np.sum(base**2)
    filters = [np.array([1.0])]
    for _ in range(order):
        filters.append(np.convolve(filters[-1], base))
    return filters


def add_deltas(feats: np.ndarray, order: int = 2, window: int = 2) -> np.ndarray:
    """(T, D) -> (T, D * (order + 1)) float32, as Kaldi's add-deltas."""
    feats = np.asarray(feats, dtype=np.float32)
    num_frames = feats.shape[0]
    out = [feats]
    for filt in _delta_filters(order, window)[1:]:
        half = len(filt) // 2
        idx = np.clip(np.arange(num_frames)[:, None] + np.arange(-half, half + 1)[None, :], 0, num_frames - 1)
        out.append(np.einsum("tkd,k->td", feats[idx], filt).astype(np.float32))
    return np.concatenate(out, axis=1)


def open_mfcc(data_dir: Path) -> FeatureSource:
    """The stage-3 MFCC reader of a data dir, with per-speaker CMVN applied."""
    try:
        from steps_py.features.io import FeatureReader
    except ImportError as e:  # pragma: no cover - depends on stage 3 being installed
        raise GmmError(f"steps_py.features.io is missing ({e}); run stage 3 code first") from e
    if not (Path(data_dir) / "mfcc" / "feats.scp").is_file():
        raise GmmError(f"{data_dir}/mfcc/feats.scp not found: run `python -m steps_py.features.compute --data {data_dir} --kind mfcc` first")
    try:
        return FeatureReader(Path(data_dir), "mfcc", cmvn=True)
    except (FileNotFoundError, ValueError) as e:  # the reader's messages name the file and the fix
        raise GmmError(str(e)) from None
