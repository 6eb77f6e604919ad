"""The Mandarin digits recipe (``./run.sh --corpus digits``): the speaker split of
``local.digits.prepare``, stage 1 on its output, the alignment agreement of
``local.digits.ali_agreement`` and run.sh's digits case (dry run)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.kaldi_digits import DIGITS, KALDI_EXP, needs_digits, read_map, spread

ROOT = Path(__file__).resolve().parents[1]
pytestmark = needs_digits


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from local.digits.prepare import main

    out = tmp_path_factory.mktemp("digits") / "local" / "digits"
    assert main(["--corpus-dir", str(DIGITS), "--out", str(out)]) == 0
    return out


def test_split_is_by_speaker_keeps_ids_and_counts(split: Path) -> None:
    text = read_map(DIGITS / "text")
    sets = {s: read_map(split / s / "utt2spk") for s in ("train", "dev", "test")}
    speakers = {s: {v[0] for v in m.values()} for s, m in sets.items()}
    assert speakers == {
        "train": {"fsi001", "fsi002", "fsi003", "fsi004", "fsi005"},
        "dev": {"fsi006"},
        "test": {"fsi007"},
    }
    assert {s: len(m) for s, m in sets.items()} == {"train": 1668, "dev": 262, "test": 309}
    ids = [u for m in sets.values() for u in m]
    assert len(ids) == len(set(ids)) and set(ids) == set(text)  # every corpus id once, unchanged
    for s, m in sets.items():
        assert all(u.split("-")[1] == spk[0] for u, spk in m.items())
        assert read_map(split / s / "text") == {u: text[u] for u in m}
        wavs = read_map(split / s / "wav.scp")
        assert set(wavs) == set(m) and all(
            Path(p[0]).is_absolute() and Path(p[0]).is_file() for p in wavs.values()
        )
        lines = (split / s / "utt2spk").read_text().splitlines()
        assert lines == sorted(lines)  # sorted by utterance and so by speaker (Kaldi's rule)
    info = json.loads((split / "split.json").read_text())
    assert info["sets"]["dev"] == {"speakers": ["fsi006"], "utterances": 262}


def test_split_is_deterministic_and_skips_when_done(split: Path, tmp_path: Path) -> None:
    from local.digits.prepare import main

    out = tmp_path / "again"
    assert main(["--corpus-dir", str(DIGITS), "--out", str(out)]) == 0
    for s in ("train", "dev", "test"):
        for f in ("wav.scp", "text", "utt2spk", "spk2utt"):
            assert (out / s / f).read_bytes() == (split / s / f).read_bytes()
    (out / "train" / "text").write_text("")
    assert main(["--corpus-dir", str(DIGITS), "--out", str(out)]) == 0  # done: skipped
    assert (out / "train" / "text").read_text() == ""


def test_split_refuses_too_few_speakers_and_bad_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from local.digits.prepare import DigitsError, main, speaker_of, split_speakers

    assert speaker_of("astmic-fsi003-sen_0012") == "fsi003"
    with pytest.raises(DigitsError, match="no speaker field"):
        speaker_of("N110003")
    with pytest.raises(DigitsError, match="3 speakers cannot be split"):
        split_speakers(["a", "b", "c"], dev=2, test=1)
    assert split_speakers(["c", "a", "b", "a"], 1, 1) == {
        "train": ["a"],
        "dev": ["b"],
        "test": ["c"],
    }
    assert main(["--corpus-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "wav.scp is missing" in capsys.readouterr().err


def test_leave_one_speaker_out_puts_every_speaker_in_test_once() -> None:
    from local.digits.prepare import DigitsError, leave_one_out

    spk = [f"fsi00{i}" for i in range(1, 8)]
    folds = [leave_one_out(spk, s) for s in spk]
    assert [f["test"] for f in folds] == [[s] for s in spk]
    assert folds[6] == {"train": spk[1:6], "dev": ["fsi001"], "test": ["fsi007"]}
    for f in folds:
        assert sorted(f["train"] + f["dev"] + f["test"]) == spk and len(f["train"]) == 5
    with pytest.raises(DigitsError, match="not one of the corpus's speakers"):
        leave_one_out(spk, "fsi009")


def test_stage_1_accepts_the_split_with_the_corpus_lexicon(tmp_path: Path) -> None:
    """A few utterances of each set through steps_py.data.prepare as run.sh calls it: none rejected, ids kept."""
    from local.digits.prepare import main as split_main
    from steps_py.data.prepare import main as prepare_main

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    wavs, text = read_map(DIGITS / "wav.scp"), read_map(DIGITS / "text")
    by_spk: dict[str, list[str]] = {}
    for u in sorted(text):
        by_spk.setdefault(u.split("-")[1], []).append(u)
    utts = [u for us in by_spk.values() for u in spread(us, 2)]
    (corpus / "wav.scp").write_text("".join(f"{u} {DIGITS / wavs[u][0]}\n" for u in utts))
    (corpus / "text").write_text("".join(f"{u} {' '.join(text[u])}\n" for u in utts))
    assert split_main(["--corpus-dir", str(corpus), "--out", str(tmp_path / "local")]) == 0
    info = json.loads((tmp_path / "local" / "split.json").read_text())
    assert {s: v["utterances"] for s, v in info["sets"].items()} == {
        "train": 10,
        "dev": 2,
        "test": 2,
    }
    assert (
        prepare_main(
            [
                "--kaldi-dirs",
                str(tmp_path / "local"),
                "--lexicon",
                str(DIGITS / "lexicon.txt"),
                "--audio-conf",
                str(ROOT / "egs/digits/conf/mfcc.conf"),
                "--out",
                str(tmp_path / "data"),
                "--nj",
                "1",
            ]
        )
        == 0
    )
    for s in ("train", "dev", "test"):
        assert read_map(tmp_path / "data" / s / "text") == read_map(tmp_path / "local" / s / "text")
        rejected = tmp_path / "data" / s / "rejected.txt"
        assert not rejected.exists() or not rejected.read_text().strip()


def test_agreement_of_kaldis_own_alignments_is_total(tmp_path: Path) -> None:
    """Kaldi's model saved as a project model + Kaldi's train.ali as the project's ali.scp: 100 %."""
    from local.digits.ali_agreement import main
    from steps_py.gmm.model_io import read_model, save_model
    from steps_py.kaldi.int_vector_ark import read_int32_vector_archive, write_int32_vectors

    save_model(tmp_path / "mono" / "final.npz", read_model(KALDI_EXP))
    ali = read_int32_vector_archive(KALDI_EXP / "train.ali")
    some = {u: np.asarray(ali[u], dtype=np.int32) for u in spread(list(ali), 10)}
    write_int32_vectors(tmp_path / "ali", "ali", some)
    out = tmp_path / "agreement.json"
    assert (
        main(
            [
                "--ali",
                str(tmp_path / "ali"),
                "--model",
                str(tmp_path / "mono"),
                "--kaldi-exp",
                str(KALDI_EXP),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    info = json.loads(out.read_text())
    assert info["phone"]["percent"] == 100.0 and info["pdf"]["percent"] == 100.0
    assert info["phone"]["utterances"] == 10 and info["phone"]["frames"] == sum(
        len(a) for a in some.values()
    )


def test_agreement_needs_the_projects_alignments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from local.digits.ali_agreement import main

    assert (
        main(
            [
                "--ali",
                str(tmp_path / "none"),
                "--model",
                str(KALDI_EXP),
                "--kaldi-exp",
                str(KALDI_EXP),
                "--out",
                str(tmp_path / "a.json"),
            ]
        )
        == 1
    )
    assert "ali.scp not found" in capsys.readouterr().err


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "run.sh"), *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_run_sh_digits_trains_on_both_alignments(tmp_path: Path) -> None:
    p = _run(
        "--corpus",
        "digits",
        "--corpus-dir",
        str(DIGITS),
        "--workdir",
        str(tmp_path / "w"),
        "--dry-run",
    )
    assert p.returncode == 0 and "egs/digits/conf/run.conf are valid" in p.stdout, p.stderr
    runs = [ln.split()[2].rstrip(":") for ln in p.stdout.splitlines() if "training run" in ln]
    names = [Path(r).name for r in runs]
    assert names and len(names) % 2 == 0
    half = len(names) // 2
    assert names[half:] == [f"{n}_kaldiali" for n in names[:half]]
    assert not (tmp_path / "w").exists()
    p = _run(
        "--corpus", "digits", "--corpus-dir", str(DIGITS), "--ali-dir", str(KALDI_EXP), "--dry-run"
    )
    assert p.returncode == 2 and "drop --ali-dir" in p.stderr
    p = _run("--corpus", "digitz", "--dry-run")
    assert p.returncode == 2 and "or digits, not 'digitz'" in p.stderr
