"""A Kaldi experiment dir (``exp/mono``, ``exp/tri5a_ali``, ...) in and out.

In: ``final.mdl`` (required), ``tree`` (optional, checked against the model) and the
alignments: ``ali.JOB.gz`` (what ``steps/align_si.sh`` and ``steps/train_*.sh`` write),
else any ``*.ali`` / ``ali.*`` archive (e.g. ``train.ali``)::

    exp = KaldiExpDir.open("exp/tri5a_ali")
    pdfs = exp.pdf_alignments()      # {utt: int32 [T]} per-frame pdf ids, with exp.num_pdfs
    tids = exp.transition_alignments()

Out (``write_exp_dir``): ``final.mdl``, ``tree``, ``ali.JOB.gz`` (binary archives, gzipped,
utterances split into ``num_jobs`` contiguous sorted chunks without splitting a speaker
when utt2spk is given), ``num_jobs``, ``final.occs`` (per-pdf frame counts of the
alignments, as Kaldi's gmm-est writes occupancies) and ``phones.txt`` -- what Kaldi's
``steps/train_deltas.sh data/train data/lang <this dir> exp/tri1`` reads from an
alignment dir.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steps_py.cli import StepError
from steps_py.fileio import atomic_write_text
from steps_py.kaldi.alignment import to_pdfs
from steps_py.kaldi.int_vector_ark import (
    job_number,
    read_int32_vector_archives,
    write_int32_vector_archive,
)
from steps_py.kaldi.model_file import KaldiGmmModel, read_kaldi_model, write_kaldi_model
from steps_py.kaldi.stream import KaldiFormatError, KaldiOutput
from steps_py.kaldi.transition_model import TransitionModel
from steps_py.kaldi.tree import ContextDependency, read_tree, write_tree


class KaldiExpError(StepError):
    """A Kaldi exp dir is incomplete or inconsistent; the message names the file and the fix."""


def find_alignment_files(d: Path) -> list[Path]:
    """``ali.JOB.gz`` sorted by job, else ``*.ali`` / ``ali.*`` archives (no scp/txt files)."""
    d = Path(d)
    jobs = sorted(d.glob("ali.*.gz"), key=job_number)
    if jobs:
        return jobs
    other = sorted({*d.glob("*.ali"), *d.glob("*.ali.gz"), *d.glob("ali.*")})
    return [p for p in other if p.is_file() and p.suffix not in (".scp", ".txt", ".log")]


@dataclass
class KaldiExpDir:
    dir: Path
    model: KaldiGmmModel
    tree: ContextDependency | None
    ali_files: list[Path]

    @classmethod
    def open(cls, d: Path) -> KaldiExpDir:
        d = Path(d)
        mdl = d / "final.mdl"
        if not mdl.is_file():
            raise KaldiExpError(
                f"{mdl} not found: --ali-dir must be a Kaldi exp dir with final.mdl and "
                "ali.*.gz (e.g. exp/tri5a_ali)"
            )
        try:
            model = read_kaldi_model(mdl)
            tree = read_tree(d / "tree") if (d / "tree").is_file() else None
        except KaldiFormatError as e:
            raise KaldiExpError(str(e)) from None
        if tree is not None and model.transition_model.is_hmm():
            tm = model.transition_model
            if TransitionModel.from_tree(tree, tm.topo).tuples != tm.tuples:
                raise KaldiExpError(
                    f"{d}/tree does not belong to {mdl}: the transition states it defines differ"
                )
        return cls(d, model, tree, find_alignment_files(d))

    @property
    def transition_model(self) -> TransitionModel:
        return self.model.transition_model

    @property
    def num_pdfs(self) -> int:
        return self.transition_model.num_pdfs

    def transition_alignments(self) -> dict[str, np.ndarray]:
        if not self.ali_files:
            raise KaldiExpError(
                f"{self.dir} has no alignments (ali.*.gz or *.ali); align the data with "
                "Kaldi's steps/align_si.sh (or steps/align_fmllr.sh) into this dir"
            )
        try:
            return read_int32_vector_archives(self.ali_files)
        except KaldiFormatError as e:
            raise KaldiExpError(str(e)) from None

    def pdf_alignments(self) -> dict[str, np.ndarray]:
        """Per-frame pdf ids of every aligned utterance (transition ids mapped with final.mdl)."""
        tm = self.transition_model
        try:
            return {
                u: to_pdfs(tm, a, f"{self.dir}: utterance {u}")
                for u, a in self.transition_alignments().items()
            }
        except KaldiFormatError as e:
            raise KaldiExpError(str(e)) from None


def split_jobs(
    utts: list[str], num_jobs: int, utt2spk: Mapping[str, str] | None = None
) -> list[list[str]]:
    """Sorted utterances in `num_jobs` contiguous chunks of near-equal size (speakers kept whole)."""
    utts = sorted(utts)
    num_jobs = max(1, min(num_jobs, len(utts))) if utts else 1
    groups: list[list[str]] = []
    for u in utts:
        if groups and utt2spk is not None and utt2spk.get(u) == utt2spk.get(groups[-1][-1]):
            groups[-1].append(u)
        else:
            groups.append([u])
    jobs: list[list[str]] = [[] for _ in range(num_jobs)]
    total, done = len(utts), 0
    j = 0
    for g in groups:
        if j < num_jobs - 1 and done >= (j + 1) * total / num_jobs:
            j += 1
        jobs[j].extend(g)
        done += len(g)
    return [x for x in jobs if x] or [[]]


def occupancies_text(counts: np.ndarray) -> bytes:
    out = KaldiOutput(binary=False)
    out.vector(np.asarray(counts, dtype=np.float32))
    return out.getvalue()


def write_exp_dir(
    out: Path,
    model: KaldiGmmModel,
    tree: ContextDependency,
    alignments: Mapping[str, np.ndarray] | None = None,
    num_jobs: int = 1,
    utt2spk: Mapping[str, str] | None = None,
    phones_txt: Path | None = None,
    binary: bool = False,
) -> dict[str, int]:
    """Write a Kaldi exp/alignment dir into `out` (an existing, empty or scratch directory)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_kaldi_model(out / "final.mdl", model, binary=binary)
    write_tree(out / "tree", tree, binary=binary)
    info = {
        "num_pdfs": model.am.num_pdfs,
        "num_gauss": model.am.num_gauss,
        "num_transition_ids": model.transition_model.num_transition_ids,
    }
    if phones_txt is not None:
        shutil.copy(phones_txt, out / "phones.txt")
    if alignments:
        tm = model.transition_model
        counts = np.zeros(model.am.num_pdfs, dtype=np.int64)
        for u, a in alignments.items():
            counts += np.bincount(to_pdfs(tm, a, f"utterance {u}"), minlength=len(counts))
        jobs = split_jobs(list(alignments), num_jobs, utt2spk)
        for j, utts in enumerate(jobs, 1):
            write_int32_vector_archive(out / f"ali.{j}.gz", {u: alignments[u] for u in utts})
        atomic_write_text(out / "num_jobs", f"{len(jobs)}\n")
        (out / "final.occs").write_bytes(occupancies_text(counts))
        info.update(utterances=len(alignments), frames=int(counts.sum()), num_jobs=len(jobs))
    return info
