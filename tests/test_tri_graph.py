"""Context FST C, the context-dependent H and the triphone HCLG on the toy lexicon."""

from __future__ import annotations

from pathlib import Path

import kaldifst
import numpy as np
import pytest

from steps_py.decode.context_fst import context_fst
from steps_py.decode.graph import make_cd_hclg
from steps_py.decode.h_transducer import h_transducer
from steps_py.gmm.topo import Lang
from steps_py.gmm.tree_stats import split_to_phones
from steps_py.kaldi.event_map import ConstantEventMap, TableEventMap
from steps_py.kaldi.topology import HmmTopology
from steps_py.kaldi.transition_model import TransitionModel
from steps_py.kaldi.tree import ContextDependency
from tests.toy_gmm import LEXICON, make_toy_lang


def _arcs(fst: kaldifst.StdVectorFst) -> set[tuple[int, int, int, int]]:
    out = set()
    for s in range(fst.num_states):
        for arc in kaldifst.ArcIterator(fst, s):
            out.add((s, arc.nextstate, arc.ilabel, arc.olabel))
    return out


def test_context_fst_of_three_phones_matches_hand_drawn_and_kaldi() -> None:
    C, info = context_fst([1, 2, 3], [4], subsequential=5)
    # hand-drawn: 1 start state (0,0), 3 states (0,c), 9 states (b,c), 3 + 1 states (b,$)
    assert C.num_states == 1 + 3 + 9 + 4
    lab = {tuple(w): i for i, w in enumerate(info)}
    assert info[:3] == [[], [0], [-4]]
    assert len(info) == 3 + 4 * 3 * 4  # every a-b+c: a in {0,1,2,3}, b in {1,2,3}, c in {1,2,3,0}
    arcs = _arcs(C)
    # start state: #-1 for the first phone (no centre yet), $ right away, #0-loop
    assert {a for a in arcs if a[0] == 0} == {
        (0, 1, 1, 1),
        (0, 2, 1, 2),
        (0, 3, 1, 3),
        (0, 0, lab[(-4,)], 4),
        (0, 4, 1, 5),
    }
    # state (0,1) = 1: reading 2 emits 0-1+2; $ emits 0-1+0 and ends
    state_of = {}
    for src, dst, _, o in arcs:
        if src == 0 and o in (1, 2, 3):
            state_of[(0, o)] = dst
    s01 = state_of[(0, 1)]
    out = {(o, i) for src, _, i, o in arcs if src == s01}
    assert out == {
        (1, lab[(0, 1, 1)]),
        (2, lab[(0, 1, 2)]),
        (3, lab[(0, 1, 3)]),
        (5, lab[(0, 1, 0)]),
        (4, lab[(-4,)]),
    }
    # Kaldi's ComposeContext on a loop over all phones rebuilds the same C (output $ -> 0;
    # the loop's end state, after $, has no #0 loop, so neither have the states after $)
    loop = kaldifst.compile(s="0 0 1 1\n0 0 2 2\n0 0 3 3\n0 0 4 4\n0\n", acceptor=False)
    kC, kinfo = kaldifst.compose_context(
        disambig_syms=[4], context_width=3, central_position=1, ifst=loop, project_ifst=True
    )
    assert kinfo == info
    after_end = {d for _, d, _, o in arcs if o == 5}
    ours = {(s, d, i, 0 if o == 5 else o) for s, d, i, o in arcs if s not in after_end}
    assert ours == _arcs(kC)


def full_context_tree(topo: HmmTopology, sil: list[int], max_phone: int) -> ContextDependency:
    """One pdf per (left, phone, right, pdf class) of every non-silence phone."""
    leaf = 0

    def pdf_table(phone: int) -> TableEventMap:
        nonlocal leaf
        n = topo.num_pdf_classes(phone)
        leaf += n
        return TableEventMap(-1, [ConstantEventMap(leaf - n + c) for c in range(n)])

    table: list = [None] * (max_phone + 1)
    for p in topo.phones:
        if p in sil:
            table[p] = pdf_table(p)
        else:
            table[p] = TableEventMap(
                0,
                [
                    TableEventMap(2, [pdf_table(p) for _ in range(max_phone + 1)])
                    for _ in range(max_phone + 1)
                ],
            )
    return ContextDependency(3, 1, TableEventMap(1, table))


@pytest.fixture(scope="module")
def tri_graph(tmp_path_factory: pytest.TempPathFactory):
    lang = Lang.load(make_toy_lang(tmp_path_factory.mktemp("trig") / "lang"))
    topo = HmmTopology.from_text(lang.topo_text)
    tree = full_context_tree(topo, lang.silence_phones, max(topo.phones))
    tm = TransitionModel.from_tree(tree, topo)
    HCLG, HCLG_pdf = make_cd_hclg(lang, tm, tree)
    return lang, tree, tm, HCLG, HCLG_pdf


def _best_input(HCLG: kaldifst.StdVectorFst, word_ids: list[int]) -> list[int] | None:
    acc = kaldifst.make_linear_acceptor(word_ids)
    kaldifst.arcsort(HCLG, sort_type="olabel")
    composed = kaldifst.compose(HCLG, acc, connect=True)
    if composed.num_states == 0:
        return None
    ok, isyms, osyms, _ = kaldifst.get_linear_symbol_sequence(kaldifst.shortest_path(composed))
    assert ok and [o for o in osyms if o] == word_ids
    return [i for i in isyms if i]


@pytest.mark.parametrize("words", [["A"], ["C"], ["A", "B"], ["C", "A", "C"], ["B", "B"]])
def test_triphone_graph_accepts_the_lexicon_in_context(tri_graph, words: list[str]) -> None:
    lang, tree, tm, HCLG, _ = tri_graph
    tids = _best_input(HCLG, [lang.words[w] for w in words])
    assert tids is not None
    segs = split_to_phones(tm, np.array(tids))
    phones = [p for p, _, _ in segs]
    sil = set(lang.silence_phones)
    want = [lang.phones[p] for w in words for p in LEXICON[w]]
    assert [p for p in phones if p not in sil] == want
    for k, (p, a, b) in enumerate(segs):
        left = phones[k - 1] if k > 0 else 0
        right = phones[k + 1] if k + 1 < len(phones) else 0
        for t in tids[a:b]:
            pc = topo_pdf_class(tm, t)
            assert tm.tid2pdf[t] == tree.compute([left, p, right], pc), (words, k, t)


def topo_pdf_class(tm: TransitionModel, tid: int) -> int:
    return tm.topo.entry_for_phone(int(tm.tid2phone[tid]))[
        int(tm.tid2hmm_state[tid])
    ].forward_pdf_class


def test_triphone_graph_rejects_wrong_context_and_wrong_words(tri_graph) -> None:
    lang, tree, tm, HCLG, HCLG_pdf = tri_graph
    tids = _best_input(HCLG, [lang.words["A"]])
    assert tids is not None
    # the same frames with a's pdfs of another right context are not a path of HCLG
    wrong = []
    for t in tids:
        if tm.tid2phone[t] == lang.phones["a"]:
            t = _tid_in_context(tm, tree, t, right=lang.phones["b"])
        wrong.append(t)
    assert wrong != tids
    for seq, expect in ((tids, True), (wrong, False)):
        acc = kaldifst.make_linear_acceptor(seq)
        kaldifst.arcsort(HCLG, sort_type="ilabel")
        got = kaldifst.compose(acc, HCLG, connect=True)
        assert (got.num_states > 0) == expect
    # no path outputs a word sequence the grammar does not allow (G has no <UNK>)
    assert _best_input(HCLG, [lang.words["<UNK>"]]) is None
    assert HCLG_pdf.num_states == HCLG.num_states


def _tid_in_context(tm: TransitionModel, tree: ContextDependency, tid: int, right: int) -> int:
    """The same HMM transition of the phone of `tid` with left context 0 and right `right`."""
    phone, state = int(tm.tid2phone[tid]), int(tm.tid2hmm_state[tid])
    pc = topo_pdf_class(tm, tid)
    pdf = tree.compute([0, phone, right], pc)
    s = tm.tuples.index((phone, state, pdf, pdf)) + 1
    k = tid - int(tm.state2id[int(tm.tid2state[tid])])
    return int(tm.state2id[s]) + k


def test_h_transducer_outputs_one_label_per_phone_window(tri_graph) -> None:
    lang, tree, tm, _, _ = tri_graph
    a = lang.phones["a"]
    H, disambig = h_transducer([[], [0], [-6], [0, a, 0]], tree, tm)
    assert disambig == [tm.num_transition_ids + 1, tm.num_transition_ids + 2]
    outs = [arc.olabel for s in range(H.num_states) for arc in kaldifst.ArcIterator(H, s)]
    assert sorted(o for o in outs if o) == [1, 2] + [3] * 2  # the two ways into a's first state


def test_graph_written_is_read_by_openfst(tri_graph, tmp_path: Path) -> None:
    _, _, _, HCLG, _ = tri_graph
    HCLG.write(str(tmp_path / "HCLG.fst"))
    again = kaldifst.StdVectorFst.read(str(tmp_path / "HCLG.fst"))
    assert again.num_states == HCLG.num_states


def test_context_labels_with_the_same_hmm_are_merged(tri_graph) -> None:
    from steps_py.decode.h_transducer import group_ilabels

    lang, tree, tm, _, _ = tri_graph
    sil, a, b, c = (lang.phones[p] for p in ("SIL", "a", "b", "c"))
    info = [[], [0], [a, sil, b], [-7], [b, sil, c], [0, a, b], [0, a, c], [c, sil, 0]]
    new, merged = group_ilabels(info, tree, tm)
    # silence has no context in this tree: its three windows are one HMM; a's two are two
    assert new[0] == 0 and new[2] == new[4] == new[7]
    assert len({new[2], new[5], new[6]}) == 3
    assert merged[new[1]] == [0] and merged[new[3]] == [-7]
    assert len(merged) == 1 + 3 + 2
    for j in (2, 5, 6):
        window = merged[new[j]]
        assert window[1] == info[j][1]
        assert all(tree.compute(window, k) == tree.compute(info[j], k) for k in range(3))
