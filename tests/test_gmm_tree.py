"""Triphone tree: statistics, questions, greedy splitting, clustering, Kaldi tree file."""

from __future__ import annotations

import math
from pathlib import Path

import kaldi_hmm_gmm as khg
import numpy as np
import pytest

from steps_py.gmm.build_tree import best_split_for_key, map_rows, stub_map
from steps_py.gmm.questions import Roots, cluster_phones, compile_questions
from steps_py.gmm.tree_cluster import build_tree, cluster_bottom_up, objf_given_map
from steps_py.gmm.tree_stats import ABSENT, TreeStats, gauss_objf, split_to_phones
from steps_py.kaldi.event_map import ConstantEventMap, SplitEventMap, TableEventMap
from steps_py.kaldi.tree import ContextDependency, read_tree, write_tree
from tests.toy_tri import toy_mono_alignments


def test_gauss_objf_is_kaldis_gauss_clusterable() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)) * np.array([1.0, 0.05, 2.0, 0.001])
    g = khg.GaussClusterable(4, 0.01)
    for row in x:
        g.add_stats(row, 1.0)
    ours = gauss_objf(np.array(50.0), x.sum(0), (x * x).sum(0))
    assert ours == pytest.approx(g.objf(), rel=1e-6)
    assert gauss_objf(np.array(0.0), np.zeros(4), np.zeros(4)) == 0.0


def _stats(events: list[tuple[int, ...]], frames: list[np.ndarray]) -> TreeStats:
    return TreeStats(
        3,
        1,
        np.array(events, dtype=np.int32),
        np.array([len(f) for f in frames], dtype=np.float64),
        np.array([f.sum(0) for f in frames]),
        np.array([(f * f).sum(0) for f in frames]),
    )


def _loglike(frames: np.ndarray) -> float:
    """Hand formula: n frames of 1-d data under their ML Gaussian: -n/2 (log 2 pi var + 1)."""
    n, var = len(frames), float(np.var(frames))
    return -0.5 * n * (math.log(2 * math.pi * var) + 1.0)


def test_best_split_equals_hand_computation() -> None:
    # pdf class 0 of phone 5 in four left contexts (phones 1..4), 1-d features
    data = {
        1: np.array([[0.0], [1.0], [0.5]]),
        2: np.array([[0.2], [0.8]]),
        3: np.array([[5.0], [6.0], [5.5], [5.2]]),
        4: np.array([[9.0], [10.0]]),
    }
    stats = _stats([(0, left, 5, 0) for left in data], list(data.values()))
    questions = [[1], [1, 2], [1, 2, 3], [3, 4], [2, 4]]
    gain, yes = best_split_for_key(stats, np.arange(4), 0, questions)
    every = np.concatenate(list(data.values()))
    hand = {}
    for q in questions:
        y = np.concatenate([data[v] for v in q])
        n = np.concatenate([data[v] for v in data if v not in q])
        hand[tuple(q)] = _loglike(y) + _loglike(n) - _loglike(every)
    best = max(hand, key=lambda q: hand[q])
    assert yes == list(best) == [1, 2]
    assert gain == pytest.approx(hand[best], rel=1e-9)
    # the central phone has one value: no question about it can gain anything
    assert best_split_for_key(stats, np.arange(4), 1, [[5]]) == (0.0, [])


def _random_stats(seed: int = 0, n_phones: int = 6, dim: int = 3) -> TreeStats:
    """Stats of triphones whose means depend on the left and right phones."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(size=(n_phones + 1, dim))
    events, frames = [], []
    for left in range(n_phones + 1):
        for c in range(1, n_phones + 1):
            for right in range(n_phones + 1):
                for pc in range(3):
                    n = int(rng.integers(5, 30))
                    mean = effect[c] * 3 + effect[left] + 0.5 * effect[right] + pc
                    events.append((pc, left, c, right))
                    frames.append(mean + rng.normal(size=(n, dim)))
    return _stats(events, frames)


def _roots(n_phones: int = 6) -> Roots:
    sets = [[p] for p in range(1, n_phones + 1)]
    return Roots(sets, [True] * n_phones, [True] * n_phones)


def test_likelihood_never_decreases_with_more_leaves() -> None:
    stats = _random_stats()
    qs = compile_questions(cluster_phones(stats, [[p] for p in range(1, 7)]), 3)
    objfs, leaves = [], []
    for max_leaves in (6, 10, 20, 40, 80):
        tree, rep = build_tree(stats, _roots(), qs, [3] * 7, max_leaves, thresh=0, cluster_thresh=0)
        objfs.append(objf_given_map(tree, stats))
        leaves.append(rep.num_leaves)
    assert leaves == [6, 10, 20, 40, 80]
    assert all(b >= a for a, b in zip(objfs, objfs[1:], strict=False)), objfs
    # clustering ties leaves and loses at most the threshold per merge
    tree, rep = build_tree(stats, _roots(), qs, [3] * 7, 80, thresh=0)
    assert rep.num_leaves < 80
    assert objf_given_map(tree, stats) >= objfs[-1] - rep.cluster_thresh * (80 - rep.num_leaves)


def test_stub_map_is_kaldis_for_shared_and_unshared_roots() -> None:
    roots = Roots([[1], [2], [3]], [True, False, True], [False, True, True])
    em, n = stub_map(1, roots, [-1, 5, 3, 3])
    assert n == 1 + 3 + 1
    assert em == TableEventMap(
        1,
        [
            None,
            ConstantEventMap(0),
            TableEventMap(-1, [ConstantEventMap(1), ConstantEventMap(2), ConstantEventMap(3)]),
            ConstantEventMap(4),
        ],
    )
    roots = Roots([[1, 4], [2], [3]], [True] * 3, [True] * 3)
    em, n = stub_map(1, roots, [-1, 3, 3, 3, 3])
    assert n == 3
    assert em == SplitEventMap(
        1,
        [1, 4],
        ConstantEventMap(0),
        TableEventMap(1, [None, None, ConstantEventMap(1), ConstantEventMap(2)]),
    )


def test_cluster_bottom_up_merges_the_cheapest_pair_first() -> None:
    x = np.array([[0.0], [0.1], [10.0]])
    count = np.array([10.0, 10.0, 10.0])
    x2 = x * x * 10 + 10  # variance 1 each
    x = x * 10
    assign, change = cluster_bottom_up(count, x, x2, thresh=1.0)
    assert assign.tolist() == [0, 0, 1]
    assert -1.0 <= change <= 0
    assign, _ = cluster_bottom_up(count, x, x2, thresh=0.0)
    assert assign.tolist() == [0, 1, 2]


def test_built_tree_writes_and_reads_back_identical(tmp_path: Path) -> None:
    stats = _random_stats(1)
    qs = compile_questions(cluster_phones(stats, [[p] for p in range(1, 7)]), 3)
    em, rep = build_tree(stats, _roots(), qs, [3] * 7, 30, thresh=0)
    tree = ContextDependency(3, 1, em)
    for binary in (False, True):
        write_tree(tmp_path / "tree", tree, binary=binary)
        back = read_tree(tmp_path / "tree")
        assert back == tree
        assert back.to_bytes(binary) == (tmp_path / "tree").read_bytes()
    assert tree.num_pdfs == rep.num_leaves
    # Kaldi's own ContextDependency::Read (inside kaldi-hmm-gmm's draw_tree) reads it: one
    # drawn leaf per CE node written
    (tmp_path / "phones.txt").write_text("".join(f"p{i} {i}\n" for i in range(7)))
    drawn = khg.draw_tree(str(tmp_path / "phones.txt"), str(tmp_path / "tree"))
    assert drawn.count("doublecircle") == tree.to_bytes(False).split().count(b"CE")
    # every event maps to a pdf through the written tree, as map_rows says
    leaf = map_rows(em, stats)
    for row in (0, 17, len(stats) - 1):
        pc, *window = stats.events[row].tolist()
        assert tree.compute(window, pc) == leaf[row]


def test_questions_cover_every_set_and_their_clusters() -> None:
    stats = _random_stats(2)
    sets = [[1], [2, 3], [4], [5], [6]]
    qs = cluster_phones(stats, sets)
    assert all(s in qs for s in sets)
    assert [1, 2, 3, 4, 5, 6] in qs
    compiled = compile_questions(qs + [[1, 6]], 3)
    assert compiled[-1] == [[0], [0, 1]]
    assert compiled[0] == compiled[2] and [1, 6] in compiled[0]


def test_ci_phone_events_have_no_context_keys() -> None:
    stats = _stats([(0, ABSENT, 1, ABSENT), (0, 2, 3, 0)], [np.ones((2, 1)), np.zeros((3, 1))])
    assert best_split_for_key(stats, np.arange(2), 0, [[2]]) == (0.0, [])


def test_split_to_phones_finds_repeated_phones() -> None:
    from steps_py.kaldi.model_file import read_kaldi_model
    from tests.kaldi_digits import KALDI_EXP

    tm = read_kaldi_model(KALDI_EXP / "final.mdl").transition_model

    # phone 2 twice in a row, then phone 3: states 0 0 1 2 | 0 1 2 2 | 0 1 2
    def tid(phone: int, state: int, loop: bool) -> int:
        for t in range(1, tm.num_transition_ids + 1):
            if (tm.tid2phone[t], tm.tid2hmm_state[t], bool(tm.tid_is_self_loop[t])) == (
                phone,
                state,
                loop,
            ):
                return t
        raise AssertionError

    seq = [(2, 0, 1), (2, 0, 0), (2, 1, 0), (2, 2, 0), (2, 0, 0), (2, 1, 0), (2, 2, 1), (2, 2, 0)]
    seq += [(3, 0, 0), (3, 1, 0), (3, 2, 0)]
    ali = np.array([tid(p, s, bool(lp)) for p, s, lp in seq])
    assert split_to_phones(tm, ali) == [(2, 0, 4), (2, 4, 8), (3, 8, 11)]


@pytest.fixture(scope="module")
def toy_mono(tmp_path_factory: pytest.TempPathFactory):
    return toy_mono_alignments(tmp_path_factory.mktemp("tri"))


def test_tree_from_monophone_alignments(toy_mono) -> None:
    from steps_py.gmm.make_tree import accumulate_tree_stats, alignment_transition_model, make_tree

    lang, utts, alis, model = toy_mono
    tm = alignment_transition_model(model)
    stats, missing = accumulate_tree_stats(tm, utts, alis, lang.silence_phones)
    assert missing == len(utts) - len(alis)
    assert stats.count.sum() == sum(len(u.feats) for u in utts if u.utt in alis)
    central = stats.column(1)
    sil = lang.phones["SIL"]
    assert (stats.column(0)[central == sil] == ABSENT).all()
    a, c = lang.phones["a"], lang.phones["c"]
    # "C" is c a: the a after c has left context c; utterance edges are phone 0
    assert ((stats.column(0) == c) & (central == a)).any()
    tree, questions, info = make_tree(lang, stats, 40, thresh=0.0, cluster_thresh=0.0, seed=0)
    assert [sil] in questions and tree.num_pdfs == info["num_leaves"] > 15
    # stats rows go to their pdfs; a's context questions separate some triphones of a
    pdfs = {tree.compute(list(ev[1:]), ev[0]) for ev in stats.events.tolist() if ev[2] == a}
    assert len(pdfs) > 3


def test_tree_without_sets_and_roots_files(toy_mono, tmp_path: Path) -> None:
    """A lang imported from Kaldi may lack phones/sets.int and roots.int: one root per phone."""
    import shutil

    from steps_py.gmm.make_tree import accumulate_tree_stats, alignment_transition_model, make_tree
    from steps_py.gmm.topo import Lang

    lang, utts, alis, model = toy_mono
    shutil.copytree(lang.dir, tmp_path / "lang")
    for name in ("sets.int", "roots.int"):
        (tmp_path / "lang" / "phones" / name).unlink()
    lang2 = Lang.load(tmp_path / "lang")
    stats, _ = accumulate_tree_stats(
        alignment_transition_model(model), utts, alis, lang2.silence_phones
    )
    tree, questions, info = make_tree(lang2, stats, 20, thresh=0.0, cluster_thresh=0.0, seed=0)
    assert info["stub_leaves"] == len(lang2.topology().phones)
    assert tree.num_pdfs == 20


def test_alignments_of_another_model_are_refused(toy_mono, tmp_path: Path) -> None:
    from steps_py.gmm.errors import GmmError
    from steps_py.gmm.make_tree import alignment_transition_model, read_checked_alignments
    from steps_py.kaldi.int_vector_ark import write_int32_vectors

    _, _, alis, model = toy_mono
    tm = alignment_transition_model(model)
    write_int32_vectors(tmp_path / "ok", "ali", alis)
    write_int32_vectors(tmp_path / "ok", "pdf", {u: tm.tid2pdf[a] for u, a in alis.items()})
    assert set(read_checked_alignments(tmp_path / "ok", tm, model)) == set(alis)
    write_int32_vectors(tmp_path / "bad", "ali", alis)
    write_int32_vectors(tmp_path / "bad", "pdf", {u: tm.tid2pdf[a][::-1] for u, a in alis.items()})
    with pytest.raises(GmmError, match="was not made with"):
        read_checked_alignments(tmp_path / "bad", tm, model)
    with pytest.raises(GmmError, match="ali.scp not found"):
        read_checked_alignments(tmp_path / "none", tm, model)
