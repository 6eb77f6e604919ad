"""The shared directory writer (``fileio.atomic_path``) never replaces what a step did not make."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps_py import fileio
from steps_py.fileio import ForeignOutputError, atomic_path, mark_done, unmark_done


def _write(out: Path, names: list[str]) -> None:
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for n in names:
            (tmp / n).write_text(n)
        mark_done(tmp)


def test_a_users_file_in_out_is_never_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fileio, "_current_step", "kaldi.export")
    out = tmp_path / "D"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ForeignOutputError, match=r"would delete notes.txt; give an --out of its"):
        _write(out, ["final.mdl"])
    assert (out / "notes.txt").read_text() == "mine" and not (out / "final.mdl").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["D"]  # no temporary left behind


def test_another_steps_dir_is_refused_the_same_steps_dir_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "exp"
    monkeypatch.setattr(fileio, "_current_step", "gmm.train_mono")
    _write(out, ["final.npz", "ali.1"])
    monkeypatch.setattr(fileio, "_current_step", "mkgraph")
    with pytest.raises(ForeignOutputError, match=r"\(it was made by gmm.train_mono\)"):
        _write(out, ["HCLG.fst"])
    monkeypatch.setattr(fileio, "_current_step", "gmm.train_mono")
    unmark_done(out)  # a --force redo removes .done first; the maker is still known
    _write(out, ["final.npz"])  # fewer files than before: fine, it is the step's own dir
    assert sorted(p.name for p in out.iterdir()) == [".done", "final.npz"]
    _write(tmp_path / "empty", [])  # an empty or missing dir is always fine
    (tmp_path / "e2").mkdir()
    _write(tmp_path / "e2", ["x"])
