"""The study driver: plan checks, the EMA chosen on dev (never test), the table and verdict."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from steps_py.fileio import mark_done
from steps_py.study.plan import PlanError, load_plan
from steps_py.study.record import examples_fingerprint, model_fingerprint, same_training
from steps_py.study.run import Study, StudyError
from steps_py.study.table import (
    ablation_rows,
    ablation_table,
    build_rows,
    format_table,
    progress,
    summary_table,
    verdict,
)

PLAN = {
    "egs": {"dnn": "exp/egs/dnn"},
    "graph": "exp/mono/graph",
    "dev": "data/dev",
    "test": "data/test",
    "train_common": ["--epochs", "1"],
    "families": [{"model": "dnn", "sync": "ma", "workers": [2], "seeds": [1, 2]}],
    "decode": {"calibrate": {"dnn": "dnn_ma_n2_seed1"}},
}
REF = {f"u{i:02d}": "一 二 三 四 五 六 七 八 九 十" for i in range(20)}


def _decode_dir(d: Path, errors_per_utt: list[int]) -> None:
    """A finished decode dir whose hypothesis has the given substitution counts per utterance."""
    d.mkdir(parents=True)
    (d / "ref.txt").write_text("".join(f"{u} {t}\n" for u, t in REF.items()), encoding="utf-8")
    hyp = {}
    for (u, t), e in zip(REF.items(), errors_per_utt, strict=True):
        chars = t.split()
        hyp[u] = " ".join(["错"] * e + chars[e:])
    (d / "hyp.txt").write_text("".join(f"{u} {t}\n" for u, t in hyp.items()), encoding="utf-8")
    cer = 100.0 * sum(errors_per_utt) / (10 * len(REF))
    (d / "summary.json").write_text(json.dumps({"cer": cer}), encoding="utf-8")
    mark_done(d)


def _fake_study(
    tmp_path: Path, dev_errors: dict[str, list[int]], test_errors: dict[str, list[int]]
) -> Study:
    plan_path = tmp_path / "study.json"
    plan_path.write_text(json.dumps(PLAN), encoding="utf-8")
    study = Study(load_plan(plan_path), tmp_path / "work", tmp_path / "results")
    for run in study.plan.runs:
        d = study.run_dir(run)
        (d / "final").mkdir(parents=True)
        for tag in dev_errors:
            (d / "final" / f"{tag}.safetensors").write_bytes(b"")
        mark_done(d / "final")
        (d / "summary.json").write_text(
            json.dumps({"syncs": 10, "frames": 1000, "block_minibatches": 4, "wall_time_s": 60.0})
        )
        for tag, errs in dev_errors.items():
            _decode_dir(d / f"decode_{tag}_dev", [e + run.seed - 1 for e in errs])
        for tag, errs in test_errors.items():
            _decode_dir(d / f"decode_{tag}_test", errs)
        study.update_record(run)
    return study


def test_the_ema_is_chosen_on_dev_and_the_table_compares_it_with_global(tmp_path: Path) -> None:
    n = len(REF)
    dev = {
        "global": [3] * n,
        "ema-hl1000": [2] * n,
        "ema-hl4000": [1] * n,
        "ema-hl4000-warmup": [1] * (n - 1) + [2],
        "icefall-avg": [2] * n,
    }
    # on test the other EMA would be better: the choice must not look at test
    test = {"global": [3] * n, "ema-hl1000": [0] * n, "ema-hl4000": [2] * n, "icefall-avg": [3] * n}
    study = _fake_study(tmp_path, dev, test)
    choices = study.choose()
    assert choices["dnn_ma_n2"]["ema"] == "ema-hl4000"
    assert json.loads((study.results / "choices.json").read_text())["dnn_ma_n2"]["seeds"] == [1, 2]
    # the table comes from the committed records alone: the work dir may be gone
    shutil.rmtree(study.wd)
    rows = build_rows(study)
    by = {r["averager"]: r for r in rows}
    assert set(by) == {"global", "ema", "icefall-avg"}
    assert by["ema"]["model_tag"] == "ema-hl4000"
    assert by["ema"]["test_cer_mean"] == pytest.approx(20.0) and by["global"][
        "test_cer_mean"
    ] == pytest.approx(30.0)
    assert by["ema"]["dev_cer_mean"] == pytest.approx((10.0 + 20.0) / 2)  # seeds 1 and 2
    ci = by["ema"]["vs_global"]
    assert (
        ci["percent"] == pytest.approx(-100 / 3) and ci["ci95_high"] < 0 and ci["seeds_pooled"] == 2
    )
    assert by["icefall-avg"]["vs_global"]["percent"] == pytest.approx(0.0)
    table = format_table(rows)
    assert "| dnn | ma | 2 | - | ema | ema-hl4000 | 2 |" in table and "**-33.3 %" in table
    text = verdict(rows)
    assert (
        "significantly better than the same runs' global model" in text
        and "in 1: dnn ma N=2" in text
    )
    assert "about 0.05 of 1 would exclude 0 by chance alone" in text
    assert progress(study) == f"Runs of the plan with results: 2 of {len(study.plan.runs)}."


def test_an_ablation_is_compared_with_its_baseline_runs_global_model(tmp_path: Path) -> None:
    n = len(REF)
    plan = dict(PLAN)
    plan["families"] = [
        *PLAN["families"],
        {"model": "dnn", "sync": "ma", "workers": [2], "seeds": [1], "tag": "lrxN"},
    ]
    (tmp_path / "p").mkdir()
    dev = {"global": [2] * n, "ema-hl1000": [1] * n}
    study = _fake_study(tmp_path / "p", dev, {"global": [4] * n, "ema-hl1000": [3] * n})
    # _fake_study used PLAN; put the ablation family in and give its run other test errors
    (study.plan.path).write_text(json.dumps(plan), encoding="utf-8")
    study = Study(load_plan(study.plan.path), study.wd, study.results)
    ab_run = next(r for r in study.plan.runs if r.tag == "lrxN")
    d = study.run_dir(ab_run)
    (d / "final").mkdir(parents=True)
    for tag in dev:
        (d / "final" / f"{tag}.safetensors").write_bytes(b"")
    mark_done(d / "final")
    (d / "summary.json").write_text(
        json.dumps({"syncs": 10, "frames": 1000, "block_minibatches": 4, "wall_time_s": 60.0})
    )
    for tag, errs in dev.items():
        _decode_dir(d / f"decode_{tag}_dev", errs)
    _decode_dir(d / "decode_global_test", [2] * n)  # half the baseline's 4 errors per utt
    study.update_record(ab_run)
    study.choose()
    rows = build_rows(study)
    ab = ablation_rows(study, rows)
    assert [(a["variant"], a["averager"]) for a in ab] == [("lrxN", "global")]
    a = ab[0]
    assert a["seeds"] == [1] and a["baseline_config"] == "dnn_ma_n2"
    assert (a["test_cer"], a["baseline_test_cer"]) == (pytest.approx(20.0), pytest.approx(40.0))
    assert a["vs_baseline_global"]["percent"] == pytest.approx(-50.0)
    assert "| lrxN | dnn | ma | 2 | global (global) | 1 | 20.00 | 40.00 | **-50.0 %" in (
        ablation_table(ab)
    )
    # the per-config summary: one line each, the baseline's EMA against its global model
    summary = summary_table(rows)
    assert (
        "| dnn | ma | 2 | - | 2 | 10 | 40.00 ± 0.00 | 30.00 ± 0.00 (hl1000), **-25.0 %" in summary
    )
    assert "| dnn | ma | 2 | lrxN | 1 | 10 | 20.00 | - |" in summary


def test_a_diverged_run_is_recorded_and_left_out_not_retried(tmp_path: Path) -> None:
    from steps_py.study.record import diverged_record

    n = len(REF)
    dev = {"global": [3] * n, "ema-hl1000": [2] * n, "ema-hl4000": [1] * n}
    study = _fake_study(tmp_path, dev, {"global": [3] * n, "ema-hl4000": [1] * n})
    run2 = study.plan.runs[1]
    d = study.run_dir(run2)
    shutil.rmtree(d)  # seed 2 diverged instead: no final models, only diverged.json
    d.mkdir(parents=True)
    (d / "diverged.json").write_text(
        json.dumps({"reason": "non-finite training loss", "where": "epoch 1, minibatch 7"})
    )
    study.record_path(run2).write_text(json.dumps(diverged_record(d)))
    # not trained again (there is nothing to train with here: a retry would fail), not decoded
    assert study.train(run2) is False
    study.run_one(run2)
    assert study.choose()["dnn_ma_n2"] == {
        "ema": "ema-hl4000",
        "dev_cer_mean": {"ema-hl1000": 20.0, "ema-hl4000": 10.0},
        "seeds": [1],
    }
    rows = build_rows(study)
    assert {r["averager"]: r["seeds"] for r in rows} == {"global": [1], "ema": [1]}
    assert "1 of them diverged" in progress(
        study
    ) and "dnn_ma_n2_seed2 at epoch 1, minibatch 7" in (progress(study))


def test_no_choice_until_every_seed_has_its_dev_decodes(tmp_path: Path) -> None:
    n = len(REF)
    study = _fake_study(tmp_path, {"global": [1] * n, "ema-hl1000": [1] * n}, {})
    rec = study.record(study.plan.runs[1])
    del rec["models"]["ema-hl1000"]["dev"]
    study.record_path(study.plan.runs[1]).write_text(json.dumps(rec))
    assert study.choose() == {}
    study.record_path(study.plan.runs[1]).rename(tmp_path / "aside.json")
    assert progress(study).endswith(
        f"Not run yet (`local/run_study.sh` continues with them): {study.plan.runs[1].name}."
    )
    (tmp_path / "aside.json").rename(study.record_path(study.plan.runs[1]))
    # a decode that is in the record is not redone, even when its dir is gone (training or
    # decoding here would fail: there is no model)
    shutil.rmtree(study.run_dir(study.plan.runs[0]) / "decode_ema-hl1000_dev")
    study.decode(study.plan.runs[0], ["ema-hl1000"], "dev")


def test_plan_errors_name_the_key(tmp_path: Path) -> None:
    bad = dict(PLAN, families=[{"model": "dnn", "sync": "bmuf", "workers": [2], "seeds": [1]}])
    p = tmp_path / "p.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(PlanError, match="sync 'bmuf' is not one of"):
        load_plan(p)
    p.write_text(json.dumps(dict(PLAN, famlies=[])))
    with pytest.raises(PlanError, match=r"unknown key 'famlies' \(did you mean 'families'\?\)"):
        load_plan(p)
    p.write_text(json.dumps(dict(PLAN, decode={})))
    with pytest.raises(
        PlanError, match=r"decode.calibrate needs a run per model type; missing \['dnn'\]"
    ):
        load_plan(p)
    plan = load_plan(Path(__file__).resolve().parents[1] / "egs/synth/conf_study/study.json")
    names = [r.name for r in plan.runs]
    assert len(names) == len(set(names)) >= 30 and "dnn_ma_n64_seed1" in names
    assert {r.workers for r in plan.runs if r.model == "dnn"} >= {1, 4, 16, 64}


@pytest.mark.parametrize(
    ("where", "bad", "message"),
    [
        (
            "families",
            [{**PLAN["families"][0], "seedz": [1]}],
            r"families\[0\]: unknown key 'seedz'",
        ),
        ("decode", {**PLAN["decode"], "test_model": "all"}, r"decode: unknown key 'test_model'"),
        ("statistics", {"primery": ["dnn_ma_n2"]}, r"statistics: unknown key 'primery'"),
        (
            "pilot",
            {"groups": [{"pilot": "dnn_ma_n2", "config": []}]},
            r"pilot.groups\[0\]: unknown",
        ),
        ("statistics", {"primary": ["dnn_ma_n3"]}, r"\['dnn_ma_n3'\] are not configs"),
        ("choice", {"by": "test_cer"}, r"choice.by must be"),
    ],
)
def test_a_misspelt_nested_key_is_an_error_naming_it(
    tmp_path: Path, where: str, bad: object, message: str
) -> None:
    p = tmp_path / "p.json"
    p.write_text(json.dumps(dict(PLAN, **{where: bad})))
    with pytest.raises(PlanError, match=message):
        load_plan(p)


def test_the_learning_rate_is_scaled_for_the_pilot_and_the_final_ratio() -> None:
    from steps_py.study.plan import RunSpec, scale_lr

    argv = ["--lr-initial", "0.3", "--lr-final=0.03", "--seed", "1"]
    assert scale_lr(argv, 2.0, None) == ["--lr-initial", "0.6", "--lr-final=0.06", "--seed", "1"]
    assert scale_lr(argv, 0.5, 1.0) == ["--lr-initial", "0.15", "--lr-final=0.15", "--seed", "1"]
    assert scale_lr(["--lr-initial=1"], 1.0, 0.01) == ["--lr-initial=1", "--lr-final", "0.01"]
    with pytest.raises(PlanError, match="no --lr-initial"):
        scale_lr(["--seed", "1"], 2.0, None)
    run = RunSpec("dnn", "ma", 16, 1, "lrconst", lr_final_ratio=1.0)
    assert run.config == "dnn_ma_n16_lrconst" and run.name == "dnn_ma_n16_lrconst_seed1"


def test_posthoc_is_compared_with_the_tracked_ema_of_the_same_half_life(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from steps_py.study.run import compare_posthoc

    final = tmp_path / "final"
    final.mkdir()
    w = torch.zeros(3, 2)
    save_file({"w": w, "b": torch.zeros(2)}, str(final / "global.safetensors"))
    save_file({"w": w + 0.5, "b": torch.full((2,), -2.0)}, str(final / "ema-hl1000.safetensors"))
    save_file(
        {"w": w + 0.5, "b": torch.tensor([-2.0, -1.75])}, str(final / "posthoc-hl1000.safetensors")
    )
    save_file(
        {"w": w, "b": torch.zeros(2)}, str(final / "posthoc-hl8000.safetensors")
    )  # nothing tracked
    rows = compare_posthoc(final, tmp_path / "out" / "run.json")
    assert rows == {
        "hl1000": {
            "max_abs_diff_posthoc_vs_tracked": 0.25,
            "max_abs_diff_tracked_vs_global": 2.0,
            "max_abs_param_tracked": 2.0,
        }
    }
    assert json.loads((tmp_path / "out" / "run.json").read_text()) == rows


PLAN2 = {
    **PLAN,
    "corpus": "toy",
    "families": [
        {"model": "dnn", "sync": "ma", "workers": [2], "seeds": [1, 2]},
        {
            "model": "dnn",
            "sync": "ma",
            "workers": [2],
            "seeds": [1, 2],
            "tag": "lrconst",
            "lr_final_ratio": 1.0,
        },
    ],
    "choice": {"by": "dev_ce", "global_candidate": True},
    "statistics": {"bootstrap": "hierarchical", "resamples": 300, "primary": ["dnn_ma_n2"]},
}
UTTS = [f"test-s{k}-{i:03d}" for k in range(4) for i in range(10)]


def _entry(errors: list[int]) -> dict:
    return {
        "cer": 100.0 * sum(errors) / (10 * len(errors)),
        "utts": UTTS,
        "errors": errors,
        "ref_len": [10] * len(errors),
    }


def _record(name: str, ce: dict[str, float], test: dict[str, list[int]]) -> dict:
    models = {t: {"dev": _entry(e), "test": _entry(e)} for t, e in test.items()}
    return {
        "run": name,
        "summary": {"syncs": 8, "frames": 4000, "wall_time_s": 1.0},
        "final_models": ["ema-hl5pct-bc", "ema-hl20pct-bc", "global", "kaldi-combine"],
        "models": models,
        "dev_curve": [],
        "epoch_curve": [{"epoch": 1, "frames": 4000.0, **ce}],
        "lr": {"lr_initial": 0.3, "lr_final": 0.03, "lr_times_workers": True},
    }


def test_every_decode_of_the_study_is_one_decode_nnet_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LM-weight calibration and the dev and test decodes are all built by the one
    `DecodeCall` and parse with steps_py.decode.nnet's own parser into what each asks for."""
    from steps_py.decode.nnet import build_parser

    plan = {**PLAN, "decode": {**PLAN["decode"], "nj": 3, "opts": ["--beam", "9"]}}
    plan["decode"]["calibrate_lm_weights"] = "8:10"
    plan_path = tmp_path / "study.json"
    plan_path.write_text(json.dumps(plan), encoding="utf-8")
    study = Study(load_plan(plan_path), tmp_path / "work", tmp_path / "results")
    for run in study.plan.runs:
        (study.run_dir(run) / "final").mkdir(parents=True)
        for tag in ("global", "ema-hl1000"):
            (study.run_dir(run) / "final" / f"{tag}.safetensors").write_bytes(b"")
        mark_done(study.run_dir(run) / "final")
    calls: list[argparse.Namespace] = []

    def fake_call(argv: list[str], log_path: Path, what: str, allow: tuple[int, ...] = ()) -> int:
        assert argv[:3] == [sys.executable, "-m", "steps_py.decode.nnet"]
        args = build_parser().parse_args(argv[3:])
        calls.append(args)
        for out in args.out:  # what the step leaves: a done decode dir, its chosen LM weight
            out.mkdir(parents=True)
            summary = {"cer": 10.0, "lm_weight": 9.0, "word_ins_penalty": 0.5}
            (out / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
            (out / "cer_9_0.5").write_text("%WER 10.00 [ 2 / 20, 0 ins, 0 del, 2 sub ]\n")
            mark_done(out)
        return 0

    monkeypatch.setattr(study, "_call", fake_call)
    calib, run = study.plan.runs
    d, wd = study.run_dir(run), study.wd
    study.decode(run, ["global", "ema-hl1000"], "dev")
    study.decode(run, ["global"], "test")
    assert len(calls) == 3  # the calibration first: the dev decodes need its LM weight
    cal, dev, test = calls
    assert cal.model == [study.run_dir(calib) / "final/global.safetensors"]
    assert cal.out == [study.run_dir(calib) / "decode_global_dev"] and cal.log_file is None
    assert (cal.data, cal.lm_weights, cal.lm_weight_from) == (wd / "data/dev", "8:10", None)
    assert dev.model == [d / "final/global.safetensors", d / "final/ema-hl1000.safetensors"]
    assert dev.out == [d / "decode_global_dev", d / "decode_ema-hl1000_dev"]
    assert (dev.data, dev.lm_weights, dev.lm_weight_from) == (wd / "data/dev", "9", None)
    assert dev.log_file == d / "log/decode_dev.log"
    assert test.data == wd / "data/test" and test.out == [d / "decode_global_test"]
    assert test.lm_weight_from == [d / "decode_global_dev"] and test.lm_weights == "7:17"
    for a in calls:  # the plan's graph, jobs and options in every one
        assert (a.graph, a.nj, a.beam) == (wd / "exp/mono/graph", 3, 9.0)
    assert json.loads((study.results / "lm_weights.json").read_text())["dnn"]["lm_weight"] == 9.0


def test_two_threads_asking_for_the_same_decodes_decode_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every study thread's test_chosen asks for the chosen models of every run: the second
    thread waits for the first one's decode of a run and then finds it done."""
    import threading
    import time

    plan_path = tmp_path / "study.json"
    plan_path.write_text(json.dumps(PLAN), encoding="utf-8")
    study = Study(load_plan(plan_path), tmp_path / "work", tmp_path / "results")
    for run in study.plan.runs:
        (study.run_dir(run) / "final").mkdir(parents=True)
        (study.run_dir(run) / "final" / "global.safetensors").write_bytes(b"")
        mark_done(study.run_dir(run) / "final")
    outs: list[Path] = []

    def slow_call(argv: list[str], log_path: Path, what: str, allow: tuple[int, ...] = ()) -> int:
        out = Path(argv[argv.index("--out") + 1])
        outs.append(out)
        time.sleep(0.3)  # the other thread asks meanwhile
        out.mkdir(parents=True)
        mark_done(out)
        return 0

    monkeypatch.setattr(study, "_call", slow_call)
    run = study.plan.runs[1]
    threads = [
        threading.Thread(target=study.decode, args=(run, ["global"], "test")) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outs == [study.run_dir(run) / "decode_global_test"]
    other = study.plan.runs[0]  # while a thread decodes a run, wait=False leaves it to it
    with study.lock:
        lock = study.decode_locks.setdefault(other.name, threading.Lock())
    with lock:
        study.decode(other, ["global"], "test", wait=False)
    assert len(outs) == 1
    study.decode(other, ["global"], "test", wait=False)
    assert outs[1:] == [study.run_dir(other) / "decode_global_test"]


def test_a_decode_call_refuses_mismatched_lists() -> None:
    from steps_py.decode.inputs import DecodeError
    from steps_py.decode.options import DecodeCall

    m, g = [Path("a.safetensors"), Path("b.safetensors")], Path("graph")
    with pytest.raises(DecodeError, match="one out dir per model"):
        DecodeCall(m, g, Path("data/dev"), [Path("out_a")], 2)
    with pytest.raises(DecodeError, match="one --lm-weight-from dir per model"):
        DecodeCall(m, g, Path("data/test"), [Path("x"), Path("y")], 2, lm_weight_from=[Path("d")])
    with pytest.raises(DecodeError, match="not both"):
        DecodeCall(m[:1], g, Path("data/dev"), [Path("x")], 2, lm_weights="9", lm_weight_from=m[:1])


def test_second_study_chooses_on_dev_ce_with_global_as_a_candidate(tmp_path: Path) -> None:
    from steps_py.study.table_kaldi import build_rows, table_md

    plan_path = tmp_path / "study.json"
    plan_path.write_text(json.dumps(PLAN2), encoding="utf-8")
    study = Study(load_plan(plan_path), tmp_path / "work", tmp_path / "results")
    assert study.root == tmp_path / "work/exp/results"
    base = [2] * 40
    for run in study.plan.runs:
        if run.tag:  # the global model has the lowest dev CE: dev chooses it
            ce = {"global": 1.0, "ema-hl5pct-bc": 1.1, "ema-hl20pct-bc": 1.2}
        else:  # the 5 % EMA has; on test it is 1 error better on 3 of 4 speakers
            ce = {"global": 1.2, "ema-hl5pct-bc": 1.0, "ema-hl20pct-bc": 1.1}
        test = {
            "global": base,
            "kaldi-combine": base,
            "ema-hl5pct-bc": [1] * 30 + [1 + run.seed % 2] * 10,
        }
        rec = _record(run.name, ce, test)
        if run.tag and run.seed == 1:  # one run counted max-change (trained since bf73266)
            rec["max_change"] = [
                {"epoch": 1, "layer_pct": 50.0, "global_pct": 10.0},
                {"epoch": 2, "layer_pct": 97.0, "global_pct": 40.0},
            ]
        write_record_ = study.record_path(run)
        write_record_.parent.mkdir(parents=True, exist_ok=True)
        write_record_.write_text(json.dumps(rec))
    choices = study.choose()
    assert choices["dnn_ma_n2"]["ema"] == "ema-hl5pct-bc"
    assert choices["dnn_ma_n2_lrconst"]["ema"] == "global"
    assert set(choices["dnn_ma_n2"]["dev_ce_mean"]) == {"global", "ema-hl5pct-bc", "ema-hl20pct-bc"}
    rows = build_rows([study])
    ema = next(r for r in rows if r["config"] == "dnn_ma_n2" and r["averager"] == "ema")
    c = ema["vs_global"]
    # seed 1: 30 + 20 = 50 errors vs 80 (-37.5 %); seed 2: 30 + 10 = 40 (-50 %)
    assert c["per_seed_percent"] == pytest.approx([-37.5, -50.0])
    assert c["percent"] == pytest.approx(-43.75) and c["verdict"] == "helps"
    assert c["speakers"] == 4 and c["utterances"] == 40 and c["seeds_pooled"] == 2
    comb = next(r for r in rows if r["config"] == "dnn_ma_n2" and r["averager"] == "kaldi-combine")
    # its decodes are the global model's own (as Kaldi's combination of the last model only)
    assert comb["vs_global"]["verdict"] == "same decodes as global"
    assert comb["vs_global"]["tost_p"] == 0.0 and comb["vs_global"]["percent"] == 0.0
    const = next(r for r in rows if r["config"] == "dnn_ma_n2_lrconst" and r["averager"] == "ema")
    assert const["vs_global"]["percent"] == 0.0  # dev chose the global model itself
    assert const["vs_global"]["verdict"] == "dev chose global"
    md = table_md([study], rows)
    assert "Primary contrasts" in md and "| dnn_ma_n2 | 2 | ema (ema-hl5pct-bc)" in md
    assert "**helps**" in md and "mechanism" in md
    mech = {ln.split(" | ")[0]: ln for ln in md.splitlines() if "(x0.1)" in ln or "(x1)" in ln}
    assert mech["| dnn_ma_n2_lrconst"].endswith("| 97 % / 40 % (1 of 2 runs) |")
    assert mech["| dnn_ma_n2"].endswith("| not counted |")
    assert const["max_change_last_epoch"] == {
        "layer_pct": 97.0,
        "global_pct": 40.0,
        "runs": 1,
        "of_runs": 2,
    }
    # a recount of the other run fills it in; a recount that did not reproduce its run is ignored
    study.results.mkdir(parents=True, exist_ok=True)
    (study.results / "max_change_recount.tsv").write_text(
        "run\tepoch\tmax_change_layer_pct\tmax_change_global_pct\tfinal_global_bit_identical\n"
        "dnn_ma_n2_lrconst_seed2\t2\t99.00\t0.00\tTrue\n"
        "dnn_ma_n2_seed1\t2\t30.00\t0.00\tFalse\n"
    )
    rows = build_rows([study])
    const = next(r for r in rows if r["config"] == "dnn_ma_n2_lrconst" and r["averager"] == "ema")
    assert const["max_change_last_epoch"] == {
        "layer_pct": 98.0,
        "global_pct": 20.0,
        "runs": 2,
        "of_runs": 2,
    }
    ema = next(r for r in rows if r["config"] == "dnn_ma_n2" and r["averager"] == "ema")
    assert ema["max_change_last_epoch"] is None


def test_a_record_keeps_the_max_change_counts_of_each_epoch() -> None:
    from steps_py.study.record import max_change_curve

    hist = [
        {"epoch": 1, "frames": 10, "max_change_layer_pct": 80.0, "max_change_global_pct": 5.0},
        {"epoch": 2, "frames": 20, "max_change_layer_pct": 20.0, "max_change_global_pct": 0.0},
    ]
    assert max_change_curve({"history": hist}) == [
        {"epoch": 1, "layer_pct": 80.0, "global_pct": 5.0},
        {"epoch": 2, "layer_pct": 20.0, "global_pct": 0.0},
    ]
    assert max_change_curve({"history": [{"epoch": 1, "frames": 10}]}) == []


def test_leave_one_speaker_out_folds_pool_every_folds_test_decodes(tmp_path: Path) -> None:
    from steps_py.study.run import fold_studies
    from steps_py.study.table_kaldi import build_rows, seed_entries, table_md

    plan = {**PLAN2, "families": PLAN2["families"][:1], "folds": {"speakers": ["a", "b"]}}
    plan_path = tmp_path / "study.json"
    plan_path.write_text(json.dumps(plan), encoding="utf-8")
    folds = fold_studies(load_plan(plan_path), tmp_path / "work", tmp_path / "results")
    assert [f.wd.name for f in folds] == ["fold_a", "fold_b"]
    for k, study in enumerate(folds):  # fold a: 5 % EMA best on dev; fold b: the 20 % one
        utts = [f"spk{k}-{i}" for i in range(5)]
        for run in study.plan.runs:
            best = "ema-hl5pct-bc" if k == 0 else "ema-hl20pct-bc"
            ce = {"global": 1.2, "ema-hl5pct-bc": 1.1, "ema-hl20pct-bc": 1.1, best: 1.0}
            rec = _record(run.name, ce, {"global": [2] * 5, best: [1] * 5})
            for splits in rec["models"].values():
                for e in splits.values():
                    e.update(utts=utts, ref_len=[10] * 5, cer=100.0 * sum(e["errors"]) / 50)
            study.record_path(run).parent.mkdir(parents=True, exist_ok=True)
            study.record_path(run).write_text(json.dumps(rec))
        study.choose()
    seeds = seed_entries(folds, "dnn_ma_n2")
    ema = seeds[1]["ema"]
    assert ema["tags"] == ["ema-hl5pct-bc", "ema-hl20pct-bc"]  # each fold's own dev choice
    assert len(ema["test"]["utts"]) == 10 and ema["test"]["cer"] == pytest.approx(10.0)
    row = next(r for r in build_rows(folds) if r["averager"] == "ema")
    assert row["vs_global"]["percent"] == pytest.approx(-50.0)
    assert row["vs_global"]["speakers"] == 2 and row["vs_global"]["utterances"] == 10
    md = table_md(folds, build_rows(folds))  # each fold's progress, named by its left-out speaker
    n = len(folds[0].plan.runs)
    assert f"- fold-a: Runs of the plan with results: {n} of {n}." in md
    assert f"- fold-b: Runs of the plan with results: {n} of {n}." in md


def _diverged(name: str) -> dict:
    """A diverged run's record, as ``record.diverged_record`` writes it."""
    keys = {"summary": {}, "final_models": [], "models": {}, "dev_curve": []}
    return {"run": name, "diverged": {"where": "epoch 1"}, **keys}


def test_the_pilot_chooses_each_groups_learning_rate_on_dev_ce(tmp_path: Path) -> None:
    plan = {
        **PLAN2,
        "train_model": {"dnn": ["--lr-initial", "0.3", "--lr-final", "0.03"]},
        "pilot": {
            "factors": [0.5, 1, 2],
            "train_extra": ["--epochs", "1"],
            "groups": [{"pilot": "dnn_ma_n2", "configs": ["dnn_ma_n2", "dnn_ma_n2_lrconst"]}],
        },
    }
    plan_path = tmp_path / "study.json"
    plan_path.write_text(json.dumps(plan), encoding="utf-8")
    study = Study(load_plan(plan_path), tmp_path / "work", tmp_path / "results")
    pilots = study.plan.pilot_runs()
    assert [r.name for _, _, r in pilots] == [
        "dnn_ma_n2_pilot-lrx0.5_seed1",
        "dnn_ma_n2_pilot-lrx1_seed1",
        "dnn_ma_n2_pilot-lrx2_seed1",
    ]
    with pytest.raises(StudyError, match="pilot of dnn_ma_n2, which has not chosen yet"):
        study.lr_scale(study.plan.runs[0])
    for _, _, run in pilots:  # first every pilot diverged
        rec = _diverged(run.name)
        study.record_path(run).parent.mkdir(parents=True, exist_ok=True)
        study.record_path(run).write_text(json.dumps(rec))
    assert study.run_pilot(jobs=1)["dnn_ma_n2"]["factor"] is None  # all diverged: not run
    assert study.pilot_diverged(study.plan.runs[0])
    from steps_py.study.table_kaldi import build_rows

    assert {r["status"] for r in build_rows([study])} == {
        "not run: every learning-rate pilot diverged"
    }
    for (_, f, run), ce in zip(pilots, (1.3, 1.1, None), strict=True):  # x2 diverged
        rec = _diverged(run.name)
        if ce is not None:
            rec = _record(run.name, {"global": ce}, {})
        study.record_path(run).parent.mkdir(parents=True, exist_ok=True)
        study.record_path(run).write_text(json.dumps(rec))
        assert study.lr_scale(run) == f and study.record_path(run).parent.name == "pilot"
    chosen = study.run_pilot(jobs=1)  # every pilot has its record: nothing is trained
    assert chosen["dnn_ma_n2"]["factor"] == 1.0
    assert chosen["dnn_ma_n2"]["dev_ce_global_by_factor"] == {"0.5": 1.3, "1": 1.1, "2": None}
    const = next(r for r in study.plan.runs if r.tag == "lrconst")
    assert study.lr_scale(const) == 1.0 and not study.pilot_diverged(const)
    argv = study.plan.train_argv(pilots[0][2], 0.5)  # the pilot's options last
    assert argv[:4] == ["--epochs", "1", "--lr-initial", "0.15"] and argv[-2:] == ["--epochs", "1"]
    argv = study.plan.train_argv(const, 2.0)  # x2, then the constant final rate
    assert argv[2:6] == ["--lr-initial", "0.6", "--lr-final", "0.6"]


@pytest.mark.parametrize(
    ("ces", "factor", "tried"),
    [  # CE by factor 0.5, 1, 2, 4, 8, 16 (None: not to be trained)
        ((1.3, 1.2, 1.1, 1.0, 1.05, None), 4.0, ["0.5", "1", "2", "4", "8"]),
        ((1.3, 1.2, 1.1, 1.0, 0.9, None), 8.0, ["0.5", "1", "2", "4", "8"]),  # extend_to: 8
        ((1.0, 1.2, 1.1, None, None, None), 0.5, ["0.5", "1", "2"]),  # interior/bottom: no more
    ],
)
def test_a_pilot_best_at_the_top_of_its_grid_is_extended_up_to_extend_to(
    tmp_path: Path, ces: tuple[float | None, ...], factor: float, tried: list[str]
) -> None:
    plan = {
        **PLAN2,
        "pilot": {
            "factors": [0.5, 1, 2],
            "extend_to": 8,
            "groups": [{"pilot": "dnn_ma_n2", "configs": ["dnn_ma_n2"]}],
        },
    }
    plan_path = tmp_path / "study.json"
    plan_path.write_text(json.dumps(plan), encoding="utf-8")
    study = Study(load_plan(plan_path), tmp_path / "work", tmp_path / "results")
    for f, ce in zip((0.5, 1, 2, 4, 8, 16), ces, strict=True):
        run = study.plan.pilot_run("dnn_ma_n2", f)
        assert study.record_path(run).parent.name == ("pilot" if f <= 8 else "runs")
        if ce is not None:
            study.record_path(run).parent.mkdir(parents=True, exist_ok=True)
            study.record_path(run).write_text(json.dumps(_record(run.name, {"global": ce}, {})))
    trained: list[str] = []
    study.train = lambda run: bool(trained.append(run.name))  # type: ignore[method-assign]
    chosen = study.run_pilot(jobs=1)["dnn_ma_n2"]
    assert trained == []  # every run the rule asked for had its record
    assert chosen["factor"] == factor
    assert list(chosen["dev_ce_global_by_factor"]) == tried


def test_frames_to_reach_a_dev_ce_interpolates_between_evaluations() -> None:
    from steps_py.study.contrast import frames_to_reach, speaker_of

    curve = [(20.0, 1.0), (0.0, 5.0), (10.0, 3.0)]  # any order
    assert frames_to_reach(curve, 2.0) == pytest.approx(15.0)
    assert frames_to_reach(curve, 5.0) == 0.0 and frames_to_reach(curve, 1.0) == 20.0
    assert frames_to_reach(curve, 0.5) is None
    assert speaker_of("test-s001-00016") == "test-s001"
    assert speaker_of("astmic-fsi003-sen_0012") == "astmic-fsi003"


def test_table_only_rebuilds_the_second_table_from_records_without_a_corpus(tmp_path: Path) -> None:
    from steps_py.study.run import main

    plan_path = tmp_path / "study.json"
    plan_path.write_text(json.dumps(PLAN2), encoding="utf-8")
    results = tmp_path / "results"
    argv = ["--plan", str(plan_path), "--workdir", str(tmp_path / "no_corpus"), "--results"]
    assert main([*argv, str(results), "--table-only"]) == 0
    table = json.loads((results / "table.json").read_text(encoding="utf-8"))
    assert table["corpus"] == "toy" and table["statistics"]["bootstrap"] == "hierarchical"
    assert {r["status"] for r in table["rows"]} == {"not run"}
    assert "Runs of the plan with results: 0 of 4" in (results / "table.md").read_text()
    assert main([*argv, str(results)]) == 1  # without --table-only it needs the corpus


def test_a_truncated_or_incomplete_record_is_an_error_naming_the_file(tmp_path: Path) -> None:
    from steps_py.study.record import RecordError

    n = len(REF)
    study = _fake_study(tmp_path, {"global": [1] * n, "ema-hl1000": [1] * n}, {})
    run = study.plan.runs[1]
    path = study.record_path(run)
    good = path.read_text()
    path.write_text(good[: len(good) // 2])  # a session killed while copying records
    with pytest.raises(RecordError, match=rf"{path} is not a study record: truncated or malformed"):
        study.record(run)
    rec = json.loads(good)
    del rec["final_models"]
    path.write_text(json.dumps(rec))
    with pytest.raises(
        RecordError, match=rf"{path} is not a complete study record: no 'final_models'; delete "
    ):
        study.record(run)
    rec = json.loads(good)
    next(iter(rec["models"].values()))["dev"]["errors"].pop()
    path.write_text(json.dumps(rec))
    with pytest.raises(RecordError, match="utts, errors and ref_len differ in length"):
        study.record(run)
    path.write_text(good)
    assert study.record(run) == json.loads(good)


def test_examples_whose_pdfs_differ_from_the_graph_stop_the_study_before_training(
    tmp_path: Path,
) -> None:
    from steps_py.study.run import StudyError, check_targets_match_graph

    plan_path = tmp_path / "study.json"
    plan_path.write_text(json.dumps(PLAN2), encoding="utf-8")
    study = Study(load_plan(plan_path), tmp_path / "work", tmp_path / "results")
    graph = study.wd / study.plan.graph
    graph.mkdir(parents=True)
    (graph / "num_pdfs").write_text("33\n")
    for egs in study.plan.egs.values():
        (study.wd / egs).mkdir(parents=True)
        (study.wd / egs / "info.json").write_text(json.dumps({"num_pdfs": 33}))
    check_targets_match_graph(study)  # the same pdfs: fine
    egs = study.wd / next(iter(study.plan.egs.values()))
    (egs / "info.json").write_text(json.dumps({"num_pdfs": 34}))
    with pytest.raises(StudyError, match=r"have 34 pdfs but its graph .* has 33: set the plan's"):
        check_targets_match_graph(study)


def test_a_retraining_that_does_not_reproduce_a_record_supersedes_it(tmp_path: Path) -> None:
    """A run retrained (its dir gone, e.g. a later session) into another model than its record
    holds must not mix the new decodes with the record's: the record is set aside and the run's
    decodes are redone; a bit-identical retraining just adds its decodes."""
    n = len(REF)
    study = _fake_study(tmp_path, {"global": [3] * n, "ema-hl1000": [2] * n}, {"global": [3] * n})
    run = study.plan.runs[0]
    d = study.run_dir(run)
    first = study.record(run)
    assert first is not None and first["fingerprint"] == model_fingerprint(d)
    # the same training again, one more decode: merged into the record
    _decode_dir(d / "decode_ema-hl1000_test", [1] * n)
    study.update_record(run)
    rec = study.record(run)
    assert rec is not None and set(rec["models"]["global"]) == {"dev", "test"}
    assert set(rec["models"]["ema-hl1000"]) == {"dev", "test"} and not study.superseded
    # another training (other bytes): only its own decodes, the old record kept aside
    shutil.rmtree(d / "decode_global_test")
    shutil.rmtree(d / "decode_ema-hl1000_dev")
    (d / "final" / "global.safetensors").write_bytes(b"another model")
    study.update_record(run)
    rec = study.record(run)
    assert rec is not None and rec["fingerprint"] == model_fingerprint(d) != first["fingerprint"]
    assert set(rec["models"]) == {"global", "ema-hl1000"}
    assert set(rec["models"]["global"]) == {"dev"} and set(rec["models"]["ema-hl1000"]) == {"test"}
    assert study.superseded == {run.name}
    kept = study.results / "superseded" / f"{run.name}.{first['fingerprint']}.json"
    assert json.loads(kept.read_text())["models"]["global"]["test"]["cer"] == pytest.approx(30.0)
    assert "Records superseded by a retraining that did not reproduce them" in progress(study)
    assert f": {run.name}." in progress(study)


def test_a_record_without_a_fingerprint_is_compared_by_its_final_dev_ce() -> None:
    old = {"epoch_curve": [{"epoch": 1, "frames": 10.0, "global": 2.0506275556107076}]}
    same = {"fingerprint": "ab", "epoch_curve": [dict(old["epoch_curve"][0])]}
    other = {"fingerprint": "cd", "epoch_curve": [{"epoch": 1, "frames": 10.0, "global": 2.03}]}
    assert same_training(old, same) is True and same_training(old, other) is False
    assert same_training({"fingerprint": "ab"}, other) is False
    assert same_training({}, other) is None  # the first study's records: nothing to compare


def test_runs_on_different_examples_are_named_in_the_progress_line(tmp_path: Path) -> None:
    n = len(REF)
    study = _fake_study(tmp_path, {"global": [3] * n}, {"global": [3] * n})
    egs = tmp_path / "egs"
    for split in ("train", "dev"):
        (egs / split / "shard-0").mkdir(parents=True)
        np.save(egs / split / "shard-0" / "targets.npy", np.arange(5))
        np.save(egs / split / "shard-0" / "feats.npy", np.zeros((5, 2), np.float32))
    fp = examples_fingerprint(egs)
    assert len(fp) == 16 and progress(study).endswith("2 of 2.")
    rec = study.record(study.plan.runs[0])
    assert rec is not None
    rec["examples"] = fp
    study.record_path(study.plan.runs[0]).write_text(json.dumps(rec))
    line = progress(study)
    assert f"Examples (sha256 of their targets and features): {fp} for the 1 runs" in line
    assert "the other 1 were recorded before." in line
    assert "did not all train on the same examples" not in line
    rec2 = study.record(study.plan.runs[1])
    assert rec2 is not None
    rec2["examples"] = "0123456789abcdef"
    study.record_path(study.plan.runs[1]).write_text(json.dumps(rec2))
    line = progress(study)
    assert "did not all train on the same examples" in line
    assert f"1 runs on examples {fp}" in line and "1 runs on examples 0123456789abcdef" in line


def test_the_dev_curve_counts_an_evaluation_a_resumed_run_logged_again_once(tmp_path: Path) -> None:
    from steps_py.study.record import dev_curve

    csv_path = tmp_path / "train.csv"
    rows = [("block", 100, 2.5), ("block", 200, 2.2), ("epoch", 200, ""), ("block", 100, 2.5)]
    rows += [("block", 200, 2.2), ("block", 300, 2.0)]  # resumed from the checkpoint at 100
    csv_path.write_text(
        "kind,frames,dev_ce_global\n" + "".join(f"{k},{f},{v}\n" for k, f, v in rows)
    )
    assert dev_curve(csv_path) == [
        {"frames": 100.0, "global": 2.5},
        {"frames": 200.0, "global": 2.2},
        {"frames": 300.0, "global": 2.0},
    ]
