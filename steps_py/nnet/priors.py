"""Log priors of pdf ids (hybrid decoding: log p(x|s) ~ log p(s|x) - log p(s)).

Two estimates:

* from alignment counts (``log_priors_from_counts``, written by ``python -m steps_py.nnet.egs`` next to the egs);
* the model's own mean posterior over training frames (``average_log_posteriors``): Kaldi
  nnet3's "adjusted priors" (``nnet3-am-adjust-priors`` after ``compute-average-posterior``
  at the end of ``steps/nnet3/train_dnn.py``). The division then matches what the network
  actually predicts. It matters for averaged models (model averaging, EMA): their
  posteriors are flatter, so pdfs seen a handful of times get mean posteriors far above
  their count priors, and dividing by the count prior boosts them by several nats (README,
  "Priors", says how to compare the two on a run). Training (``steps_py.parallel.train``) stores the adjusted
  priors as a model's ``log_priors`` and keeps the count priors beside them (``--priors``).

Usage::

    counts = pdf_counts([ali1, ali2], num_pdfs)
    log_priors = log_priors_from_counts(counts, floor=1e-5)   # float32 [P]
    save_log_priors("exp/egs/dnn/priors.npy", log_priors)
    adjusted = average_log_posteriors(model, train_batches, max_frames=30000)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

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


def average_log_posteriors(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    max_frames: int,
    device: torch.device | str = "cpu",
    ignore_label: int = -100,
) -> tuple[np.ndarray, int]:
    """(log of the model's mean posterior per pdf [P] float32, frames used).

    ``batches`` are training minibatches ``(x, y)`` as the training loop gets them; outputs
    whose label is ``ignore_label`` (LSTM chunk padding) are left out. Stops once
    ``max_frames`` frames are counted. The model runs in eval mode (restored after).
    """
    if max_frames <= 0:
        raise ValueError(f"max_frames must be > 0, got {max_frames}")
    was_training = model.training
    model.eval()
    total: torch.Tensor | None = None
    frames = 0
    with torch.no_grad():
        for x, y in batches:
            logits = model(x.to(device))
            logits = logits.reshape(-1, logits.shape[-1]).double()
            keep = y.reshape(-1).to(logits.device) != ignore_label
            post = torch.softmax(logits[keep], dim=-1).sum(0)
            total = post if total is None else total + post
            frames += int(keep.sum())
            if frames >= max_frames:
                break
    model.train(was_training)
    if total is None or frames == 0:
        raise ValueError("cannot compute adjusted priors: the training examples gave no frames")
    mean = (total / frames).cpu().numpy()  # softmax rows sum to 1, so this does too
    return np.log(np.maximum(mean, 1e-30)).astype(np.float32), frames
