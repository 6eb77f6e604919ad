"""Atomic outputs and Kaldi data-dir reading/writing."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps_py.data.kaldi_dir import DataDirError, KaldiDataDir, read_rejected, write_rejected
from steps_py.fileio import atomic_path, atomic_write_text, is_done, mark_done


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "a" / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [x.name for x in p.parent.iterdir()] == ["f.txt"]


def test_atomic_dir_appears_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "x").write_text("partial")
        raise RuntimeError("stage failed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "x").write_text("full")
    assert (target / "x").read_text() == "full"
    assert not is_done(target)
    mark_done(target, {"n": 1})
    assert is_done(target)


def test_kaldi_dir_round_trip(tmp_path: Path) -> None:
    d = KaldiDataDir(
        wav={"s1-u2": "/a/2.wav", "s1-u1": "/a/1.wav", "s2-u1": "/b/1.wav"},
        text={"s1-u2": "你 好", "s1-u1": "导 航", "s2-u1": "天 气"},
        utt2spk={"s1-u2": "s1", "s1-u1": "s1", "s2-u1": "s2"},
        utt2dur={"s1-u2": 1.5, "s1-u1": 2.0, "s2-u1": 0.75},
    )
    d.write(tmp_path)
    assert (tmp_path / "spk2utt").read_text() == "s1 s1-u1 s1-u2\ns2 s2-u1\n"
    assert (tmp_path / "wav.scp").read_text().splitlines()[0] == "s1-u1 /a/1.wav"
    back = KaldiDataDir.load(tmp_path)
    assert back == d
    assert back.subset({"s2-u1"}).utts == ["s2-u1"]


def test_kaldi_dir_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataDirError, match="missing wav.scp"):
        KaldiDataDir.load(tmp_path)
    (tmp_path / "wav.scp").write_text("u1 a.wav\nu1 b.wav\n")
    (tmp_path / "text").write_text("u1 你\n")
    (tmp_path / "utt2spk").write_text("u1 s\n")
    with pytest.raises(DataDirError, match=r"wav.scp:2: duplicate id 'u1'"):
        KaldiDataDir.load(tmp_path)


def test_rejected_merges(tmp_path: Path) -> None:
    write_rejected(tmp_path, {"u1": "missing file x.wav"})
    write_rejected(tmp_path, {"u2": "empty transcript"})
    assert read_rejected(tmp_path) == {"u1": "missing file x.wav", "u2": "empty transcript"}
