"""Kaldi's digits model used by the project: graph from Kaldi's lang files, GMM decoding,
alignment, CTM; the project's GMM and a network's log-likelihoods handed back to Kaldi."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import kaldi_native_io as kio
import numpy as np
import pytest

from steps_py.kaldi.alignment import frame_agreement, split_to_phones, to_phones
from steps_py.kaldi.int_vector_ark import read_int32_vector_archive
from steps_py.kaldi.model_file import read_kaldi_model
from steps_py.kaldi.word_align import WordAlignError, align_words
from steps_py.lang.align_lexicon import read_align_lexicon_int
from tests.kaldi_digits import (
    DIGITS,
    KALDI_EXP,
    KALDI_LANG,
    gmm_features,
    needs_digits,
    read_map,
    spread,
    write_feature_dir,
)

pytestmark = needs_digits


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Kaldi's lang dir + lm.arpa imported, HCLG built from Kaldi's final.mdl and tree."""
    from steps_py.decode.graph import main as graph_main
    from steps_py.kaldi.lang_import import main as import_main

    d = tmp_path_factory.mktemp("kaldi_digits")
    assert (
        import_main(
            [
                "--kaldi-lang",
                str(KALDI_LANG),
                "--arpa",
                str(DIGITS / "lm.arpa"),
                "--out",
                str(d / "lang"),
            ]
        )
        == 0
    )
    assert (
        graph_main(
            ["--lang", str(d / "lang"), "--model", str(KALDI_EXP), "--out", str(d / "graph")]
        )
        == 0
    )
    ali = read_int32_vector_archive(KALDI_EXP / "train.ali")
    return {
        "dir": d,
        "lang": d / "lang",
        "graph": d / "graph",
        "ali": ali,
        "text": read_map(DIGITS / "text"),
        "tm": read_kaldi_model(KALDI_EXP / "final.mdl").transition_model,
    }


def test_lang_import_keeps_kaldis_ids_and_adds_what_is_missing(work: dict) -> None:
    lang = work["lang"]
    assert (lang / "phones.txt").read_text().startswith((KALDI_LANG / "phones.txt").read_text())
    assert (lang / "words.txt").read_text().startswith((KALDI_LANG / "words.txt").read_text())
    assert (
        lang / "phones" / "disambig.txt"
    ).read_text() == "#0\n"  # '#i', '#er', '#u' are real phones here
    assert (lang / "phones" / "silence.int").read_text() == "1\n"
    info = json.loads((lang / "import.json").read_text())
    assert info["added"]["oov_word"].startswith("<unk>") and info["added"]["words"] == [
        "<s>",
        "</s>",
    ]
    lines = (lang / "phones" / "align_lexicon.txt").read_text().splitlines()
    assert "<eps> <eps> sil" in lines and "一 一 #i" in lines and len(lines) == 11
    graph_info = json.loads((work["graph"] / "info.json").read_text())
    assert graph_info["num_pdfs"] == 33 and graph_info["arcs"] > 0


def test_kaldi_model_decodes_digits_through_the_projects_graph(work: dict) -> None:
    """Digit error rate of Kaldi's monophone on 20 of its training utterances (all speakers)."""
    import kaldialign

    from steps_py.decode.inputs import read_words
    from steps_py.decode.scorers import GmmScorer
    from steps_py.decode.search import Search, SearchConfig

    scorer = GmmScorer(KALDI_EXP)
    search = Search(work["graph"], SearchConfig(beam=13.0, acoustic_scale=0.1), scorer.num_pdfs)
    words_txt = read_words(work["graph"] / "words.txt")
    errors = words = 0
    for utt in spread(list(work["ali"]), 20):
        ids, _ = search.best_path(scorer.loglikes_of(gmm_features(utt)))
        hyp = [words_txt[i] for i in ids]
        errors += kaldialign.edit_distance(work["text"][utt], hyp)["total"]
        words += len(work["text"][utt])
    der = 100.0 * errors / words
    print(
        f"Kaldi digits monophone through the project's HCLG: DER {der:.2f} % ({errors}/{words}), LM weight 10"
    )
    assert words >= 40 and der < 15.0


def test_decode_step_takes_a_kaldi_exp_dir_as_model(work: dict, tmp_path: Path) -> None:
    """`python -m steps_py.decode.gmm --model <Kaldi exp dir>`, as README shows: lattices, scoring."""
    from steps_py.decode.gmm import main as decode_main

    data = tmp_path / "dev_digits"
    write_feature_dir(data, spread(list(work["ali"]), 8))
    out = tmp_path / "decode_dev"
    assert (
        decode_main(
            [
                "--model",
                str(KALDI_EXP),
                "--graph",
                str(work["graph"]),
                "--data",
                str(data),
                "--out",
                str(out),
                "--nj",
                "1",
                "--beam",
                "10",
                "--lm-weights",
                "8:12",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_kind"] == "gmm" and summary["cer"] < 20.0
    assert sorted(out.glob("lat.*.gz")) and (out / "scoring_kaldi" / "best_cer").is_file()


def test_project_aligner_with_kaldis_model_agrees_with_kaldis_alignments(work: dict) -> None:
    from steps_py.gmm.jobs import AlignOptions, Job, Utterance
    from steps_py.gmm.model_io import read_model
    from steps_py.gmm.topo import Lang

    lang = Lang.load(work["lang"])
    utts = spread(list(work["ali"]), 30)
    job = Job(
        str(work["lang"]),
        [Utterance(u, gmm_features(u), lang.word_ids(work["text"][u])[0]) for u in utts],
    )
    ours, failed, _ = job.align_model(read_model(KALDI_EXP / "final.mdl"), AlignOptions())
    assert not failed and set(ours) == set(utts)
    tm = work["tm"]
    ag = frame_agreement(
        {u: to_phones(tm, a) for u, a in ours.items()},
        {u: to_phones(tm, work["ali"][u]) for u in utts},
    )
    print(f"per-frame phone agreement, project aligner vs Kaldi's train.ali: {ag.summary()}")
    assert ag.utterances == 30 and not ag.length_mismatch and ag.percent > 90.0


def test_ctm_from_forced_alignment(work: dict, tmp_path: Path) -> None:
    from steps_py.kaldi.ctm import main as ctm_main

    utts = spread(list(work["ali"]), 6)
    write_feature_dir(tmp_path / "data", utts, kinds=("mfcc",))
    out = tmp_path / "ctm"
    assert (
        ctm_main(
            [
                "--data",
                str(tmp_path / "data"),
                "--lang",
                str(work["lang"]),
                "--model",
                str(KALDI_EXP),
                "--out",
                str(out),
                "--nj",
                "1",
            ]
        )
        == 0
    )
    lines = [ln.split() for ln in out.read_text().splitlines()]
    assert (tmp_path / "ctm.report").read_text() == ""
    # the CTM spells every transcript; times are increasing, inside the utterance
    lexicon = read_align_lexicon_int(work["lang"] / "phones" / "align_lexicon.int")
    words = {
        int(i): w
        for w, i in (ln.split() for ln in (work["lang"] / "words.txt").read_text().splitlines())
    }
    word_ids = {w: i for i, w in words.items()}
    close: list[bool] = []
    for utt in utts:
        mine = [x for x in lines if x[0] == utt]
        assert [x[4] for x in mine] == work["text"][utt] and all(x[1] == "1" for x in mine)
        starts, durs = [float(x[2]) for x in mine], [float(x[3]) for x in mine]
        assert all(d > 0 for d in durs) and all(
            a + d <= b + 1e-6 for a, d, b in zip(starts, durs, starts[1:], strict=False)
        )
        assert starts[-1] + durs[-1] <= len(work["ali"][utt]) * 0.01 + 1e-6
        # word boundaries from Kaldi's own alignment of the utterance (same model, Kaldi's features)
        kaldi_words = align_words(
            split_to_phones(work["tm"], work["ali"][utt]),
            [word_ids[w] for w in work["text"][utt]],
            lexicon,
        )
        for x, k in zip(mine, kaldi_words, strict=True):
            close.append(
                abs(float(x[2]) - k.start * 0.01) <= 0.05
                and abs(float(x[2]) + float(x[3]) - (k.start + k.frames) * 0.01) <= 0.05
            )
    print(
        f"CTM word boundaries within 50 ms of Kaldi's alignment: {sum(close)} of {len(close)} words"
    )
    assert sum(close) >= 0.8 * len(close)


def test_word_alignment_needs_the_transcripts_phones() -> None:
    lexicon = {0: [(1,)], 5: [(2, 3)], 6: [(2,)]}
    segs = [(1, 0, 10), (2, 10, 5), (3, 15, 5), (2, 20, 4), (1, 24, 8)]
    got = align_words(segs, [5, 6], lexicon)
    assert [(w.word, w.start, w.frames) for w in got] == [(5, 10, 10), (6, 20, 4)]
    with pytest.raises(WordAlignError, match="do not spell"):
        align_words(segs, [6, 5], lexicon)
    with pytest.raises(WordAlignError, match=r"words \[9\]"):
        align_words(segs, [9], lexicon)


def test_export_project_gmm_and_alignments_as_kaldi_exp_dir(work: dict, tmp_path: Path) -> None:
    """The project's npz and ali.scp -> final.mdl, tree, ali.JOB.gz that read back as Kaldi's."""
    from steps_py.gmm.model_io import read_model, save_model
    from steps_py.kaldi.export import main as export_main
    from steps_py.kaldi.int_vector_ark import write_int32_vectors

    save_model(
        tmp_path / "mono" / "final.npz", read_model(KALDI_EXP)
    )  # a project model (here: Kaldi's numbers)
    some = {u: work["ali"][u] for u in spread(list(work["ali"]), 12)}
    write_int32_vectors(tmp_path / "mono_ali" / "train", "ali", some)
    out = tmp_path / "mono_kaldi"
    assert (
        export_main(
            [
                "--model",
                str(tmp_path / "mono"),
                "--ali",
                str(tmp_path / "mono_ali" / "train"),
                "--lang",
                str(work["lang"]),
                "--out",
                str(out),
                "--nj",
                "2",
            ]
        )
        == 0
    )
    assert (out / "tree").read_bytes() == (KALDI_EXP / "tree").read_bytes()
    ours, kaldis = read_kaldi_model(out / "final.mdl"), read_kaldi_model(KALDI_EXP / "final.mdl")
    assert ours.transition_model.tuples == kaldis.transition_model.tuples
    np.testing.assert_allclose(
        ours.transition_model.log_probs, kaldis.transition_model.log_probs, atol=1e-5
    )
    for a, b in zip(ours.am.pdfs, kaldis.am.pdfs, strict=True):
        np.testing.assert_allclose(a.weights, b.weights, rtol=1e-6)
        np.testing.assert_allclose(a.means_invvars, b.means_invvars, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a.inv_vars, b.inv_vars, rtol=1e-5)
        np.testing.assert_allclose(a.gconsts, b.gconsts, rtol=1e-5)
    assert (out / "final.mdl").read_text().startswith("<TransitionModel> \n<Topology> \n")
    assert sorted(p.name for p in out.glob("ali.*.gz")) == ["ali.1.gz", "ali.2.gz"]
    back = {
        **read_int32_vector_archive(out / "ali.1.gz"),
        **read_int32_vector_archive(out / "ali.2.gz"),
    }
    assert set(back) == set(some) and all((back[u] == some[u]).all() for u in some)
    assert (out / "phones.txt").read_text() == (work["lang"] / "phones.txt").read_text()
    # the exported model decodes like Kaldi's: it is a valid --model for the graph builder
    from steps_py.gmm.model_io import read_model as load

    assert load(out).gmm.num_pdfs == 33


def test_network_loglikes_as_kaldi_matrix_archive(tmp_path: Path) -> None:
    import torch

    from steps_py.decode.scorers import NnetScorer
    from steps_py.features.io import FeatureReader
    from steps_py.kaldi.loglikes import main as loglikes_main
    from steps_py.nnet.model_io import save_acoustic_model
    from steps_py.nnet.models import build_model

    utts = spread(list(read_map(DIGITS / "text")), 3)
    write_feature_dir(tmp_path / "data", utts, kinds=("fbank",))
    torch.manual_seed(0)
    cfg = {
        "type": "dnn",
        "feat_dim": 40,
        "num_pdfs": 33,
        "context": 2,
        "hidden_layers": 1,
        "hidden_dim": 16,
    }
    save_acoustic_model(
        tmp_path / "m.safetensors", build_model(cfg), cfg, np.log(np.full(33, 1 / 33))
    )
    assert (
        loglikes_main(
            [
                "--model",
                str(tmp_path / "m.safetensors"),
                "--data",
                str(tmp_path / "data"),
                "--out",
                str(tmp_path / "ll"),
            ]
        )
        == 0
    )
    scorer = NnetScorer(tmp_path / "m.safetensors")
    reader = FeatureReader(tmp_path / "data", "fbank")
    # kaldi-native-io (Kaldi's table code) reads the scp; its arrays are views of one buffer: copy
    got = {
        k: np.array(v)
        for k, v in kio.SequentialFloatMatrixReader(f"scp:{tmp_path / 'll' / 'loglikes.scp'}")
    }
    assert sorted(got) == sorted(utts)
    for u in utts:
        np.testing.assert_allclose(got[u], scorer.loglikes_of(reader[u]), rtol=1e-6, atol=1e-6)
        assert got[u].shape == (reader.num_frames(u), 33)
    info = json.loads((tmp_path / "ll" / "info.json").read_text())
    assert info["num_pdfs"] == 33 and "latgen-faster-mapped" in info["kaldi_command"]
    assert (
        loglikes_main(
            [
                "--model",
                str(tmp_path / "m.safetensors"),
                "--data",
                str(tmp_path / "data"),
                "--out",
                str(tmp_path / "ll"),
            ]
        )
        == 0
    )  # done: skipped


def test_graph_refuses_a_lang_with_other_phones(
    work: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from steps_py.decode.graph import main as graph_main

    exp = tmp_path / "exp"
    exp.mkdir()
    for name in ("final.mdl", "tree"):
        (exp / name).symlink_to(KALDI_EXP / name)
    (exp / "phones.txt").write_text(
        (KALDI_LANG / "phones.txt").read_text().replace("liN 2", "ling 2")
    )
    assert (
        graph_main(["--lang", str(work["lang"]), "--model", str(exp), "--out", str(tmp_path / "g")])
        == 1
    )
    err = capsys.readouterr().err
    assert "phone 2 is 'ling'" in err and "Traceback" not in err and not (tmp_path / "g").exists()


def test_graph_into_a_kaldi_exp_dir_is_refused_and_loses_nothing(
    work: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out $K (the exp dir given as the graph dir, an easy slip) must not replace $K."""
    from steps_py.decode.graph import main as graph_main

    exp = tmp_path / "exp"
    exp.mkdir()
    for name in ("final.mdl", "tree"):
        shutil.copy(KALDI_EXP / name, exp / name)
    (exp / "ali.1.gz").write_bytes(b"alignments")
    (exp / "log").mkdir()
    before = sorted(p.name for p in exp.iterdir())
    argv = ["--lang", str(work["lang"]), "--model", str(exp), "--out", str(exp)]
    assert graph_main(argv) == 1
    err = capsys.readouterr().err
    assert (
        f"--out {exp} is a non-empty directory this step did not make: writing there would "
        "delete ali.1.gz, final.mdl, log, tree" in err
    ), err
    assert "Traceback" not in err
    assert sorted(p.name for p in exp.iterdir()) == before
    assert (exp / "ali.1.gz").read_bytes() == b"alignments"
    # the step's own output dir is replaced on --force, files of an older layout included
    out = tmp_path / "g"
    assert graph_main([*argv[:4], "--out", str(out)]) == 0
    (out / "HCLG.old-layout").write_text("")
    assert graph_main([*argv[:4], "--out", str(out), "--force"]) == 0
    assert (out / "HCLG.fst").is_file() and not (out / "HCLG.old-layout").exists()
