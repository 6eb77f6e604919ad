"""Paired bootstrap confidence interval for the relative CER change of system B vs system A.

Resample utterances with replacement (the same resample for both systems, so the
comparison is paired), recompute both corpus CERs, and take the 2.5 / 97.5 percentiles of
the relative change ``100 * (CER_B - CER_A) / CER_A`` (negative = B is better).

Written here rather than using `kaldialign.bootstrap_wer_ci` because that gives a CI for
each system's CER (and P(improvement)), not for the relative change we report, and it
cannot pool several training seeds. With several seeds the inputs are `(S, U)` arrays and
each resample averages the CER over the seeds before taking the ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RelChangeCI:
    """Relative change in percent: point estimate and the bootstrap 95 % CI."""

    rel_change: float
    low: float
    high: float
    resamples: int
    seed: int

    def fmt(self) -> str:
        return f"{self.rel_change:+.1f} % [{self.low:+.1f}, {self.high:+.1f}]"


def paired_bootstrap_rel_change(
    err_a: np.ndarray,
    err_b: np.ndarray,
    ref_len: np.ndarray,
    resamples: int = 1000,
    seed: int = 0,
    chunk: int = 100,
) -> RelChangeCI:
    """CI of ``100 * (CER_b - CER_a) / CER_a`` by paired bootstrap over utterances.

    err_a, err_b: per-utterance error counts, shape (U,) or (S, U) for S seeds (same
    utterance order); ref_len: per-utterance reference lengths, shape (U,).
    Deterministic for a given seed.
    """
    a = np.atleast_2d(np.asarray(err_a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(err_b, dtype=np.float64))
    n = np.asarray(ref_len, dtype=np.float64)
    if a.shape != b.shape or a.shape[-1] != n.shape[0]:
        raise ValueError(f"shape mismatch: errors {a.shape} vs {b.shape}, ref_len {n.shape}")
    if n.sum() <= 0:
        raise ValueError("reference length is zero; nothing to bootstrap")
    cer_a = (a.sum(1) / n.sum()).mean()
    cer_b = (b.sum(1) / n.sum()).mean()
    if cer_a == 0:
        raise ValueError("baseline CER is 0; a relative change is undefined")
    point = 100.0 * (cer_b - cer_a) / cer_a
    rng = np.random.default_rng(seed)
    num_utts = n.shape[0]
    rels = []
    done = 0
    while done < resamples:
        k = min(chunk, resamples - done)
        # counts[r, u]: how often utterance u is drawn in resample r
        counts = rng.multinomial(num_utts, np.full(num_utts, 1.0 / num_utts), size=k).astype(
            np.float64
        )
        nn = counts @ n  # (k,)
        ca = (counts @ a.T).mean(1) / nn  # (k,) mean over seeds of each resample's CER
        cb = (counts @ b.T).mean(1) / nn
        with np.errstate(divide="ignore", invalid="ignore"):
            r = 100.0 * (cb - ca) / ca
        rels.append(r[np.isfinite(r)])
        done += k
    allr = np.concatenate(rels)
    low, high = np.percentile(allr, [2.5, 97.5]) if allr.size else (float("nan"), float("nan"))
    return RelChangeCI(float(point), float(low), float(high), resamples, seed)
