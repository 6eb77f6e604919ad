"""Scoreboards side by side (steps_py.score.compare): rows from every board, '-' where a
board lacks a system, and a clear error for a missing board."""

from __future__ import annotations

import json
from pathlib import Path

from steps_py.score.compare import main


def _board(path: Path, rows: dict[str, tuple[float, float]]) -> Path:
    systems = [
        {"system": s, "model": s.split("_")[0], "dev_cer_mean": d, "test_cer_mean": t}
        for s, (d, t) in rows.items()
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"sets": ["dev", "test"], "systems": systems}), encoding="utf-8")
    return path


def test_two_boards_side_by_side(tmp_path: Path) -> None:
    a = _board(tmp_path / "a/scoreboard.json", {"mono": (40.0, 45.5), "dnn_ma_n1/global": (20, 22)})
    b = _board(tmp_path / "b/scoreboard.json", {"mono": (40.0, 45.5), "tri1": (30.25, 33.0)})
    out = tmp_path / "targets.md"
    assert (
        main(["--board", f"mono targets={a}", "--board", f"tri targets={b}", "--out", str(out)])
        == 0
    )
    lines = out.read_text(encoding="utf-8").splitlines()
    assert "| system | model | dev CER % (mono targets) | test CER % (mono targets) |" in lines[4]
    assert "| mono | mono | 40.00 | 45.50 | 40.00 | 45.50 |" in lines
    assert "| dnn_ma_n1/global | dnn | 20.00 | 22.00 | - | - |" in lines
    assert "| tri1 | tri1 | - | - | 30.25 | 33.00 |" in lines


def test_a_missing_board_names_it(tmp_path: Path, capsys) -> None:
    a = _board(tmp_path / "a/scoreboard.json", {"mono": (1.0, 2.0)})
    rc = main(
        ["--board", f"x={a}", "--board", f"y={tmp_path}/nope.json", "--out", str(tmp_path / "o.md")]
    )
    assert rc == 1
    assert "nope.json is not a readable scoreboard.json" in capsys.readouterr().err
