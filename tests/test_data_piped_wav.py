"""A piped wav.scp entry (``cmd ... |``, as Kaldi and lhotse read them): stage 1 runs the
command and checks its output like a file, a failing command rejects its utterance naming
the command and its stderr, and stage 3 reads the same samples as from the file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from steps_py.data.audio import AudioPolicy, PipeError, read_samples
from steps_py.data.kaldi_dir import KaldiDataDir, read_kaldi_map
from steps_py.features.compute import main as compute_main
from steps_py.features.io import FeatureReader
from tests.corpus_fixtures import kaldi_corpus, run_prepare

CAT = f"{sys.executable} -c \"import sys; sys.stdout.buffer.write(open(sys.argv[1], 'rb').read())\""
FAIL = f"{sys.executable} -c \"import sys; sys.exit('sph2pipe: cannot open x.sph')\""


def test_piped_wav_scp_is_checked_read_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sets = kaldi_corpus(tmp_path, n=25)
    train = tmp_path / "in" / "train"
    utts = list(sets["train"])
    piped, twin, bad = utts[0], utts[1], utts[2]
    twin_wav = sets["train"][twin][2]
    rows = []
    for line in (train / "wav.scp").read_text().splitlines():
        utt = line.split()[0]
        if utt == piped:
            line = f"{utt} {CAT} {twin_wav} |"  # the same audio as `twin`, through a pipe
        elif utt == bad:
            line = f"{utt} {FAIL} |"
        rows.append(line + "\n")
    (train / "wav.scp").write_text("".join(rows))

    assert run_prepare(tmp_path, "--sets", "train") == 0
    out = tmp_path / "data" / "train"
    rej = read_kaldi_map(out / "rejected.txt")
    assert list(rej) == [bad]
    assert rej[bad] == (
        f"pipe-failed: command '{FAIL}' failed (exit 1): sph2pipe: cannot open x.sph"
    )
    report = (out / "report.txt").read_text()
    assert "1 rejected (1 pipe-failed; see rejected.txt)" in report
    assert "audio: 1 utterances read through a piped wav.scp command" in report
    kd = KaldiDataDir.load(out)
    assert kd.wav[piped].endswith("|") and kd.utt2dur[piped] == kd.utt2dur[twin]

    assert compute_main(["--data", str(out), "--kind", "mfcc", "--nj", "2"]) == 0
    feats = FeatureReader(out, "mfcc", cmvn=False)
    assert feats[piped].shape[0] > 0
    np.testing.assert_array_equal(feats[piped], feats[twin])


def test_a_pipe_is_checked_like_a_file(tmp_path: Path) -> None:
    wav = kaldi_corpus(tmp_path, n=1)["train"]
    path = next(iter(wav.values()))[2]
    with pytest.raises(PipeError, match="wrote no audio"):
        read_samples(f"{sys.executable} -c pass |", AudioPolicy())
    with pytest.raises(ValueError, match="16000 Hz, the features expect 8000 Hz"):
        read_samples(f"{CAT} {path} |", AudioPolicy(sample_rate=8000))
    np.testing.assert_array_equal(
        read_samples(f"{CAT} {path} |", AudioPolicy()), read_samples(str(path), AudioPolicy())
    )
