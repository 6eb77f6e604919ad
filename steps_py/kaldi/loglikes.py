"""A network's pseudo log-likelihoods of a data dir as a Kaldi float-matrix archive.

    python -m steps_py.kaldi.loglikes --model exp/dnn_ma_n4/final/ema-hl100000.safetensors \\
        --data data/test --out exp/dnn_ma_n4/loglikes_test

Writes ``<out>/loglikes.{ark,scp}`` (one ``T x num_pdfs`` float matrix per utterance:
log posteriors minus the model's log priors, exactly what ``steps_py.decode.nnet`` decodes)
with kaldi-native-io, Kaldi's own matrix writer. Kaldi decodes them with the transition
model of the alignments the network was trained on and an HCLG with transition-id labels,
e.g. the project's (``python -m steps_py.kaldi.export`` for final.mdl)::

    latgen-faster-mapped --acoustic-scale=0.1 --word-symbol-table=exp/mono/graph/words.txt \\
        exp/mono_kaldi/final.mdl exp/mono/graph/HCLG.fst scp:<out>/loglikes.scp ark:lat.1

``<out>/info.json`` records the model, the pdf count and that command.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from steps_py.cli import StepError, add_output_options, progress, step_main
from steps_py.fileio import atomic_path, atomic_write_json, mark_done

log = logging.getLogger("kaldi.loglikes")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m steps_py.kaldi.loglikes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--model",
        type=Path,
        required=True,
        help="acoustic model .safetensors (final/ of steps_py.parallel.train)",
    )
    ap.add_argument("--data", type=Path, required=True, help="data dir with fbank features")
    add_output_options(
        ap, "output dir for loglikes.{ark,scp}", force_help="rewrite even if --out is done"
    )
    ap.add_argument(
        "--priors",
        choices=["model", "counts"],
        default="model",
        help="log priors to subtract: the model's adjusted ones or the alignment counts' (default: %(default)s)",
    )
    return ap


def write_matrix_archive(
    out_dir: Path, name: str, items: Iterable[tuple[str, np.ndarray]], final_dir: Path | None = None
) -> tuple[int, int, int]:
    """Stream ``(key, matrix)`` into ``<out_dir>/<name>.{ark,scp}`` with kaldi-native-io.

    The scp entries name ``<final_dir>/<name>.ark`` (default `out_dir`): the dir an atomic
    writer will rename `out_dir` to. Returns (entries, frames, columns).
    """
    import kaldi_native_io as kio

    out_dir = Path(out_dir)
    final_ark = (Path(final_dir or out_dir) / f"{name}.ark").resolve()
    tmp_scp = out_dir / f".{name}.scp.tmp-{os.getpid()}"
    w = kio.FloatMatrixWriter(f"ark,scp:{out_dir / (name + '.ark')},{tmp_scp}")
    n = frames = cols = 0
    for key, m in items:
        m = np.ascontiguousarray(m, dtype=np.float32)
        if cols and m.shape[1] != cols:
            raise StepError(f"utterance {key}: {m.shape[1]} columns, earlier ones had {cols}")
        w.write(key, m)
        n, frames, cols = n + 1, frames + m.shape[0], m.shape[1]
    w.close()
    lines = [
        f"{k} {final_ark}:{loc.rsplit(':', 1)[1]}\n"
        for k, loc in (
            ln.split(maxsplit=1) for ln in tmp_scp.read_text(encoding="utf-8").splitlines()
        )
    ]
    (out_dir / f"{name}.scp").write_text("".join(lines), encoding="utf-8")
    tmp_scp.unlink()
    return n, frames, cols


def run(args: argparse.Namespace) -> int:
    from steps_py.decode.scorers import NnetScorer

    try:
        scorer = NnetScorer(args.model, args.priors)  # the decoder's own acoustic scores
        reader = scorer.open_features(args.data)
    except (StepError, FileNotFoundError, ValueError) as e:
        raise StepError(str(e)) from None
    utts = sorted(reader.utts)
    if not utts:
        raise StepError(f"{args.data} has no utterances with fbank features")
    cmd = (
        f"latgen-faster-mapped --acoustic-scale=0.1 --word-symbol-table=<graph>/words.txt <exp>/final.mdl "
        f"<graph>/HCLG.fst scp:{args.out.resolve()}/loglikes.scp ark:lat.1"
    )
    scores = ((u, scorer.loglikes(reader, u)) for u in progress(utts, desc="loglikes", unit="utt"))
    with atomic_path(args.out) as tmp:
        tmp.mkdir(parents=True)
        n, frames, num_pdfs = write_matrix_archive(tmp, "loglikes", scores, final_dir=args.out)
        info = {
            "model": str(args.model),
            "data": str(args.data),
            "utterances": n,
            "num_pdfs": num_pdfs,
            "frames": frames,
            "priors": args.priors,
            "kaldi_command": cmd,
        }
        atomic_write_json(tmp / "info.json", info)
        mark_done(tmp, {"utterances": n})
    log.info(
        "wrote %d utterances (%d pdfs) to %s/loglikes.scp; decode with Kaldi: %s",
        n,
        num_pdfs,
        args.out,
        cmd,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main(
        "kaldi.loglikes",
        build_parser(),
        run,
        argv,
        done_dir=lambda a: a.out,
        done_state="already written",
    )


if __name__ == "__main__":
    raise SystemExit(main())
