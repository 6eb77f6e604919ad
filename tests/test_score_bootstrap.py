"""Paired bootstrap CI of the relative CER change: deterministic, contains the estimate."""

from __future__ import annotations

import numpy as np
import pytest

from steps_py.score.bootstrap import paired_bootstrap_rel_change


def _data(seed: int = 3, utts: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = rng.integers(4, 15, size=utts)
    a = rng.binomial(n, 0.2)
    b = np.maximum(a - rng.binomial(1, 0.4, size=utts), 0)  # B fixes an error in ~40 % of utts
    return a, b, n


def test_point_estimate_ci_and_determinism() -> None:
    a, b, n = _data()
    ci = paired_bootstrap_rel_change(a, b, n, resamples=1000, seed=7)
    expected = 100.0 * (b.sum() / n.sum() - a.sum() / n.sum()) / (a.sum() / n.sum())
    assert ci.rel_change == pytest.approx(expected)
    assert ci.low <= ci.rel_change <= ci.high
    assert ci.high < 0  # B never worse per utterance and better on many: CI below zero
    again = paired_bootstrap_rel_change(a, b, n, resamples=1000, seed=7)
    assert (again.low, again.high) == (ci.low, ci.high)
    other = paired_bootstrap_rel_change(a, b, n, resamples=1000, seed=8)
    assert (other.low, other.high) != (ci.low, ci.high)


def test_identical_systems_give_zero_width_ci() -> None:
    a, _, n = _data()
    ci = paired_bootstrap_rel_change(a, a, n, resamples=200, seed=0)
    assert ci.rel_change == 0.0 and ci.low == 0.0 and ci.high == 0.0


def test_seeds_are_pooled() -> None:
    a, b, n = _data()
    a2, b2 = a + 1, b + 2
    ci = paired_bootstrap_rel_change(np.stack([a, a2]), np.stack([b, b2]), n, resamples=300, seed=1)
    cer_a = (a.sum() + a2.sum()) / 2 / n.sum()
    cer_b = (b.sum() + b2.sum()) / 2 / n.sum()
    assert ci.rel_change == pytest.approx(100 * (cer_b - cer_a) / cer_a)
    assert ci.low <= ci.rel_change <= ci.high


def test_errors_on_bad_input() -> None:
    a, b, n = _data()
    with pytest.raises(ValueError, match="shape"):
        paired_bootstrap_rel_change(a, b[:-1], n)
    with pytest.raises(ValueError, match="baseline CER is 0"):
        paired_bootstrap_rel_change(np.zeros_like(a), b, n)
