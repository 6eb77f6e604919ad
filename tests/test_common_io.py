"""Atomic outputs and Kaldi data-dir reading/writing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from steps_py.data.kaldi_dir import DataDirError, KaldiDataDir, read_rejected, write_rejected
from steps_py.fileio import (
    atomic_path,
    atomic_write_text,
    changed_inputs,
    is_done,
    mark_done,
    remove_stale_temps,
    skip_done,
)


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


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_temporaries_of_killed_processes_are_removed(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getppid()
    out = tmp_path / "synth"
    stale_dir = tmp_path / f".synth.tmp-{dead}"  # a killed step's half-built dir (old name form)
    stale_dir.mkdir()
    (stale_dir / "x.wav").write_text("partial")
    stale_file = tmp_path / f".synth.tmp-{dead}@{socket.gethostname()}~abc"
    stale_file.write_text("partial")
    live = tmp_path / f".synth.tmp-{alive}"  # a running writer: left alone
    live.mkdir()
    remote = (
        tmp_path / f".synth.tmp-{dead}@another-host"
    )  # another machine's (shared disk): left alone
    remote.mkdir()
    other = tmp_path / f".synthx.tmp-{dead}"  # another output's: not ours to judge here
    other.mkdir()
    with atomic_path(out) as tmp:
        tmp.mkdir()
    assert out.is_dir()
    assert not stale_dir.exists() and not stale_file.exists()
    assert live.exists() and remote.exists() and other.exists()
    # files written with atomic_write_text clean up after their killed writers too
    f = tmp_path / "num_pdfs"
    leftover = tmp_path / f".num_pdfs.tmp-{dead}@{socket.gethostname()}~k2j3"
    leftover.write_text("1")
    atomic_write_text(f, "7\n")
    assert not leftover.exists() and f.read_text() == "7\n"
    assert remove_stale_temps(out) == []


def test_input_stamps_make_later_steps_redo(tmp_path: Path) -> None:
    up, down = tmp_path / "ali", tmp_path / "egs"
    up.mkdir()
    down.mkdir()
    mark_done(up, {"aligned": 3})
    mark_done(down, {"frames": 10}, inputs=[up, tmp_path / "feats.scp"])
    assert json.loads((down / ".done").read_text())["frames"] == 10
    assert skip_done(down, force=False, inputs=[up, tmp_path / "feats.scp"])  # nothing changed
    assert changed_inputs(down, [up]) == []
    mark_done(up, {"aligned": 3})  # the upstream step was redone (same summary, new marker)
    assert "redone or changed since" in changed_inputs(down, [up])[0]
    assert not skip_done(down, force=False, inputs=[up])
    assert not is_done(down)  # the stale marker is gone: a redo that fails is not taken for done
    # a file input: size and mtime; a new file appearing counts as a change
    mark_done(down, {}, inputs=[up, tmp_path / "feats.scp"])
    (tmp_path / "feats.scp").write_text("u1 a.ark:1\n")
    assert "feats.scp" in changed_inputs(down, [tmp_path / "feats.scp"])[0]
    # an input it was not made from counts as changed; a marker without stamps is trusted
    mark_done(down, {}, inputs=[up])
    assert "not recorded" in changed_inputs(down, [tmp_path / "lang"])[0]
    (down / ".done").write_text("{}\n")
    assert skip_done(down, force=False, inputs=[up])
    assert not skip_done(down, force=True, inputs=[up]) and not is_done(down)


def test_input_stamps_survive_moving_the_workdir(tmp_path: Path) -> None:
    a = tmp_path / "a"
    (a / "data").mkdir(parents=True)
    (a / "exp").mkdir()
    mark_done(a / "data", {})
    mark_done(a / "exp", {}, inputs=[a / "data"])
    b = tmp_path / "b"
    a.rename(b)
    assert changed_inputs(b / "exp", [b / "data"]) == []


def test_run_sh_skip_check_cli(tmp_path: Path) -> None:
    from steps_py.fileio import main

    egs, final = tmp_path / "egs", tmp_path / "run" / "final"
    egs.mkdir()
    final.mkdir(parents=True)
    mark_done(egs, {})
    assert main(["is-current", str(final), str(egs)]) == 1  # not trained
    mark_done(final, {"summary": "summary.json"})  # the trainer's marker: no stamps
    assert main(["is-current", str(final), str(egs)]) == 0  # taken as current
    assert main(["record-inputs", str(final), str(egs)]) == 0
    assert json.loads((final / ".done").read_text())["summary"] == "summary.json"
    assert main(["is-current", str(final), str(egs)]) == 0
    mark_done(egs, {})
    assert main(["is-current", str(final), str(egs)]) == 3  # examples remade: retrain


def test_alignment_writer_removes_a_killed_writers_temporaries(tmp_path: Path) -> None:
    import numpy as np

    from steps_py.kaldi.int_vector_ark import read_int32_vectors, write_int32_vectors

    dead = _dead_pid()
    left = [tmp_path / f".pdf.ark.tmp-{dead}", tmp_path / f".pdf.scp.tmp-{dead}"]
    for p in left:
        p.write_text("partial")
    write_int32_vectors(tmp_path, "pdf", {"u1": np.array([1, 2, 3])})
    assert not any(p.exists() for p in left)
    assert read_int32_vectors(tmp_path / "pdf.scp")["u1"].tolist() == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pdf.ark", "pdf.scp"]


def test_one_symbol_table_reader_behind_each_stages_error(tmp_path: Path) -> None:
    """words.txt/phones.txt are read by steps_py.lang.symbols; each stage names the line."""
    from steps_py.decode.inputs import GraphError, read_words
    from steps_py.gmm.topo import LangError, read_symbols
    from steps_py.kaldi.lang_import import LangImportError, read_table
    from steps_py.lang.symbols import SymbolTableError, read_symbol_table

    good = tmp_path / "words.txt"
    good.write_text("<eps> 0\n\nA 1\nB 2\n", encoding="utf-8")
    assert read_symbol_table(good) == [("<eps>", 0), ("A", 1), ("B", 2)]
    assert read_words(good) == {0: "<eps>", 1: "A", 2: "B"} and read_symbols(good)["B"] == 2
    bad = tmp_path / "bad" / "words.txt"
    bad.parent.mkdir()
    bad.write_text("<eps> 0\nA one\n", encoding="utf-8")
    for fn, err in (
        (read_symbol_table, SymbolTableError),
        (read_words, GraphError),
        (read_symbols, LangError),
        (read_table, LangImportError),
    ):
        with pytest.raises(err, match=f"{bad}:2: expected '<symbol> <id>'"):
            fn(bad)
    bad.write_bytes(b"\xff 0\n")
    with pytest.raises(GraphError, match="not UTF-8.*--force"):
        read_words(bad)
    bad.write_text("")
    with pytest.raises(GraphError, match="is empty"):
        read_words(bad)


def test_damaged_alignments_are_one_error_naming_the_scp(tmp_path: Path) -> None:
    from steps_py.gmm.ali_io import AlignmentDir
    from steps_py.kaldi.int_vector_ark import AlignmentReadError

    (tmp_path / "pdf.scp").write_text(f"u1 {tmp_path}/pdf.ark:7\n")
    with pytest.raises(AlignmentReadError, match=f"cannot read {tmp_path}/pdf.scp"):
        AlignmentDir(tmp_path).pdfs()
    with pytest.raises(FileNotFoundError, match="run the alignment step"):
        AlignmentDir(tmp_path / "nothing").pdfs()
