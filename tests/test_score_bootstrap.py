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


# A hand reference: A makes 1 and 3 errors, B 2 and 3, on two units of 10 characters. Drawing
# two units with replacement gives {1st,1st} (1/4): 2 -> 4 errors, +100 %; one of each (1/2):
# 4 -> 5, +25 %; {2nd,2nd} (1/4): 6 -> 6, 0 %. The units are seeds, speakers or utterances.
HAND = {100.0: 0.25, 25.0: 0.5, 0.0: 0.25}


@pytest.mark.parametrize("level", ["seeds", "speakers", "utterances"])
def test_hierarchical_bootstrap_matches_the_hand_reference(level: str) -> None:
    from steps_py.score.bootstrap import hierarchical_bootstrap_rel_change

    if level == "seeds":  # two seeds, one utterance
        args = ([[1], [3]], [[2], [3]], [10], ["s1"])
    elif level == "speakers":  # one seed, two speakers of one utterance each
        args = ([1, 3], [2, 3], [10, 10], ["s1", "s2"])
    else:  # one seed, one speaker with two utterances
        args = ([1, 3], [2, 3], [10, 10], ["s1", "s1"])
    dist = hierarchical_bootstrap_rel_change(*args, resamples=4000, seed=5)
    assert dist.rel_change == pytest.approx(25.0)
    values, counts = np.unique(dist.samples.round(9), return_counts=True)
    assert sorted(values.tolist()) == sorted(HAND)
    for v, c in zip(values, counts, strict=True):
        assert c / 4000 == pytest.approx(HAND[float(v)], abs=0.03)
    ci = dist.ci(0.95)
    assert (ci.low, ci.high) == (0.0, 100.0)


def test_tost_against_the_hand_reference() -> None:
    from steps_py.score.bootstrap import hierarchical_bootstrap_rel_change

    dist = hierarchical_bootstrap_rel_change([1, 3], [2, 3], [10, 10], ["a", "b"], 4000, seed=5)
    t = dist.tost(margin=2.0)  # P*(change >= 2 %) = 3/4: far from equivalent
    assert t.p_low == 0.0 and t.p_high == pytest.approx(0.75, abs=0.03) and not t.equivalent
    t = dist.tost(margin=30.0)  # P*(change >= 30 %) = 1/4
    assert t.p_high == pytest.approx(0.25, abs=0.03) and not t.equivalent
    t = dist.tost(margin=150.0)  # every resample inside +-150 %
    assert t.p_value == 0.0 and t.equivalent and -150 < t.ci_low <= t.ci_high < 150
    same = hierarchical_bootstrap_rel_change([1, 3], [1, 3], [10, 10], ["a", "b"], 500, seed=1)
    assert same.tost(2.0).equivalent and same.ci().low == same.ci().high == 0.0


def test_hierarchical_bootstrap_is_wider_than_utterances_alone() -> None:
    """Speaker effects: B helps one speaker and hurts the other; resampling speakers sees it."""
    from steps_py.score.bootstrap import hierarchical_bootstrap_rel_change

    rng = np.random.default_rng(0)
    n = rng.integers(5, 12, size=80)
    a = rng.binomial(n, 0.2)
    spk = np.repeat(["x", "y"], 40)
    b = np.where(spk == "x", np.maximum(a - 1, 0), a + 1)
    flat = paired_bootstrap_rel_change(a, b, n, resamples=1000, seed=0)
    hier = hierarchical_bootstrap_rel_change(a, b, n, spk, resamples=1000, seed=0).ci()
    assert hier.high - hier.low > flat.high - flat.low
    with pytest.raises(ValueError, match="shape"):
        hierarchical_bootstrap_rel_change(a, b, n, spk[:-1])
