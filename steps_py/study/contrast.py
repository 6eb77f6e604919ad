"""The second study's statistics, fixed before its runs (issue 19).

Every contrast is a model against the global model of the same runs, on test, pooled over
the config's seeds: the relative CER change, its 95 % CI from the hierarchical bootstrap
(seeds, then speakers, then utterances; `steps_py.score.bootstrap`), the TOST equivalence
test at +-margin % relative, and the change of every seed alone. The verdict of a contrast is

* "helps": the 95 % CI is below 0;  "hurts": it is above 0;
* "equivalent": the CI includes 0 and TOST shows |change| < margin (p < 0.05);
* "inconclusive": neither (too few data to tell; never reported as "no effect");
* "dev chose global" (set by the table): the dev choice is the global model itself.

The speaker of an utterance is its id up to the last '-' (`test-s001-00016` -> `test-s001`,
the digits corpus's `astmic-fsi003-sen_0012` -> `astmic-fsi003`), as both corpora name them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from steps_py.score.bootstrap import hierarchical_bootstrap_rel_change


def speaker_of(utt: str) -> str:
    return utt.rsplit("-", 1)[0]


def verdict(ci_low: float, ci_high: float, equivalent: bool) -> str:
    if ci_high < 0:
        return "helps"
    if ci_low > 0:
        return "hurts"
    return "equivalent" if equivalent else "inconclusive"


def contrast(
    pe: tuple[np.ndarray, np.ndarray, np.ndarray],
    utts: list[str],
    resamples: int,
    seed: int,
    margin: float,
) -> dict[str, Any]:
    """Model b against model a (the global one): (S, U) errors each, (U,) reference lengths."""
    ea, eb, n = pe
    dist = hierarchical_bootstrap_rel_change(
        ea, eb, n, [speaker_of(u) for u in utts], resamples=resamples, seed=seed
    )
    ci, tost = dist.ci(0.95), dist.tost(margin)
    per_seed = [
        float(100.0 * (b.sum() - a.sum()) / a.sum()) if a.sum() else None
        for a, b in zip(ea, eb, strict=True)
    ]
    return {
        "percent": ci.rel_change,
        "ci95_low": ci.low,
        "ci95_high": ci.high,
        "seeds_pooled": int(ea.shape[0]),
        "per_seed_percent": per_seed,
        "tost_margin_percent": margin,
        "tost_p": tost.p_value,
        "ci90_low": tost.ci_low,
        "ci90_high": tost.ci_high,
        "equivalent": tost.equivalent,
        "verdict": verdict(ci.low, ci.high, tost.equivalent),
        "speakers": len(set(map(speaker_of, utts))),
        "utterances": len(utts),
    }


def frames_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    """The training frames at which a (frames, value) curve first reaches `target` or below,
    linearly interpolated between the points around it (None when it never does)."""
    prev: tuple[float, float] | None = None
    for f, v in sorted(curve):
        if v <= target:
            if prev is None or prev[1] == v:
                return f
            f0, v0 = prev
            return f0 + (f - f0) * (v0 - target) / (v0 - v)
        prev = (f, v)
    return None
