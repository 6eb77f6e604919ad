"""local.tri_sweep: the dev choice under the time limit, resuming, and the steps it runs."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from local import tri_sweep
from local.tri_sweep import Limit, Point, SweepError, choose, run_step, without_grid_flags


def _point(leaves: int, gauss: int, cer: float, wall: float, cpu: float | None = None) -> Point:
    cpu = wall if cpu is None else cpu
    times = ({"train_tri": wall}, {"train_tri": cpu}, wall, cpu)
    return Point(leaves, gauss, leaves, gauss, cer, 10.0, 0.0, *times, 1.0, {})


def test_choice_is_best_dev_cer_within_the_time_limit() -> None:
    pts = [
        _point(500, 2000, 30.0, 50.0),
        _point(1000, 4000, 28.0, 90.0),
        _point(2000, 8000, 25.0, 130.0, cpu=110.0),  # best CER; over 2 x 60 s of wall, not of CPU
    ]
    mono = {"wall": 60.0, "cpu": 60.0}
    assert choose(pts, Limit(mono, 2.0, "wall")) == pts[1]
    assert choose(pts, Limit(mono, 2.0, "cpu")) == pts[2]
    assert choose(pts, Limit({"wall": 70.0}, 2.0, "wall")) == pts[2]  # limit 140 s
    assert choose(pts, Limit(mono, 0.5, "cpu")) is None  # nothing within 30 s
    tie = [
        _point(1000, 8000, 28.0, 10.0),
        _point(1000, 4000, 28.0, 10.0),
        _point(500, 8000, 28.0, 10.0),
    ]
    assert (
        choose(tie, Limit(mono, 2.0, "cpu")) == tie[2]
    )  # fewer leaves first, then fewer Gaussians
    assert choose(tie[:2], Limit(mono, 2.0, "cpu")) == tie[1]


def test_grid_flags_are_replaced_and_the_rest_kept() -> None:
    opts = "--num-leaves 1000 --num-iters 12 --tot-gauss=4000 --boost-silence 1.25"
    assert without_grid_flags(opts) == ["--num-iters", "12", "--boost-silence", "1.25"]


class FakeSteps:
    """A double for the steps: records each call, writes the outputs the sweep reads and
    advances fake clocks: train_mono 20 s, an alignment 3 s, a graph 10 s, train_tri 3 s per
    leaf, wall; CPU twice that but for the graph (the monophone stage 36 s wall, 62 s CPU;
    tri1 46 s and 82 s at 10 leaves, 76 s and 142 s at 20)."""

    SECONDS = {
        "steps_py.gmm.train_mono": 20.0,
        "steps_py.gmm.align": 3.0,
        "steps_py.decode.graph": 10.0,
    }

    def __init__(self, cers: dict[tuple[int, int], float]) -> None:
        self.cers, self.calls, self.now, self.cpu = cers, [], 1000.0, 50.0

    def __call__(self, args: list[str], log_file: Path) -> None:
        self.calls.append(args)
        wall = self.SECONDS.get(args[0], 0.0)
        if args[0] == "steps_py.gmm.train_tri":
            wall = 3.0 * int(args[args.index("--num-leaves") + 1])
        self.now += wall
        self.cpu += wall if args[0] == "steps_py.decode.graph" else 2 * wall
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.write_text("ok\n", encoding="utf-8")
        out = Path(args[args.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        if args[0] == "steps_py.gmm.train_tri":
            leaves = int(args[args.index("--num-leaves") + 1])
            gauss = int(args[args.index("--tot-gauss") + 1])
            (out / "num_pdfs").write_text(f"{leaves - 7}\n", encoding="utf-8")
            (out / "info.json").write_text(json.dumps({"num_gauss": gauss + 3}), encoding="utf-8")
        if args[0] == "steps_py.decode.gmm":
            m = re.fullmatch(
                r"l(\d+)_g(\d+)", out.parent.parent.name
            )  # <out>/l<L>_g<G>/tri1/decode_dev
            assert m is not None, out
            key = (int(m.group(1)), int(m.group(2)))
            (out / "cer").write_text(
                f"%CER {self.cers[key]:.2f} [ 1 / 100, 0 ins, 0 del, 1 sub ]\n"
            )
            (out / "best_lmwt").write_text("12\n", encoding="utf-8")
            (out / "best_wip").write_text("0.5\n", encoding="utf-8")

    def steps(self) -> list[str]:
        return [c[0] for c in self.calls]


def _setup(
    tmp_path: Path, tri_opts: str = "--num-leaves 9 --tot-gauss 99 --num-iters 12"
) -> argparse.Namespace:
    work = tmp_path / "work"
    for d in (
        "data/train",
        "data/dev",
        "data/lang",
        "data/lang_test",
        "exp/mono",
        "exp/mono_ali/train",
    ):
        (work / d).mkdir(parents=True, exist_ok=True)
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "run.conf").write_text(
        ". egs/common/run.conf  # relative to the recipe root, as run.sh sources it\n"
        f'tri_opts="{tri_opts}"\n'
        'gmm_decode_opts="--beam 9 --lm-weights 8:20"\n',
        encoding="utf-8",
    )
    argv = ["--workdir", str(work), "--conf-dir", str(conf), "--out", str(tmp_path / "sweep")]
    argv += [
        "--leaves",
        "20,10",
        "--gauss",
        "40,80",
        "--results",
        str(tmp_path / "res" / "tri_sweep"),
    ]
    args = tri_sweep.build_parser().parse_args(argv)
    args.argv = argv
    return args


def test_sweep_runs_each_point_once_and_redoes_an_interrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = _setup(tmp_path)
    cers = {(10, 40): 31.0, (10, 80): 29.5, (20, 40): 30.0, (20, 80): 29.0}
    steps = FakeSteps(cers)
    monkeypatch.setattr(tri_sweep, "clock", lambda: steps.now)
    monkeypatch.setattr(tri_sweep, "cpu_clock", lambda: steps.cpu)
    chosen = tri_sweep.sweep(args, steps)
    # the monophone reference once, then per point: train_tri, 2 alignments, graph, dev decode
    mono = [
        "steps_py.gmm.train_mono",
        "steps_py.gmm.align",
        "steps_py.gmm.align",
        "steps_py.decode.graph",
    ]
    per_point = ["steps_py.gmm.train_tri", *mono[1:], "steps_py.decode.gmm"]
    assert steps.steps() == mono + 4 * per_point
    tri_calls = [c for c in steps.calls if c[0] == "steps_py.gmm.train_tri"]
    for (
        c
    ) in tri_calls:  # the conf's other options kept, its leaves/Gaussians replaced by the point's
        assert c.count("--num-leaves") == 1 and c.count("--tot-gauss") == 1
        assert c[c.index("--num-iters") + 1] == "12"
    grid = [
        (int(c[c.index("--num-leaves") + 1]), int(c[c.index("--tot-gauss") + 1])) for c in tri_calls
    ]
    assert sorted(grid) == sorted(cers)
    decode = next(c for c in steps.calls if c[0] == "steps_py.decode.gmm")
    assert decode[-4:] == ["--beam", "9", "--lm-weights", "8:20"]  # the conf's gmm_decode_opts
    # monophone stage 62 s CPU, limit 124 s: the 20-leaf points (142 s) are out despite their CER
    assert chosen is not None and (chosen.leaves, chosen.gauss) == (10, 80)
    res = json.loads((tmp_path / "res" / "tri_sweep.json").read_text(encoding="utf-8"))
    assert res["chosen"] == {"leaves": 10, "gauss": 80}
    assert res["mono_stage_seconds"] == {"wall": 36.0, "cpu": 62.0}
    assert (res["time"], res["limit_seconds"]) == ("cpu", 124.0)
    assert {(p["leaves"], p["gauss"]): p["dev_cer"] for p in res["points"]} == cers
    md = (tmp_path / "res" / "tri_sweep.md").read_text(encoding="utf-8")
    rows = [
        line
        for line in md.splitlines()
        if line.startswith("| 10 | 80 |") or line.startswith("| 20 | 80 |")
    ]
    assert rows == [
        "| 10 | 80 | 3 | 83 | 29.50 (chosen) | 12/0.5 | 30.0 | 6.0 | 10.0 | 46.0 | 82.0 | 1.32 | yes | "
        + rows[0].split(" | ")[-1],
        "| 20 | 80 | 13 | 83 | 29.00 | 12/0.5 | 60.0 | 6.0 | 10.0 | 76.0 | 142.0 | 2.29 | no | "
        + rows[1].split(" | ")[-1],
    ]  # the last cell: the machine's load average

    # resumed: nothing is run again
    steps.calls.clear()
    assert tri_sweep.sweep(args, steps) == chosen
    assert steps.calls == []

    # an interrupted point (its dir without point.json) is redone from scratch, alone
    point = tmp_path / "sweep" / "l10_g80"
    (point / "point.json").unlink()
    (point / "stale").write_text("from the killed run", encoding="utf-8")
    steps.cers[(10, 80)] = 32.0
    chosen = tri_sweep.sweep(args, steps)
    assert steps.steps() == per_point
    assert not (point / "stale").exists()
    assert chosen is not None and (chosen.leaves, chosen.gauss) == (10, 40)


def test_a_done_point_is_kept_for_its_own_size_and_refused_for_other_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = _setup(tmp_path)
    steps = FakeSteps({(10, 40): 1.0, (10, 80): 1.0, (20, 40): 1.0, (20, 80): 1.0})
    monkeypatch.setattr(tri_sweep, "clock", lambda: steps.now)
    monkeypatch.setattr(tri_sweep, "cpu_clock", lambda: steps.cpu)
    tri_sweep.sweep(args, steps)
    # the conf's tri_opts set to the chosen point: the points are still the sweep's
    steps.calls.clear()
    tri_sweep.sweep(
        _setup(tmp_path, tri_opts="--num-leaves 10 --tot-gauss 40 --num-iters 12"), steps
    )
    assert steps.calls == []
    args = _setup(tmp_path, tri_opts="--num-leaves 9 --tot-gauss 99 --num-iters 20")
    with pytest.raises(SweepError, match="other options"):
        tri_sweep.sweep(args, FakeSteps({}))


def test_bad_input_names_the_item_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--workdir", str(tmp_path), "--out", str(tmp_path / "sweep")]
    assert tri_sweep.main(argv) == 1
    err = capsys.readouterr().err
    assert (
        "ERROR --workdir" in err
        and "lacks data/train" in err
        and "trained the monophone GMM" in err
    )
    args = _setup(tmp_path, tri_opts="")
    with pytest.raises(SweepError, match="sets no tri_opts"):
        tri_sweep.sweep(args, FakeSteps({}))
    args = _setup(tmp_path)
    args.leaves = "10,x"
    with pytest.raises(SweepError, match="--leaves '10,x'"):
        tri_sweep.sweep(args, FakeSteps({}))


def test_a_failing_step_names_its_log_and_its_cpu_time_counts(tmp_path: Path) -> None:
    cpu0 = tri_sweep.children_cpu_seconds()
    with pytest.raises(
        SweepError, match=r"no_such_step failed \(exit 1\); its log .*x\.log ends: .*No module"
    ):
        run_step(["steps_py.no_such_step"], tmp_path / "x.log")
    assert tri_sweep.children_cpu_seconds() > cpu0  # the child's Python start-up, at least
