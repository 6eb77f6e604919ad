"""Build a triphone decision tree from monophone alignments (the tree part of Kaldi's
steps/train_deltas.sh: acc-tree-stats, cluster-phones, compile-questions, build-tree).

    python -m steps_py.gmm.make_tree --data data/train --lang data/lang \\
        --ali exp/mono_ali/train --model exp/mono --out exp/tri1 --num-leaves 2000

Statistics: one Gaussian per (left phone, phone, right phone, pdf class) over the
features with deltas, from the transition-id alignments of --ali (made with --model, the
project's final.npz or a Kaldi final.mdl); silence phones (phones/silence.int) are
context independent. Questions: automatic (top-down clustering of the phone sets of
phones/sets.int) plus phones/extra_questions.int. Roots: phones/roots.int. Writes
<out>/tree (Kaldi text format) and, in <out>/tree_build, questions.int, treeacc.npz (the
statistics), report.json and the .done marker of this step.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from steps_py.cli import step_main
from steps_py.fileio import atomic_write_json, atomic_write_text, mark_done
from steps_py.gmm.ali_io import AlignmentDir
from steps_py.gmm.data import load_utterances
from steps_py.gmm.errors import GmmError
from steps_py.gmm.feats import open_mfcc
from steps_py.gmm.jobs import Utterance
from steps_py.gmm.model_io import ModelError
from steps_py.gmm.questions import (
    Roots,
    cluster_phones,
    compile_questions,
    read_int_lines,
    read_roots,
)
from steps_py.gmm.topo import Lang, LangError
from steps_py.gmm.tree_cluster import build_tree
from steps_py.gmm.tree_stats import TreeStats, TreeStatsAccumulator
from steps_py.kaldi.int_vector_ark import AlignmentReadError
from steps_py.kaldi.transition_model import TransitionModel
from steps_py.kaldi.tree import ContextDependency, write_tree

log = logging.getLogger("make_tree")


def alignment_transition_model(model_path: Path) -> TransitionModel:
    """The transition model (Kaldi form) of the model that made the alignments."""
    from steps_py.kaldi.model_file import from_mono_model, is_kaldi_model_file, read_kaldi_model

    p = Path(model_path)
    mdl = p / "final.mdl" if p.is_dir() and not (p / "final.npz").is_file() else p
    if is_kaldi_model_file(mdl):
        return read_kaldi_model(mdl).transition_model
    from steps_py.gmm.model_io import read_model

    return from_mono_model(read_model(p))[0].transition_model


def read_checked_alignments(ali_dir: Path, tm: TransitionModel, model: Path) -> dict:
    """Transition-id alignments of `ali_dir`, checked to come from the model `tm` (read from
    `model`): their pdf.scp, where present, must be what `tm` maps them to."""
    try:
        ad = AlignmentDir(Path(ali_dir))
        alis = ad.transitions()
        pdfs = ad.pdfs() if ad.has_pdfs() else {}
    except (FileNotFoundError, AlignmentReadError) as e:
        raise GmmError(str(e)) from None
    for utt in sorted(pdfs)[:20]:
        ali = alis.get(utt)
        if ali is None:
            continue
        tm.check_ids(ali, f"{ali_dir}: alignment of {utt}")
        if not np.array_equal(tm.tid2pdf[ali], pdfs[utt]):
            raise GmmError(
                f"{ali_dir}: the alignment of {utt} was not made with {model} (its pdf.scp "
                "differs from the model's pdfs); pass the model that aligned it (--ali-model/--model)"
            )
    return alis


def accumulate_tree_stats(
    tm: TransitionModel, utts: list[Utterance], alis: dict, ci_phones: list[int]
) -> tuple[TreeStats, int]:
    """acc-tree-stats over the aligned utterances; returns (stats, utterances without alignment)."""
    acc = TreeStatsAccumulator(tm, ci_phones)
    missing = 0
    for u in utts:
        ali = alis.get(u.utt)
        if ali is None or len(ali) != len(u.feats):
            missing += 1
            continue
        tm.check_ids(ali, f"alignment of {u.utt}")
        acc.add(ali, u.feats)
    return acc.stats(), missing


def make_tree(
    lang: Lang, stats: TreeStats, num_leaves: int, thresh: float, cluster_thresh: float, seed: int
) -> tuple[ContextDependency, list[list[int]], dict]:
    """Questions and tree from `stats` with the lang dir's sets, extra questions and roots."""
    phones_dir = lang.dir / "phones"
    topo = lang.topology()
    if (phones_dir / "sets.int").is_file():
        sets = read_int_lines(phones_dir / "sets.int")
    else:  # a lang imported from Kaldi without phones/sets: one set per phone
        log.warning("%s/sets.int not found: one phone set per phone", phones_dir)
        sets = [[p] for p in topo.phones]
    extra = (
        read_int_lines(phones_dir / "extra_questions.int")
        if (phones_dir / "extra_questions.int").is_file()
        else []
    )
    if (phones_dir / "roots.int").is_file():
        roots = read_roots(phones_dir / "roots.int")
    else:  # as prepare_lang.sh writes it: every set its own shared, split root
        log.warning("%s/roots.int not found: every phone set is a shared, split root", phones_dir)
        roots = Roots(sets, [True] * len(sets), [True] * len(sets))
    auto = cluster_phones(stats, sets, seed=seed)
    questions = auto + extra
    num_pdf_classes = list(topo.get_phone_to_num_pdf_classes())
    compiled = compile_questions(questions, max(num_pdf_classes), stats.context_width)
    em, report = build_tree(
        stats, roots, compiled, num_pdf_classes, num_leaves, thresh, cluster_thresh
    )
    tree = ContextDependency(stats.context_width, stats.central_position, em)
    return tree, questions, asdict(report)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m steps_py.gmm.make_tree",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--data", type=Path, default=Path("data/train"), help="data dir")
    ap.add_argument("--lang", type=Path, default=Path("data/lang"), help="lang dir")
    ap.add_argument("--ali", type=Path, default=Path("exp/mono_ali/train"), help="alignment dir")
    ap.add_argument(
        "--model", type=Path, default=Path("exp/mono"), help="model that made the alignments"
    )
    ap.add_argument("--out", type=Path, default=Path("exp/tri1"), help="output dir")
    ap.add_argument("--num-leaves", type=int, default=2000, help="maximum number of leaves")
    ap.add_argument("--thresh", type=float, default=300.0, help="smallest gain of a split")
    ap.add_argument(
        "--cluster-thresh",
        type=float,
        default=-1.0,
        help="largest loss of a leaf merge (-1: the smallest split's gain; 0: no clustering)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the phone clustering")
    ap.add_argument("--force", action="store_true", help="rebuild even if --out is done")
    return ap


def run(args: argparse.Namespace) -> None:
    if args.num_leaves < 1:
        raise GmmError(f"--num-leaves {args.num_leaves}: must be >= 1")
    t0 = time.time()
    lang = Lang.load(args.lang)
    utts, report = load_utterances(args.data, lang, open_mfcc(args.data))
    tm = alignment_transition_model(args.model)
    alis = read_checked_alignments(args.ali, tm, args.model)
    stats, missing = accumulate_tree_stats(tm, utts, alis, lang.silence_phones)
    if len(stats) == 0:
        raise GmmError(f"no utterance of {args.data} has an alignment in {args.ali}")
    log.info(
        "tree stats: %d events over %d frames (%d utterances without alignment; %s)",
        len(stats),
        int(stats.count.sum()),
        missing,
        report.summary(),
    )
    tree, questions, info = make_tree(
        lang, stats, args.num_leaves, args.thresh, args.cluster_thresh, args.seed
    )
    build = args.out / "tree_build"
    build.mkdir(parents=True, exist_ok=True)
    stats.save(build / "treeacc.npz")
    atomic_write_text(
        build / "questions.int", "".join(" ".join(map(str, q)) + "\n" for q in questions)
    )
    write_tree(args.out / "tree", tree)
    info |= {
        "events": len(stats),
        "frames": float(stats.count.sum()),
        "seconds": round(time.time() - t0, 1),
    }
    atomic_write_json(build / "report.json", info)
    mark_done(build, info)
    log.info(
        "tree: %d leaves (%d before clustering, %d roots), gain %.3f per frame; %.1f s",
        info["num_leaves"],
        info["split_leaves"],
        info["stub_leaves"],
        info["gain_per_frame"],
        info["seconds"],
    )


def main(argv: list[str] | None = None) -> int:
    return step_main(
        "gmm.make_tree",
        build_parser(),
        run,
        argv,
        log_file=lambda a: a.out / "log" / "make_tree.log",
        done_dir=lambda a: a.out / "tree_build",
        done_state="tree already built",
        inputs=lambda a: [a.data, a.lang, a.ali, a.model],
        user_errors=(LangError, ModelError),
    )


if __name__ == "__main__":
    raise SystemExit(main())
