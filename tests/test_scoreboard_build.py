"""Scoreboard from small fake exp dirs: rows, numbers, seeds, bootstrap CI, plots, idempotency."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from steps_py.score.scoreboard import main as scoreboard_main

REF = {f"spk{i % 3}-u{i:02d}": "打开导航去北京" for i in range(12)}  # 12 utts x 7 chars = 84


def _decode_dir(d: Path, wrong_chars: int) -> None:
    """A decode dir whose hyp.txt has one substitution in each of the first `wrong_chars` utts."""
    d.mkdir(parents=True)
    utts = sorted(REF)
    (d / "ref.txt").write_text("".join(f"{u} {' '.join(REF[u])}\n" for u in utts), encoding="utf-8")
    hyp = {u: ("关" + REF[u][1:] if i < wrong_chars else REF[u]) for i, u in enumerate(utts)}
    (d / "hyp.txt").write_text("".join(f"{u} {' '.join(hyp[u])}\n" for u in utts), encoding="utf-8")


def _run(exp: Path, name: str, errs: dict[str, tuple[int, int]], wall: float) -> None:
    run = exp / name
    run.mkdir(parents=True)
    summary = {
        "model": name.split("_")[0],
        "sync": name.split("_")[1],
        "workers": int(name.split("_")[2][1:]),
        "block_minibatches": 8,
        "epochs": 2,
        "ema_decays": [0.9, 0.99],
        "wall_time_s": wall,
        "frames_per_s": 1000.0,
        "history": [
            {
                "epoch": e,
                "train_loss": 2.0 / e,
                "dev_acc_global": 0.4 + 0.1 * e,
                "dev_acc_ema-0.9": 0.45 + 0.1 * e,
                "dev_acc_ema-0.99": 0.47 + 0.1 * e,
            }
            for e in (1, 2)
        ],
    }
    (run / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    for tag, (dev, test) in errs.items():
        _decode_dir(run / f"decode_{tag}_dev", dev)
        _decode_dir(run / f"decode_{tag}_test", test)


@pytest.fixture()
def exp(tmp_path: Path) -> Path:
    exp = tmp_path / "exp"
    _decode_dir(exp / "mono" / "decode_dev", 6)
    _decode_dir(exp / "mono" / "decode_test", 9)
    (exp / "mono_ali").mkdir()
    _run(exp, "dnn_ma_n2_seed1", {"global": (4, 6), "ema-0.9": (3, 4), "ema-0.99": (2, 3)}, 120.0)
    _run(exp, "dnn_ma_n2_seed2", {"global": (5, 8), "ema-0.9": (4, 6), "ema-0.99": (2, 4)}, 180.0)
    _run(exp, "lstm_bmuf_n4", {"global": (3, 4), "ema-0.99": (3, 4)}, 600.0)
    return exp


def test_scoreboard_rows_and_numbers(
    exp: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    assert scoreboard_main(["--exp", str(exp), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "scoreboard.json").read_text(encoding="utf-8"))
    rows = {r["system"]: r for r in data["systems"]}
    assert list(rows) == [
        "mono",
        "dnn_ma_n2/global (2 seeds)",
        "dnn_ma_n2/ema-0.9 (2 seeds)",
        "dnn_ma_n2/ema-0.99 (2 seeds)",
        "lstm_bmuf_n4/global",
        "lstm_bmuf_n4/ema-0.99",
    ]
    mono = rows["mono"]
    assert mono["model"] == "gmm" and mono["dev_cer"] == [pytest.approx(100 * 6 / 84)]
    assert mono["test_cer"] == [pytest.approx(100 * 9 / 84)] and mono["ema_rel_change_test"] is None
    g = rows["dnn_ma_n2/global (2 seeds)"]
    assert (g["model"], g["sync"], g["workers"], g["block"], g["epochs"], g["seeds"]) == (
        "dnn",
        "ma",
        2,
        8,
        2,
        [1, 2],
    )
    assert g["test_cer_mean"] == pytest.approx(100 * 7 / 84)
    assert g["test_cer_std"] == pytest.approx(statistics.stdev([100 * 6 / 84, 100 * 8 / 84]))
    assert g["timing"]["wall_time_s_mean"] == pytest.approx(150.0)
    e = rows["dnn_ma_n2/ema-0.99 (2 seeds)"]["ema_rel_change_test"]
    assert e["percent"] == pytest.approx(100 * (3.5 - 7) / 7)  # mean test errors 3.5 vs 7
    assert e["ci95_low"] <= e["percent"] <= e["ci95_high"] and e["resamples"] == 1000
    same = rows["lstm_bmuf_n4/ema-0.99"]["ema_rel_change_test"]
    assert same["percent"] == 0.0 and same["ci95_low"] == same["ci95_high"] == 0.0
    # how sure: test set size and the CI half-widths, (high - low) / 2 over the EMA rows
    power = data["power"]
    assert (power["test_set"], power["characters"]) == ("test", 84)
    widths = [
        (r["ema_rel_change_test"]["ci95_high"] - r["ema_rel_change_test"]["ci95_low"]) / 2
        for r in data["systems"]
        if r["ema_rel_change_test"]
    ]
    assert power["ci95_half_width_rel_percent"]["max"] == pytest.approx(max(widths))
    assert power["ci95_half_width_rel_percent"]["n"] == 3
    assert "84 characters" in (out / "scoreboard.md").read_text(encoding="utf-8")
    md = (out / "scoreboard.md").read_text(encoding="utf-8")
    assert "| dnn_ma_n2/ema-0.99 (2 seeds) | dnn | ma | 2 | 8 | 2 |" in md and "-50.0 %" in md
    assert "| dnn_ma_n2/global (2 seeds) | dnn | ma | 2 | 8 | 2 |" in printed
    assert (out / "dev_acc_dnn_ma_n2_seed1.png").stat().st_size > 1000
    assert (out / "cer_vs_ema_decay.png").stat().st_size > 1000
    # unchanged inputs: skipped; a changed hyp: rebuilt with the new number
    mtime = (out / "scoreboard.json").stat().st_mtime_ns
    assert scoreboard_main(["--exp", str(exp), "--out", str(out), "--no-plots"]) == 0
    assert (out / "scoreboard.json").stat().st_mtime_ns != mtime  # options changed -> rebuilt
    mtime = (out / "scoreboard.json").stat().st_mtime_ns
    assert scoreboard_main(["--exp", str(exp), "--out", str(out), "--no-plots"]) == 0
    assert (out / "scoreboard.json").stat().st_mtime_ns == mtime
    (exp / "mono" / "decode_test" / "hyp.txt").write_text("", encoding="utf-8")
    assert scoreboard_main(["--exp", str(exp), "--out", str(out), "--no-plots"]) == 0
    rows = {
        r["system"]: r
        for r in json.loads((out / "scoreboard.json").read_text(encoding="utf-8"))["systems"]
    }
    assert rows["mono"]["test_cer"] == [pytest.approx(100.0)]


def test_runs_glob_selects_and_empty_exp_fails(exp: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert (
        scoreboard_main(
            ["--exp", str(exp), "--out", str(out), "--runs-glob", "lstm*", "--no-plots"]
        )
        == 0
    )
    systems = [
        r["system"]
        for r in json.loads((out / "scoreboard.json").read_text(encoding="utf-8"))["systems"]
    ]
    assert systems == ["mono", "lstm_bmuf_n4/global", "lstm_bmuf_n4/ema-0.99"]
    (tmp_path / "empty").mkdir()
    assert scoreboard_main(["--exp", str(tmp_path / "empty"), "--out", str(out)]) == 1


def test_dev_accuracy_curves_flat_and_nested_history() -> None:
    from steps_py.score.plots import dev_accuracy_curves

    flat = [
        {
            "epoch": 1,
            "dev_acc_global": 0.5,
            "dev_acc_ema-0.99": 0.55,
            "dev_ce_global": 1.2,
            "train_acc": 0.9,
        }
    ]
    nested = [{"epoch": 2, "dev": {"global": {"acc": 0.6, "ce": 1.0}, "ema_0.999": {"acc": 0.65}}}]
    assert dev_accuracy_curves(flat) == {"global": [(1.0, 0.5)], "ema-0.99": [(1.0, 0.55)]}
    assert dev_accuracy_curves(nested) == {"global": [(2.0, 0.6)], "ema-0.999": [(2.0, 0.65)]}


def test_tag_decay_from_label_or_half_life() -> None:
    from steps_py.score.scoreboard import tag_decay

    summary = {"ema_decays": ["0.99", "hl1e+06"], "ema_alphas": [0.99, 0.9987]}
    assert tag_decay("ema-hl1e+06", summary) == 0.9987
    assert tag_decay("ema-0.99", summary) == 0.99
    assert tag_decay("ema-0.9") == 0.9
    assert tag_decay("global", summary) is None and tag_decay("ema-hl5") is None


def test_readme_gets_the_scoreboard_between_markers(tmp_path: Path) -> None:
    from steps_py.score.readme import BEGIN, END, update_readme

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{BEGIN}\nold table\n{END}\noutro\n")
    update_readme(
        readme, "# Scoreboard\n\n| a |\n|---|\n| 1 |\n![x](dev_acc_r.png)\n", "./run.sh", "log x"
    )
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n")
    assert "old table" not in text and "| 1 |" in text and "`./run.sh` (log x)" in text
    assert "![x](results/dev_acc_r.png)" in text


def test_readme_gets_the_study_table_between_its_own_markers(tmp_path: Path) -> None:
    from steps_py.score.readme import main as readme_main

    readme = tmp_path / "README.md"
    readme.write_text(
        "a\n<!-- scoreboard:begin -->\nboard\n<!-- scoreboard:end -->\n"
        "<!-- study:begin -->\nold\n<!-- study:end -->\nz\n"
    )
    (tmp_path / "results" / "study").mkdir(parents=True)
    (tmp_path / "results" / "study" / "table.md").write_text(
        "| dnn | 1 |\n\n![p](cer_vs_workers.png)\n<!-- all-rows -->\n\nAll rows:\n\n| long | row |\n"
    )
    assert (
        readme_main(
            [
                "--what",
                "study",
                "--results",
                str(tmp_path / "results"),
                "--readme",
                str(readme),
                "--command",
                "local/run_study.sh",
            ]
        )
        == 0
    )
    text = readme.read_text()
    assert "board" in text and "old" not in text and "| dnn | 1 |" in text
    assert "![p](results/study/cer_vs_workers.png)" in text and "`local/run_study.sh`" in text
    # the long per-averager table stays in table.md; README links to it
    assert "| long | row |" not in text and "(results/study/table.md)" in text


def test_digits_tables_go_between_their_own_markers(tmp_path: Path) -> None:
    from steps_py.score.readme import main as readme_main

    readme = tmp_path / "README.md"
    readme.write_text(
        "<!-- targets:begin -->\nsynth\n<!-- targets:end -->\n"
        "<!-- digits_targets:begin -->\nold\n<!-- digits_targets:end -->\n"
    )
    (tmp_path / "results" / "digits").mkdir(parents=True)
    (tmp_path / "results" / "digits" / "targets.md").write_text("# Compared\n\n| tri1 | 3.1 |\n")
    argv = ["--what", "digits_targets", "--results", str(tmp_path / "results")]
    assert readme_main([*argv, "--readme", str(readme), "--command", "compare digits"]) == 0
    text = readme.read_text()
    assert "synth" in text and "old" not in text and "# Compared" not in text
    assert text.index("<!-- digits_targets:begin -->") < text.index("| tri1 | 3.1 |")
    assert "Produced by `compare digits`" in text
    # a table not made yet: the error names the step that makes it
    # --no-plots: a scoreboard's plot images (left in the run's workdir) are not linked
    readme.write_text("<!-- scoreboard:begin -->\n<!-- scoreboard:end -->\n")
    (tmp_path / "results" / "digits" / "scoreboard.md").write_text("| a |\n\n![p](dev_acc_r.png)\n")
    argv = ["--results", str(tmp_path / "results" / "digits"), "--readme", str(readme)]
    assert readme_main([*argv, "--no-plots"]) == 0
    assert "| a |" in readme.read_text() and "dev_acc_r.png" not in readme.read_text()
    assert readme_main(argv) == 0 and "![p](results/dev_acc_r.png)" in readme.read_text()
    with pytest.raises(SystemExit, match="tri_sweep.md not found: run python -m local.tri_sweep"):
        readme_main(["--what", "digits_tri_sweep", "--results", str(tmp_path / "results")])


def test_oracle_chosen_pair_columns_and_kaldi_results_file(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    for s, wrong in (("dev", 6), ("test", 9)):
        d = exp / "mono" / f"decode_{s}"
        _decode_dir(d, wrong)
        (d / "summary.json").write_text(
            json.dumps(
                {
                    "oracle_cer": 2.5 if s == "dev" else 4.0,
                    "lattice_density": 1.5 if s == "dev" else 1.25,
                    "lm_weight": 12.0,
                    "word_ins_penalty": 0.5,
                    "timing": {"rtf_per_core": 0.031},
                }
            ),
            encoding="utf-8",
        )
        pairs = [(12, "0.5")] if s == "test" else [(11, "0.0"), (12, "0.5"), (13, "1.0")]
        for lw, p in pairs:
            n = wrong + (lw != 12)
            (d / f"cer_{lw}_{p}").write_text(
                f"%WER {100 * n / 84:.2f} [ {n} / 84, 0 ins, 0 del, {n} sub ]\n"
                f"%SER 50.00 [ 6 / 12 ]\nScored 12 sentences, 0 not present in hyp.\n"
            )
    out = tmp_path / "results"
    assert scoreboard_main(["--exp", str(exp), "--out", str(out), "--no-plots"]) == 0
    md = (out / "scoreboard.md").read_text(encoding="utf-8")
    assert "| dev oracle % | test oracle % | test lattice arcs/frame | LM wt/pen. |" in md
    assert "| 2.50 | 4.00 | 1.25 | 12/0.5 |" in md
    assert md.splitlines()[-1].endswith("| 0.031 |")  # test decode RTF per core
    results = (out / "RESULTS").read_text(encoding="utf-8").splitlines()
    lines = [x for x in results if not x.startswith("#")]
    assert lines == [
        "%WER 7.14 [ 6 / 84, 0 ins, 0 del, 6 sub ] exp/mono/decode_dev/cer_12_0.5",
        "%WER 10.71 [ 9 / 84, 0 ins, 0 del, 9 sub ] exp/mono/decode_test/cer_12_0.5",
    ]


def _hparams_events(run_dir: Path) -> tuple[dict[str, object], dict[str, float]]:
    """(hparams, metric -> value) as TensorBoard reads them from <run>/tensorboard/final_cer."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    ea = EventAccumulator(str(run_dir / "tensorboard" / "final_cer"))
    ea.Reload()
    content = ea.PluginTagToContent("hparams")
    info = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = {
        k: (v.string_value or v.number_value or v.bool_value)
        for k, v in info.session_start_info.hparams.items()
    }
    metrics = {t: ea.Scalars(t)[-1].value for t in ea.Tags()["scalars"]}
    return hp, metrics


def test_final_cers_are_tensorboard_hparams(exp: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    assert scoreboard_main(["--exp", str(exp), "--out", str(out), "--no-plots"]) == 0
    hp, metrics = _hparams_events(exp / "dnn_ma_n2_seed1")
    assert (hp["model"], hp["sync"], hp["workers"], hp["epochs"]) == ("dnn", "ma", 2, 2)
    assert metrics == {
        "cer/dev/global": pytest.approx(100 * 4 / 84),
        "cer/test/global": pytest.approx(100 * 6 / 84),
        "cer/dev/ema-0.9": pytest.approx(100 * 3 / 84),
        "cer/test/ema-0.9": pytest.approx(100 * 4 / 84),
        "cer/dev/ema-0.99": pytest.approx(100 * 2 / 84),
        "cer/test/ema-0.99": pytest.approx(100 * 3 / 84),
    }
    assert not (exp / "mono" / "tensorboard").exists()  # GMM dirs have no training run
    # rescoring rewrites the numbers rather than piling up a second set
    (exp / "dnn_ma_n2_seed1" / "decode_global_test" / "hyp.txt").write_text("", encoding="utf-8")
    assert scoreboard_main(["--exp", str(exp), "--out", str(out), "--no-plots"]) == 0
    _, metrics = _hparams_events(exp / "dnn_ma_n2_seed1")
    assert metrics["cer/test/global"] == pytest.approx(100.0)
    assert len(list((exp / "dnn_ma_n2_seed1" / "tensorboard" / "final_cer").rglob("events*"))) <= 2
    # and --no-tensorboard leaves them alone
    before = {p: p.stat().st_mtime_ns for p in exp.rglob("events*")}
    assert len(before) >= 3  # one set per training run (2 dnn seeds, 1 lstm)
    assert scoreboard_main(["--exp", str(exp), "--out", str(out / "b"), "--no-tensorboard"]) == 0
    assert {p: p.stat().st_mtime_ns for p in exp.rglob("events*")} == before


def _train_csv(run: Path, evals_at: set[tuple[int, int]]) -> int:
    """A run's log/train.csv as the trainer writes it (MetricsLog): 2 epochs of 3 blocks of
    1000 frames, dev evaluations after the blocks `evals_at` (epoch, block) and at each epoch
    end; returns the number of evaluations."""
    from steps_py.parallel.metrics import MetricsLog

    mlog = MetricsLog(run, ["global", "ema-0.99"], tensorboard=False)
    block, n = 0, 0
    for epoch in (1, 2):
        for b in (1, 2, 3):
            block += 1
            row = {"kind": "block", "epoch": epoch, "block": block, "frames": 1000 * block}
            row |= {"global_step": 4 * block, "train_loss": 3.0 / block}
            if (epoch, b) in evals_at:
                n += 1
                row |= {"dev_acc_global": 0.3 + 0.01 * n, "dev_acc_ema-0.99": 0.31 + 0.01 * n}
            mlog.row(row)
        acc = 0.3 + 0.01 * (n + 1)
        if (epoch, 3) not in evals_at:  # else the epoch end repeats that evaluation
            n += 1
        mlog.row(
            {"kind": "epoch", "epoch": epoch, "block": block, "frames": 1000 * block}
            | {"dev_acc_global": acc, "dev_acc_ema-0.99": acc + 0.01, "train_loss": 1.0}
        )
    mlog.close()
    return n


def test_training_curves_have_a_point_per_block_and_per_evaluation(
    exp: Path, tmp_path: Path
) -> None:
    from steps_py.parallel.run_dir import RunDir
    from steps_py.score.plots import training_curves

    run = exp / "dnn_ma_n2_seed1"
    n = _train_csv(run, {(1, 1), (2, 2), (2, 3)})  # 2 epoch ends, the second at an evaluation
    assert n == 4
    c = training_curves(RunDir(run).training_log())
    assert c.train_ce == [(1000.0 * b, pytest.approx(3.0 / b)) for b in range(1, 7)]
    assert c.epoch_ends == [3000.0, 6000.0]
    assert set(c.dev_acc) == {"global", "ema-0.99"}
    assert [f for f, _ in c.dev_acc["global"]] == [1000.0, 3000.0, 5000.0, 6000.0]
    assert len(c.dev_acc["ema-0.99"]) == n
    out = tmp_path / "results"
    assert scoreboard_main(["--exp", str(exp), "--out", str(out)]) == 0
    assert (out / "dev_acc_dnn_ma_n2_seed1.png").stat().st_size > 1000  # from train.csv
    assert (out / "dev_acc_lstm_bmuf_n4.png").stat().st_size > 1000  # from the history
