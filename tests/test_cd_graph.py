"""The array steps of the triphone graph build (steps_py.decode.cd_graph, fst_arrays) give
exactly what the kaldifst calls they replace give: the same states, arcs, weights and
property bits, and on the toy lexicon the same HCLG.fst and HCLG_pdf.fst bytes."""

from __future__ import annotations

from pathlib import Path

import kaldifst
import numpy as np
import pytest

from steps_py.decode import cd_graph
from steps_py.decode.fst_arrays import ALL_PROPERTIES, FstArrays, from_arrays, to_arrays
from steps_py.decode.graph import make_cd_hclg, parsed_costs, relabel_input
from steps_py.decode.h_transducer import (
    WindowHmms,
    _phone_tids,
    group_ilabels,
    h_transducer,
    weight_fst,
)
from steps_py.gmm.topo import Lang
from steps_py.kaldi.topology import HmmTopology
from steps_py.kaldi.transition_model import TransitionModel
from tests.test_tri_graph import full_context_tree
from tests.toy_gmm import make_toy_lang


def random_fst(
    rng: np.random.Generator, ilabels: list[int], n: int = 30, m: int = 120
) -> kaldifst.StdVectorFst:
    """A random transducer: input labels from `ilabels`, some final states (with weights),
    some dead ends, weights that include -0 and repeats."""
    lines = []
    for _ in range(m):
        s, d = rng.integers(0, n, 2)
        w = rng.choice([0.0, -0.0, 1.5, float(rng.normal())])
        lines.append(f"{s} {d} {rng.choice(ilabels)} {rng.integers(0, 6)} {w:.6g}")
    lines.sort(key=lambda line: line.split()[0] != "0")  # state 0 first: the start state
    lines += [f"{s} {rng.choice([0.0, 2.25])}" for s in rng.choice(n, 4, replace=False)]
    return kaldifst.compile(s="\n".join(lines) + "\n", acceptor=False)


def same_fst(a: FstArrays, b: kaldifst.StdVectorFst) -> None:
    ref = to_arrays(b)
    assert a.start == ref.start
    assert np.array_equal(a.starts, ref.starts)
    assert np.array_equal(a.arcs, ref.arcs)
    assert np.array_equal(a.finals.view(np.int32), ref.finals.view(np.int32))
    assert a.props == b.properties(ALL_PROPERTIES, False)


@pytest.mark.parametrize("seed", range(6))
def test_fst_arrays_round_trip(seed: int, tmp_path: Path) -> None:
    fst = random_fst(np.random.default_rng(seed), [0, 1, 2, 3])
    a = to_arrays(fst)
    again = from_arrays(a)
    fst.write(str(tmp_path / "a.fst"))
    again.write(str(tmp_path / "b.fst"))
    assert (tmp_path / "a.fst").read_bytes() == (tmp_path / "b.fst").read_bytes()


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("disambig", [[7, 8], []])
def test_compose_context_is_kaldis(seed: int, disambig: list[int]) -> None:
    rng = np.random.default_rng(seed)
    lg = random_fst(rng, [0, 1, 2, 3, 4, 5, *disambig], n=25, m=90)
    ours, windows = cd_graph.compose_context(to_arrays(lg), disambig)
    clg, info = kaldifst.compose_context(
        disambig_syms=disambig, context_width=3, central_position=1, ifst=kaldifst.StdVectorFst(lg)
    )
    ref = to_arrays(clg)
    assert np.array_equal(ours.starts, ref.starts)
    assert np.array_equal(ours.arcs, ref.arcs)
    assert np.array_equal(ours.finals.view(np.int32), ref.finals.view(np.int32))
    assert [list(w[1 : 1 + w[0]]) for w in windows.tolist()] == info


@pytest.mark.parametrize("seed", range(8))
def test_relabel_is_composition_with_a_relabelling_transducer(seed: int) -> None:
    rng = np.random.default_rng(seed)
    fst = random_fst(rng, list(range(0, 9)))
    # some labels to others, some to epsilon; labels above the largest one are dropped
    mapping = {int(k): int(rng.integers(0, 4)) for k in rng.choice(np.arange(1, 7), 4, False)}
    ours = cd_graph.relabel(kaldifst.StdVectorFst(fst), mapping)
    same_fst(ours, relabel_input(kaldifst.StdVectorFst(fst), mapping))


@pytest.mark.parametrize("seed", range(6))
def test_relabel_with_costs_is_composition_with_the_weight_fst(seed: int) -> None:
    rng = np.random.default_rng(seed)
    fst = random_fst(rng, list(range(0, 7)))
    costs = np.concatenate([[0.0], rng.normal(size=5) * 3])  # labels 6 have no weight: dropped
    ours = cd_graph.relabel(kaldifst.StdVectorFst(fst), {}, parsed_costs(costs))
    ref = kaldifst.StdVectorFst(fst)
    kaldifst.arcsort(ref, sort_type="ilabel")
    same_fst(ours, kaldifst.compose(weight_fst(costs), ref, connect=True))


def test_triphone_graph_is_the_same_by_both_paths(tmp_path: Path) -> None:
    lang = Lang.load(make_toy_lang(tmp_path / "lang"))
    topo = HmmTopology.from_text(lang.topo_text)
    tree = full_context_tree(topo, lang.silence_phones, max(topo.phones))
    tm = TransitionModel.from_tree(tree, topo)
    for name, arrays in (("arrays", True), ("kaldifst", False)):
        HCLG, HCLG_pdf = make_cd_hclg(lang, tm, tree, arrays=arrays)
        HCLG.write(str(tmp_path / f"{name}.fst"))
        HCLG_pdf.write(str(tmp_path / f"{name}_pdf.fst"))
    assert (tmp_path / "arrays.fst").read_bytes() == (tmp_path / "kaldifst.fst").read_bytes()
    pdf = (tmp_path / "arrays_pdf.fst").read_bytes()
    assert pdf == (tmp_path / "kaldifst_pdf.fst").read_bytes()


def reference_h(ilabel_info, tree, tm, compact=False):  # noqa: ANN001, ANN201
    """h_transducer as it was written first: arc by arc, sorted, compiled from text."""
    state_of = {tuple(t): s for s, t in enumerate(tm.tuples, 1)}
    arcs, disambig, num_states = [], [], 1
    for label, window in enumerate(ilabel_info):
        if not window:
            continue
        if len(window) == 1 and window[0] <= 0:
            tid = tm.num_transition_ids + 1 + len(disambig)
            disambig.append(tid)
            arcs.append((0, 0, tid, label))
            continue
        hmm = _phone_tids(window, tree, tm, state_of)
        final, base = len(hmm), num_states
        num_states += final
        for j, out in enumerate(hmm):
            for dst, tid in out:
                to = 0 if dst == final else base + dst
                arcs.append((base + j, to, tid, 0))
                if j == 0:
                    arcs.append((0, to, tid, label))
    if compact:
        used = sorted({a[2] for a in arcs})
        index = {t: k for k, t in enumerate(used, 1)}
        arcs = [(a, b, index[t], o) for a, b, t, o in arcs]
        disambig = used
    arcs.sort(key=lambda arc: arc[0] != 0)
    lines = [f"{a} {b} {t} {o}" for a, b, t, o in arcs] + ["0"]
    return kaldifst.compile(s="\n".join(lines) + "\n", acceptor=False), disambig


def test_h_transducer_is_the_arc_by_arc_one(tmp_path: Path) -> None:
    lang = Lang.load(make_toy_lang(tmp_path / "lang"))
    topo = HmmTopology.from_text(lang.topo_text)
    tree = full_context_tree(topo, lang.silence_phones, max(topo.phones))
    tm = TransitionModel.from_tree(tree, topo)
    a, b, c, sil = (lang.phones[p] for p in ("a", "b", "c", "SIL"))
    info = [[], [0], [0, a, b], [-7], [a, b, 0], [sil, a, b], [b, sil, 0], [c, a, c], [-8]]
    hmms = WindowHmms(tree, tm)
    h_transducer(info[2:5:2], tree, tm, hmms=hmms)  # part of the windows computed before
    for compact in (False, True):
        windows = [w for w in info if len(w) != 1] if compact else info
        ref, ref_ids = reference_h(windows, tree, tm, compact)
        for shared in (hmms, None):
            ours, ids = h_transducer(windows, tree, tm, compact=compact, hmms=shared)
            assert ours.to_str() == ref.to_str() and ids == ref_ids
    assert h_transducer([[]], tree, tm)[0].to_str() == reference_h([[]], tree, tm)[0].to_str()
    new, merged = group_ilabels(info, tree, tm)
    assert new[0] == 0 and merged[new[1]] == [0] and merged[new[3]] == [-7]
