"""Monophone GMM training, alignment and model I/O on a tiny synthetic lang and corpus."""

from __future__ import annotations

from pathlib import Path

import kaldi_hmm_gmm as khg
import numpy as np
import pytest

from steps_py.gmm.accumulate import GmmStats, accumulate, component_loglikes
from steps_py.gmm.ali_io import AlignmentDir
from steps_py.gmm.align import align_utterances
from steps_py.gmm.data import load_utterances
from steps_py.gmm.feats import add_deltas
from steps_py.gmm.jobs import AlignOptions, Utterance
from steps_py.gmm.model_io import GmmParams, load_gmm, read_model, save_model
from steps_py.gmm.topo import Lang
from steps_py.gmm.train_mono import train
from steps_py.kaldi.int_vector_ark import write_int32_vectors
from tests.toy_gmm import PHONES, make_toy_lang, toy_corpus, toy_features, toy_utterance


@pytest.fixture(scope="module")
def lang(tmp_path_factory: pytest.TempPathFactory) -> Lang:
    return Lang.load(make_toy_lang(tmp_path_factory.mktemp("toy") / "lang"))


def _utts(lang: Lang, n: int, seed: int = 1) -> list[Utterance]:
    return [Utterance(u, add_deltas(x), lang.word_ids(w)[0]) for u, w, x, _ in toy_corpus(n, seed)]


@pytest.fixture(scope="module")
def trained(lang: Lang, tmp_path_factory: pytest.TempPathFactory):
    model, rows, failed = train(lang, _utts(lang, 40), nj=1, num_iters=6, max_gauss=40)
    path = tmp_path_factory.mktemp("mono") / "final.npz"
    save_model(path, model)
    return path, rows, failed


def test_em_raises_likelihood(trained) -> None:
    _, rows, failed = trained
    lls = [r["avg_loglike"] for r in rows]
    assert failed == []
    assert lls[-1] > lls[0] + 5.0, lls
    assert all(b > a - 0.5 for a, b in zip(lls, lls[1:], strict=False)), lls
    assert rows[-1]["num_gauss"] > rows[0]["num_gauss"]


def test_model_roundtrip(trained, tmp_path: Path) -> None:
    path, _, _ = trained
    model = read_model(path)
    tm, am = load_gmm(path)
    again = GmmParams.from_am(am)
    for a, b in zip(model.gmm.means, again.means, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(tm.log_probs)[1:], model.transition_log_probs[1:], atol=1e-3
    )
    save_model(tmp_path / "copy.npz", read_model(path))
    assert read_model(tmp_path / "copy.npz").gmm.num_gauss == model.gmm.num_gauss


def test_accumulate_matches_direct_loglike() -> None:
    rng = np.random.default_rng(0)
    gmm = GmmParams(
        [np.array([0.4, 0.6], np.float32)],
        [rng.standard_normal((2, 3)).astype(np.float32)],
        [np.full((2, 3), 2.0, np.float32)],
    )
    x = rng.standard_normal((50, 3)).astype(np.float32)
    stats = GmmStats.zeros(gmm)
    total = accumulate(x, np.zeros(50, np.int64), gmm, stats)
    var = 2.0
    direct = 0.0
    for row in x:
        p = sum(
            w * np.exp(-0.5 * np.sum((row - m) ** 2) / var) / np.sqrt((2 * np.pi * var) ** 3)
            for w, m in zip(gmm.weights[0], gmm.means[0], strict=True)
        )
        direct += np.log(p)
    assert total == pytest.approx(direct, rel=1e-6)
    assert stats.occ[0].sum() == pytest.approx(50.0)
    assert component_loglikes(
        x, *[a[0] for a in (gmm.weights, gmm.means, gmm.variances)]
    ).shape == (50, 2)


def _oracle_model(lang: Lang, path: Path) -> Path:
    """A model whose pdfs are the true phone Gaussians of the toy features (known answer)."""
    from steps_py.gmm.model_io import MonoModel, monophone_tree

    topo = lang.topology()
    tm = khg.TransitionModel(ctx_dep=monophone_tree(topo), hmm_topo=topo)
    means = {}
    for phone in ("SIL", "SPN", "a", "b", "c"):
        x = add_deltas(toy_features([(phone, 40)], seed=1))
        means[phone] = x.mean(0)
    w, m, v = [], [], []
    for j in range(tm.num_pdfs):
        phone = next(PHONES[p] for p in range(1, 6) if j in khg.get_pdfs_for_phones(tm, [p])[1])
        w.append(np.ones(1, np.float32))
        m.append(means[phone][None].astype(np.float32))
        v.append(np.full((1, 39), 0.25, np.float32))
    save_model(path, MonoModel(lang.topo_text, np.asarray(tm.log_probs), GmmParams(w, m, v)))
    return path


def test_alignment_recovers_known_segments(lang: Lang, tmp_path: Path) -> None:
    path = _oracle_model(lang, tmp_path / "oracle.npz")
    tm, _ = load_gmm(path)
    rng = np.random.default_rng(7)
    feats, segs = toy_utterance(["C", "B", "A"], rng, seed=99)
    truth = np.concatenate([[PHONES.index(p)] * n for p, n in segs])
    utt = Utterance("known", add_deltas(feats), lang.word_ids(["C", "B", "A"])[0])
    alis, failed, _ = align_utterances(lang, path, [utt], nj=1, opts=AlignOptions())
    assert failed == {}
    phones = np.array([tm.transition_id_to_phone(int(t)) for t in alis["known"]])
    assert len(phones) == len(truth)
    assert np.mean(phones == truth) > 0.95, (phones, truth)


def test_bad_inputs_are_named_and_counted(lang: Lang, trained, tmp_path: Path) -> None:
    path, _, _ = trained
    data = tmp_path / "data"
    data.mkdir()
    (data / "text").write_text("u1 A B\nu2 A ZZZ\nu3 B\nu4\n")
    rng = np.random.default_rng(3)

    class Feats:
        utts = ["u1", "u2", "u4", "short"]

        def __getitem__(self, utt: str) -> np.ndarray:
            return toy_utterance(["A", "B"], rng, seed=5)[0]

    utts, report = load_utterances(data, lang, Feats())
    assert [u.utt for u in utts] == ["u1", "u2"]
    assert report.skipped["u3"].startswith("no-features")
    assert report.skipped["u4"] == "empty-transcript"
    assert report.oov_tokens["ZZZ"] == 1
    assert utts[1].word_ids[1] == lang.words["<UNK>"]
    short = Utterance(
        "short", add_deltas(np.zeros((4, 13), np.float32)), lang.word_ids(["C", "B", "A"])[0]
    )
    alis, failed, _ = align_utterances(lang, path, [short, utts[0]], nj=1, opts=AlignOptions())
    assert "u1" in alis
    assert failed["short"].startswith("too-short")


def test_ali_io_roundtrip(tmp_path: Path) -> None:
    alis = {"b": np.array([3, 4, 4], np.int32), "a": np.array([1], np.int32)}
    write_int32_vectors(tmp_path / "ali", "ali", alis)
    write_int32_vectors(tmp_path / "ali", "pdf", {k: v - 1 for k, v in alis.items()})
    got = AlignmentDir(tmp_path / "ali").transitions()
    assert sorted(got) == ["a", "b"] and got["b"].tolist() == [3, 4, 4]
    assert AlignmentDir(tmp_path / "ali").pdfs()["b"].tolist() == [2, 3, 3]
    with pytest.raises(FileNotFoundError, match="steps_py.gmm.align"):
        AlignmentDir(tmp_path / "nothing").pdfs()


def test_add_deltas_on_a_ramp() -> None:
    x = np.arange(30, dtype=np.float32)[:, None] * np.array([[1.0, -2.0]], np.float32)
    d = add_deltas(x)
    assert d.shape == (30, 6)
    np.testing.assert_allclose(d[5:-5, 2:4], np.tile([[1.0, -2.0]], (20, 1)), atol=1e-5)
    np.testing.assert_allclose(d[5:-5, 4:6], 0.0, atol=1e-5)


def test_parallel_jobs_match_single_job(lang: Lang) -> None:
    utts = _utts(lang, 12, seed=5)
    _, rows1, _ = train(lang, utts, nj=1, num_iters=2, max_gauss=30)
    _, rows2, _ = train(lang, utts, nj=2, num_iters=2, max_gauss=30)
    assert rows1[0]["frames"] == rows2[0]["frames"]
    assert rows2[0]["avg_loglike"] == pytest.approx(rows1[0]["avg_loglike"], rel=1e-6)
    assert rows2[1]["avg_loglike"] == pytest.approx(rows1[1]["avg_loglike"], rel=1e-4)
