"""Smoke runs of ./run.sh on the tiny synthetic configuration, as a user would type them."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = "egs/synth/conf_tiny"


def _run(*args: str, ok: bool = True) -> str:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.run(
        ["bash", str(ROOT / "run.sh"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = p.stdout + p.stderr
    assert (p.returncode == 0) == ok, out[-4000:]
    return out


def _stages_with_carriage_returns(work: Path) -> set[int]:
    """Stages of the run logs under `work` whose output holds progress-bar frames ('\r')."""
    found = set()
    for log in (work / "logs").glob("run-*.log"):
        text = log.read_bytes().decode("utf-8")  # bytes: text mode would turn '\r' into '\n'
        parts = re.split(r"\(run\.sh:\d+\) stage (\d+):", text)
        found |= {int(parts[i]) for i in range(1, len(parts), 2) if "\r" in parts[i + 1]}
    return found


def _without_timing(scoreboard: Path) -> str:
    """scoreboard.json's text with each system's measured "timing" removed."""
    text = scoreboard.read_text(encoding="utf-8")
    board = json.loads(text)
    assert all("timing" in s for s in board["systems"])
    for s in board["systems"]:
        del s["timing"]
    assert json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=True) + "\n" == text
    return json.dumps(board, indent=2, ensure_ascii=False, sort_keys=True)


def test_whole_recipe_on_the_tiny_config_then_rerun_skips(tmp_path: Path) -> None:
    work = tmp_path / "work dir"  # a space in the path: every path in run.sh is quoted
    out = _run("--stop-stage", "3", "--conf-dir", TINY, "--workdir", str(work))
    assert "Synthetic Mandarin voice-search corpus" in out  # corpus report printed
    assert "perplexity" in out.lower()  # LM perplexity on dev printed
    for s in ("train", "dev", "test"):
        d = work / "data" / s
        for f in (
            "wav.scp",
            "text",
            "utt2spk",
            "spk2utt",
            "mfcc/feats.scp",
            "mfcc/cmvn.scp",
            "fbank/feats.scp",
        ):
            assert (d / f).is_file(), f"{d / f} missing"
        utts = [line.split()[0] for line in (d / "text").read_text().splitlines()]
        feats = [line.split()[0] for line in (d / "fbank/feats.scp").read_text().splitlines()]
        assert utts and sorted(feats) == sorted(utts)
    for f in ("phones.txt", "words.txt", "topo", "L.fst", "L_disambig.fst", "G.fst"):
        assert (work / "data/lang_test" / f).is_file()

    out = _run("--stage", "4", "--conf-dir", TINY, "--workdir", str(work))
    exp = work / "exp"
    assert "GMM (mono) test %CER" in out
    assert "resuming from its last checkpoint if it has one" in out  # stage 7 resumes by default
    for f in (
        "mono/final.npz",
        "mono/graph/HCLG.fst",
        "mono_ali/train/pdf.scp",
        "mono/decode_test/cer",
    ):
        assert (exp / f).is_file(), f
    for run in ("dnn_ma_n2", "lstm_bmuf-nbm_n2"):
        summary = json.loads((exp / run / "summary.json").read_text())
        assert summary["workers"] == 2 and len(summary["history"]) == 1
        for model in ("global", "ema-0.9"):
            assert (exp / run / "final" / f"{model}.safetensors").is_file()
            cer = (exp / run / f"decode_{model}_test" / "cer").read_text()
            assert cer.startswith("%CER "), cer
    board = json.loads((work / "results/scoreboard.json").read_text())
    text = json.dumps(board)
    for system in ("mono", "dnn_ma_n2/global", "dnn_ma_n2/ema-0.9", "lstm_bmuf-nbm_n2/ema-0.9"):
        assert system in text, system
    assert (work / "results/scoreboard.md").read_text().count("\n|") >= 6
    # the log a person reads: no progress-bar frames (carriage returns) in any stage
    assert _stages_with_carriage_returns(work) == set()

    again = _run("--conf-dir", TINY, "--workdir", str(work))
    assert again.count("skipping") >= 12, again[-3000:]
    assert "already trained" in again

    # Reproducibility: the same config and seeds in a fresh work dir give the same corpus,
    # GMM, alignments, examples, models and decodes: a scoreboard.json identical byte for
    # byte once the measured times are taken out.
    work2 = tmp_path / "second"
    _run("--conf-dir", TINY, "--workdir", str(work2))
    for rel in (
        "data/test/text",
        "exp/mono_ali/train/ali.ark",
        "exp/mono/decode_test/hyp.txt",
        "exp/dnn_ma_n2/decode_global_test/hyp.txt",
        "exp/lstm_bmuf-nbm_n2/decode_ema-0.9_dev/hyp.txt",
    ):
        assert (work / rel).read_bytes() == (work2 / rel).read_bytes(), rel
    assert _without_timing(work / "results/scoreboard.json") == _without_timing(
        work2 / "results/scoreboard.json"
    )

    # A --force redo of stage 4 makes the later stages redo what was made from it: the
    # examples record the alignments they were cut from, training records its examples.
    _run("--stage", "4", "--stop-stage", "4", "--force", "--conf-dir", TINY, "--workdir", str(work))
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "run.conf").write_text(  # one run, retrained small and fast
        f'. "{ROOT / TINY}/run.conf"\ntrain_runs="dnn:ma:2"\n'
        'train_opts[dnn]="--epochs 1 --batch-size 256 --optimizer sgd-mc --momentum 0.5 --lr-initial 0.1 '
        '--lr-final 0.01 --model-config hidden_layers=1,hidden_dim=32 --prior-frames 2000 --no-tensorboard"\n'
    )
    out = _run("--stage", "6", "--stop-stage", "7", "--conf-dir", str(conf), "--workdir", str(work))
    assert "inputs changed" in out and "redoing it" in out, out[-3000:]
    assert "were remade since it was trained; retraining from scratch" in out, out[-3000:]
    again = _run(
        "--stage", "6", "--stop-stage", "7", "--conf-dir", str(conf), "--workdir", str(work)
    )
    assert "already trained" in again and "inputs changed" not in again


def test_a_failing_step_names_its_stage(tmp_path: Path) -> None:
    out = _run("--stage", "4", "--stop-stage", "4", "--workdir", str(tmp_path), ok=False)
    assert "run `python -m steps_py.lang.prepare` first" in out  # the step's own error (no lang)
    assert "Traceback" not in out
    assert "ERROR: stage 4 failed: 'python -m steps_py.gmm.train_mono' exited with status 1" in out
    assert "rerun with --stage 4" in out
