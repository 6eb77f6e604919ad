"""GMM and transition statistics from frame alignments, and the EM update (gmm-est).

The E-step is vectorised with numpy over all frames of a pdf at once: kaldi-hmm-gmm
only offers a per-frame accumulator (a Python loop over every frame, every pass) whose
AccumAmDiagGmm objects cannot be pickled or summed across processes. The statistics
(occupancy, sum x, sum x^2 per Gaussian) are plain arrays, so jobs sum them. The
M-step is Kaldi's own: the summed statistics are loaded into an AccumAmDiagGmm exactly
(two weighted pseudo-frames mean +- stddev per Gaussian reproduce its three statistics)
and `mle_am_diag_gmm_update` and `TransitionModel.mle_update` do the rest.

Mix-up (`split_gmms`) is Kaldi's `AmDiagGmm::SplitByCount` / `DiagGmm::Split` written out
in numpy: kaldi-hmm-gmm 1.1.4's `split_by_count` perturbs the new means with a random
generator that is seeded differently in every process (two processes given the same model
and counts return different means), which made GMM training, and everything downstream,
differ between runs with the same seed. Here the perturbation comes from a
`numpy.random.Generator` the caller seeds.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import kaldi_hmm_gmm as khg
import numpy as np

from steps_py.gmm.model_io import GmmParams

LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass
class GmmStats:
    """Per-pdf sufficient statistics: occ[K], x[K, D], x2[K, D] (float64)."""

    occ: list[np.ndarray]
    x: list[np.ndarray]
    x2: list[np.ndarray]

    @classmethod
    def zeros(cls, gmm: GmmParams) -> GmmStats:
        return cls(
            [np.zeros(len(w)) for w in gmm.weights],
            [np.zeros(m.shape) for m in gmm.means],
            [np.zeros(m.shape) for m in gmm.means],
        )

    def add(self, other: GmmStats) -> None:
        for j in range(len(self.occ)):
            self.occ[j] += other.occ[j]
            self.x[j] += other.x[j]
            self.x2[j] += other.x2[j]

    def pdf_occupancy(self) -> np.ndarray:
        return np.array([o.sum() for o in self.occ], dtype=np.float32)


def component_loglikes(
    x: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray
) -> np.ndarray:
    """log(w_k N(x_t; mu_k, diag var_k)) for frames x[T, D] -> [T, K] (float64)."""
    x = np.asarray(x, dtype=np.float64)
    inv = 1.0 / variances.astype(np.float64)
    mu = means.astype(np.float64)
    const = np.log(np.maximum(weights, 1e-30)) - 0.5 * (
        x.shape[1] * LOG_2PI + np.log(variances).sum(1) + (mu * mu * inv).sum(1)
    )
    return const[None, :] + x @ (mu * inv).T - 0.5 * (x * x) @ inv.T


def _logsumexp(a: np.ndarray) -> np.ndarray:
    mx = a.max(axis=1, keepdims=True)
    return (mx + np.log(np.exp(a - mx).sum(axis=1, keepdims=True)))[:, 0]


def pdf_loglikes(x: np.ndarray, gmm: GmmParams) -> np.ndarray:
    """Per-frame log-likelihood of every pdf: [T, num_pdfs] (float32), for decoding."""
    out = np.empty((x.shape[0], gmm.num_pdfs), dtype=np.float32)
    for j in range(gmm.num_pdfs):
        out[:, j] = _logsumexp(
            component_loglikes(x, gmm.weights[j], gmm.means[j], gmm.variances[j])
        )
    return out


def accumulate(feats: np.ndarray, pdfs: np.ndarray, gmm: GmmParams, stats: GmmStats) -> float:
    """Add the statistics of frames feats[N, D] aligned to pdfs[N] to `stats`; return total log-likelihood."""
    order = np.argsort(pdfs, kind="stable")
    sorted_pdfs = pdfs[order]
    starts = np.searchsorted(sorted_pdfs, np.arange(gmm.num_pdfs + 1))
    total = 0.0
    for j in range(gmm.num_pdfs):
        if starts[j] == starts[j + 1]:
            continue
        x = feats[order[starts[j] : starts[j + 1]]].astype(np.float64)
        ll = component_loglikes(x, gmm.weights[j], gmm.means[j], gmm.variances[j])
        lse = _logsumexp(ll)
        total += float(lse.sum())
        post = np.exp(ll - lse[:, None])
        stats.occ[j] += post.sum(0)
        stats.x[j] += post.T @ x
        stats.x2[j] += post.T @ (x * x)
    return total


@dataclass
class UpdateConfig:
    """gmm-est options (Kaldi defaults of train_mono.sh)."""

    min_gaussian_occupancy: float = 10.0
    min_variance: float = 0.001
    perturb_factor: float = 0.01
    power: float = 0.25
    min_count: float = 20.0


def update_gmm(am: khg.AmDiagGmm, stats: GmmStats, cfg: UpdateConfig) -> tuple[float, float]:
    """Kaldi's MLE update of `am` (in place) from `stats` (gmm-est without the mix-up).

    Returns (objective improvement, frame count) as gmm-est reports them.
    """
    acc = khg.AccumAmDiagGmm()
    acc.init(model=am, flags=khg.GmmUpdateFlags.kGmmAll)
    for j in range(len(stats.occ)):
        for k in np.nonzero(stats.occ[j] > 0)[0]:
            occ = float(stats.occ[j][k])
            mean = stats.x[j][k] / occ
            std = np.sqrt(np.maximum(stats.x2[j][k] / occ - mean * mean, 0.0))
            for sign in (1.0, -1.0):
                acc.accumulate_for_gaussian(
                    am=am,
                    data=(mean + sign * std).astype(np.float32),
                    gmm_index=j,
                    gauss_index=int(k),
                    weight=occ / 2,
                )
    opts = khg.MleDiagGmmOptions(
        min_gaussian_occupancy=cfg.min_gaussian_occupancy, min_variance=cfg.min_variance
    )
    impr, count = khg.mle_am_diag_gmm_update(
        config=opts, amdiag_gmm_acc=acc, flags=khg.GmmUpdateFlags.kGmmAll, am_gmm=am
    )
    return float(impr), float(count)


def split_targets(occs: np.ndarray, target: int, power: float, min_count: float) -> list[int]:
    """Gaussians per pdf after mix-up: Kaldi's `GetSplitTargets` (am-diag-gmm.cc).

    Each pdf starts with one Gaussian; repeatedly the pdf with the largest
    occ**power / components gets one more, unless (components + 1) * min_count would reach
    its occupancy, in which case it is never split again.
    """
    occs = np.asarray(occs, dtype=np.float64)
    comps = [1] * len(occs)
    weight = [float(o) ** power for o in occs]
    # max-heap on weight / components (ties: lower pdf index first)
    heap = [(-w / (1 + 1e-10), j) for j, w in enumerate(weight)]
    heapq.heapify(heap)
    total = len(occs)
    while total < target and heap:
        key, j = heapq.heappop(heap)
        if key == 0.0:
            break
        if (comps[j] + 1) * min_count >= occs[j]:
            weight[j] = 0.0
        else:
            comps[j] += 1
            total += 1
        heapq.heappush(heap, (-weight[j] / (comps[j] + 1e-10), j))
    return comps


def split_gmm(
    weights: np.ndarray,
    means: np.ndarray,
    variances: np.ndarray,
    target: int,
    perturb_factor: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kaldi's `DiagGmm::Split`: split the heaviest Gaussian until there are `target`.

    The heaviest component's weight is halved and shared with a copy; the two means move
    apart by +- perturb_factor * stddev * N(0, 1) per dimension.
    """
    w = list(np.asarray(weights, dtype=np.float64))
    mu = [np.asarray(m, dtype=np.float64) for m in means]
    var = [np.asarray(v, dtype=np.float64) for v in variances]
    while len(w) < target:
        k = int(np.argmax(w))
        w[k] /= 2.0
        shift = perturb_factor * rng.standard_normal(len(mu[k])) * np.sqrt(var[k])
        w.append(w[k])
        var.append(var[k].copy())
        mu.append(mu[k] + shift)
        mu[k] = mu[k] - shift
    return (
        np.asarray(w, dtype=np.float32),
        np.asarray(mu, dtype=np.float32),
        np.asarray(var, dtype=np.float32),
    )


def split_gmms(
    gmm: GmmParams, occs: np.ndarray, target: int, cfg: UpdateConfig, rng: np.random.Generator
) -> GmmParams:
    """Mix up to about `target` Gaussians in all (Kaldi's `AmDiagGmm::SplitByCount`)."""
    if target <= gmm.num_gauss:
        return gmm
    goals = split_targets(occs, target, cfg.power, cfg.min_count)
    w, m, v = list(gmm.weights), list(gmm.means), list(gmm.variances)
    for j, goal in enumerate(goals):
        if len(w[j]) < goal:
            w[j], m[j], v[j] = split_gmm(w[j], m[j], v[j], goal, cfg.perturb_factor, rng)
    return GmmParams(w, m, v)


def update_transitions(tm: khg.TransitionModel, tid_counts: np.ndarray) -> tuple[float, float]:
    """Kaldi's MLE transition update from per-transition-id counts (index 0 unused)."""
    impr, count = tm.mle_update(
        np.asarray(tid_counts, dtype=np.float64), khg.MleTransitionUpdateConfig()
    )
    return float(impr), float(count)


def boost_silence(
    am: khg.AmDiagGmm, tm: khg.TransitionModel, silence_phones: list[int], boost: float
) -> khg.AmDiagGmm:
    """A copy of `am` with the silence pdfs' weights scaled by `boost` (gmm-boost-silence)."""
    out = khg.AmDiagGmm()
    out.copy_from_am_diag_gmm(am)
    if boost == 1.0 or not silence_phones:
        return out
    _, pdfs = khg.get_pdfs_for_phones(tm, sorted(silence_phones))
    for j in pdfs:
        g = out.get_pdf(j)
        g.set_weights(np.asarray(g.weights, dtype=np.float32) * boost)
        g.compute_gconsts()
    return out
