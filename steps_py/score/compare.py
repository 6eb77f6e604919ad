"""Scoreboards side by side: the same systems trained under different conditions (e.g. the
networks on monophone vs triphone targets), one row per system, dev and test CER per board.

    python -m steps_py.score.compare \\
        --board "monophone targets=work_mono/results/scoreboard.json" \\
        --board "triphone targets=results/scoreboard.json" --out results/targets.md

Each board is a ``scoreboard.json`` written by ``python -m steps_py.score.scoreboard``; a
system missing from a board shows "-" there. The table is meant for README
(``python -m steps_py.score.readme --what targets``), so it is written by code from real runs.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from steps_py.cli import StepError, step_main
from steps_py.fileio import atomic_write_text

log = logging.getLogger("compare")


class CompareError(StepError):
    """A scoreboard to compare is missing or not a scoreboard."""


def read_board(spec: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """``LABEL=PATH`` -> (label, {system: row})."""
    label, sep, path = spec.partition("=")
    if not sep or not label or not path:
        raise CompareError(f"--board {spec!r}: give LABEL=PATH/scoreboard.json")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return label, {row["system"]: row for row in data["systems"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CompareError(
            f"--board {spec!r}: {path} is not a readable scoreboard.json ({e}); run "
            "python -m steps_py.score.scoreboard first"
        ) from None


def _cer(row: dict[str, Any] | None, split: str) -> str:
    v = None if row is None else row.get(f"{split}_cer_mean")
    return "-" if v is None else f"{v:.2f}"


def compare_md(boards: list[tuple[str, dict[str, dict[str, Any]]]]) -> str:
    systems: list[str] = []
    for _, rows in boards:
        systems += [s for s in rows if s not in systems]
    head = ["system", "model"]
    for label, _ in boards:
        head += [f"dev CER % ({label})", f"test CER % ({label})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for s in systems:
        model = next((rows[s].get("model", "-") for _, rows in boards if s in rows), "-")
        cells = [s, str(model)]
        for _, rows in boards:
            cells += [_cer(rows.get(s), "dev"), _cer(rows.get(s), "test")]
        lines.append("| " + " | ".join(cells) + " |")
    labels = ", ".join(f"{label}" for label, _ in boards)
    return (
        f"# Scoreboards compared ({labels})\n\n"
        "CER in %, each board's own dev-chosen LM weight and penalty; mean over seeds where a "
        "system has several.\n\n" + "\n".join(lines) + "\n"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m steps_py.score.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--board",
        action="append",
        required=True,
        help="LABEL=PATH of a scoreboard.json; give two or more",
    )
    p.add_argument("--out", type=Path, required=True, help="markdown file to write")
    return p


def run(args: argparse.Namespace) -> int:
    if len(args.board) < 2:
        raise CompareError("give at least two --board LABEL=PATH to compare")
    md = compare_md([read_board(b) for b in args.board])
    atomic_write_text(args.out, md)
    log.info("wrote %s (%d boards)", args.out, len(args.board))
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main("compare", build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
