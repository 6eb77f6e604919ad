"""AISHELL-1: stage 0 (local.aishell.prepare, lhotse's recipe) and stage 1 on a tiny
AISHELL-shaped fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from local.aishell import prepare as aishell_prepare
from local.mandarin.lexicon import pinyin_lexicon
from steps_py.data.kaldi_dir import KaldiDataDir, read_kaldi_map
from steps_py.data.prepare import main

SENTENCES = [
    "而 对 楼市 成交 抑制 作用 最 大 的",
    "甚至 出现 交易 几乎 停滞 的 情况",
    "一二线 城市 虽然 也 处于 调整 中",
]


def make_aishell(root: Path, per_set: int = 21) -> Path:
    """data_aishell/wav/<set>/<spk>/<utt>.wav + transcript/aishell_transcript_v0.8.txt."""
    rng = np.random.default_rng(0)
    lines = []
    for s, spk0 in (("train", 2), ("dev", 724), ("test", 764)):
        for i in range(per_set):
            spk = f"S{spk0 + i % 2:04d}"
            utt = f"BAC009{spk}W{i:04d}"
            wav = root / "data_aishell" / "wav" / s / spk / f"{utt}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(
                wav, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000, subtype="PCM_16"
            )
            lines.append(f"{utt} {SENTENCES[i % len(SENTENCES)]}\n")
    # train: one unreadable file, one wav without a transcript line
    (root / "data_aishell" / "wav" / "train" / "S0002" / "BAC009S0002W0000.wav").write_bytes(
        b"junk" * 100
    )
    lines = [x for x in lines if not x.startswith("BAC009S0003W0001 ")]
    tr = root / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt"
    tr.parent.mkdir(parents=True)
    tr.write_text("".join(lines), encoding="utf-8")
    return root


def test_aishell_fixture(tmp_path: Path) -> None:
    corpus = make_aishell(tmp_path / "aishell", per_set=41)
    out = tmp_path / "data"
    assert (
        aishell_prepare.main(
            ["--corpus-dir", str(corpus), "--out", str(out / "local/aishell"), "--nj", "1"]
        )
        == 0
    )
    lex = out / "local" / "lexicon.txt"
    lex.write_text(pinyin_lexicon("".join(SENTENCES).replace(" ", "")).to_text(), encoding="utf-8")
    assert (
        main(
            [
                "--manifests",
                str(out / "local/aishell/manifests"),
                "--lexicon",
                str(lex),
                "--out",
                str(out),
                "--nj",
                "1",
            ]
        )
        == 0
    )
    rej = read_kaldi_map(out / "train" / "rejected.txt")
    assert {u: r.split(":")[0] for u, r in rej.items()} == {
        "BAC009S0002W0000": "corrupt-audio",
        "BAC009S0003W0001": "mismatched-ids",
    }
    train = KaldiDataDir.load(out / "train")
    assert len(train.utts) == 39
    utt = "BAC009S0003W0003"  # AISHELL's own id, kept
    assert train.utt2spk[utt] == "S0003"
    assert "NOT sorted" not in (out / "train" / "report.txt").read_text()  # Kaldi's rule holds
    assert train.text[utt] == " ".join(SENTENCES[0].replace(" ", ""))
    assert "mirror" not in train.wav[utt]  # the original file, not lhotse's symlink mirror
    assert not (out / "local/aishell/mirror").exists()
    assert (
        Path(train.wav[utt]).resolve()
        == (corpus / "data_aishell/wav/train/S0003/BAC009S0003W0003.wav").resolve()
    )
    dev = KaldiDataDir.load(out / "dev")
    assert len(dev.utts) == 41 and not (out / "dev" / "rejected.txt").exists()
    lm = (out / "local" / "lm_text.txt").read_text().splitlines()
    assert sorted(lm) == sorted(train.text[u] for u in train.utts)  # LM text = train transcripts
