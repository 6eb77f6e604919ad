"""Per-frame agreement of the project's alignments with Kaldi's on the digits corpus.

    python -m local.digits.ali_agreement --ali exp/mono_ali/train --model exp/mono \
        --kaldi-exp ../shared/corpora/mandarin_digits/kaldi_exp_mono --out exp/mono_ali/train/kaldi_agreement.json

The project's transition-id alignments (``<ali>/ali.scp``, from ``steps_py.gmm.align`` with
``--model``) and Kaldi's ``train.ali`` (its ``final.mdl``) are both turned into per-frame phone
ids and per-frame pdf ids, each with its own model's transition model, and compared on the
utterances both have (``steps_py.kaldi.alignment.frame_agreement``). The phone ids are the
same table (``steps_py.kaldi.lang_import`` imports Kaldi's lang); pdfs are compared as numbered by each model
(both monophone trees number them phone by phone, HMM state by state). Writes the two
agreements (percent, frames, utterances) as JSON to ``--out`` and logs them.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from steps_py.cli import StepError, step_main
from steps_py.fileio import atomic_write_text
from steps_py.gmm.model_io import load_gmm
from steps_py.kaldi.alignment import frame_agreement, to_pdfs, to_phones
from steps_py.kaldi.exp_dir import KaldiExpDir, KaldiExpError
from steps_py.kaldi.int_vector_ark import read_int32_vectors

log = logging.getLogger("digits.ali_agreement")


def project_labels(
    model_dir: Path, alis: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(phones, pdfs) per frame of the project's transition-id alignments."""
    tm, _ = load_gmm(model_dir)
    n = tm.num_transition_ids
    tid2phone = np.array(
        [0] + [tm.transition_id_to_phone(t) for t in range(1, n + 1)], dtype=np.int32
    )
    tid2pdf = np.array([0] + [tm.transition_id_to_pdf(t) for t in range(1, n + 1)], dtype=np.int32)
    phones, pdfs = {}, {}
    for u, a in alis.items():
        a = np.asarray(a, dtype=np.int64)
        if a.size and (a.min() < 1 or a.max() > n):
            raise StepError(f"utterance {u}: transition ids outside 1..{n} of {model_dir}")
        phones[u], pdfs[u] = tid2phone[a], tid2pdf[a]
    return phones, pdfs


def agreement(ali_dir: Path, model_dir: Path, kaldi_exp: Path) -> dict:
    """Phone and pdf frame agreement of `ali_dir` (aligned with `model_dir`) with Kaldi's alignments."""
    ours = read_int32_vectors(ali_dir / "ali.scp")
    if not ours:
        raise StepError(
            f"{ali_dir}/ali.scp has no alignments: run python -m steps_py.gmm.align first"
        )
    try:
        exp = KaldiExpDir.open(kaldi_exp)
        kaldi = exp.transition_alignments()
    except KaldiExpError as e:
        raise StepError(str(e)) from None
    ktm = exp.transition_model
    kaldi = {u: a for u, a in kaldi.items() if u in ours}
    our_phones, our_pdfs = project_labels(model_dir, ours)
    phones = frame_agreement(our_phones, {u: to_phones(ktm, a, u) for u, a in kaldi.items()})
    pdfs = frame_agreement(our_pdfs, {u: to_pdfs(ktm, a, u) for u, a in kaldi.items()})
    return {
        "alignments": str(ali_dir),
        "model": str(model_dir),
        "kaldi_exp": str(kaldi_exp),
        "phone": phones.to_dict(),
        "pdf": pdfs.to_dict(),
        "phone_summary": phones.summary(),
        "pdf_summary": pdfs.summary(),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m local.digits.ali_agreement",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--ali",
        type=Path,
        required=True,
        help="the project's alignment dir (ali.scp), e.g. exp/mono_ali/train",
    )
    p.add_argument(
        "--model",
        type=Path,
        required=True,
        help="the GMM those alignments were made with (e.g. exp/mono)",
    )
    p.add_argument(
        "--kaldi-exp",
        type=Path,
        required=True,
        help="Kaldi exp dir with final.mdl and *.ali / ali.*.gz",
    )
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    return p


def run(args: argparse.Namespace) -> int:
    info = agreement(args.ali, args.model, args.kaldi_exp)
    atomic_write_text(args.out, json.dumps(info, indent=1) + "\n")
    log.info("phones: %s", info["phone_summary"])
    log.info("pdfs:   %s", info["pdf_summary"])
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main(
        "digits.ali_agreement", build_parser(), run, argv, user_errors=(FileNotFoundError,)
    )


if __name__ == "__main__":
    raise SystemExit(main())
