"""Paired bootstrap confidence interval for the relative CER change of system B vs system A.

Resample utterances with replacement (the same resample for both systems, so the
comparison is paired), recompute both corpus CERs, and take the 2.5 / 97.5 percentiles of
the relative change ``100 * (CER_B - CER_A) / CER_A`` (negative = B is better).

Written here rather than using `kaldialign.bootstrap_wer_ci` because that gives a CI for
each system's CER (and P(improvement)), not for the relative change we report, and it
cannot pool several training seeds. With several seeds the inputs are `(S, U)` arrays and
each resample averages the CER over the seeds before taking the ratio.

`hierarchical_bootstrap_rel_change` resamples seeds, then speakers, then utterances within
the drawn speakers (the study's second plan), so a CI also covers the spread between
training runs and between speakers; its `tost` is the equivalence test (two one-sided
tests at +-margin % relative) that must pass before a change is called "none".
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np


def mean_std(xs: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one value; None, None for none)."""
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


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


@dataclass(frozen=True)
class Equivalence:
    """TOST (two one-sided tests) of |relative change| < margin, from a bootstrap distribution.

    p_low = P*(change <= -margin), p_high = P*(change >= +margin) under the bootstrap;
    p = max of the two; equivalent when p < alpha, i.e. when the (1 - 2 alpha) percentile
    interval lies inside (-margin, +margin).
    """

    margin: float
    p_low: float
    p_high: float
    alpha: float
    ci_low: float  # the (1 - 2 alpha) interval the test is equivalent to
    ci_high: float

    @property
    def p_value(self) -> float:
        return max(self.p_low, self.p_high)

    @property
    def equivalent(self) -> bool:
        return self.p_value < self.alpha


@dataclass(frozen=True)
class RelChangeDistribution:
    """The point estimate of the relative change (percent) and its bootstrap resamples."""

    rel_change: float
    samples: np.ndarray
    resamples: int
    seed: int

    def ci(self, level: float = 0.95) -> RelChangeCI:
        q = 50.0 * (1.0 - level)
        low, high = (
            np.percentile(self.samples, [q, 100.0 - q])
            if self.samples.size
            else (float("nan"), float("nan"))
        )
        return RelChangeCI(self.rel_change, float(low), float(high), self.resamples, self.seed)

    def tost(self, margin: float = 2.0, alpha: float = 0.05) -> Equivalence:
        s = self.samples
        ci = self.ci(1.0 - 2.0 * alpha)
        return Equivalence(
            margin,
            float(np.mean(s <= -margin)) if s.size else 1.0,
            float(np.mean(s >= margin)) if s.size else 1.0,
            alpha,
            ci.low,
            ci.high,
        )


def hierarchical_bootstrap_rel_change(
    err_a: np.ndarray,
    err_b: np.ndarray,
    ref_len: np.ndarray,
    speakers: list[str] | np.ndarray,
    resamples: int = 1000,
    seed: int = 0,
) -> RelChangeDistribution:
    """Bootstrap of ``100 * (CER_b - CER_a) / CER_a`` over seeds, then speakers, then utterances.

    err_a, err_b: (S, U) per-utterance errors of S training seeds (or (U,)); ref_len: (U,);
    speakers: (U,) the speaker of each utterance. Each resample draws S seeds with
    replacement, the speakers with replacement, and within each drawn speaker as many
    utterances as it has, with replacement; both systems get the same draw (paired). Seeds
    and speakers are crossed (every seed decodes every utterance), so the utterance draw is
    shared by the drawn seeds. Deterministic for a given seed.
    """
    a = np.atleast_2d(np.asarray(err_a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(err_b, dtype=np.float64))
    n = np.asarray(ref_len, dtype=np.float64)
    spk = np.asarray(speakers)
    if a.shape != b.shape or a.shape[-1] != n.shape[0] or spk.shape != n.shape:
        raise ValueError(
            f"shape mismatch: errors {a.shape} vs {b.shape}, ref_len {n.shape}, "
            f"speakers {spk.shape}"
        )
    if n.sum() <= 0 or a.sum() == 0:
        raise ValueError("reference length or baseline errors are zero: no relative change")
    point = 100.0 * (b.sum() - a.sum()) / a.sum()  # same refs for every seed: pooled = mean
    rng = np.random.default_rng(seed)
    num_seeds, groups = a.shape[0], [np.flatnonzero(spk == k) for k in np.unique(spk)]
    seed_w = rng.multinomial(num_seeds, np.full(num_seeds, 1.0 / num_seeds), size=resamples)
    spk_w = rng.multinomial(len(groups), np.full(len(groups), 1.0 / len(groups)), size=resamples)
    utt_w = np.zeros((resamples, n.shape[0]))
    for j, idx in enumerate(groups):  # drawn c times: c x |utts| draws among its utterances
        utt_w[:, idx] = rng.multinomial(spk_w[:, j] * idx.size, np.full(idx.size, 1.0 / idx.size))
    ea = np.einsum("rs,su,ru->r", seed_w, a, utt_w)
    eb = np.einsum("rs,su,ru->r", seed_w, b, utt_w)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = 100.0 * (eb - ea) / ea
    return RelChangeDistribution(float(point), r[np.isfinite(r)], resamples, seed)
