"""Smoke runs of ./run.sh on the tiny synthetic configuration, as a user would type them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = "egs/synth/conf_tiny"


def _run(*args: str) -> str:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.run(
        ["bash", str(ROOT / "run.sh"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    return out


def test_whole_recipe_on_the_tiny_config_then_rerun_skips(tmp_path: Path) -> None:
    out = _run("--stop-stage", "3", "--conf-dir", TINY, "--workdir", str(tmp_path))
    assert "Synthetic Mandarin voice-search corpus" in out  # corpus report printed
    assert "perplexity" in out.lower()  # LM perplexity on dev printed
    for s in ("train", "dev", "test"):
        d = tmp_path / "data" / s
        for f in ("wav.scp", "text", "utt2spk", "spk2utt", "mfcc/feats.scp", "mfcc/cmvn.scp", "fbank/feats.scp"):
            assert (d / f).is_file(), f"{d / f} missing"
        utts = [line.split()[0] for line in (d / "text").read_text().splitlines()]
        feats = [line.split()[0] for line in (d / "fbank/feats.scp").read_text().splitlines()]
        assert utts and sorted(feats) == sorted(utts)
    for f in ("phones.txt", "words.txt", "topo", "L.fst", "L_disambig.fst", "G.fst"):
        assert (tmp_path / "data/lang_test" / f).is_file()

    out = _run("--stage", "4", "--conf-dir", TINY, "--workdir", str(tmp_path))
    exp = tmp_path / "exp"
    assert "GMM (mono) test %CER" in out
    for f in ("mono/final.npz", "mono/graph/HCLG.fst", "mono_ali/train/pdf.scp", "mono/decode_test/cer"):
        assert (exp / f).is_file(), f
    for run in ("dnn_ma_n2", "lstm_bmuf-nbm_n2"):
        summary = json.loads((exp / run / "summary.json").read_text())
        assert summary["workers"] == 2 and len(summary["history"]) == 1
        for model in ("global", "ema-0.9"):
            assert (exp / run / "final" / f"{model}.safetensors").is_file()
            cer = (exp / run / f"decode_{model}_test" / "cer").read_text()
            assert cer.startswith("%CER "), cer
    board = json.loads((tmp_path / "results/scoreboard.json").read_text())
    text = json.dumps(board)
    for system in ("mono", "dnn_ma_n2/global", "dnn_ma_n2/ema-0.9", "lstm_bmuf-nbm_n2/ema-0.9"):
        assert system in text, system
    assert (tmp_path / "results/scoreboard.md").read_text().count("\n|") >= 6
    assert list((tmp_path / "logs").glob("run-*.log"))

    again = _run("--conf-dir", TINY, "--workdir", str(tmp_path))
    assert again.count("skipping") >= 12, again[-3000:]
    assert "already trained" in again


def test_bad_flags_are_clear_errors() -> None:
    for args, msg in (
        (["--corpus", "timit"], "--corpus must be synth, aishell or kaldi"),
        (["--corpus", "aishell", "--corpus-dir", "/nonexistent/aishell"], "does not exist"),
        (["--nj", "0"], "non-negative integers"),
        (["--bogus"], "unknown option '--bogus'"),
    ):
        p = subprocess.run(["bash", str(ROOT / "run.sh"), *args], cwd=ROOT, capture_output=True, text=True)
        assert p.returncode == 2 and msg in p.stderr, (args, p.stderr)
