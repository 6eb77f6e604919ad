"""Train a monophone GMM-HMM (Kaldi's steps/train_mono.sh in Python).

    python -m steps_py.gmm.train_mono --data data/train --lang data/lang --out exp/mono --nj 2

Flat start from the global feature mean and variance, equal alignments on the training
graphs, then EM passes with Kaldi's realignment schedule, mixing up to --max-gauss
Gaussians. Writes exp/mono/final.npz (model_io.load_gmm rebuilds it), num_pdfs,
log/likelihood.csv (average log-likelihood per frame of each pass), log/train.log,
report.txt (skipped utterances) and a .done marker.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import time
from pathlib import Path

import kaldi_hmm_gmm as khg
import numpy as np

from steps_py.cli import (
    add_alignment_options,
    add_jobs_options,
    add_output_options,
    progress,
    step_main,
)
from steps_py.fileio import atomic_write_json, atomic_write_text, mark_done
from steps_py.gmm.accumulate import UpdateConfig, split_gmms, update_gmm, update_transitions
from steps_py.gmm.data import load_utterances
from steps_py.gmm.errors import GmmError
from steps_py.gmm.feats import FeatureSource, open_mfcc
from steps_py.gmm.jobs import AlignOptions, JobPool, PassResult, Utterance
from steps_py.gmm.model_io import GmmParams, ModelError, MonoModel, monophone_tree, save_model
from steps_py.gmm.topo import Lang, LangError

log = logging.getLogger("train_mono")

KALDI_REALIGN_ITERS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 23, 26, 29, 32, 35, 38]


def default_realign_iters(num_iters: int) -> list[int]:
    return [i for i in KALDI_REALIGN_ITERS if i < num_iters]


def flat_start(lang: Lang, utts: list[Utterance]) -> MonoModel:
    """gmm-init-mono: every pdf one Gaussian with the global mean and variance."""
    topo = lang.topology()
    tree = monophone_tree(topo)
    tm = khg.TransitionModel(ctx_dep=tree, hmm_topo=topo)
    x = np.concatenate([u.feats for u in utts]).astype(np.float64)
    mean, var = x.mean(0), np.maximum(x.var(0), 1e-3)
    n = tree.num_pdfs
    gmm = GmmParams(
        [np.ones(1, np.float32)] * n,
        [mean[None].astype(np.float32)] * n,
        [var[None].astype(np.float32)] * n,
    )
    return MonoModel(lang.topo_text, np.asarray(tm.log_probs, dtype=np.float64), gmm)


def sum_results(results: list[PassResult]) -> PassResult:
    total = results[0]
    for r in results[1:]:
        total.stats.add(r.stats)
        total.tid_counts += r.tid_counts
        total.loglike += r.loglike
        total.frames += r.frames
        total.failed += r.failed
        total.retried += r.retried
    return total


def estimate(
    model: MonoModel, res: PassResult, cfg: UpdateConfig, mixup: int, rng: np.random.Generator
) -> MonoModel:
    """gmm-est: transition update, GMM update, mix-up (seeded by `rng`). Returns the new model."""
    _, _, tm, am = model.build()
    update_transitions(tm, res.tid_counts)
    update_gmm(am, res.stats, cfg)
    gmm = split_gmms(GmmParams.from_am(am), res.stats.pdf_occupancy(), mixup, cfg, rng)
    return MonoModel(model.topo_text, np.asarray(tm.log_probs, dtype=np.float64), gmm)


def train(
    lang: Lang,
    utts: list[Utterance],
    nj: int = 2,
    num_iters: int = 25,
    max_gauss: int = 1000,
    realign_iters: list[int] | None = None,
    boost_silence: float = 1.0,
    beam: float = 10.0,
    retry_beam: float = 40.0,
    initial_beam: float = 6.0,
    seed: int = 0,
    log_dir: Path | None = None,
) -> tuple[MonoModel, list[dict], list[str]]:
    """Run the whole monophone training; returns (model, per-pass rows, utterances that never aligned).

    Deterministic for a given `seed` (the mix-up perturbation is the only random step).
    """
    realign = set(default_realign_iters(num_iters) if realign_iters is None else realign_iters)
    model = flat_start(lang, utts)
    num_pdfs = model.gmm.num_pdfs
    max_iter_inc = max(1, int(round(num_iters * 0.75)))
    num_gauss = num_pdfs
    inc_gauss = max(0, (max_gauss - num_gauss) // max_iter_inc)
    rows: list[dict] = []
    with JobPool(str(lang.dir), utts, nj, log_dir=log_dir) as pool:  # log/acc.<job>.log
        too_short = sum(pool.call("equal_align"), [])
        if too_short:
            log.warning(
                "%d utterances are too short for their transcript (equal alignment failed), e.g. %s",
                len(too_short),
                too_short[:5],
            )
        failed_last: list[str] = []
        for it in progress(range(num_iters), desc="mono EM", unit="pass"):
            t0 = time.time()
            opts = AlignOptions(
                beam=initial_beam if it == 1 else beam,
                retry_beam=retry_beam,
                boost_silence=boost_silence,
            )
            do_align = it in realign and it > 0
            res = sum_results(pool.call("run_pass", model, do_align, opts))
            if do_align:
                failed_last = res.failed
            if res.frames == 0:
                raise GmmError("no utterance could be aligned: check features and transcripts")
            cfg = UpdateConfig(min_gaussian_occupancy=3.0 if it == 0 else 10.0)
            model = estimate(
                model,
                res,
                cfg,
                mixup=num_gauss if it > 0 else 0,
                rng=np.random.default_rng([seed, it]),
            )
            row = {
                "pass": it,
                "realigned": int(do_align),
                "avg_loglike": res.loglike / res.frames,
                "frames": res.frames,
                "num_gauss": model.gmm.num_gauss,
                "align_failed": len(res.failed) if do_align else "",
                "seconds": round(time.time() - t0, 2),
            }
            rows.append(row)
            log.info(
                "pass %d%s: avg loglike/frame %.4f over %d frames, %d Gaussians%s",
                it,
                " (realigned)" if do_align else "",
                row["avg_loglike"],
                res.frames,
                row["num_gauss"],
                f", {len(res.failed)} failed to align" if do_align else "",
            )
            if 0 < it <= max_iter_inc:
                num_gauss = min(max_gauss, num_gauss + inc_gauss)
    return model, rows, sorted(set(too_short) | set(failed_last))


def write_likelihood_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m steps_py.gmm.train_mono",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--data",
        type=Path,
        default=Path("data/train"),
        help="training data dir (text + mfcc/) (default %(default)s)",
    )
    ap.add_argument(
        "--lang", type=Path, default=Path("data/lang"), help="lang dir (default %(default)s)"
    )
    add_output_options(
        ap, "model dir", Path("exp/mono"), force_help="retrain even if --out is done"
    )
    add_jobs_options(ap, "parallel jobs for alignment and accumulation")
    ap.add_argument("--num-iters", type=int, default=25, help="EM passes (default %(default)s)")
    ap.add_argument(
        "--max-gauss",
        type=int,
        default=1000,
        help="target total number of Gaussians (default %(default)s)",
    )
    ap.add_argument(
        "--realign-iters",
        type=str,
        default=None,
        help="space/comma separated passes to realign at (default: Kaldi's schedule below --num-iters)",
    )
    add_alignment_options(ap)
    return ap


def run(args: argparse.Namespace) -> None:
    if args.num_iters < 1 or args.max_gauss < 1:
        raise GmmError(
            f"--num-iters {args.num_iters}, --max-gauss {args.max_gauss}: each must be >= 1"
        )
    t0 = time.time()
    lang = Lang.load(args.lang)
    feats: FeatureSource = open_mfcc(args.data)
    utts, report = load_utterances(args.data, lang, feats)
    log.info("%d utterances loaded from %s; %s", len(utts), args.data, report.summary())
    if not utts:
        raise GmmError(f"no usable utterance in {args.data}")
    try:
        realign = (
            None
            if args.realign_iters is None
            else [int(x) for x in args.realign_iters.replace(",", " ").split()]
        )
    except ValueError:
        raise GmmError(
            f"--realign-iters {args.realign_iters!r}: give pass numbers, e.g. '1 2 3 5 10'"
        ) from None
    model, rows, failed = train(
        lang,
        utts,
        args.nj,
        args.num_iters,
        args.max_gauss,
        realign,
        args.boost_silence,
        args.beam,
        args.retry_beam,
        log_dir=args.out / "log",
    )
    save_model(args.out / "final.npz", model)
    atomic_write_text(args.out / "num_pdfs", f"{model.gmm.num_pdfs}\n")
    write_likelihood_csv(args.out / "log" / "likelihood.csv", rows)
    lines = [f"{u} {why}" for u, why in sorted(report.skipped.items())] + [
        f"{u} not-aligned-in-last-pass" for u in failed
    ]
    atomic_write_text(args.out / "report.txt", "".join(x + "\n" for x in lines))
    info = {
        "num_pdfs": model.gmm.num_pdfs,
        "num_gauss": model.gmm.num_gauss,
        "utterances": len(utts),
        "skipped": len(report.skipped),
        "oov_tokens": sum(report.oov_tokens.values()),
        "final_avg_loglike": rows[-1]["avg_loglike"],
        "seconds": round(time.time() - t0, 1),
    }
    atomic_write_json(args.out / "info.json", info)
    mark_done(args.out, info)
    log.info(
        "done in %.1f s: %d pdfs, %d Gaussians, final avg loglike %.4f",
        time.time() - t0,
        info["num_pdfs"],
        info["num_gauss"],
        info["final_avg_loglike"],
    )


def main(argv: list[str] | None = None) -> int:
    return step_main(
        "gmm.train_mono",
        build_parser(),
        run,
        argv,
        log_file=lambda a: a.out / "log" / "train.log",
        done_dir=lambda a: a.out,
        done_state="already trained",
        inputs=lambda a: [a.data, a.data / "mfcc", a.lang],
        user_errors=(LangError, ModelError),
    )


if __name__ == "__main__":
    raise SystemExit(main())
