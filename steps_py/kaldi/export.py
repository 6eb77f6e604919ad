"""Export the project's GMM (and its alignments) as a Kaldi exp dir.

    python -m steps_py.kaldi.export --model exp/mono --ali exp/mono_ali/train \\
        --lang data/lang --data data/train --out exp/mono_kaldi --nj 4

Writes ``<out>/final.mdl`` (Kaldi text format unless ``--binary``), ``tree`` (the monophone
ContextDependency), and with ``--ali``: ``ali.JOB.gz`` (transition ids, Kaldi binary
archives), ``num_jobs``, ``final.occs``; ``phones.txt`` from ``--lang``. Kaldi reads the result
as an alignment dir, e.g. ``steps/train_deltas.sh 2000 10000 data/train data/lang
exp/mono_kaldi exp/tri1`` (Kaldi's data dir must have the same utterance ids and its
features the same frame count), or ``gmm-info exp/mono_kaldi/final.mdl``. The written files
are read back and checked before the dir is marked done.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from steps_py.cli import StepError, add_jobs_options, add_output_options, step_main
from steps_py.fileio import atomic_path, atomic_write_json, mark_done
from steps_py.kaldi.exp_dir import KaldiExpDir, write_exp_dir
from steps_py.kaldi.int_vector_ark import read_int32_vectors
from steps_py.kaldi.model_file import from_mono_model, is_kaldi_model_file, read_kaldi_model
from steps_py.kaldi.stream import KaldiFormatError
from steps_py.kaldi.tree import ContextDependency, read_tree

log = logging.getLogger("kaldi.export")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m steps_py.kaldi.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--model",
        type=Path,
        default=Path("exp/mono"),
        help="GMM: exp dir with final.npz, or the npz (default: %(default)s)",
    )
    ap.add_argument(
        "--ali",
        type=Path,
        default=None,
        help="project alignment dir with ali.scp (e.g. exp/mono_ali/train); default: none",
    )
    ap.add_argument(
        "--lang",
        type=Path,
        default=None,
        help="lang dir whose phones.txt is copied (default: none)",
    )
    ap.add_argument(
        "--data",
        type=Path,
        default=None,
        help="data dir whose utt2spk keeps speakers in one job (default: none)",
    )
    add_output_options(
        ap,
        "output Kaldi exp dir",
        Path("exp/mono_kaldi"),
        force_help="rewrite even if --out is done",
    )
    add_jobs_options(ap, "number of ali.JOB.gz files", nj_default=4)
    ap.add_argument(
        "--binary",
        action="store_true",
        help="write final.mdl and tree in Kaldi binary (default: text)",
    )
    return ap


def load_model(path: Path):
    """(KaldiGmmModel, ContextDependency) for a project npz or a Kaldi final.mdl."""
    from steps_py.gmm.model_io import ModelError, read_model

    path = Path(path)
    mdl = path / "final.mdl" if path.is_dir() and not (path / "final.npz").is_file() else path
    try:
        if mdl.is_file() and is_kaldi_model_file(mdl):
            model = read_kaldi_model(mdl)
            tree_file = mdl.parent / "tree"
            tree = (
                read_tree(tree_file)
                if tree_file.is_file()
                else ContextDependency.monophone(model.transition_model.topo)
            )
            return model, tree
        return from_mono_model(read_model(path))
    except (ModelError, KaldiFormatError) as e:
        raise StepError(f"{path}: {e}") from None


def run(args: argparse.Namespace) -> int:
    model, tree = load_model(args.model)
    alignments = None
    if args.ali is not None:
        scp = args.ali / "ali.scp"
        if not scp.is_file():
            raise StepError(
                f"{scp} not found: align the set first (python -m steps_py.gmm.align --out {args.ali})"
            )
        alignments = read_int32_vectors(scp)
    utt2spk = None
    if args.data is not None and (args.data / "utt2spk").is_file():
        from steps_py.data.kaldi_dir import read_kaldi_map

        utt2spk = read_kaldi_map(args.data / "utt2spk")
    phones = None
    if args.lang is not None:
        phones = args.lang / "phones.txt"
        if not phones.is_file():
            raise StepError(f"{phones} not found: --lang must be a lang dir")
    with atomic_path(args.out) as tmp:
        try:
            info = write_exp_dir(
                tmp, model, tree, alignments, args.nj, utt2spk, phones, args.binary
            )
        except KaldiFormatError as e:
            raise StepError(
                f"{args.ali}: {e} (the alignments and --model must come from the same training)"
            ) from None
        back = KaldiExpDir.open(tmp)  # read back what was written
        if back.model.to_bytes(False) != model.to_bytes(False):
            raise StepError("internal error: the written final.mdl does not read back to the model")
        if alignments is not None:
            got = back.transition_alignments()
            if set(got) != set(alignments) or any(
                (got[u] != alignments[u]).any() for u in alignments
            ):
                raise StepError(
                    "internal error: the written ali.*.gz do not read back to the alignments"
                )
        atomic_write_json(
            tmp / "export.json", {**info, "model": str(args.model), "ali": str(args.ali)}
        )
        mark_done(tmp, info)
    log.info("wrote Kaldi exp dir %s: %s", args.out, info)
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main(
        "kaldi.export",
        build_parser(),
        run,
        argv,
        done_dir=lambda a: a.out,
        done_state="already exported",
    )


if __name__ == "__main__":
    raise SystemExit(main())
