"""Copy the latest scoreboard (or another generated table) into README.md, between its markers.

    python -m steps_py.score.readme --results results --readme README.md --command "./run.sh"
    python -m steps_py.score.readme --what study --command "local/run_study.sh" --note "..."
    python -m steps_py.score.readme --what tri_sweep --command "python -m local.tri_sweep ..."

The README's tables are never typed in: this step copies `results/scoreboard.md` (written by
`python -m steps_py.score.scoreboard` from the exp dirs) between `<!-- scoreboard:begin -->`
and `<!-- scoreboard:end -->`, or `results/study/table.md` (written by
`python -m steps_py.study.run`) between `<!-- study:begin -->` and `<!-- study:end -->` (the
second study's `results/study_kaldi/table.md`: `--what study_kaldi`; its real-speech part,
`results/study_digits/table.md`: `--what study_digits`), and
says which command and which run log produced it. The other tables (`--what`): the
monophone-vs-triphone targets comparisons of `python -m steps_py.score.compare`
(`results/targets.md`, `results/digits/targets.md`) and the triphone size sweeps of
`python -m local.tri_sweep` (`results/tri_sweep.md`, `results/digits/tri_sweep.md`), each
between `<!-- <what>:begin -->` and `<!-- <what>:end -->`.
"""

from __future__ import annotations

import argparse
import platform
import re
from pathlib import Path

from steps_py.fileio import atomic_write_text

ALL_ROWS = "<!-- all-rows -->"  # steps_py.study.table writes it before its full table
BEGIN = "<!-- scoreboard:begin -->"
END = "<!-- scoreboard:end -->"
# what -> (source file under --results, markers' name, the plots' dir relative to the README)
SECTIONS = {
    "scoreboard": ("scoreboard.md", "scoreboard", "results"),
    "study": ("study/table.md", "study", "results/study"),
    "study_kaldi": ("study_kaldi/table.md", "study_kaldi", "results/study_kaldi"),
    "study_digits": ("study_digits/table.md", "study_digits", "results/study_digits"),
    "targets": ("targets.md", "targets", "results"),
    "digits_targets": ("digits/targets.md", "digits_targets", "results/digits"),
    "tri_sweep": ("tri_sweep.md", "tri_sweep", "results"),
    "digits_tri_sweep": ("digits/tri_sweep.md", "digits_tri_sweep", "results/digits"),
}


def render(
    board_md: str, command: str, note: str, what: str = "scoreboard", plots_shown: bool = True
) -> str:
    _, name, plots = SECTIONS[what]
    body = board_md.strip()
    body = re.sub(r"^# [^\n]*\s*", "", body)  # README has its own heading
    if plots_shown:
        body = re.sub(r"!\[([^\]]*)\]\(([^)/]+\.png)\)", rf"![\1]({plots}/\2)", body)
    else:  # the plots stay in the run's workdir
        body = re.sub(r"\n*^!\[[^\]]*\]\([^)/]+\.png\)$", "", body, flags=re.MULTILINE)
    if ALL_ROWS in body:  # the study's long per-averager table stays in its own file
        body = (
            body[: body.index(ALL_ROWS)].rstrip()
            + f"\n\nAll rows (every averager with dev CER, frames and training time): "
            f"[{SECTIONS[what][0]}]({plots}/{Path(SECTIONS[what][0]).name})."
        )
    header = (
        f"Produced by `{command}`"
        + (f" ({note})" if note else "")
        + f" on {platform.machine()} Linux, CPU only.\n\n"
    )
    return f"<!-- {name}:begin -->\n{header}{body}\n<!-- {name}:end -->"


def update_readme(
    readme: Path,
    board_md: str,
    command: str,
    note: str = "",
    what: str = "scoreboard",
    plots_shown: bool = True,
) -> None:
    _, name, _ = SECTIONS[what]
    begin, end_marker = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = readme.read_text(encoding="utf-8")
    if begin not in text or end_marker not in text:
        raise SystemExit(f"{readme}: no '{begin}' ... '{end_marker}' markers to replace")
    start, end = text.index(begin), text.index(end_marker) + len(end_marker)
    block = render(board_md, command, note, what, plots_shown)
    atomic_write_text(readme, text[:start] + block + text[end:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--what",
        choices=sorted(SECTIONS),
        default="scoreboard",
        help="which table: "
        + ", ".join(f"{k} ({v[0]} under --results)" for k, v in sorted(SECTIONS.items()))
        + " (default %(default)s)",
    )
    ap.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        help="dir holding scoreboard.md and study/ (default %(default)s)",
    )
    ap.add_argument("--readme", type=Path, default=Path("README.md"))
    ap.add_argument("--command", default="./run.sh", help="the command that produced the results")
    ap.add_argument("--note", default="", help="e.g. the run log and its wall time")
    ap.add_argument(
        "--no-plots",
        action="store_true",
        help="leave out the table's plot images (when they are not committed beside the README)",
    )
    args = ap.parse_args(argv)
    board = args.results / SECTIONS[args.what][0]
    if not board.is_file():
        maker = {
            "scoreboard": "`python -m steps_py.score.scoreboard` (the last step of run.sh)",
            "study": "local/run_study.sh",
            "study_kaldi": "local/run_study.sh --plan egs/synth/conf_study_kaldi/study.json",
            "study_digits": "local/run_study.sh --plan egs/digits/conf_study/study.json "
            "--results results/study_digits --workdir study_digits_work",
            "targets": "python -m steps_py.score.compare",
            "digits_targets": "python -m steps_py.score.compare",
        }.get(args.what, "python -m local.tri_sweep")
        raise SystemExit(f"{board} not found: run {maker} first")
    board_md = board.read_text(encoding="utf-8")
    update_readme(args.readme, board_md, args.command, args.note, args.what, not args.no_plots)
    print(f"updated {args.readme} from {board}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
