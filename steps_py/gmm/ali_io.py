"""An alignment dir as later steps read it (``python -m steps_py.gmm.align`` writes it):
``ali.scp`` (transition ids), ``pdf.scp`` (pdf ids), both Kaldi int32-vector ark+scp files
read and written by `steps_py.kaldi.int_vector_ark` (the one reader of int32-vector tables),
and ``report.txt`` (the utterances it could not align).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from steps_py.kaldi.int_vector_ark import read_int32_vectors


def read_pdf_alignments(ali_dir: Path) -> dict[str, np.ndarray]:
    """Per-frame pdf ids of every aligned utterance of `ali_dir` (e.g. exp/mono_ali/train),
    from its ``pdf.scp``; the one reader of them (GMM stages and the NN egs)."""
    return read_int32_vectors(Path(ali_dir) / "pdf.scp")


def read_not_aligned(ali_dir: Path) -> dict[str, str]:
    """Utterances the aligner reported it could not align (``report.txt``), with the reason.

    An empty dict when there is no report (an older dir, or one not written by gmm.align).
    """
    report = Path(ali_dir) / "report.txt"
    if not report.is_file():
        return {}
    lines = report.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("not_aligned ")]
    out: dict[str, str] = {}
    for line in lines[starts[0] + 1 :] if starts else []:
        parts = line.split(maxsplit=1)
        if parts:
            out[parts[0]] = parts[1] if len(parts) > 1 else ""
    return out


def read_transition_alignments(ali_dir: Path) -> dict[str, np.ndarray]:
    """Per-frame transition ids of every aligned utterance of `ali_dir`."""
    return read_int32_vectors(Path(ali_dir) / "ali.scp")
