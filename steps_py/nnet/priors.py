"""Log priors of pdf ids from alignment counts (hybrid decoding: log p(x|s) ~ log p(s|x) - log p(s)).

Usage::

    counts = pdf_counts([ali1, ali2], num_pdfs)
    log_priors = log_priors_from_counts(counts, floor=1e-5)   # float32 [P]
    save_log_priors("exp/egs/dnn/priors.npy", log_priors)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from steps_py.fileio import atomic_path


def pdf_counts(alignments: Iterable[np.ndarray], num_pdfs: int) -> np.ndarray:
    """Frame counts per pdf id over alignments (int arrays of pdf ids)."""
    counts = np.zeros(num_pdfs, dtype=np.int64)
    for ali in alignments:
        counts += np.bincount(np.asarray(ali, dtype=np.int64), minlength=num_pdfs)[:num_pdfs]
    return counts


def log_priors_from_counts(counts: np.ndarray, floor: float = 1e-5) -> np.ndarray:
    """log(max(count / total, floor)) over the pdfs seen in the alignments, renormalised.

    Pdfs never seen in the alignments get log prior 0 (no prior correction): the network was
    never trained towards them, so dividing their near-arbitrary posteriors by a floored prior
    would boost them by up to -log(floor) (11.5 nats at 1e-5) and let the decoder prefer them
    (on the synthetic corpus 76 of 577 monophone pdfs are unseen, and the boost turned most
    words into deletions). With log prior 0 their score is the raw log posterior, which is far
    below the seen pdfs' posterior/prior ratios. Kaldi's nnet1 blocks such pdfs outright.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("cannot compute priors: no frames counted (empty alignments?)")
    seen = counts > 0
    p = np.maximum(counts / total, floor)
    p /= p[seen].sum()
    out = np.zeros_like(p)
    out[seen] = np.log(p[seen])
    return out.astype(np.float32)


def save_log_priors(path: Path | str, log_priors: np.ndarray) -> None:
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(log_priors, dtype=np.float32))


def load_log_priors(path: Path | str) -> np.ndarray:
    arr = np.load(Path(path), allow_pickle=False)
    if arr.ndim != 1:
        raise ValueError(f"{path}: log priors must be a 1-D array, got shape {arr.shape}")
    return arr.astype(np.float32)
