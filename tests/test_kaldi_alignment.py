"""Kaldi's alignments of the digits corpus: phones, pdfs, exp dirs in and out, training examples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from steps_py.kaldi.alignment import (
    frame_agreement,
    is_reordered,
    phone_names,
    split_to_phones,
    to_pdfs,
    to_phones,
)
from steps_py.kaldi.exp_dir import KaldiExpDir, KaldiExpError, split_jobs, write_exp_dir
from steps_py.kaldi.int_vector_ark import read_int32_vector_archive, write_int32_vector_archive
from steps_py.kaldi.model_file import read_kaldi_model
from steps_py.kaldi.stream import KaldiFormatError
from steps_py.kaldi.tree import read_tree
from tests.kaldi_digits import (
    DIGITS,
    KALDI_EXP,
    KALDI_LANG,
    needs_digits,
    read_map,
    spread,
    write_feature_dir,
)

pytestmark = needs_digits


@pytest.fixture(scope="module")
def kaldi():
    model = read_kaldi_model(KALDI_EXP / "final.mdl")
    ali = read_int32_vector_archive(KALDI_EXP / "train.ali")
    phones = {
        int(i): p
        for p, i in (ln.split() for ln in (KALDI_LANG / "phones.txt").read_text().splitlines())
    }
    return model.transition_model, ali, phones


def test_alignments_spell_the_lexicon_pronunciation_of_the_transcript(kaldi) -> None:
    tm, ali, phones = kaldi
    lexicon = read_map(DIGITS / "lexicon.txt")
    text = read_map(DIGITS / "text")
    utts = spread(list(ali), 40)
    for utt in utts:
        segs = split_to_phones(tm, ali[utt], utt)
        seq = [phones[p] for p, _, _ in segs]
        # phone instances cover every frame, in order, and agree with the per-frame phones
        assert segs[0][1] == 0 and sum(n for _, _, n in segs) == len(ali[utt])
        assert all(a[1] + a[2] == b[1] for a, b in zip(segs, segs[1:], strict=False))
        per_frame = to_phones(tm, ali[utt])
        assert [phones[p] for p in per_frame[[s for _, s, _ in segs]]] == seq
        # the pronunciation of the transcript, with optional silence between and around words
        assert [p for p in seq if p != "sil"] == [ph for w in text[utt] for ph in lexicon[w]], utt
        assert all(a != "sil" or b != "sil" for a, b in zip(seq, seq[1:], strict=False))
        assert is_reordered(tm, ali[utt])


def test_pdf_and_phone_conversion_follow_the_transition_model(kaldi) -> None:
    tm, ali, _ = kaldi
    utt = sorted(ali)[100]
    pdfs, phones = to_pdfs(tm, ali[utt]), to_phones(tm, ali[utt])
    assert pdfs.dtype == np.int32 and len(pdfs) == len(ali[utt])
    for tid, pdf, phone in zip(ali[utt], pdfs, phones, strict=True):
        t = tm.tuples[tm.tid2state[tid] - 1]
        assert (pdf, phone) == (t.forward_pdf, t.phone)
        assert (
            pdf == 3 * (phone - 1) + t.hmm_state
        )  # this monophone tree numbers pdfs phone by phone
    with pytest.raises(KaldiFormatError, match="transition id 70 outside 1..69"):
        to_pdfs(tm, np.array([1, 70]))


def test_frame_agreement() -> None:
    a = {"u1": np.array([1, 1, 2, 2]), "u2": np.array([3, 3]), "u3": np.array([1])}
    b = {"u1": np.array([1, 2, 2, 2]), "u2": np.array([3, 3, 3]), "u4": np.array([1])}
    ag = frame_agreement(a, b)
    assert (ag.frames, ag.agreeing, ag.utterances) == (4, 3, 1)
    assert ag.percent == 75.0 and ag.length_mismatch == ["u2"]
    assert (ag.only_in_first, ag.only_in_second) == (1, 1)
    names_a, names_b = phone_names({"sil": 1, "a": 2}), phone_names({"a": 1, "sil": 2})
    assert (
        frame_agreement({"u": np.array([1, 2])}, {"u": np.array([2, 1])}, names_a, names_b).percent
        == 100.0
    )


def test_kaldi_exp_dir_in_and_out(kaldi, tmp_path: Path) -> None:
    tm, ali, _ = kaldi
    src = tmp_path / "kaldi_exp"
    src.mkdir()
    for name in ("final.mdl", "tree", "train.ali"):
        (src / name).symlink_to(KALDI_EXP / name)
    exp = KaldiExpDir.open(src)
    assert exp.num_pdfs == 33 and [p.name for p in exp.ali_files] == ["train.ali"]
    pdfs = exp.pdf_alignments()
    assert len(pdfs) == 2239 and max(int(p.max()) for p in pdfs.values()) == 32
    # out: the same model and some alignments as a Kaldi alignment dir
    some = {u: ali[u] for u in spread(list(ali), 30)}
    utt2spk = {u: u.split("-")[1] for u in some}
    model = read_kaldi_model(KALDI_EXP / "final.mdl")
    info = write_exp_dir(
        tmp_path / "out",
        model,
        read_tree(KALDI_EXP / "tree"),
        some,
        num_jobs=3,
        utt2spk=utt2spk,
        phones_txt=KALDI_LANG / "phones.txt",
    )
    out = tmp_path / "out"
    assert (out / "final.mdl").read_bytes() == (KALDI_EXP / "final.mdl").read_bytes()
    assert (out / "tree").read_bytes() == (KALDI_EXP / "tree").read_bytes()
    assert (out / "num_jobs").read_text() == "3\n" and info["frames"] == sum(
        len(a) for a in some.values()
    )
    back = KaldiExpDir.open(out)
    assert [p.name for p in back.ali_files] == ["ali.1.gz", "ali.2.gz", "ali.3.gz"]
    got = back.transition_alignments()
    assert set(got) == set(some) and all((got[u] == some[u]).all() for u in some)
    jobs = [set(read_int32_vector_archive(p)) for p in back.ali_files]
    for spk in set(utt2spk.values()):  # a speaker is in one job only
        assert sum(any(utt2spk[u] == spk for u in j) for j in jobs) == 1
    occs = (out / "final.occs").read_text()
    counts = np.array(occs.strip(" []\n").split(), dtype=float)
    assert counts.sum() == info["frames"] and len(counts) == 33


def test_exp_dir_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(KaldiExpError, match="final.mdl not found"):
        KaldiExpDir.open(tmp_path)
    (tmp_path / "final.mdl").symlink_to(KALDI_EXP / "final.mdl")
    with pytest.raises(KaldiExpError, match="no alignments"):
        KaldiExpDir.open(tmp_path).transition_alignments()
    write_int32_vector_archive(tmp_path / "ali.1.gz", {"u": np.array([5, 99], np.int32)})
    with pytest.raises(KaldiExpError, match="utterance u: transition id 99"):
        KaldiExpDir.open(tmp_path).pdf_alignments()


def test_split_jobs_keeps_speakers_together() -> None:
    utts = [f"s{i // 4}-u{i}" for i in range(20)]
    jobs = split_jobs(utts, 3, {u: u.split("-")[0] for u in utts})
    assert sorted(u for j in jobs for u in j) == sorted(utts) and len(jobs) == 3
    for j in jobs:
        assert (
            len(
                {u.split("-")[0] for u in j}
                & {u.split("-")[0] for k in jobs if k is not j for u in k}
            )
            == 0
        )
    assert split_jobs(["a", "b"], 5) == [["a"], ["b"]]


def test_egs_from_a_kaldi_exp_dir(kaldi, tmp_path: Path) -> None:
    """Stage 5 --ali-dir: pdfs via Kaldi's final.mdl; a length mismatch is a counted skip."""
    from steps_py.nnet.egs import main as egs_main

    tm, ali, _ = kaldi
    utts = spread(list(ali), 26)
    train, dev = utts[:23], utts[23:]  # 1 skipped of 23: under the 5 % cap
    write_feature_dir(tmp_path / "train", train, kinds=("fbank",))
    write_feature_dir(tmp_path / "dev", dev, kinds=("fbank",))
    exp = tmp_path / "kaldi_exp"
    exp.mkdir()
    (exp / "final.mdl").symlink_to(KALDI_EXP / "final.mdl")
    shutil.copy(KALDI_EXP / "tree", exp / "tree")
    short = train[2]
    write_int32_vector_archive(
        exp / "ali.1.gz", {u: ali[u] for u in train[:3]} | {short: ali[short][:-2]}
    )
    write_int32_vector_archive(exp / "ali.2.gz", {u: ali[u] for u in train[3:] + dev})
    rc = egs_main(
        [
            "--feats",
            str(tmp_path / "train"),
            "--ali-dir",
            str(exp),
            "--dev-feats",
            str(tmp_path / "dev"),
            "--model-type",
            "dnn",
            "--out",
            str(tmp_path / "egs"),
            "--num-shards",
            "1",
        ]
    )
    assert rc == 0
    info = json.loads((tmp_path / "egs" / "info.json").read_text())
    assert info["num_pdfs"] == 33
    assert info["skipped"]["train"] == {"length_mismatch": 1}
    assert info["splits"]["train"]["utts"] == 22 and info["splits"]["dev"]["utts"] == 3
    assert f"train {short} length_mismatch" in (tmp_path / "egs" / "skipped.txt").read_text()
    targets = np.load(tmp_path / "egs" / "train" / "shard-0" / "targets.npy")
    expected = np.concatenate([to_pdfs(tm, ali[u]) for u in train if u != short])
    assert sorted(targets.tolist()) == sorted(expected.tolist())
    # --ali and --ali-dir exclude each other: an error naming both, nothing written
    assert (
        egs_main(
            [
                "--feats",
                str(tmp_path / "train"),
                "--ali-dir",
                str(exp),
                "--ali",
                str(exp),
                "--model-type",
                "dnn",
                "--out",
                str(tmp_path / "egs2"),
            ]
        )
        == 1
    )
    assert not (tmp_path / "egs2").exists()


def test_egs_ali_dir_with_wrong_ids_fails_and_without_dev_holds_out(
    kaldi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Half the ids wrong: an error (not 13 of 26 dropped with a warning). No dev alignments
    (Kaldi aligned only train): held-out train utterances are the dev split, no empty dev."""
    from steps_py.nnet.egs import main as egs_main

    tm, ali, _ = kaldi
    utts = spread(list(ali), 30)
    train, dev = utts[:26], utts[26:]
    write_feature_dir(tmp_path / "train", train, kinds=("fbank",))
    write_feature_dir(tmp_path / "dev", dev, kinds=("fbank",))
    exp = tmp_path / "kaldi_exp"
    exp.mkdir()
    (exp / "final.mdl").symlink_to(KALDI_EXP / "final.mdl")
    wrong = {(u if i % 2 else f"x{u}"): ali[u] for i, u in enumerate(train)}
    write_int32_vector_archive(exp / "ali.1.gz", wrong)
    argv = ["--feats", str(tmp_path / "train"), "--ali-dir", str(exp), "--dev-feats"]
    argv += [str(tmp_path / "dev"), "--model-type", "dnn", "--num-shards", "1", "--out"]
    assert egs_main([*argv, str(tmp_path / "egs")]) == 1
    err = capsys.readouterr().err
    assert (
        "train: 13 of 25 utterances would be skipped (13 no_alignment; e.g. " in err
        and "more than 5 %: the alignments of --ali/--ali-dir do not belong to these features"
        in err
    ), err
    assert not (tmp_path / "egs").exists()

    write_int32_vector_archive(exp / "ali.1.gz", {u: ali[u] for u in train})  # no dev ids
    assert egs_main([*argv, str(tmp_path / "egs")]) == 0
    assert "has no alignments of the dev utterances" in capsys.readouterr().err
    info = json.loads((tmp_path / "egs" / "info.json").read_text())
    assert info["splits"]["dev"]["utts"] == 1 and info["splits"]["train"]["utts"] == 25
    assert info["splits"]["dev"]["frames"] > 0 and info["skipped"]["dev"] == {}
