"""Train a triphone GMM-HMM on delta features (Kaldi's steps/train_deltas.sh in Python).

    python -m steps_py.gmm.train_tri --data data/train --lang data/lang \\
        --ali exp/mono_ali/train --ali-model exp/mono --out exp/tri1 \\
        --num-leaves 2000 --tot-gauss 10000 --nj 2

The tree is built first (``steps_py.gmm.make_tree``: statistics, questions, build-tree)
unless <out>/tree_build is done. Then gmm-init-model (one Gaussian per leaf from the tree
statistics), convert-ali (the monophone alignments as triphone transition ids), training
graphs per utterance (``steps_py.gmm.tri_jobs``), and --num-iters EM passes that realign at
Kaldi's passes 10, 20, 30, mixing up from one Gaussian per leaf to --tot-gauss by pass
--max-iter-inc. Writes <out>/final.mdl (Kaldi binary format) beside <out>/tree, num_pdfs,
log/likelihood.csv, info.json and a .done marker; Kaldi reads final.mdl and tree as they
are. Align with ``python -m steps_py.gmm.align --model <out>``; build the graph with
``python -m steps_py.decode.graph --model <out>``.
"""

from __future__ import annotations

import argparse
import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steps_py.cli import add_output_options, dataclass_from_args, progress, step_main
from steps_py.fileio import atomic_write_json, atomic_write_text, is_done, mark_done
from steps_py.gmm.accumulate import UpdateConfig, split_gmms, update_gmm
from steps_py.gmm.data import load_utterances
from steps_py.gmm.errors import GmmError
from steps_py.gmm.feats import open_mfcc
from steps_py.gmm.jobs import AlignOptions, JobPool, Utterance
from steps_py.gmm.make_tree import alignment_transition_model, read_checked_alignments
from steps_py.gmm.make_tree import build_parser as tree_parser
from steps_py.gmm.make_tree import run as run_make_tree
from steps_py.gmm.model_io import GmmParams, ModelError
from steps_py.gmm.topo import Lang, LangError
from steps_py.gmm.train_mono import sum_results, write_likelihood_csv
from steps_py.gmm.tree_stats import TreeStats
from steps_py.gmm.tri_init import (
    convert_alignment,
    init_gmm,
    to_kaldi_model,
    transition_lookup,
    update_transition_probs,
)
from steps_py.gmm.tri_jobs import TriJob
from steps_py.kaldi.model_file import write_kaldi_model
from steps_py.kaldi.topology import HmmTopology
from steps_py.kaldi.transition_model import TransitionModel
from steps_py.kaldi.tree import ContextDependency, read_tree

log = logging.getLogger("train_tri")

REALIGN_ITERS = (10, 20, 30)


def em_pass(
    pool: JobPool,
    tm: TransitionModel,
    gmm: GmmParams,
    realign: bool,
    opts: AlignOptions,
    mixup: int,
    rng: np.random.Generator,
) -> tuple[TransitionModel, GmmParams, dict]:
    """One pass: (re)align, accumulate, gmm-est with mix-up; returns the new model and a row."""
    res = sum_results(pool.call("run_pass", gmm, tm.log_probs, realign, opts))
    if res.frames == 0:
        raise GmmError("no utterance could be aligned with the triphone model")
    tm = update_transition_probs(tm, res.tid_counts)
    am = gmm.to_am()
    cfg = UpdateConfig()
    update_gmm(am, res.stats, cfg)
    gmm = split_gmms(GmmParams.from_am(am), res.stats.pdf_occupancy(), mixup, cfg, rng)
    row = {
        "realigned": int(realign),
        "avg_loglike": res.loglike / res.frames,
        "frames": res.frames,
        "num_gauss": gmm.num_gauss,
        "align_failed": len(res.failed) if realign else "",
    }
    return tm, gmm, row


def train(
    lang: Lang,
    utts: list[Utterance],
    tree: ContextDependency,
    stats: TreeStats,
    mono_tm: TransitionModel,
    mono_alis: dict[str, np.ndarray],
    nj: int = 2,
    num_iters: int = 35,
    tot_gauss: int = 10000,
    max_iter_inc: int = 25,
    opts: AlignOptions | None = None,
    seed: int = 0,
    log_dir: Path | None = None,
) -> tuple[TransitionModel, GmmParams, list[dict]]:
    """Initialise from the tree statistics and run the EM passes (see the module docstring)."""
    opts = opts or AlignOptions()
    topo = HmmTopology.from_text(lang.topo_text)
    tm = TransitionModel.from_tree(tree, topo)
    gmm, empty = init_gmm(tree, stats)
    if empty:
        log.warning("%d leaves have no statistics; initialised from the global mean", empty)
    lookup = transition_lookup(tm)
    known: dict = {}  # (phone window, HMM state) -> transition state, shared by all utterances
    alis = {u: convert_alignment(a, mono_tm, tm, tree, lookup, known) for u, a in mono_alis.items()}
    num_gauss = gmm.num_pdfs
    inc = max(0, (tot_gauss - num_gauss) // max(1, max_iter_inc))
    rows: list[dict] = []
    factory = functools.partial(TriJob, tree=tree, tm=tm, alis=alis)
    with JobPool(str(lang.dir), utts, nj, factory, log_dir) as pool:  # log/acc.<job>.log
        for it in progress(range(1, num_iters), desc="tri EM", unit="pass"):
            t0 = time.time()
            rng = np.random.default_rng([seed, it])
            tm, gmm, row = em_pass(pool, tm, gmm, it in REALIGN_ITERS, opts, num_gauss, rng)
            rows.append({"pass": it, **row, "seconds": round(time.time() - t0, 2)})
            log.info(
                "pass %d: avg loglike/frame %.4f, %d Gaussians",
                it,
                row["avg_loglike"],
                row["num_gauss"],
            )
            if it <= max_iter_inc:
                num_gauss = min(tot_gauss, num_gauss + inc)
    return tm, gmm, rows


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m steps_py.gmm.train_tri",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = "(default %(default)s)"
    ap.add_argument("--data", type=Path, default=Path("data/train"), help=f"data dir {d}")
    ap.add_argument("--lang", type=Path, default=Path("data/lang"), help=f"lang dir {d}")
    ap.add_argument(
        "--ali", type=Path, default=Path("exp/mono_ali/train"), help=f"monophone alignments {d}"
    )
    ap.add_argument("--ali-model", type=Path, default=Path("exp/mono"), help=f"model of --ali {d}")
    add_output_options(
        ap, "model dir", Path("exp/tri1"), force_help="retrain (and rebuild the tree)"
    )
    ap.add_argument("--nj", type=int, default=2, help=f"parallel jobs {d}")
    ap.add_argument("--num-leaves", type=int, default=2000, help=f"tree leaves (pdfs) at most {d}")
    ap.add_argument("--tot-gauss", type=int, default=10000, help=f"Gaussians in all {d}")
    ap.add_argument("--num-iters", type=int, default=35, help=f"EM passes + 1, as Kaldi {d}")
    ap.add_argument("--max-iter-inc", type=int, default=25, help=f"last pass that mixes up {d}")
    ap.add_argument("--boost-silence", type=float, default=1.0, help=f"silence weight factor {d}")
    ap.add_argument("--beam", type=float, default=10.0, help=f"alignment beam {d}")
    ap.add_argument("--retry-beam", type=float, default=40.0, help=f"alignment retry beam {d}")
    ap.add_argument("--seed", type=int, default=0, help=f"seed of questions and mix-up {d}")
    return ap


@dataclass(frozen=True)
class TreeConfig:
    """What the tree of --out is built from (steps_py.gmm.make_tree's options); fields are
    named as the flags (``--ali-model`` -> `ali_model`)."""

    data: Path
    lang: Path
    ali: Path  # the monophone alignments
    ali_model: Path  # the model of --ali (make_tree's --model)
    out: Path
    num_leaves: int
    seed: int
    force: bool  # rebuild the tree even if <out>/tree_build is done


def ensure_tree(config: TreeConfig) -> tuple[ContextDependency, TreeStats]:
    """The tree of --out, built with steps_py.gmm.make_tree unless already there."""
    c = config
    build = c.out / "tree_build"
    if c.force or not is_done(build) or not (c.out / "tree").is_file():
        argv = ["--data", str(c.data), "--lang", str(c.lang), "--ali", str(c.ali)]
        argv += ["--model", str(c.ali_model), "--out", str(c.out)]
        argv += ["--num-leaves", str(c.num_leaves), "--seed", str(c.seed)]
        run_make_tree(tree_parser().parse_args(argv))
    return read_tree(c.out / "tree"), TreeStats.load(build / "treeacc.npz")


def run(args: argparse.Namespace) -> None:
    if min(args.nj, args.num_leaves, args.tot_gauss, args.num_iters) < 1:
        raise GmmError("--nj, --num-leaves, --tot-gauss and --num-iters must be >= 1")
    t0 = time.time()
    tree, stats = ensure_tree(dataclass_from_args(TreeConfig, args))
    lang = Lang.load(args.lang)
    utts, report = load_utterances(args.data, lang, open_mfcc(args.data))
    mono_tm = alignment_transition_model(args.ali_model)
    mono_alis = read_checked_alignments(args.ali, mono_tm, args.ali_model)
    usable = [u for u in utts if u.utt in mono_alis and len(mono_alis[u.utt]) == len(u.feats)]
    log.info(
        "%d of %d utterances have monophone alignments; %s",
        len(usable),
        len(utts),
        report.summary(),
    )
    if not usable:
        raise GmmError(f"no utterance of {args.data} is aligned in {args.ali}")
    opts = AlignOptions(
        beam=args.beam, retry_beam=args.retry_beam, boost_silence=args.boost_silence
    )
    tm, gmm, rows = train(
        lang,
        usable,
        tree,
        stats,
        mono_tm,
        {u.utt: mono_alis[u.utt] for u in usable},
        args.nj,
        args.num_iters,
        args.tot_gauss,
        args.max_iter_inc,
        opts,
        args.seed,
        log_dir=args.out / "log",
    )
    write_kaldi_model(args.out / "final.mdl", to_kaldi_model(tm, gmm), binary=True)
    atomic_write_text(args.out / "num_pdfs", f"{gmm.num_pdfs}\n")
    if rows:
        write_likelihood_csv(args.out / "log" / "likelihood.csv", rows)
    info = {
        "num_pdfs": gmm.num_pdfs,
        "num_gauss": gmm.num_gauss,
        "utterances": len(usable),
        "final_avg_loglike": rows[-1]["avg_loglike"] if rows else None,
        "seconds": round(time.time() - t0, 1),
    }
    atomic_write_json(args.out / "info.json", info)
    mark_done(args.out, info)
    log.info("done in %.1f s: %d pdfs, %d Gaussians", info["seconds"], gmm.num_pdfs, gmm.num_gauss)


def main(argv: list[str] | None = None) -> int:
    return step_main(
        "gmm.train_tri",
        build_parser(),
        run,
        argv,
        log_file=lambda a: a.out / "log" / "train.log",
        done_dir=lambda a: a.out,
        done_state="already trained",
        inputs=lambda a: [a.data, a.lang, a.ali, a.ali_model],
        user_errors=(LangError, ModelError),
    )


if __name__ == "__main__":
    raise SystemExit(main())
