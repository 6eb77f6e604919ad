"""Align a data dir with a trained GMM (Kaldi's steps/align_si.sh in Python).

    python -m steps_py.gmm.align --data data/train --lang data/lang --model exp/mono --out exp/mono_ali/train --nj 2

Writes <out>/ali.{ark,scp} (transition ids), <out>/pdf.{ark,scp} (pdf ids), one entry
per feature frame; <out>/report.txt (success rate, every utterance not aligned and why),
<out>/../num_pdfs and a .done marker. Beam 10, retry beam 40, as Kaldi.
"""

from __future__ import annotations

import argparse
import functools
import logging
import time
from pathlib import Path

import numpy as np

from steps_py.cli import (
    CMD_HELP,
    add_alignment_options,
    add_jobs_options,
    add_output_options,
    step_main,
)
from steps_py.fileio import atomic_write_text, mark_done
from steps_py.gmm.ali_io import AlignmentDir
from steps_py.gmm.cd_model import find_cd_model, read_cd_model
from steps_py.gmm.data import load_utterances
from steps_py.gmm.feats import open_mfcc
from steps_py.gmm.jobs import AlignOptions, Job, JobPool, Utterance
from steps_py.gmm.model_io import ModelError, read_model
from steps_py.gmm.topo import Lang, LangError
from steps_py.gmm.tri_init import from_kaldi_model
from steps_py.gmm.tri_jobs import TriJob
from steps_py.kaldi.int_vector_ark import write_int32_vectors
from steps_py.kaldi.model_file import KaldiGmmModel
from steps_py.kaldi.tree import ContextDependency
from steps_py.runner import LocalRunner, Runner, parse_cmd, run_python_jobs

log = logging.getLogger("align")


def align_job(
    lang_dir: str, model_path: Path, utts: list[Utterance], opts: AlignOptions
) -> tuple[dict[str, np.ndarray], dict[str, str], int]:
    """One alignment job (gmm-align-compiled over a share of the utterances)."""
    log.info("aligning %d utterances with %s", len(utts), model_path)
    alis, failed, retried = Job(lang_dir, utts).align_model(read_model(model_path), opts)
    log.info("aligned %d, failed %d, retried %d", len(alis), len(failed), retried)
    return alis, failed, retried


def align_utterances(
    lang: Lang,
    model_path: Path,
    utts: list[Utterance],
    nj: int,
    opts: AlignOptions,
    runner: Runner | None = None,
    out: Path | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, str], int]:
    """Returns (transition-id alignments, failed utt -> reason, number retried).

    With `out`, job j logs to `<out>/log/align.<j>.log` as Kaldi's align_si.sh: the `nj` jobs
    of a monophone model run through `runner` (default local), a triphone model's (final.mdl
    + tree) in worker processes; without `out`, in worker processes."""
    cd = find_cd_model(model_path)
    if cd is not None:
        return align_cd(lang, *read_cd_model(*cd), utts, nj, opts, out / "log" if out else None)
    alis: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    retried = 0
    if out is None:
        model = read_model(model_path)
        with JobPool(str(lang.dir), utts, nj) as pool:
            results = pool.call("align_model", model, opts)
    else:
        n = max(1, min(nj, len(utts)))
        jobs = [(str(lang.dir), model_path, utts[i::n], opts) for i in range(n)]
        results = run_python_jobs(
            runner or LocalRunner(), "align", align_job, jobs, out / "log" / "jobs", out / "log"
        )
    for a, f, r in results:
        alis.update(a)
        failed.update(f)
        retried += r
    return alis, failed, retried


def align_cd(
    lang: Lang,
    model: KaldiGmmModel,
    tree: ContextDependency,
    utts: list[Utterance],
    nj: int,
    opts: AlignOptions,
    log_dir: Path | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, str], int]:
    """Align with a context-dependent (triphone) model: final.mdl + tree; with `log_dir`, job j
    logs to ``<log_dir>/align.<j>.log``."""
    tm = model.transition_model
    gmm = from_kaldi_model(model)
    factory = functools.partial(TriJob, tree=tree, tm=tm, alis={})
    alis: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    retried = 0
    with JobPool(str(lang.dir), utts, nj, factory, log_dir, "align") as pool:
        for f, r in pool.call("realign", gmm, tm.log_probs, opts):
            failed.update({u: "alignment-failed: no path within the retry beam" for u in f})
            retried += r
        for a in pool.call("alignments"):
            alis.update(a)
    return alis, failed, retried


def model_tid2pdf(model_path: Path) -> tuple[np.ndarray, int]:
    """(transition id -> pdf, number of pdfs) of a monophone or triphone model."""
    cd = find_cd_model(model_path)
    if cd is not None:
        model, _ = read_cd_model(*cd)
        return model.transition_model.tid2pdf, model.am.num_pdfs
    mono = read_model(model_path)
    _, _, tm, _ = mono.build()
    return np.asarray(tm.transition_id_to_pdf_array(), dtype=np.int32), mono.gmm.num_pdfs


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m steps_py.gmm.align",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--data",
        type=Path,
        default=Path("data/train"),
        help="data dir (text + mfcc/) (default %(default)s)",
    )
    ap.add_argument(
        "--lang", type=Path, default=Path("data/lang"), help="lang dir (default %(default)s)"
    )
    ap.add_argument(
        "--model",
        type=Path,
        default=Path("exp/mono"),
        help="model dir (final.npz, or final.mdl + tree of a triphone model) or model file (default %(default)s)",
    )
    add_output_options(
        ap, "alignment dir", Path("exp/mono_ali/train"), force_help="realign even if --out is done"
    )
    add_jobs_options(ap, cmd_help=f"{CMD_HELP}; job j logs to <out>/log/align.<j>.log")
    add_alignment_options(ap)
    return ap


def run(args: argparse.Namespace) -> None:
    t0 = time.time()
    runner = parse_cmd(args.cmd)
    lang = Lang.load(args.lang)
    utts, report = load_utterances(args.data, lang, open_mfcc(args.data))
    log.info("%d utterances from %s; %s", len(utts), args.data, report.summary())
    opts = AlignOptions(
        beam=args.beam, retry_beam=args.retry_beam, boost_silence=args.boost_silence
    )
    alis, failed, retried = align_utterances(
        lang, args.model, utts, args.nj, opts, runner, args.out
    )
    tid2pdf, num_pdfs = model_tid2pdf(args.model)
    write_int32_vectors(args.out, AlignmentDir.TRANSITIONS.removesuffix(".scp"), alis)
    write_int32_vectors(
        args.out, AlignmentDir.PDFS.removesuffix(".scp"), {u: tid2pdf[a] for u, a in alis.items()}
    )
    atomic_write_text(args.out.parent / "num_pdfs", f"{num_pdfs}\n")
    total = len(utts) + len(report.skipped)
    rate = 100.0 * len(alis) / max(1, total)
    not_aligned = {**report.skipped, **failed}
    lines = [
        f"data {args.data}",
        f"utterances {total}",
        f"aligned {len(alis)}",
        f"success_rate {rate:.2f}%",
        f"retried {retried}",
        f"oov_tokens {sum(report.oov_tokens.values())}",
        f"not_aligned {len(not_aligned)}",
    ] + [f"{u} {why}" for u, why in sorted(not_aligned.items())]
    atomic_write_text(args.out / AlignmentDir.REPORT, "\n".join(lines) + "\n")
    mark_done(args.out, {"aligned": len(alis), "total": total, "success_rate": rate})
    log.info(
        "aligned %d of %d utterances (%.2f %%), %d retried, %d failed, %d skipped; %.1f s",
        len(alis),
        total,
        rate,
        retried,
        len(failed),
        len(report.skipped),
        time.time() - t0,
    )


def main(argv: list[str] | None = None) -> int:
    return step_main(
        "gmm.align",
        build_parser(),
        run,
        argv,
        log_file=lambda a: a.out / "log" / "align.log",
        done_dir=lambda a: a.out,
        done_state="already aligned",
        inputs=lambda a: [a.data, a.data / "mfcc", a.lang, a.model],
        user_errors=(LangError, ModelError),
    )


if __name__ == "__main__":
    raise SystemExit(main())
