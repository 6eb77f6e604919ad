"""Mix-up (Kaldi's SplitByCount) written in numpy: same targets and splits as Kaldi, seeded."""

from __future__ import annotations

import numpy as np

from steps_py.gmm.accumulate import UpdateConfig, split_gmms, split_targets
from steps_py.gmm.model_io import GmmParams


def _random_gmm(rng: np.random.Generator, pdfs: int = 12, dim: int = 4) -> GmmParams:
    w, m, v = [], [], []
    for _ in range(pdfs):
        k = int(rng.integers(1, 4))
        ww = rng.random(k) + 0.1
        w.append((ww / ww.sum()).astype(np.float32))
        m.append(rng.standard_normal((k, dim)).astype(np.float32))
        v.append((0.5 + rng.random((k, dim))).astype(np.float32))
    return GmmParams(w, m, v)


def test_split_matches_kaldi_without_perturbation() -> None:
    """perturb_factor 0 removes Kaldi's randomness: components, weights, means, variances agree."""
    rng = np.random.default_rng(4)
    gmm = _random_gmm(rng)
    occs = (rng.random(gmm.num_pdfs) * 400).astype(np.float32)
    occs[3] = 15.0  # below min_count * 2: never split
    cfg = UpdateConfig(perturb_factor=0.0)
    target = gmm.num_gauss + 25
    am = gmm.to_am()
    am.split_by_count(
        state_occs=occs,
        target_components=target,
        perturb_factor=0.0,
        power=cfg.power,
        min_count=cfg.min_count,
    )
    kaldi = GmmParams.from_am(am)
    ours = split_gmms(gmm, occs, target, cfg, np.random.default_rng(0))
    assert [len(x) for x in ours.weights] == [len(x) for x in kaldi.weights]
    assert ours.num_gauss > gmm.num_gauss
    for a, b in zip(
        ours.weights + ours.means + ours.variances,
        kaldi.weights + kaldi.means + kaldi.variances,
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_split_targets_follow_occupancy_and_min_count() -> None:
    occs = np.array([1000.0, 10.0, 200.0, 0.0])
    t = split_targets(occs, target=12, power=1.0, min_count=20.0)
    assert t[1] == 1 and t[3] == 1  # too few frames for a second Gaussian
    assert t[0] > t[2] > 1 and sum(t) == 12


def test_split_is_reproducible_and_perturbs_by_the_factor() -> None:
    gmm = GmmParams(
        [np.ones(1, np.float32)], [np.zeros((1, 3), np.float32)], [np.full((1, 3), 4.0, np.float32)]
    )
    cfg = UpdateConfig(perturb_factor=0.01)
    a = split_gmms(gmm, np.array([1e6]), 2, cfg, np.random.default_rng([7, 1]))
    b = split_gmms(gmm, np.array([1e6]), 2, cfg, np.random.default_rng([7, 1]))
    c = split_gmms(gmm, np.array([1e6]), 2, cfg, np.random.default_rng([7, 2]))
    np.testing.assert_array_equal(a.means[0], b.means[0])
    assert not np.array_equal(a.means[0], c.means[0])
    # the two halves move apart symmetrically, by perturb * stddev * N(0, 1)
    np.testing.assert_allclose(a.means[0][0], -a.means[0][1], rtol=1e-6)
    assert 0 < np.abs(a.means[0][0]).max() < 0.01 * 2.0 * 5
    np.testing.assert_allclose(a.weights[0], [0.5, 0.5])


def test_training_twice_gives_the_same_model(tmp_path) -> None:
    """GMM training with mix-up is reproducible (kaldi-hmm-gmm's own split is not)."""
    from steps_py.gmm.feats import add_deltas
    from steps_py.gmm.jobs import Utterance
    from steps_py.gmm.topo import Lang
    from steps_py.gmm.train_mono import train
    from tests.toy_gmm import make_toy_lang, toy_corpus

    lang = Lang.load(make_toy_lang(tmp_path / "lang"))
    utts = [Utterance(u, add_deltas(x), lang.word_ids(w)[0]) for u, w, x, _ in toy_corpus(30, 2)]
    a, _, _ = train(lang, utts, nj=1, num_iters=5, max_gauss=60)
    b, _, _ = train(lang, utts, nj=1, num_iters=5, max_gauss=60)
    assert a.gmm.num_gauss > a.gmm.num_pdfs  # mix-up happened
    for x, y in zip(a.gmm.means, b.gmm.means, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.transition_log_probs, b.transition_log_probs)
