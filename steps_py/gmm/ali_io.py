"""Alignments on disk: Kaldi int32-vector ark+scp files (ali = transition ids, pdf = pdf ids).

`write_alignments` writes the ark to a temporary name and renames it with its scp, so a
reader never sees half a file; scp entries point at the final ark path.
"""

from __future__ import annotations

import os
from pathlib import Path

import kaldi_native_io as kio
import numpy as np

from steps_py.fileio import atomic_write_text, temp_sibling


def write_int32_vectors(out_dir: Path, name: str, vectors: dict[str, np.ndarray]) -> None:
    """Write `<out_dir>/<name>.ark` and `<name>.scp` (keys sorted)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final_ark = (out_dir / f"{name}.ark").resolve()
    tmp_ark = temp_sibling(out_dir / f"{name}.ark")
    tmp_scp = temp_sibling(out_dir / f"{name}.scp")
    w = kio.Int32VectorWriter(f"ark,scp:{tmp_ark},{tmp_scp}")
    for key in sorted(vectors):
        w.write(key, [int(x) for x in vectors[key]])
    w.close()
    lines = []
    for line in tmp_scp.read_text(encoding="utf-8").splitlines():
        key, loc = line.split(maxsplit=1)
        lines.append(f"{key} {final_ark}:{loc.rsplit(':', 1)[1]}\n")
    os.replace(tmp_ark, final_ark)
    atomic_write_text(out_dir / f"{name}.scp", "".join(lines))
    tmp_scp.unlink()


class AlignmentReadError(ValueError):
    """An alignment scp/ark that Kaldi's reader rejects; the message names the file and the fix."""


def read_int32_vectors(scp: Path) -> dict[str, np.ndarray]:
    """{key: int32 array} of a Kaldi int32-vector scp; the one reader of alignment files.

    A missing scp is a FileNotFoundError, a damaged one an `AlignmentReadError`; both name
    the file and the stage that rewrites it.
    """
    scp = Path(scp)
    if not scp.is_file():
        raise FileNotFoundError(
            f"{scp} not found: run the alignment step ("
            "`python -m steps_py.gmm.align`) for this set first"
        )
    out: dict[str, np.ndarray] = {}
    try:
        with kio.SequentialInt32VectorReader(f"scp:{scp}") as r:
            for key, vec in r:
                out[key] = np.asarray(vec, dtype=np.int32)
    except RuntimeError as e:
        raise AlignmentReadError(
            f"cannot read {scp} as Kaldi int32 vectors ({str(e).strip()[:200]}); "
            "re-run the alignment stage for this set"
        ) from None
    return out


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
