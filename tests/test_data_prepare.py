"""Stage 1 (steps_py.data.prepare): every bad-input case, on tiny corpora built in tmp_path."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import pytest

from steps_py.data.kaldi_dir import KaldiDataDir, read_kaldi_map
from steps_py.data.prepare import main
from steps_py.data.text import normalize_transcript
from steps_py.data.validate import num_frames, wav_data_shortfall
from tests.corpus_fixtures import (
    GOOD_TEXT,
    kaldi_corpus,
    kaldi_set,
    run_prepare,
    tone,
    write_lexicon,
)


def test_text_normalisation_and_frames() -> None:
    assert normalize_transcript("今天，天气 很好！")[0] == list("今天天气很好")
    assert normalize_transcript("ＡＢ好")[0] == ["A", "B", "好"]  # full-width folded to ASCII
    assert normalize_transcript(" ，。 ")[0] == []
    assert normalize_transcript("don't stop.", unit="word")[0] == ["don't", "stop"]
    assert num_frames(399) == 0 and num_frames(400) == 1 and num_frames(16000) == 98
    assert num_frames(8000, 8000) == 98 and num_frames(199, 8000) == 0


def test_clean_kaldi_corpus(tmp_path: Path) -> None:
    sets = kaldi_corpus(tmp_path)
    assert run_prepare(tmp_path) == 0
    data = tmp_path / "data"
    for s, utts in sets.items():
        kd = KaldiDataDir.load(data / s)
        assert kd.utts == sorted(utts)
        assert kd.text[kd.utts[0]] == " ".join(GOOD_TEXT)
        assert kd.utt2dur[kd.utts[0]] == pytest.approx(0.5, abs=1e-3)
        assert (data / s / ".done").is_file() and (data / s / "spk2utt").is_file()
        assert not (data / s / "rejected.txt").exists()
    lm = (data / "local" / "lm_text.txt").read_text().splitlines()
    assert len(lm) == len(sets["train"]) and lm[0] == " ".join(GOOD_TEXT)
    # idempotent: a second run leaves the finished dirs alone
    stamp = (data / "train" / "text").stat().st_mtime_ns
    assert run_prepare(tmp_path) == 0
    assert (data / "train" / "text").stat().st_mtime_ns == stamp
    assert run_prepare(tmp_path, "--force") == 0
    assert (data / "train" / "text").stat().st_mtime_ns != stamp


def test_every_bad_input_is_rejected_with_its_reason(tmp_path: Path) -> None:
    sets = kaldi_corpus(tmp_path)
    # 25 good train utterances x 20 -> 500 total, so the 8 bad ones below stay under 5 %.
    train = {}
    for k in range(20):
        for u, (spk, t, w) in sets["train"].items():
            train[f"{u}x{k:02d}"] = (spk, t, w)
    w = tmp_path / "wav"
    bad_sr = tone(w / "sr8k.wav", sr=8000)
    corrupt = w / "corrupt.wav"
    corrupt.write_bytes(b"this is not audio" * 50)
    truncated = w / "trunc.wav"
    full = tone(w / "full.wav").read_bytes()
    truncated.write_bytes(full[: len(full) // 2])
    short = tone(w / "short.wav", seconds=0.05)
    few_frames = tone(w / "few.wav", seconds=0.2)  # 18 frames < 3 x 7 characters
    ok = tone(w / "ok.wav")
    train.update(
        {
            "trainspk0-badsr": ("trainspk0", GOOD_TEXT, bad_sr),
            "trainspk0-corrupt": ("trainspk0", GOOD_TEXT, corrupt),
            "trainspk0-trunc": ("trainspk0", GOOD_TEXT, truncated),
            "trainspk0-missing": ("trainspk0", GOOD_TEXT, w / "nope.wav"),
            "trainspk0-short": ("trainspk0", "好", short),
            "trainspk0-few": ("trainspk0", "今天天气很好啊", few_frames),
            "trainspk0-empty": ("trainspk0", "，。", ok),
            "trainspk0-latin": ("trainspk0", "今天ABC", ok),
        }
    )
    d = tmp_path / "in" / "train"
    kaldi_set(d, train)
    # duplicate id (twice in text) and ids missing from one of the files
    with open(d / "text", "a") as f:
        f.write(f"trainspk1-u001x00 {GOOD_TEXT}\n")
        f.write(f"trainspk0-onlytext {GOOD_TEXT}\n")
    with open(d / "wav.scp", "a") as f:
        f.write(f"trainspk0-nospk {ok}\n")
    with open(d / "text", "a") as f:
        f.write(f"trainspk0-nospk {GOOD_TEXT}\n")

    assert run_prepare(tmp_path) == 0
    rej = read_kaldi_map(tmp_path / "data" / "train" / "rejected.txt")
    codes = {u: r.split(":")[0] for u, r in rej.items()}
    assert codes == {
        "trainspk0-badsr": "wrong-sample-rate",
        "trainspk0-corrupt": "corrupt-audio",
        "trainspk0-trunc": "truncated-audio",
        "trainspk0-missing": "missing-file",
        "trainspk0-short": "too-short",
        "trainspk0-few": "too-short",
        "trainspk0-empty": "empty-transcript",
        "trainspk0-latin": "no-pronunciation",
        "trainspk1-u001x00": "duplicate-id",
        "trainspk0-onlytext": "mismatched-ids",
        "trainspk0-nospk": "mismatched-ids",
    }
    assert (
        "8000 Hz" in rej["trainspk0-badsr"] and "--sample-frequency=8000" in rej["trainspk0-badsr"]
    )
    assert "ABC" in rej["trainspk0-latin"]
    kd = KaldiDataDir.load(tmp_path / "data" / "train")
    assert not set(rej) & set(kd.utts)
    assert len(kd.utts) == len(train) - 9  # 8 bad + the duplicated one
    assert (
        wav_data_shortfall(str(truncated)) > 0
        and wav_data_shortfall(str(full_path := w / "full.wav")) == 0
    ), full_path


def test_more_than_5_percent_rejected_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sets = kaldi_corpus(tmp_path)
    dev = dict(sets["dev"])
    dev["devspk0-gone1"] = ("devspk0", GOOD_TEXT, tmp_path / "missing1.wav")
    dev["devspk0-gone2"] = ("devspk0", GOOD_TEXT, tmp_path / "missing2.wav")  # 2 / 27 = 7.4 %
    kaldi_set(tmp_path / "in" / "dev", dev)
    assert run_prepare(tmp_path) == 1
    err = capsys.readouterr().err
    assert "dev: 2 of 27 utterances" in err and "more than 5 %" in err
    data = tmp_path / "data"
    assert not (data / "dev" / ".done").exists()
    assert set(read_kaldi_map(data / "dev" / "rejected.txt")) == {"devspk0-gone1", "devspk0-gone2"}
    assert (data / "train" / ".done").is_file()  # the good sets are still finished


def test_ids_kept_sorting_rule_and_lm_text_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kaldi_corpus(tmp_path)
    d = tmp_path / "in" / "train"
    kaldi_set(
        d,
        {"A1": ("spkZ", "你好", tone(tmp_path / "a1.wav"))}
        | {f"spkZ-{i}": ("spkZ", "你好", tone(tmp_path / f"z{i}.wav", seed=i)) for i in range(3)}
        | {"B1": ("spkA", "你好", tone(tmp_path / "b1.wav"))},
    )
    lm = tmp_path / "lm.txt"
    lm.write_text("北京天气\nhello world\n上海，下雨\n")
    assert run_prepare(tmp_path, "--lm-text", str(lm)) == 0
    kd = KaldiDataDir.load(tmp_path / "data" / "train")
    assert kd.utts == ["A1", "B1", "spkZ-0", "spkZ-1", "spkZ-2"]  # the corpus's ids, C order
    assert (tmp_path / "data" / "train" / "spk2utt").read_text().splitlines() == [
        "spkA B1",
        "spkZ A1 spkZ-0 spkZ-1 spkZ-2",
    ]
    report = (tmp_path / "data" / "train" / "report.txt").read_text()
    assert "NOT sorted by speaker" in report and "A1 of spkZ sorts before B1 of spkA" in report
    assert "--speaker-prefix" in capsys.readouterr().err
    assert (tmp_path / "data" / "local" / "lm_text.txt").read_text() == "北 京 天 气\n上 海 下 雨\n"
    # the fix Kaldi recommends, on request
    assert run_prepare(tmp_path, "--force", "--speaker-prefix") == 0
    kd = KaldiDataDir.load(tmp_path / "data" / "train")
    assert kd.utts == ["spkA-B1", "spkZ-0", "spkZ-1", "spkZ-2", "spkZ-A1"]
    assert "NOT sorted" not in (tmp_path / "data" / "train" / "report.txt").read_text()


def write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def test_synth_manifests(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    for s in ("train", "dev", "test"):
        recs, sups = [], []
        for i in range(21):
            spk = f"{s}S{i % 2}"
            rid = f"{spk}_{i:03d}"
            rel = f"wav/{spk}/{rid}.wav"
            tone(corpus / rel, seconds=0.6, seed=i)
            recs.append(
                {
                    "id": rid,
                    "sources": [{"type": "file", "channels": [0], "source": rel}],
                    "sampling_rate": 16000,
                    "num_samples": 9600,
                    "duration": 0.6,
                    "channel_ids": [0],
                }
            )
            sups.append(
                {
                    "id": rid,
                    "recording_id": rid,
                    "start": 0.0,
                    "duration": 0.6,
                    "channel": 0,
                    "text": "导航到北京",
                    "speaker": spk,
                }
            )
        if s == "train":  # a supervision without recording, and a duplicated supervision
            sups.append({**sups[0], "id": "trainS0_x", "recording_id": "nothere"})
            sups.append(dict(sups[1]))
        write_jsonl_gz(corpus / "manifests" / f"recordings_{s}.jsonl.gz", recs)
        write_jsonl_gz(corpus / "manifests" / f"supervisions_{s}.jsonl.gz", sups)
    (corpus / "lm_text.txt").write_text("播放周杰伦的歌\n")
    lex = write_lexicon(tmp_path / "lexicon.txt")
    assert (
        main(
            [
                "--manifests",
                str(corpus / "manifests"),
                "--lm-text",
                str(corpus / "lm_text.txt"),
                "--lexicon",
                str(lex),
                "--out",
                str(tmp_path / "data"),
                "--nj",
                "1",
            ]
        )
        == 1
    )
    # 2 of 22 distinct train ids rejected (9 %): fails; with a larger train it passes
    rej = read_kaldi_map(tmp_path / "data" / "train" / "rejected.txt")
    assert {u: r.split(":")[0] for u, r in rej.items()} == {
        "trainS0_x": "mismatched-ids",
        "trainS1_001": "duplicate-id",
    }
    kd = KaldiDataDir.load(tmp_path / "data" / "dev")
    assert len(kd.utts) == 21 and kd.text["devS0_000"] == "导 航 到 北 京"
    assert Path(kd.wav["devS0_000"]).is_file()


def test_pronunciations_come_from_the_given_lexicon(tmp_path: Path) -> None:
    sets = kaldi_corpus(tmp_path)
    lex = write_lexicon(
        tmp_path / "small.txt", chars="今天气很"
    )  # no '好', though pypinyin reads it
    assert (
        main(
            [
                "--kaldi-dirs",
                str(tmp_path / "in"),
                "--out",
                str(tmp_path / "data"),
                "--nj",
                "1",
                "--lexicon",
                str(lex),
                "--sets",
                "dev",
            ]
        )
        == 1
    )  # every dev utterance uses '好'
    rej = read_kaldi_map(tmp_path / "data" / "dev" / "rejected.txt")
    assert set(rej) == set(sets["dev"])
    assert all(r == "no-pronunciation: no lexicon entry for '好'" for r in rej.values())
    # without a lexicon nothing is checked for pronunciations
    assert (
        main(
            [
                "--kaldi-dirs",
                str(tmp_path / "in"),
                "--out",
                str(tmp_path / "data2"),
                "--nj",
                "1",
                "--sets",
                "dev",
            ]
        )
        == 0
    )


def test_nan_audio_a_long_wav_with_a_short_text_and_a_nul_byte_are_rejected(
    tmp_path: Path,
) -> None:
    import numpy as np
    import soundfile as sf

    sets = kaldi_corpus(tmp_path)
    train = {f"{u}x{k:02d}": v for k in range(20) for u, v in sets["train"].items()}
    w = tmp_path / "wav"
    x = np.sin(np.arange(16000) / 5.0).astype(np.float32) * 0.3
    x[8000] = np.nan  # a float WAV with a NaN sample (a data bug, not a divergence)
    sf.write(w / "nan.wav", x, 16000, subtype="FLOAT")
    train["trainspk0-nan"] = ("trainspk0", GOOD_TEXT, w / "nan.wav")
    train["trainspk0-long"] = ("trainspk0", "好", tone(w / "long.wav", seconds=12.0))
    train["trainspk0-nul"] = ("trainspk0", GOOD_TEXT, tone(w / "ok.wav"))
    d = tmp_path / "in" / "train"
    kaldi_set(d, train)
    utt2spk = (d / "utt2spk").read_text().replace("trainspk0-nul trainspk0", "trainspk0-nul \0")
    (d / "utt2spk").write_text(utt2spk)

    assert run_prepare(tmp_path) == 0
    rej = read_kaldi_map(tmp_path / "data" / "train" / "rejected.txt")
    assert set(rej) == {"trainspk0-nan", "trainspk0-long", "trainspk0-nul"}, rej
    assert rej["trainspk0-nan"] == (
        f"non-finite-audio: {w / 'nan.wav'}: 1 of 16000 samples are NaN or inf "
        "(the first at 0.500 s); fix or drop it"
    )
    assert rej["trainspk0-long"].startswith(
        "too-long: 1198 frames (12.0 s) for 1 tokens, more than 100 per token + 1000: the "
        "transcript covers only part of the audio"
    ), rej["trainspk0-long"]
    assert rej["trainspk0-nul"].startswith("nul-byte: ") and ":" in rej["trainspk0-nul"]
    kd = KaldiDataDir.load(tmp_path / "data" / "train")
    assert "\0" not in "".join(kd.utt2spk.values()) and len(kd.utts) == len(train) - 3


def test_the_library_takes_a_prepare_config(tmp_path: Path) -> None:
    """`PrepareConfig.from_args` carries every option (and only those); `prepare(config)`,
    without a command line, writes what the step writes."""
    from steps_py.data.prepare import PrepareConfig, build_parser, prepare

    argv = ["--kaldi-dirs", "in", "--sets", "dev", "train", "--nj", "3", "--speaker-prefix"]
    ns = build_parser().parse_args(argv)
    config = PrepareConfig.from_args(ns)
    assert {f: getattr(config, f) for f in vars(ns)} == {**vars(ns), "sets": ("dev", "train")}
    assert set(config.__dataclass_fields__) == set(vars(ns))
    kaldi_corpus(tmp_path, n=6)
    assert run_prepare(tmp_path, "--sets", "dev") == 0
    direct = dataclasses.replace(  # a config made in code, no command line
        config,
        kaldi_dirs=tmp_path / "in",
        out=tmp_path / "lib",
        sets=("dev",),
        nj=1,
        lexicon=tmp_path / "lexicon.txt",
        speaker_prefix=False,
    )
    assert prepare(direct) == 0
    for name in ("text", "utt2spk", "wav.scp", "report.txt"):
        assert (tmp_path / "lib" / "dev" / name).read_text(encoding="utf-8") == (
            tmp_path / "data" / "dev" / name
        ).read_text(encoding="utf-8"), name
