"""Build the decoding graph HCLG (Kaldi's utils/mkgraph.sh in Python, with kaldifst).

    python -m steps_py.decode.graph --lang data/lang_test --model exp/mono --out exp/mono/graph
    python -m steps_py.decode.graph --lang data/lang_kaldi_test --model /kaldi/s5/exp/mono --out exp/kaldi_mono/graph

--model is the project's GMM (exp/mono, final.npz) or a Kaldi monophone final.mdl (or a Kaldi
exp dir holding final.mdl and tree); the lang dir must be the one the model was trained with
(for a Kaldi model: Kaldi's lang dir imported with `python -m steps_py.kaldi.lang_import`).

LG = min(det(L_disambig o G)); CLG = context composition (monophone: width 1); H from
kaldi-hmm-gmm's get_h_transducer; HCLGa = min(rmsymbols(det(H o CLG))); HCLG = HCLGa
with self-loops and transition probabilities (self-loop scale 0.1). Writes HCLG.fst
(input labels: transition ids, for GMM decoding), HCLG_pdf.fst (input labels: pdf id + 1,
for hybrid decoding with DecodableCtc over [T, num_pdfs] log-likelihoods), words.txt,
phones.txt, num_pdfs, tid2pdf (the pdf of transition id 1, 2, ..., one per line: a triphone
graph's mapping cannot be derived from the topology alone), info.json (states/arcs) and .done.

A context-dependent model (a Kaldi or project final.mdl beside a triphone tree, e.g. exp/tri1)
gets C by Kaldi's context composition, its context labels merged where they have the same
HMM, and the project's H (steps_py.decode.h_transducer) with self-loops.

kaldifst has no fstrmsymbols and no mutable arc access, so symbols are relabelled by
composing with a one-state relabelling transducer (C++ composition, no Python loop over
arcs). fstpushspecial and fstrmepslocal are not available and are skipped. For a triphone
tree the context composition and the relabellings run on arrays instead
(``steps_py.decode.cd_graph``: numpy, the same graph to the byte, in about half the time
on the recipe's lexicon); ``make_cd_hclg(arrays=False)`` keeps the kaldifst way, for other
context widths and as the reference.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from steps_py.cli import StepError, add_output_options, step_main
from steps_py.decode import cd_graph, fst_arrays
from steps_py.decode.h_transducer import (
    HBuildError,
    group_windows,
    h_transducer,
    ilabel_windows,
    transition_weights,
    weight_fst,
)
from steps_py.fileio import atomic_path, atomic_write_json, atomic_write_text, mark_done
from steps_py.gmm.cd_model import find_cd_model, read_cd_model
from steps_py.gmm.errors import GmmError
from steps_py.gmm.model_io import ModelError, MonoModel, check_model_matches_lang, read_model
from steps_py.gmm.topo import Lang, LangError
from steps_py.kaldi.transition_model import TransitionModel as KaldiTransitionModel
from steps_py.kaldi.tree import ContextDependency

log = logging.getLogger("mkgraph")


class GraphBuildError(StepError):
    """The graph cannot be built from these inputs; the message names the file and the fix."""


def relabel_input(fst: kaldifst.StdVectorFst, mapping: dict[int, int]) -> kaldifst.StdVectorFst:
    """Replace input labels by `mapping` (labels not in it stay; 0 stays 0), by composition.

    Labels above the largest key of `mapping` are not kept: the callers map every label
    that can occur (or, for disambiguation symbols, the largest ones).
    """
    if not mapping:  # nothing to relabel (e.g. a lang whose G has no #0: no disambiguation ids)
        return fst
    max_label = max([*mapping, *mapping.values(), 0])
    lines = []
    for old in range(1, max_label + 1):
        lines.append(f"0 0 {mapping.get(old, old)} {old} 0")
    lines.append("0 0")
    relabel = kaldifst.compile(s="\n".join(lines) + "\n", acceptor=False)
    kaldifst.arcsort(relabel, sort_type="olabel")
    kaldifst.arcsort(fst, sort_type="ilabel")
    out = kaldifst.compose(relabel, fst, connect=True)
    return kaldifst.StdVectorFst(out) if not isinstance(out, kaldifst.StdVectorFst) else out


def fst_size(fst: kaldifst.StdVectorFst) -> tuple[int, int]:
    n_arcs = 0
    for s in range(fst.num_states):
        n_arcs += fst.num_arcs(s)
    return fst.num_states, n_arcs


def make_lg(lang: Lang) -> kaldifst.StdVectorFst:
    """LG = min(det(L_disambig o G)) in the log semiring."""
    L = lang.read_fst("L_disambig.fst")
    G = lang.read_fst("G.fst")
    kaldifst.arcsort(L, sort_type="olabel")
    kaldifst.arcsort(G, sort_type="ilabel")
    LG = kaldifst.compose(L, G, connect=True)
    if LG.num_states == 0:
        raise GraphBuildError(
            f"L_disambig o G is empty in {lang.dir}: G.fst and words.txt/L_disambig.fst do not match (rebuild lang_test)"
        )
    if kaldifst.determinize_star(LG, use_log=True):  # True means it stopped early
        log.warning("determinize_star(LG) stopped early; the graph is only partly determinized")
    kaldifst.minimize_encoded(LG)
    log.info("LG: %d states, %d arcs", *fst_size(LG))
    return LG


def make_clg(
    lang: Lang, context_width: int, central_position: int
) -> tuple[kaldifst.StdVectorFst, list[list[int]]]:
    """CLG (Kaldi's ComposeContext with LG) and its ilabel info, arc-sorted on input."""
    CLG, ilabels = kaldifst.compose_context(
        disambig_syms=lang.disambig_phones,
        context_width=context_width,
        central_position=central_position,
        ifst=make_lg(lang),
    )
    kaldifst.arcsort(CLG, sort_type="ilabel")
    return CLG, ilabels


def det_min_h_clg(
    H: kaldifst.StdVectorFst, CLG: kaldifst.StdVectorFst, disambig_tids: list[int]
) -> kaldifst.StdVectorFst:
    """HCLGa = min(rmsymbols(det(H o CLG))), the disambiguation transition ids removed."""
    kaldifst.arcsort(H, sort_type="olabel")
    HCLGa = kaldifst.compose(H, CLG, connect=True)
    kaldifst.determinize_star(HCLGa, use_log=True)
    HCLGa = relabel_input(HCLGa, {t: 0 for t in disambig_tids})
    kaldifst.minimize_encoded(HCLGa)
    return HCLGa


def make_hclg(
    lang: Lang,
    tm: khg.TransitionModel,
    tree: khg.ContextDependency,
    self_loop_scale: float = 0.1,
    transition_scale: float = 1.0,
) -> tuple[kaldifst.StdVectorFst, kaldifst.StdVectorFst]:
    """Return (HCLG with transition-id input labels, the same graph with pdf-id + 1 labels)."""
    CLG, ilabels = make_clg(lang, tree.context_width, tree.central_position)
    H, disambig_tids = khg.get_h_transducer(
        ilabel_info=ilabels,
        ctx_dep=tree,
        trans_model=tm,
        config=khg.HTransducerConfig(transition_scale=transition_scale),
    )
    HCLGa = det_min_h_clg(H, CLG, disambig_tids)
    HCLG = khg.add_self_loops(
        self_loop_scale=self_loop_scale, disambig_syms=[], reorder=True, trans_model=tm, ifst=HCLGa
    )
    kaldifst.arcsort(HCLG, sort_type="ilabel")
    tid2pdf = tm.transition_id_to_pdf_array()
    HCLG_pdf = relabel_input(HCLG, {t: tid2pdf[t] + 1 for t in range(1, tm.num_transition_ids + 1)})
    return HCLG, HCLG_pdf


def make_cd_hclg(
    lang: Lang,
    tm: KaldiTransitionModel,
    tree: ContextDependency,
    self_loop_scale: float = 0.1,
    transition_scale: float = 1.0,
    arrays: bool = True,
) -> tuple[kaldifst.StdVectorFst, kaldifst.StdVectorFst]:
    """HCLG of a context-dependent (e.g. triphone) model: the project's H with self-loops
    (steps_py.decode.h_transducer), mkgraph.sh's weights composed on afterwards.

    For a triphone tree (N=3, P=1) the context composition and the relabellings run on
    arrays (``steps_py.decode.cd_graph``), unless `arrays` is False: kaldifst's
    compose_context and relabelling by composition, the same FSTs step for step (the same
    states and arcs in the same order), kept for other context widths and as the reference.
    """
    costs = transition_weights(tm, transition_scale, self_loop_scale, mkgraph=True)
    if arrays and (tree.context_width, tree.central_position) == (3, 1):
        return _cd_hclg_arrays(lang, tm, tree, costs)
    CLG, ilabels = make_clg(lang, tree.context_width, tree.central_position)
    new, H, disambig_tids = merged_h(ilabel_windows(ilabels, tree.context_width), tree, tm)
    CLG = relabel_input(CLG, {j: int(k) for j, k in enumerate(new) if j and j != k})
    HCLGa = det_min_h_clg(H, CLG, disambig_tids)
    kaldifst.arcsort(HCLGa, sort_type="ilabel")
    HCLG = kaldifst.compose(weight_fst(costs), HCLGa, connect=True)
    kaldifst.arcsort(HCLG, sort_type="ilabel")
    tid2pdf = tm.tid2pdf
    HCLG_pdf = relabel_input(
        HCLG, {t: int(tid2pdf[t]) + 1 for t in range(1, tm.num_transition_ids + 1)}
    )
    return HCLG, HCLG_pdf


def merged_h(
    windows: np.ndarray, tree: ContextDependency, tm: KaldiTransitionModel
) -> tuple[np.ndarray, kaldifst.StdVectorFst, list[int]]:
    """(new label of every context label, H over the merged labels, its disambiguation
    transition ids) for CLG's context labels (``h_transducer.group_windows``)."""
    try:
        new, hmm_info = group_windows(windows, tree, tm)
        H, disambig_tids = h_transducer(hmm_info, tree, tm)
    except (HBuildError, GmmError) as e:
        raise GraphBuildError(str(e)) from None
    log.info("CLG: %d context-dependent labels, %d distinct HMMs", len(windows), len(hmm_info))
    return new, H, disambig_tids


def _cd_hclg_arrays(
    lang: Lang, tm: KaldiTransitionModel, tree: ContextDependency, costs: np.ndarray
) -> tuple[kaldifst.StdVectorFst, kaldifst.StdVectorFst]:
    """make_cd_hclg for a triphone tree, its context composition and relabellings on arrays."""
    lg = fst_arrays.to_arrays(make_lg(lang))
    clg, windows = cd_graph.compose_context(lg, lang.disambig_phones)
    new, H, disambig_tids = merged_h(windows, tree, tm)
    CLG = fst_arrays.from_arrays(clg)
    # sorted here as make_clg does and again by relabel as relabel_input does: OpenFst's
    # arcsort is not stable, so a second one can reorder arcs with the same label
    kaldifst.arcsort(CLG, sort_type="ilabel")
    trim = bool(lg.props & cd_graph.K_COACCESSIBLE)  # then so is CLG (compose_context)
    CLG = fst_arrays.from_arrays(cd_graph.relabel(CLG, new, starts=clg.starts, trim=trim))
    del lg, clg
    kaldifst.arcsort(H, sort_type="olabel")
    HCLGa = kaldifst.compose(H, CLG, connect=True)
    del CLG
    kaldifst.determinize_star(HCLGa, use_log=True)
    HCLGa = fst_arrays.from_arrays(cd_graph.relabel(HCLGa, {t: 0 for t in disambig_tids}))
    kaldifst.minimize_encoded(HCLGa)
    weighted = cd_graph.relabel(HCLGa, {}, parsed_costs(costs))
    HCLG = fst_arrays.from_arrays(weighted)
    kaldifst.arcsort(HCLG, sort_type="ilabel")
    pdf_labels = {t: int(tm.tid2pdf[t]) + 1 for t in range(1, tm.num_transition_ids + 1)}
    HCLG_pdf = fst_arrays.from_arrays(cd_graph.relabel(HCLG, pdf_labels, starts=weighted.starts))
    return HCLG, HCLG_pdf


def parsed_costs(costs: np.ndarray) -> np.ndarray:
    """The float32 weights OpenFst reads from weight_fst(costs) (label 0: unused)."""
    arrays = fst_arrays.to_arrays(weight_fst(costs))
    out = np.zeros(len(costs), np.float32)
    out[arrays.arcs[:, 0]] = arrays.weights
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m steps_py.decode.graph",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--lang",
        type=Path,
        default=Path("data/lang_test"),
        help="lang dir with G.fst (default: %(default)s)",
    )
    ap.add_argument(
        "--model",
        type=Path,
        default=Path("exp/mono"),
        help="GMM: model dir (final.npz) or npz, or a Kaldi final.mdl / exp dir holding one (default: %(default)s)",
    )
    add_output_options(
        ap, "graph dir", Path("exp/mono/graph"), force_help="rebuild even if --out is done"
    )
    ap.add_argument("--self-loop-scale", type=float, default=0.1, help="(default: %(default)s)")
    ap.add_argument("--transition-scale", type=float, default=1.0, help="(default: %(default)s)")
    return ap


def load_graph_inputs(lang_dir: Path, model_path: Path) -> tuple[Lang, MonoModel]:
    """The lang dir and the GMM (project npz or Kaldi final.mdl), checked to belong together."""
    try:
        lang = Lang.load(lang_dir)
        model = read_model(model_path)
        model_dir = Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent
        check_model_matches_lang(model, lang.phones, str(lang.dir), model_dir / "phones.txt")
    except (ModelError, LangError) as e:
        raise GraphBuildError(str(e)) from None
    check_test_lang(lang)
    return lang, model


def check_test_lang(lang: Lang) -> None:
    for name in ("L_disambig.fst", "G.fst"):
        if not (lang.dir / name).is_file():
            raise GraphBuildError(
                f"{lang.dir}/{name} not found: --lang must be a lang dir with G.fst "
                "(python -m steps_py.lang.lm, or steps_py.kaldi.lang_import for a Kaldi lang)"
            )


def build_graphs(
    lang_dir: Path, model_path: Path, self_loop_scale: float, transition_scale: float
) -> tuple[kaldifst.StdVectorFst, kaldifst.StdVectorFst, str, int, list[int]]:
    """(HCLG, HCLG_pdf, topology text, number of pdfs, pdf of every transition id 1..N)
    for a monophone or a context-dependent (final.mdl + tree) model."""
    try:
        cd = find_cd_model(model_path)
    except ModelError as e:
        raise GraphBuildError(str(e)) from None
    if cd is None:
        lang, model = load_graph_inputs(lang_dir, model_path)
        _, tree, tm, _ = model.build()
        HCLG, HCLG_pdf = make_hclg(lang, tm, tree, self_loop_scale, transition_scale)
        tid2pdf = list(tm.transition_id_to_pdf_array())[-tm.num_transition_ids :]
        return HCLG, HCLG_pdf, model.topo_text, model.gmm.num_pdfs, [int(p) for p in tid2pdf]
    try:
        lang = Lang.load(lang_dir)
        kmodel, ctree = read_cd_model(*cd)
        topo_text = kmodel.transition_model.topo.to_text()
        check_model_matches_lang(
            SimpleNamespace(topo_text=topo_text),
            lang.phones,
            str(lang.dir),
            cd[0].parent / "phones.txt",
        )
    except (ModelError, LangError) as e:
        raise GraphBuildError(str(e)) from None
    check_test_lang(lang)
    tm = kmodel.transition_model
    HCLG, HCLG_pdf = make_cd_hclg(lang, tm, ctree, self_loop_scale, transition_scale)
    return HCLG, HCLG_pdf, topo_text, kmodel.am.num_pdfs, tm.tid2pdf[1:].tolist()


def run(args: argparse.Namespace) -> int:
    t0 = time.time()
    HCLG, HCLG_pdf, topo_text, num_pdfs, tid2pdf = build_graphs(
        args.lang, args.model, args.self_loop_scale, args.transition_scale
    )
    states, arcs = fst_size(HCLG)
    if arcs == 0:
        raise GraphBuildError(
            f"HCLG built from {args.lang} and {args.model} is empty: the model's phones do not "
            "match the lang's L.fst (use the lang dir the model was trained with)"
        )
    with atomic_path(args.out) as tmp:
        tmp.mkdir(parents=True)
        HCLG.write(str(tmp / "HCLG.fst"))
        HCLG_pdf.write(str(tmp / "HCLG_pdf.fst"))
        shutil.copy(args.lang / "words.txt", tmp / "words.txt")
        shutil.copy(args.lang / "phones.txt", tmp / "phones.txt")
        atomic_write_text(tmp / "topo", topo_text)
        atomic_write_text(tmp / "num_pdfs", f"{num_pdfs}\n")
        atomic_write_text(tmp / "tid2pdf", "".join(f"{p}\n" for p in tid2pdf))
        info = {
            "states": states,
            "arcs": arcs,
            "num_pdfs": num_pdfs,
            "self_loop_scale": args.self_loop_scale,
            "model": str(args.model),
            "lang": str(args.lang),
            "seconds": round(time.time() - t0, 1),
        }
        atomic_write_json(tmp / "info.json", info)
        mark_done(tmp, info)
    log.info(
        "HCLG: %d states, %d arcs; written to %s in %.1f s",
        states,
        arcs,
        args.out,
        time.time() - t0,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main(
        "mkgraph",
        build_parser(),
        run,
        argv,
        log_file=lambda a: a.out.parent / "log" / "mkgraph.log",
        done_dir=lambda a: a.out,
        done_state="already built",
    )


if __name__ == "__main__":
    raise SystemExit(main())
