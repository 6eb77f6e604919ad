"""Kaldi data dirs with a `segments` file (and lhotse supervisions covering part of a
recording): imported with the right audio spans, checked as Kaldi's extract-segments, and
featurised from exactly those samples."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from steps_py.data.kaldi_dir import KaldiDataDir, read_kaldi_map
from steps_py.data.prepare import main as prepare
from steps_py.features.compute import main as compute
from steps_py.features.extract import FeatureExtractor
from steps_py.features.io import FeatureReader
from tests.corpus_fixtures import GOOD_TEXT, tone, write_lexicon

SR = 16000
RECS = 5
PER_REC = 8
SEG_S = 0.45


def segmented_dir(root: Path) -> tuple[Path, dict[str, tuple[str, float, float]]]:
    """One Kaldi dir: RECS recordings of 4 s, PER_REC segments each, plus two bad segments."""
    d = root / "in" / "train"
    d.mkdir(parents=True)
    spans: dict[str, tuple[str, float, float]] = {}
    wav_lines, seg_lines, text_lines, spk_lines = [], [], [], []
    for r in range(RECS):
        rec = f"rec{r}"
        wav = tone(root / "wav" / f"{rec}.wav", seconds=4.0, seed=r)
        wav_lines.append(f"{rec} {wav}\n")
        for k in range(PER_REC):
            utt = f"spk{r}-{rec}-{k:02d}"
            start = round(0.013 + 0.49 * k, 3)
            end = round(start + SEG_S, 3) if k < PER_REC - 1 else -1.0
            spans[utt] = (rec, start, end)
            seg_lines.append(f"{utt} {rec} {start} {end:g}\n")
    spans["spk0-rec0-99"] = ("rec0", 3.7, 4.3)  # 0.3 s past the end: truncated, as extract-segments
    seg_lines += [
        "spk0-rec0-99 rec0 3.7 4.3\n",
        "spk1-rec1-98 rec1 3.5 4.6\n",  # 0.6 s past the end: rejected
        "spk1-rec9-97 rec9 0.0 1.0\n",
    ]  # no such recording
    for utt in [*spans, "spk1-rec1-98", "spk1-rec9-97"]:
        text_lines.append(f"{utt} {GOOD_TEXT}\n")
        spk_lines.append(f"{utt} {utt.split('-')[0]}\n")
    (d / "wav.scp").write_text("".join(wav_lines))
    (d / "segments").write_text("".join(seg_lines))
    (d / "text").write_text("".join(text_lines), encoding="utf-8")
    (d / "utt2spk").write_text("".join(spk_lines))
    return d, spans


def test_segments_dir_imported_with_the_right_spans(tmp_path: Path) -> None:
    src, spans = segmented_dir(tmp_path)
    lex = write_lexicon(tmp_path / "lexicon.txt")
    out = tmp_path / "data"
    assert (
        prepare(
            [
                "--kaldi-dirs",
                str(tmp_path / "in"),
                "--sets",
                "train",
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
        "spk1-rec1-98": "bad-segment",
        "spk1-rec9-97": "mismatched-ids",
    }
    assert "more than 0.5 s after the end" in rej["spk1-rec1-98"]
    kd = KaldiDataDir.load(out / "train")
    assert sorted(kd.wav) == [f"rec{r}" for r in range(RECS)]  # wav.scp keyed by recording
    assert kd.utts == sorted(spans)
    for utt, (rec, start, end) in spans.items():
        seg = kd.segments[utt]
        assert (seg.rec, seg.start, -1.0 if seg.end is None else seg.end) == (rec, start, end)
        s = int(start * SR)
        e = 4 * SR if end == -1 or int(end * SR) > 4 * SR else int(end * SR)
        assert kd.utt2dur[utt] == pytest.approx((e - s) / SR, abs=1e-3)
    # the same spans as lhotse's reader of Kaldi dirs
    from lhotse.kaldi import load_kaldi_data_dir

    good = tmp_path / "good"
    good.mkdir()
    for f in ("wav.scp", "text", "utt2spk"):
        (good / f).write_text((src / f).read_text())
    (good / "segments").write_text(
        "".join(
            line
            for line in (src / "segments").read_text().splitlines(keepends=True)
            if line.split()[0] in spans
            and not line.rstrip().endswith("-1")
            and "rec0-99" not in line
        )
    )
    _, sups, _ = load_kaldi_data_dir(good, sampling_rate=SR)
    assert len(sups) == RECS * (PER_REC - 1)
    for sup in sups:
        seg = kd.segments[sup.id]
        assert (sup.recording_id, sup.start) == (seg.rec, pytest.approx(seg.start))
        assert sup.end == pytest.approx(seg.end, abs=1e-6)
    # stage 3 reads exactly those samples (Kaldi: int(start * rate) .. int(end * rate))
    assert compute(["--data", str(out / "train"), "--kind", "fbank", "--nj", "2"]) == 0
    feats = FeatureReader(out / "train", "fbank", cmvn=False)
    ex = FeatureExtractor("fbank")
    for utt in ("spk0-rec0-00", "spk2-rec2-07", "spk0-rec0-99"):
        rec, start, end = spans[utt]
        x = sf.read(kd.wav[rec], dtype="float32")[0] * 32768
        piece = x[int(start * SR) :] if end == -1 else x[int(start * SR) : int(end * SR)]
        np.testing.assert_allclose(feats[utt], ex(piece), rtol=1e-6, atol=1e-5)


def write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def test_partial_lhotse_supervisions_become_segments(tmp_path: Path) -> None:
    man = tmp_path / "manifests"
    for s in ("train", "dev", "test"):
        recs, sups = [], []
        for r in range(3):
            rid = f"{s}rec{r}"
            tone(tmp_path / "wav" / f"{rid}.wav", seconds=3.0, seed=r)
            recs.append(
                {
                    "id": rid,
                    "sources": [
                        {
                            "type": "file",
                            "channels": [0],
                            "source": str(tmp_path / "wav" / f"{rid}.wav"),
                        }
                    ],
                    "sampling_rate": SR,
                    "num_samples": 3 * SR,
                    "duration": 3.0,
                    "channel_ids": [0],
                }
            )
            for k in range(7):
                sups.append(
                    {
                        "id": f"{s}spk{r}-{rid}-{k}",
                        "recording_id": rid,
                        "start": 0.4 * k,
                        "duration": 0.38,
                        "channel": 0,
                        "text": GOOD_TEXT,
                        "speaker": f"{s}spk{r}",
                    }
                )
        write_jsonl_gz(man / f"recordings_{s}.jsonl.gz", recs)
        write_jsonl_gz(man / f"supervisions_{s}.jsonl.gz", sups)
    lex = write_lexicon(tmp_path / "lexicon.txt")
    assert (
        prepare(
            [
                "--manifests",
                str(man),
                "--lexicon",
                str(lex),
                "--out",
                str(tmp_path / "data"),
                "--nj",
                "1",
            ]
        )
        == 0
    )
    kd = KaldiDataDir.load(tmp_path / "data" / "dev")
    seg = kd.segments["devspk1-devrec1-5"]
    assert (seg.rec, seg.start, seg.end) == ("devrec1", 2.0, pytest.approx(2.38))
    assert len(kd.utts) == 21 and sorted(kd.wav) == ["devrec0", "devrec1", "devrec2"]
