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


def read_int32_vectors(scp: Path) -> dict[str, np.ndarray]:
    scp = Path(scp)
    if not scp.is_file():
        raise FileNotFoundError(f"{scp} not found: run `python -m steps_py.gmm.align` first")
    out: dict[str, np.ndarray] = {}
    for key, vec in kio.SequentialInt32VectorReader(f"scp:{scp}"):
        out[key] = np.asarray(vec, dtype=np.int32)
    return out


def read_pdf_alignments(ali_dir: Path) -> dict[str, np.ndarray]:
    """Per-frame pdf ids of every aligned utterance of `ali_dir` (e.g. exp/mono_ali/train)."""
    return read_int32_vectors(Path(ali_dir) / "pdf.scp")


def read_transition_alignments(ali_dir: Path) -> dict[str, np.ndarray]:
    """Per-frame transition ids of every aligned utterance of `ali_dir`."""
    return read_int32_vectors(Path(ali_dir) / "ali.scp")
