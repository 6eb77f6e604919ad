"""Copy the latest scoreboard into README.md, between the scoreboard markers.

    python -m steps_py.score.readme --results results --readme README.md --command "./run.sh"

The README's table is never typed in: this step copies `results/scoreboard.md` (written by
`python -m steps_py.score.scoreboard` from the exp dirs) and says which command and which
run log produced it.
"""

from __future__ import annotations

import argparse
import platform
import re
from pathlib import Path

from steps_py.fileio import atomic_write_text

BEGIN = "<!-- scoreboard:begin -->"
END = "<!-- scoreboard:end -->"


def render(board_md: str, command: str, note: str) -> str:
    body = board_md.strip()
    body = re.sub(r"^# Scoreboard\s*", "", body)  # README has its own heading
    body = re.sub(r"!\[([^\]]*)\]\(([^)/]+\.png)\)", r"![\1](results/\2)", body)  # plots live in results/
    header = f"Produced by `{command}`" + (f" ({note})" if note else "") + f" on {platform.machine()} Linux, CPU only.\n\n"
    return f"{BEGIN}\n{header}{body}\n{END}"


def update_readme(readme: Path, board_md: str, command: str, note: str = "") -> None:
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme}: no '{BEGIN}' ... '{END}' markers to replace")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    atomic_write_text(readme, text[:start] + render(board_md, command, note) + text[end:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path("results"), help="dir holding scoreboard.md")
    ap.add_argument("--readme", type=Path, default=Path("README.md"))
    ap.add_argument("--command", default="./run.sh", help="the command that produced the results")
    ap.add_argument("--note", default="", help="e.g. the run log and its wall time")
    args = ap.parse_args(argv)
    board = args.results / "scoreboard.md"
    if not board.is_file():
        raise SystemExit(f"{board} not found: run `python -m steps_py.score.scoreboard` (run.sh stage 8) first")
    update_readme(args.readme, board.read_text(encoding="utf-8"), args.command, args.note)
    print(f"updated {args.readme} from {board}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
