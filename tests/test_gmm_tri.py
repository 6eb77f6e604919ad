"""Triphone GMM training (train_deltas.sh) on the toy corpus: init, convert-ali, EM, Kaldi files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from steps_py.gmm.jobs import AlignOptions
from steps_py.gmm.make_tree import accumulate_tree_stats, alignment_transition_model, make_tree
from steps_py.gmm.train_tri import train
from steps_py.gmm.tree_stats import split_to_phones
from steps_py.gmm.tri_init import (
    convert_alignment,
    from_kaldi_model,
    to_kaldi_model,
    transition_lookup,
)
from steps_py.kaldi.model_file import read_kaldi_model, write_kaldi_model
from steps_py.kaldi.topology import HmmTopology
from steps_py.kaldi.transition_model import TransitionModel
from steps_py.kaldi.tree import write_tree
from tests.toy_tri import toy_mono_alignments


@pytest.fixture(scope="module")
def tri(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("tri1")
    lang, utts, alis, mono = toy_mono_alignments(d)
    mono_tm = alignment_transition_model(mono)
    stats, _ = accumulate_tree_stats(mono_tm, utts, alis, lang.silence_phones)
    tree, _, _ = make_tree(lang, stats, 30, thresh=0.0, cluster_thresh=-1.0, seed=0)
    aligned = [u for u in utts if u.utt in alis]
    tm, gmm, rows = train(
        lang,
        aligned,
        tree,
        stats,
        mono_tm,
        alis,
        nj=2,
        num_iters=12,
        tot_gauss=80,
        max_iter_inc=8,
        opts=AlignOptions(),
    )
    return lang, utts, alis, mono_tm, tree, tm, gmm, rows, d


def test_convert_ali_keeps_phones_and_states(tri) -> None:
    lang, utts, alis, mono_tm, tree, _, _, _, _ = tri
    topo = HmmTopology.from_text(lang.topo_text)
    tm = TransitionModel.from_tree(tree, topo)
    lookup = transition_lookup(tm)
    for utt in list(alis)[:5]:
        old = alis[utt]
        new = convert_alignment(old, mono_tm, tm, tree, lookup)
        assert np.array_equal(tm.tid2phone[new], mono_tm.tid2phone[old])
        assert np.array_equal(tm.tid2hmm_state[new], mono_tm.tid2hmm_state[old])
        assert np.array_equal(tm.tid_is_self_loop[new], mono_tm.tid_is_self_loop[old])
        segs = split_to_phones(tm, new)
        phones = [p for p, _, _ in segs]
        for k, (p, a, _) in enumerate(segs):
            left = phones[k - 1] if k else 0
            right = phones[k + 1] if k + 1 < len(phones) else 0
            pc = topo.entry_for_phone(p)[int(tm.tid2hmm_state[new[a]])].forward_pdf_class
            assert tm.tid2pdf[new[a]] == tree.compute([left, p, right], pc)


def test_em_raises_likelihood_and_mixes_up(tri) -> None:
    *_, tm, gmm, rows, _ = tri
    lls = [r["avg_loglike"] for r in rows]
    assert lls[-1] > lls[0] + 5, lls
    # EM on fixed alignments never loses likelihood (realignment changes the frames' targets)
    steps = [(a, b) for a, b, r in zip(lls, lls[1:], rows[1:], strict=False) if not r["realigned"]]
    assert all(b > a - 0.05 for a, b in steps), lls
    realigned = [r for r in rows if r["realigned"]]
    assert [r["pass"] for r in realigned] == [10] and realigned[0]["align_failed"] <= 1
    assert gmm.num_gauss > gmm.num_pdfs
    assert np.isfinite(tm.log_probs[1:]).all()


def test_model_is_kaldi_final_mdl_with_tree(tri, tmp_path: Path) -> None:
    *_, tree, tm, gmm, _, _ = tri
    model = to_kaldi_model(tm, gmm)
    for binary in (True, False):
        write_kaldi_model(tmp_path / "final.mdl", model, binary=binary)
        back = read_kaldi_model(tmp_path / "final.mdl")
        assert back.to_bytes(binary) == (tmp_path / "final.mdl").read_bytes()
    assert back.transition_model.tuples == TransitionModel.from_tree(tree, tm.topo).tuples
    again = from_kaldi_model(back)
    np.testing.assert_allclose(
        np.concatenate(again.means), np.concatenate(gmm.means), rtol=1e-5, atol=1e-5
    )
    write_tree(tmp_path / "tree", tree)


def test_written_model_aligns_and_builds_its_graph(tri, tmp_path: Path) -> None:
    from steps_py.decode.graph import main as graph_main
    from steps_py.gmm.align import align_utterances

    lang, utts, _, _, tree, tm, gmm, _, _ = tri
    model_dir = tmp_path / "tri1"
    model_dir.mkdir()
    write_kaldi_model(model_dir / "final.mdl", to_kaldi_model(tm, gmm), binary=True)
    write_tree(model_dir / "tree", tree)
    alis, failed, _ = align_utterances(lang, model_dir, utts[:8], 2, AlignOptions())
    assert len(alis) + len(failed) == 8 and len(alis) >= 7
    for utt, ali in alis.items():
        u = next(x for x in utts if x.utt == utt)
        assert len(ali) == len(u.feats)
        phones = [p for p, _, _ in split_to_phones(tm, ali)]
        want = [lang.phones[p] for w in u.word_ids for p in _pron(lang, w)]
        assert [p for p in phones if p not in lang.silence_phones] == want
    assert (
        graph_main(
            ["--lang", str(lang.dir), "--model", str(model_dir), "--out", str(tmp_path / "graph")]
        )
        == 0
    )
    assert (tmp_path / "graph" / "num_pdfs").read_text().strip() == str(gmm.num_pdfs)
    written = [int(x) for x in (tmp_path / "graph" / "tid2pdf").read_text().split()]
    assert written == tm.tid2pdf[1:].tolist()


def _pron(lang, word_id: int) -> list[str]:
    from tests.toy_gmm import LEXICON

    word = next(w for w, i in lang.words.items() if i == word_id)
    return LEXICON[word]


def test_gmm_scorer_reads_the_triphone_model(tri, tmp_path: Path) -> None:
    from steps_py.decode.scorers import GmmScorer
    from steps_py.gmm.accumulate import pdf_loglikes

    lang, utts, _, _, tree, tm, gmm, _, _ = tri
    write_kaldi_model(tmp_path / "final.mdl", to_kaldi_model(tm, gmm), binary=True)
    write_tree(tmp_path / "tree", tree)
    scorer = GmmScorer(tmp_path)
    assert scorer.num_pdfs == gmm.num_pdfs
    x = utts[0].feats
    np.testing.assert_allclose(scorer.loglikes_of(x), pdf_loglikes(x, gmm), rtol=1e-4, atol=1e-2)


def test_pdf_loglikes_of_a_subset_match_all_pdfs(tri) -> None:
    from steps_py.gmm.accumulate import pdf_loglikes
    from steps_py.gmm.tri_jobs import pdf_loglikes_subset

    *_, gmm, _, _ = tri
    x = np.random.default_rng(0).normal(size=(7, gmm.dim))
    pdfs = np.array([3, 0, gmm.num_pdfs - 1])
    np.testing.assert_allclose(
        pdf_loglikes_subset(x, gmm, pdfs), pdf_loglikes(x, gmm)[:, pdfs], rtol=1e-5, atol=1e-3
    )


def test_ensure_tree_runs_make_tree_with_the_step_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train_tri's tree options reach make_tree's flags; a done tree is not rebuilt."""
    from steps_py.cli import dataclass_from_args
    from steps_py.fileio import mark_done
    from steps_py.gmm import train_tri

    calls: list[dict] = []
    monkeypatch.setattr(train_tri, "run_make_tree", lambda a: calls.append(vars(a)))
    monkeypatch.setattr(train_tri, "read_tree", lambda p: p)
    monkeypatch.setattr(train_tri.TreeStats, "load", lambda p: p)
    argv = ["--data", "d", "--lang", "l", "--ali", "a", "--ali-model", "m", "--out", str(tmp_path)]
    args = train_tri.build_parser().parse_args([*argv, "--num-leaves", "7", "--seed", "3"])
    config = dataclass_from_args(train_tri.TreeConfig, args)
    tree, stats = train_tri.ensure_tree(config)
    assert (tree, stats) == (tmp_path / "tree", tmp_path / "tree_build" / "treeacc.npz")
    (call,) = calls
    assert {k: call[k] for k in ("data", "lang", "ali", "model", "out")} == {
        "data": Path("d"),
        "lang": Path("l"),
        "ali": Path("a"),
        "model": Path("m"),
        "out": tmp_path,
    }
    assert (call["num_leaves"], call["seed"]) == (7, 3)
    (tmp_path / "tree").write_text("")
    mark_done(tmp_path / "tree_build", {})
    train_tri.ensure_tree(config)
    assert len(calls) == 1
    train_tri.ensure_tree(dataclass_from_args(train_tri.TreeConfig, args, force=True))
    assert len(calls) == 2
