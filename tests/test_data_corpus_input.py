"""Bad corpus input (issue 14, `--kaldi-dirs`): every case ends in a named, counted skip or a
stated change, never a traceback or silent loss. Each test damages a copy of one tiny corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steps_py.data.kaldi_dir import KaldiDataDir, read_kaldi_map
from tests.corpus_fixtures import GOOD_TEXT, damaged_copy, kaldi_corpus, run_prepare, tone


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    kaldi_corpus(root, n=25, relative=True)
    return root


@pytest.fixture
def corpus(tiny: Path, tmp_path: Path) -> Path:
    return damaged_copy(tiny, tmp_path / "corpus")


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_gb18030_text_names_file_and_line_and_encoding_option_reads_it(
    corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = corpus / "in" / "dev" / "text"
    text.write_bytes(text.read_text(encoding="utf-8").encode("gb18030"))
    assert run_prepare(corpus) == 1  # every dev transcript undecodable: the set fails, clearly
    err = capsys.readouterr().err
    assert f"{text}: 25 of 25 lines are not valid utf-8 (first: {text}:1)" in err
    assert "pass --encoding gb18030" in err and "Traceback" not in err
    rej = read_kaldi_map(corpus / "data" / "dev" / "rejected.txt")
    first = min(rej)
    assert rej[first].startswith(
        f"bad-encoding: {text}:1 is not valid utf-8 (byte 0xbd at column 14)"
    )
    assert (corpus / "data" / "train" / ".done").is_file()  # the other sets are not blocked
    assert run_prepare(corpus, "--encoding", "gb18030") == 0
    assert KaldiDataDir.load(corpus / "data" / "dev").text[first] == " ".join(GOOD_TEXT)


def test_one_latin1_line_rejects_that_utterance_only(
    corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = corpus / "in" / "train" / "text"
    rows = lines(text)
    utt = rows[6].split()[0].decode()
    rows[6] = f"{utt} caf\u00e9 {GOOD_TEXT}\n".encode("latin-1", errors="replace")
    text.write_bytes(b"".join(rows))
    assert run_prepare(corpus) == 0
    rej = read_kaldi_map(corpus / "data" / "train" / "rejected.txt")
    assert list(rej) == [utt]
    assert rej[utt].startswith(
        f"bad-encoding: {text}:7 is not valid utf-8 (byte 0xe9 at column 19)"
    )
    assert (
        "the other lines are valid utf-8: fix these lines (they decode as latin-1)"
        in (corpus / "data" / "train" / "report.txt").read_text()
    )
    err = capsys.readouterr().err
    assert "train: rejected 1 of 25 utterances (1 bad-encoding)" in err
    assert f"train: rejected {utt}: bad-encoding" in err  # named in the log
    assert len(KaldiDataDir.load(corpus / "data" / "train").utts) == 24
    done = json.loads((corpus / "data" / "train" / ".done").read_text())
    assert done["rejected_by_code"] == {"bad-encoding": 1}


def test_utf8_bom_is_stripped_and_said(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("text", "utt2spk", "wav.scp"):
        f = corpus / "in" / "test" / name
        f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes())
    assert run_prepare(corpus) == 0
    assert not (corpus / "data" / "test" / "rejected.txt").exists()
    kd = KaldiDataDir.load(corpus / "data" / "test")
    assert len(kd.utts) == 25 and not any("\ufeff" in u for u in kd.utts)
    report = (corpus / "data" / "test" / "report.txt").read_text()
    for name in ("text", "utt2spk", "wav.scp"):
        note = f"{corpus / 'in' / 'test' / name}: UTF-8 byte-order mark at the start of the file removed"
        assert note in report
    assert "byte-order mark at the start of the file removed" in capsys.readouterr().err


def test_stereo_audio_says_which_channel_and_counts(
    corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kd_in = corpus / "in" / "train"
    stereo = [line.split()[0] for line in (kd_in / "wav.scp").read_text().splitlines()]
    for utt in stereo[:3]:
        tone(corpus / "wav" / f"{utt}.wav", seconds=0.5, channels=2)
    assert run_prepare(corpus) == 0
    report = (corpus / "data" / "train" / "report.txt").read_text()
    assert (
        f"audio: 3 utterances: 2 channels: channel 0 used (--channel=N picks another) (e.g. {stereo[0]})"
        in report
    )
    assert "2 channels: channel 0 used" in capsys.readouterr().err
    assert json.loads((corpus / "data" / "train" / ".done").read_text())["changes"]
    for utt in stereo[3:]:
        tone(corpus / "wav" / f"{utt}.wav", seconds=0.5, channels=2)
    conf = corpus / "mfcc.conf"
    conf.write_text("--channel=1  # the right channel, as compute-mfcc-feats --channel\n")
    assert run_prepare(corpus, "--force", "--sets", "train", "--audio-conf", str(conf)) == 0
    assert (
        "audio: 25 utterances: 2 channels: channel 1 used (--channel=1)"
        in (corpus / "data" / "train" / "report.txt").read_text()
    )
    conf.write_text("--channel=2\n")  # no such channel: those utterances are rejected, named
    assert run_prepare(corpus, "--force", "--sets", "train", "--audio-conf", str(conf)) == 1
    rej = read_kaldi_map(corpus / "data" / "train" / "rejected.txt")
    assert rej[stereo[0]] == "bad-channel: channel 2 requested (--channel) but the file has 2"


def test_emoji_and_private_use_removed_said_and_counted(
    corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = corpus / "in" / "dev" / "text"
    rows = text.read_text(encoding="utf-8").splitlines()
    u1, u2 = rows[0].split()[0], rows[1].split()[0]
    rows[0] = f"{u1} 今天😀天气\ue000很好👍🏽"
    rows[1] = f"{u2} 今天\u200b天气很好\ufe0f"
    text.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert run_prepare(corpus) == 0
    kd = KaldiDataDir.load(corpus / "data" / "dev")
    assert kd.text[u1] == kd.text[u2] == " ".join(GOOD_TEXT)
    line = (
        "text: 2 transcripts had characters removed (4 emoji/symbol, 1 private-use, "
        f"1 control/format; e.g. {u1}: 3 emoji/symbol, 1 private-use)"
    )
    assert line in (corpus / "data" / "dev" / "report.txt").read_text()
    assert line in capsys.readouterr().err


def test_rejections_named_at_info_then_a_pointer(
    corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for s in ("train", "dev", "test"):
        text = corpus / "in" / s / "text"
        rows = text.read_text(encoding="utf-8").splitlines()
        rows[0] = rows[0].split()[0] + " 今天Q"  # no pronunciation
        text.write_text("\n".join(rows) + "\n", encoding="utf-8")
    tr = corpus / "in" / "train"
    many = {
        f"trainspk0-x{i:03d}": ("trainspk0", GOOD_TEXT, corpus / "wav" / "nope.wav")
        for i in range(7)
    }
    with (
        open(tr / "wav.scp", "a") as w,
        open(tr / "text", "a") as t,
        open(tr / "utt2spk", "a") as s,
    ):
        for u, (spk, txt, wav) in many.items():
            w.write(f"{u} {wav}\n")
            t.write(f"{u} {txt}\n")
            s.write(f"{u} {spk}\n")
    assert run_prepare(corpus) == 1  # 8 of 32 train utterances: over 5 %
    err = capsys.readouterr().err
    named = [line for line in err.splitlines() if "INFO train: rejected " in line]
    assert len(named) == 5 and "no lexicon entry for 'Q'" in named[0] and "missing-file" in named[1]
    assert (
        f"train: 3 more; every rejected utterance and its reason: {corpus / 'data/train/rejected.txt'}"
        in err
    )
    assert "INFO dev: rejected devspk0-u000: no-pronunciation: no lexicon entry for 'Q'" in err
