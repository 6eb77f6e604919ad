"""An alignment dir as later steps read it: `AlignmentDir`, written by
``python -m steps_py.gmm.align`` (``exp/mono_ali/<set>``):

* ``ali.scp`` + ``ali.ark``: per-frame transition ids of every aligned utterance;
* ``pdf.scp`` + ``pdf.ark``: the same frames as pdf ids (what the networks are trained on);
* ``report.txt``: the success rate and every utterance not aligned, with the reason.

The int32-vector ark+scp files are read and written by `steps_py.kaldi.int_vector_ark` (the
one reader of int32-vector tables); a missing scp is a FileNotFoundError and a damaged one
an `AlignmentReadError`, both naming the file and the align command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steps_py.kaldi.int_vector_ark import read_int32_vectors


@dataclass(frozen=True)
class AlignmentDir:
    path: Path

    TRANSITIONS, PDFS, REPORT = "ali.scp", "pdf.scp", "report.txt"
    FILES = (TRANSITIONS, "ali.ark", PDFS, "pdf.ark", REPORT)

    def transitions(self) -> dict[str, np.ndarray]:
        """Per-frame transition ids of every aligned utterance."""
        return read_int32_vectors(Path(self.path) / self.TRANSITIONS)

    def pdfs(self) -> dict[str, np.ndarray]:
        """Per-frame pdf ids of every aligned utterance (GMM stages and the NN egs)."""
        return read_int32_vectors(Path(self.path) / self.PDFS)

    def has_pdfs(self) -> bool:
        return (Path(self.path) / self.PDFS).is_file()

    def not_aligned(self) -> dict[str, str]:
        """Utterances the aligner reported it could not align (``report.txt``), with the
        reason; an empty dict when there is no report (a dir not written by gmm.align)."""
        report = Path(self.path) / self.REPORT
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
