"""Kaldi's file formats, read and written, against the files Kaldi wrote (mandarin_digits) and
against Kaldi's own writers where the project has them (kaldi-hmm-gmm's tree writer,
kaldi-native-io's table writers)."""

from __future__ import annotations

import gzip
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldi_native_io as kio
import numpy as np
import pytest

from steps_py.gmm.model_io import to_mono_model
from steps_py.kaldi.diag_gmm import DiagGmm, compute_gconsts
from steps_py.kaldi.event_map import ConstantEventMap as CE
from steps_py.kaldi.event_map import SplitEventMap as SE
from steps_py.kaldi.event_map import TableEventMap as TE
from steps_py.kaldi.int_vector_ark import (
    int32_vector_archive_bytes,
    read_int32_vector_archive,
    read_int32_vector_archives,
    read_int32_vectors,
    write_int32_vector_archive,
    write_int32_vectors,
)
from steps_py.kaldi.model_file import (
    KaldiGmmModel,
    from_mono_model,
    read_kaldi_model,
)
from steps_py.kaldi.stream import KaldiFormatError, KaldiInput, KaldiOutput
from steps_py.kaldi.topology import HmmTopology
from steps_py.kaldi.transition_model import TransitionModel
from steps_py.kaldi.tree import ContextDependency, read_tree, write_tree
from tests.kaldi_digits import KALDI_EXP, KALDI_LANG, needs_digits

pytestmark = needs_digits

MDL = KALDI_EXP / "final.mdl"


@pytest.fixture(scope="module")
def kaldi_model() -> KaldiGmmModel:
    return read_kaldi_model(MDL)


# ---------------------------------------------------------------- final.mdl
def test_final_mdl_reads_as_kaldi_wrote_it(kaldi_model: KaldiGmmModel) -> None:
    tm, am = kaldi_model.transition_model, kaldi_model.am
    assert (tm.num_transition_states, tm.num_transition_ids, tm.num_pdfs) == (33, 69, 33)
    assert (am.num_pdfs, am.dim, am.num_gauss) == (33, 39, 200)
    assert tm.topo.phones == list(range(1, 12))
    assert tm.log_probs[0] == 0 and np.all(tm.log_probs[1:] < 0)
    # the silence phone (1) has 3 transitions per state, the others 2: 3*3 + 30*2 ids
    assert [len(s.transitions) for s in tm.topo.entry_for_phone(1)] == [3, 3, 3, 0]


def test_final_mdl_text_round_trip_is_byte_identical(kaldi_model: KaldiGmmModel) -> None:
    assert kaldi_model.to_bytes(binary=False) == MDL.read_bytes()


def test_final_mdl_binary_round_trips_bit_for_bit(
    kaldi_model: KaldiGmmModel, tmp_path: Path
) -> None:
    binary = kaldi_model.to_bytes(binary=True)
    assert binary.startswith(b"\0B<TransitionModel> ")
    again = KaldiGmmModel.from_bytes(binary)
    assert again.to_bytes(binary=True) == binary
    assert again.to_bytes(binary=False) == MDL.read_bytes()
    # the file form, through gzip too (Kaldi reads models through "gunzip -c |" pipes)
    p = tmp_path / "final.mdl.gz"
    p.write_bytes(gzip.compress(binary))
    assert read_kaldi_model(p).to_bytes(binary=False) == MDL.read_bytes()


def test_gconsts_recomputed_as_kaldi(kaldi_model: KaldiGmmModel) -> None:
    for g in kaldi_model.am.pdfs:
        got = compute_gconsts(g.weights, g.means_invvars, g.inv_vars)
        np.testing.assert_allclose(got, g.gconsts, rtol=2e-6, atol=1e-4)


def test_diag_gmm_from_moments_inverts_means_and_variances(kaldi_model: KaldiGmmModel) -> None:
    g = kaldi_model.am.pdfs[5]
    back = DiagGmm.from_moments(g.weights, g.means, g.variances)
    np.testing.assert_allclose(back.inv_vars, g.inv_vars, rtol=1e-6)
    np.testing.assert_allclose(back.means_invvars, g.means_invvars, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(back.gconsts, g.gconsts, rtol=1e-5)


def test_truncated_model_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "final.mdl"
    p.write_bytes(MDL.read_bytes()[:3000])
    with pytest.raises(KaldiFormatError, match=r"final.mdl: byte \d+"):
        read_kaldi_model(p)


# ---------------------------------------------------------------- the project's model <-> Kaldi's
def test_kaldi_model_becomes_kaldi_hmm_gmm_objects_with_kaldis_ids(
    kaldi_model: KaldiGmmModel,
) -> None:
    from steps_py.gmm.model_io import read_model

    mono = read_model(KALDI_EXP)  # the dir: final.mdl + tree
    assert mono.shared_phones is None and mono.gmm.num_pdfs == 33
    _, tree, ktm, am = mono.build()
    tm = kaldi_model.transition_model
    assert ktm.num_transition_ids == tm.num_transition_ids
    assert [str(t) for t in ktm.tuples] == [
        f"TransitionModelTuple(phone={t.phone},hmm_state={t.hmm_state},forward_pdf={t.forward_pdf},self_loop_pdf={t.self_loop_pdf})"
        for t in tm.tuples
    ]
    k2pdf = np.asarray(ktm.transition_id_to_pdf_array())
    np.testing.assert_array_equal(k2pdf[-tm.num_transition_ids :], tm.tid2pdf[1:])
    assert [ktm.is_self_loop(t) for t in range(1, 70)] == tm.tid_is_self_loop[1:].tolist()
    assert [ktm.is_final(t) for t in range(1, 70)] == tm.tid_is_final[1:].tolist()
    np.testing.assert_allclose(np.asarray(ktm.log_probs)[1:], tm.log_probs[1:], atol=1e-5)
    # the GMMs score like Kaldi's parameters say: log-likelihood at a point, by hand
    x = np.linspace(-1, 1, 39).astype(np.float32)
    g = kaldi_model.am.pdfs[7]
    by_hand = np.logaddexp.reduce(g.gconsts + g.means_invvars @ x - 0.5 * (g.inv_vars @ (x * x)))
    assert am.log_likelihood(7, x) == pytest.approx(float(by_hand), abs=1e-3)


def test_project_model_as_kaldi_model_and_back(kaldi_model: KaldiGmmModel) -> None:
    mono = to_mono_model(kaldi_model)
    back, tree = from_mono_model(mono)
    assert back.transition_model.tuples == kaldi_model.transition_model.tuples
    assert tree == read_tree(KALDI_EXP / "tree")
    np.testing.assert_array_equal(
        back.transition_model.log_probs, kaldi_model.transition_model.log_probs
    )
    for a, b in zip(back.am.pdfs, kaldi_model.am.pdfs, strict=True):
        np.testing.assert_allclose(a.means_invvars, b.means_invvars, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.gconsts, b.gconsts, rtol=1e-5)
    # text written from the converted model parses back to the same numbers
    again = KaldiGmmModel.from_bytes(back.to_bytes(False))
    assert again.to_bytes(False) == back.to_bytes(False)


def test_shared_phone_model_uses_kaldis_shared_tree(kaldi_model: KaldiGmmModel) -> None:
    """gmm-init-mono --shared-phones: phones 3 and 4 share pdfs; the kaldi-hmm-gmm objects follow."""
    tm = kaldi_model.transition_model
    # phone 4 takes phone 3's pdfs, later pdfs renumbered down by 3
    remap = {}
    for t in tm.tuples:
        remap[t.forward_pdf] = t.forward_pdf
    for t in tm.tuples:
        if t.phone == 4:
            remap[t.forward_pdf] = 6 + t.hmm_state
        elif t.phone > 4:
            remap[t.forward_pdf] = t.forward_pdf - 3
    tuples = sorted(
        t._replace(forward_pdf=remap[t.forward_pdf], self_loop_pdf=remap[t.forward_pdf])
        for t in tm.tuples
    )
    shared = TransitionModel(tm.topo, tuples, tm.log_probs)
    am = type(kaldi_model.am)(
        [g for j, g in enumerate(kaldi_model.am.pdfs) if j not in (9, 10, 11)]
    )
    mono = to_mono_model(KaldiGmmModel(shared, am))
    assert mono.shared_phones == [[1], [2], [3, 4], [5], [6], [7], [8], [9], [10], [11]]
    _, _, ktm, _ = mono.build()
    k2pdf = np.asarray(ktm.transition_id_to_pdf_array())
    np.testing.assert_array_equal(k2pdf[-shared.num_transition_ids :], shared.tid2pdf[1:])


# ---------------------------------------------------------------- tree
def test_tree_text_round_trip_and_kaldi_writer(tmp_path: Path) -> None:
    tree = read_tree(KALDI_EXP / "tree")
    assert (tree.context_width, tree.central_position, tree.num_pdfs) == (1, 0, 33)
    assert tree.to_bytes(False) == (KALDI_EXP / "tree").read_bytes()
    topo = read_kaldi_model(MDL).transition_model.topo
    assert ContextDependency.monophone(topo) == tree
    # binary: kaldi-hmm-gmm's (Kaldi's C++) ContextDependency::Write gives the same bytes
    ktopo = khg.HmmTopology()
    ktopo.read(topo.to_text())
    khg.monophone_context_dependency(ktopo.phones, ktopo.get_phone_to_num_pdf_classes()).write(
        True, str(tmp_path / "k.bin")
    )
    assert tree.to_bytes(True) == (tmp_path / "k.bin").read_bytes()
    assert read_tree(tmp_path / "k.bin") == tree
    assert [tree.compute([p], c) for p in (1, 2, 11) for c in range(3)] == [
        0,
        1,
        2,
        3,
        4,
        5,
        30,
        31,
        32,
    ]
    assert tree.compute([12], 0) is None


def test_project_topology_monophone_tree_matches_kaldi_writer(tmp_path: Path) -> None:
    from steps_py.lang.fst_build import make_topo

    text = make_topo(list(range(3, 40)), [1, 2])  # the project's topology: 5-state silence
    topo = HmmTopology.from_text(text)
    assert topo.to_text() == text or HmmTopology.from_text(topo.to_text()) == topo
    ktopo = khg.HmmTopology()
    ktopo.read(text)
    kt = khg.monophone_context_dependency(ktopo.phones, ktopo.get_phone_to_num_pdf_classes())
    for binary in (False, True):
        kt.write(binary, str(tmp_path / "t"))
        assert ContextDependency.monophone(topo).to_bytes(binary) == (tmp_path / "t").read_bytes()


def _triphone_tree() -> ContextDependency:
    def three(a: int) -> TE:
        return TE(-1, [CE(a), CE(a + 1), CE(a + 2)])

    return ContextDependency(
        3,
        1,
        TE(
            1,
            [
                None,
                three(0),  # silence: one set of pdfs
                SE(
                    0, [1], three(3), SE(2, [3], three(6), three(9))
                ),  # phone 2: by left, then right context
                TE(-1, [SE(2, [2, 3], CE(12), CE(13)), CE(14), SE(0, [0, 1], CE(15), CE(16))]),
            ],
        ),
    )


def test_triphone_tree_round_trips_and_kaldi_reads_it(tmp_path: Path) -> None:
    tree = _triphone_tree()
    (tmp_path / "phones.txt").write_text("<eps> 0\nsil 1\na 2\nb 3\n")
    drawn = []
    for binary in (False, True):
        write_tree(tmp_path / "tree", tree, binary=binary)
        assert read_tree(tmp_path / "tree") == tree
        assert read_tree(tmp_path / "tree").to_bytes(binary) == (tmp_path / "tree").read_bytes()
        # Kaldi's ContextDependency::Read (inside kaldi-hmm-gmm's draw_tree) accepts the file
        drawn.append(khg.draw_tree(str(tmp_path / "phones.txt"), str(tmp_path / "tree")))
    assert drawn[0] == drawn[1] and drawn[0].count("doublecircle") == 17
    # pdf mapping: phone context -> pdf id
    assert tree.compute([1, 2, 3], 0) == 3  # left context sil
    assert tree.compute([2, 2, 3], 1) == 7  # right context b
    assert tree.compute([3, 2, 2], 2) == 11
    assert tree.compute([0, 3, 1], 0) == 13  # right context sil
    assert tree.compute([2, 3, 0], 2) == 16
    assert tree.compute([2, 3, 0], 3) is None
    assert tree.num_pdfs == 17


def test_transition_model_from_triphone_tree() -> None:
    topo = HmmTopology.from_text(
        (KALDI_LANG / "topo").read_text().replace("2 3 4 5 6 7 8 9 10 11", "2 3")
    )
    tm = TransitionModel.from_tree(_triphone_tree(), topo)
    # phone 2 state 0 can use pdfs 3, 6, 9 (by context); phone 3 state 0: 12, 13
    assert [t.forward_pdf for t in tm.tuples if t.phone == 2 and t.hmm_state == 0] == [3, 6, 9]
    assert [t.forward_pdf for t in tm.tuples if t.phone == 3 and t.hmm_state == 0] == [12, 13]
    assert tm.num_pdfs == 17
    out = KaldiOutput(binary=True)
    tm.write(out)
    assert TransitionModel.read(KaldiInput(out.getvalue())).tuples == tm.tuples


# ---------------------------------------------------------------- topology
def test_topology_text_and_binary_round_trip() -> None:
    text = (KALDI_LANG / "topo").read_text()
    topo = HmmTopology.from_text(text)
    assert topo.num_pdf_classes(1) == 3 and topo.phone2num_pdf_classes()[5] == 3
    kaldi_text = read_kaldi_model(MDL).transition_model.topo.to_text()
    assert topo.to_text() == kaldi_text  # Kaldi rewrites "0.50" as "0.5"; so do we
    for binary in (False, True):
        out = KaldiOutput(binary)
        topo.write(out)
        back = HmmTopology.read(KaldiInput(out.getvalue()))
        assert back == topo


def test_non_hmm_topology_uses_forward_and_self_loop_pdf_classes() -> None:
    text = """<Topology>
<TopologyEntry>
<ForPhones>
1 2
</ForPhones>
<State> 0 <ForwardPdfClass> 0 <SelfLoopPdfClass> 1 <Transition> 0 0.5 <Transition> 1 0.5 </State>
<State> 1 </State>
</TopologyEntry>
</Topology>
"""
    topo = HmmTopology.from_text(text)
    assert not topo.is_hmm() and topo.num_pdf_classes(1) == 2
    assert "<ForwardPdfClass> 0 <SelfLoopPdfClass> 1" in topo.to_text()
    out = KaldiOutput(True)
    topo.write(out)
    assert HmmTopology.read(KaldiInput(out.getvalue())) == topo
    tuples = [(1, 0, 0, 1), (2, 0, 2, 3)]
    from steps_py.kaldi.transition_model import TransitionTuple

    tm = TransitionModel(
        topo,
        [TransitionTuple(*t) for t in tuples],
        np.log(np.array([1, 0.5, 0.5, 0.5, 0.5], np.float32)),
    )
    assert tm.tid2pdf[1:].tolist() == [1, 0, 3, 2]  # self-loop ids take the self-loop pdf
    out = KaldiOutput(False)
    tm.write(out)
    assert "<Tuples> 2 \n1 0 0 1 \n2 0 2 3 \n</Tuples>" in out.getvalue().decode()


# ---------------------------------------------------------------- int32-vector archives (alignments)
def test_train_ali_reads_and_rewrites_to_kaldis_bytes(tmp_path: Path) -> None:
    raw = (KALDI_EXP / "train.ali").read_bytes()
    ali = read_int32_vector_archive(KALDI_EXP / "train.ali")
    assert len(ali) == 2239 and sum(len(a) for a in ali.values()) == 255857
    first = list(ali)[:4]  # in file order
    ours = int32_vector_archive_bytes([(u, ali[u]) for u in first])
    assert raw.startswith(ours)
    # kaldi-native-io's (Kaldi's) Int32VectorWriter writes the same bytes, binary and text
    for spec, binary in (("ark", True), ("ark,t", False)):
        path = tmp_path / f"kio-{binary}.ark"
        with kio.Int32VectorWriter(f"{spec}:{path}") as w:
            for u in first:
                w.write(u, ali[u].tolist())
        assert (
            int32_vector_archive_bytes([(u, ali[u]) for u in first], binary=binary)
            == path.read_bytes()
        )
        got = read_int32_vector_archive(path)
        assert list(got) == first and all((got[u] == ali[u]).all() for u in first)


def test_one_reader_of_kaldis_gzipped_alignments_agrees_with_kaldi_native_io(
    tmp_path: Path,
) -> None:
    """kaldi-native-io reads a gzipped archive as ``ark:gunzip -c ali.1.gz|`` (the module
    docstring of int_vector_ark says so); ours reads the same entries, and an ark+scp pair
    written by `write_int32_vectors` reads back through `read_int32_vectors`."""
    gz = tmp_path / "ali.1.gz"
    gz.write_bytes(gzip.compress((KALDI_EXP / "train.ali").read_bytes(), mtime=0))
    ours = read_int32_vector_archive(gz)
    with kio.SequentialInt32VectorReader(f"ark:gunzip -c {gz}|") as r:
        theirs = {k: np.asarray(v, np.int32) for k, v in r}
    assert list(theirs) == list(ours) and len(ours) == 2239
    assert all((theirs[k] == ours[k]).all() for k in ours)
    first = dict(list(ours.items())[:50])
    write_int32_vectors(tmp_path / "ali", "ali", first)
    back = read_int32_vectors(tmp_path / "ali" / "ali.scp")
    assert list(back) == sorted(first) and all((back[k] == first[k]).all() for k in first)


def test_alignment_archives_gz_text_binary_and_mixed(tmp_path: Path) -> None:
    vecs = {
        "utt-a": np.array([1, 2, 2, 3], np.int32),
        "utt-b": np.array([], np.int32),
        "utt-c": np.array([7], np.int32),
    }
    write_int32_vector_archive(tmp_path / "ali.1.gz", {k: vecs[k] for k in ("utt-a", "utt-b")})
    write_int32_vector_archive(tmp_path / "ali.2.gz", {"utt-c": vecs["utt-c"]}, binary=False)
    assert (tmp_path / "ali.1.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress((tmp_path / "ali.2.gz").read_bytes()) == b"utt-c 7 \n"
    got = read_int32_vector_archives([tmp_path / "ali.1.gz", tmp_path / "ali.2.gz"])
    assert set(got) == set(vecs) and all((got[k] == vecs[k]).all() for k in vecs)
    mixed = int32_vector_archive_bytes({"x": [5, 6]}, binary=False) + int32_vector_archive_bytes(
        {"y": [9]}
    )
    (tmp_path / "mixed.ark").write_bytes(mixed)
    m = read_int32_vector_archive(tmp_path / "mixed.ark")
    assert m["x"].tolist() == [5, 6] and m["y"].tolist() == [9]
    with pytest.raises(KaldiFormatError, match="utt-c"):
        read_int32_vector_archives([tmp_path / "ali.2.gz", tmp_path / "ali.2.gz"])
    (tmp_path / "bad.ark").write_bytes(int32_vector_archive_bytes({"z": [1, 2, 3]})[:-3])
    with pytest.raises(KaldiFormatError, match="truncated"):
        read_int32_vector_archive(tmp_path / "bad.ark")


def test_float_matrix_text_and_binary_match_kaldi_native_io(tmp_path: Path) -> None:
    m = np.array([[1.5, -2.25e-7, 3.0], [4.0, 1e10, -0.1]], np.float32)
    for spec, binary in (("ark", True), ("ark,t", False)):
        path = tmp_path / f"m{binary}.ark"
        with kio.FloatMatrixWriter(f"{spec}:{path}") as w:
            w["k"] = m
        out = KaldiOutput(binary)
        out.matrix(m)
        assert b"k " + out.getvalue() == path.read_bytes()
        inp = KaldiInput(path.read_bytes(), pos=2)
        np.testing.assert_array_equal(inp.read_matrix(), m)
