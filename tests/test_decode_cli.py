"""Decode dirs end to end on the toy graph: GMM and NN through the same pool, several models in
one pool, Kaldi-style scoring files, dev-chosen (LM weight, penalty) reused on test, lattices on
disk that score like the decode did, reproducible bytes, idempotence, too many failures."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from steps_py.decode import api, lattice_io
from steps_py.decode import gmm as decode_gmm
from steps_py.decode import nnet as decode_nnet
from steps_py.decode.api import DecodeRequest, decode_models
from steps_py.decode.inputs import DecodeError, read_words
from steps_py.decode.search import SearchConfig
from tests.toy_decode import build_graph, tiny_nnet, toy_data

# utils/best_wer.sh matches this in each line, and keeps the line with the lowest number
BEST_WER = re.compile(r"[WS]ER (\S+)")
KALDI_LINE = re.compile(
    r"^%WER \d+\.\d\d \[ \d+ / \d+, \d+ ins, \d+ del, \d+ sub \]( \[PARTIAL\])?$"
)


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("toy")
    graph, gmm = build_graph(root)
    n = int((graph / "num_pdfs").read_text())
    return {
        "root": root,
        "graph": graph,
        "gmm": gmm,
        "dev": toy_data(root / "dev", n=6, seed=3),
        "test": toy_data(root / "test", n=4, seed=11),
        "nn1": tiny_nnet(root / "a.safetensors", n, seed=0),
        "nn2": tiny_nnet(root / "b.safetensors", n, seed=1),
    }


def _best_wer(lines: list[str]) -> str:
    best = min(
        (float(BEST_WER.search(x).group(1)), i) for i, x in enumerate(lines) if BEST_WER.search(x)
    )
    return lines[best[1]]


def test_gmm_decode_dir_is_complete_and_kaldi_compatible(toy, tmp_path: Path) -> None:
    dev, test = tmp_path / "decode_dev", tmp_path / "decode_test"
    common = ["--model", str(toy["gmm"]), "--graph", str(toy["graph"]), "--nj", "1"]
    assert decode_gmm.main([*common, "--data", str(toy["dev"]), "--out", str(dev)]) == 0
    cer_files = sorted(dev.glob("cer_*"))
    assert len(cer_files) == 11 * 3  # LM weights 7..17 x penalties 0.0, 0.5, 1.0
    assert {f.name for f in cer_files} >= {"cer_7_0.0", "cer_17_1.0", "cer_10_0.5"}
    grep = []  # grep WER exp/*/decode*/cer_* | utils/best_wer.sh
    for f in cer_files:
        first = f.read_text().splitlines()[0]
        assert KALDI_LINE.match(first), first
        grep.append(f"{f}:{first}")
    best = _best_wer(grep)
    line = (dev / "scoring_kaldi" / "best_cer").read_text().strip()
    assert line.startswith("%WER 0.00 [ 0 / 11") and float(BEST_WER.search(best).group(1)) == 0.0
    lmwt, wip = (dev / "best_lmwt").read_text().strip(), (dev / "best_wip").read_text().strip()
    assert (
        line.endswith(f"cer_{lmwt}_{wip}")
        and (dev / "scoring_kaldi" / f"penalty_{wip}" / f"{lmwt}.txt").is_file()
    )
    s = json.loads((dev / "summary.json").read_text())
    for key in (
        "cer",
        "errors",
        "ref_len",
        "lm_weight",
        "word_ins_penalty",
        "oracle_cer",
        "lattice_density",
    ):
        assert key in s, key
    assert (
        s["cer"] == 0.0
        and s["oracle_cer"] == 0.0
        and s["lattice_density"] > 0
        and s["timing"]["rtf_per_core"] > 0
    )
    assert s["chosen_on"] == "this set" and s["model_kind"] == "gmm"
    # test: the dev pair, nothing chosen there
    assert (
        decode_gmm.main([*common, "--data", str(toy["test"]), "--out", str(test)]) == 1
    )  # looks like test
    assert (
        decode_gmm.main(
            [*common, "--data", str(toy["test"]), "--out", str(test), "--lm-weight-from", str(dev)]
        )
        == 0
    )
    assert [f.name for f in test.glob("cer_*")] == [f"cer_{lmwt}_{wip}"]
    t = json.loads((test / "summary.json").read_text())
    assert t["chosen_on"] == str(dev) and (t["lm_weight"], t["word_ins_penalty"]) == (
        float(lmwt),
        float(wip),
    )


def test_nn_models_in_one_pool_reproducible_and_lattices_on_disk(toy, tmp_path: Path) -> None:
    graph, dev_data = toy["graph"], toy["dev"]
    models = [toy["nn1"], toy["nn2"]]
    req = DecodeRequest(search=SearchConfig(beam=10.0, lattice_beam=6.0, acoustic_scale=0.1))
    outs = [tmp_path / "a_dev", tmp_path / "b_dev"]
    res = decode_models(models, graph, dev_data, outs, nj=2, request=req)
    assert all(r is not None for r in res)
    solo = tmp_path / "b_solo"
    decode_models([models[1]], graph, dev_data, [solo], nj=1, request=req)
    for name in ("hyp.txt", "cer", "best_lmwt", "best_wip", "cer_10_0.5", "scoring_kaldi/best_cer"):
        a, b = (outs[1] / name).read_text(), (solo / name).read_text()
        assert a.replace(str(outs[1]), "X") == b.replace(str(solo), "X"), name
    # lattices on disk: Kaldi archives, one per job, whose best path at the chosen pair is hyp.txt
    words = read_words(graph / "words.txt")
    assert (outs[0] / "num_jobs").read_text().strip() == "2"
    lats = dict(
        kv for j in (1, 2) for kv in lattice_io.read_lattice_archive(outs[0] / f"lat.{j}.gz")
    )
    lw, p = float((outs[0] / "best_lmwt").read_text()), float((outs[0] / "best_wip").read_text())
    hyp = dict(
        (ln.split(maxsplit=1) + [""])[:2] for ln in (outs[0] / "hyp.txt").read_text().splitlines()
    )
    assert sorted(lats) == sorted(hyp)
    for u, lat in lats.items():
        assert " ".join(words[w] for w in lat.best_paths([(lw, p)])[0][0]) == hyp[u].strip()
    # the same decode again: the same bytes, timing fields apart
    before = {f.relative_to(outs[0]): f.read_bytes() for f in outs[0].rglob("*") if f.is_file()}
    decode_models(
        models[:1],
        graph,
        dev_data,
        outs[:1],
        nj=2,
        request=DecodeRequest(**{**req.__dict__, "force": True}),
    )
    after = {f.relative_to(outs[0]): f.read_bytes() for f in outs[0].rglob("*") if f.is_file()}
    assert set(before) == set(after)
    for k in before:
        if k.name == ".done" or k.parts[0] == "log":  # the step's and the jobs' logs
            continue
        if k.name == "summary.json":
            a, b = json.loads(before[k]), json.loads(after[k])
            a.pop("timing"), b.pop("timing")
            assert a == b
        else:
            assert before[k] == after[k], k
    # test set: dev's pair, one pool for both models; idempotent afterwards
    touts = [tmp_path / "a_test", tmp_path / "b_test"]
    decode_models(models, graph, toy["test"], touts, nj=1, request=req, lm_weight_from=outs)
    for o, d in zip(touts, outs, strict=True):
        assert json.loads((o / "summary.json").read_text())["chosen_on"] == str(d)
    assert decode_models(
        models, graph, toy["test"], touts, nj=1, request=req, lm_weight_from=outs
    ) == [None, None]
    shutil.copy(models[0], tmp_path / "a2.safetensors")
    shutil.copy(tmp_path / "a2.safetensors", models[0])  # a retrained model: its decode is redone
    again = decode_models(models, graph, toy["test"], touts, nj=1, request=req, lm_weight_from=outs)
    assert again[0] is not None and again[1] is None


def test_cli_names_model_pdf_mismatch_and_test_guard(
    toy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    graph = toy["graph"]
    n = int((graph / "num_pdfs").read_text())
    wrong = tiny_nnet(tmp_path / "w.safetensors", n + 1)
    assert (
        decode_nnet.main(
            [
                "--model",
                str(wrong),
                "--graph",
                str(graph),
                "--data",
                str(toy["dev"]),
                "--out",
                str(tmp_path / "o"),
                "--nj",
                "1",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert f"model {wrong} has {n + 1} pdfs but graph {graph / 'num_pdfs'} says {n}" in err
    assert (
        decode_nnet.main(
            [
                "--model",
                str(toy["nn1"]),
                "--graph",
                str(graph),
                "--data",
                str(toy["test"]),
                "--out",
                str(tmp_path / "t"),
                "--nj",
                "1",
            ]
        )
        == 1
    )
    assert "never chosen on test" in capsys.readouterr().err
    assert (
        decode_nnet.main(
            [
                "--model",
                str(toy["nn1"]),
                "--graph",
                str(graph),
                "--data",
                str(toy["test"]),
                "--out",
                str(tmp_path / "t"),
                "--lm-weight-from",
                str(tmp_path / "nodev"),
            ]
        )
        == 1
    )
    assert "best_lmwt not found" in capsys.readouterr().err
    with pytest.raises(DecodeError, match="one out dir per model"):
        decode_models([toy["nn1"], toy["nn2"]], graph, toy["dev"], [tmp_path / "x"])


def test_too_many_failed_utterances_stop_the_decode(
    toy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from steps_py.decode import scorers

    real = scorers.GmmScorer.loglikes

    def flaky(self, reader, utt):  # type: ignore[no-untyped-def]
        if utt in bad:
            raise ValueError("features are NaN")
        return real(self, reader, utt)

    monkeypatch.setattr(scorers.GmmScorer, "loglikes", flaky)
    data = toy_data(tmp_path / "dev", n=40, seed=5)
    bad = {"spk0-u0", "spk1-u1", "spk0-u2"}  # 3 of 40 = 7.5 %
    out = tmp_path / "decode_dev"
    with pytest.raises(
        DecodeError,
        match=r"3 of 40 utterances failed \(more than 5 %\).*spk0-u0: ValueError: features are NaN",
    ):
        decode_models([toy["gmm"]], toy["graph"], data, [out], nj=1)
    assert not (out / ".done").exists() and not list(out.glob("cer_*"))
    bad = {"spk0-u0", "spk1-u1"}  # 5 %: decoded, the two count as deletions and are listed
    s = decode_models([toy["gmm"]], toy["graph"], data, [out], nj=1)[0]
    assert s is not None and sorted(s["failed"]) == sorted(bad) and s["del"] >= 2
    assert api.DecodeRequest().max_failed == 0.05


def test_best_path_mode_matches_the_search_at_each_lm_weight(toy, tmp_path: Path) -> None:
    """--no-lattices: one FasterDecoder pass per LM weight (penalty 0), no lattices, no oracle;
    the chosen hypothesis is the best-path search at 1 / LM weight, and test reuses dev's weight."""
    from steps_py.decode.scorers import NnetScorer
    from steps_py.decode.search import Search
    from steps_py.features.io import FeatureReader

    dev, test = tmp_path / "dev", tmp_path / "test"
    common = [
        "--model",
        str(toy["nn1"]),
        "--graph",
        str(toy["graph"]),
        "--nj",
        "1",
        "--no-lattices",
        "--beam",
        "12",
        "--max-active",
        "500",
    ]
    assert (
        decode_nnet.main(
            [*common, "--data", str(toy["dev"]), "--out", str(dev), "--lm-weights", "8,12"]
        )
        == 0
    )
    s = json.loads((dev / "summary.json").read_text())
    assert s["oracle_cer"] is None and s["lattice_density"] is None and s["lattices"] is False
    assert (
        s["max_active"] == 500
        and s["word_ins_penalties"] == [0.0]
        and not list(dev.glob("lat.*.gz"))
    )
    assert sorted(f.name for f in dev.glob("cer_*")) == ["cer_12_0.0", "cer_8_0.0"]
    words = read_words(toy["graph"] / "words.txt")
    scorer = NnetScorer(toy["nn1"])
    search = Search(toy["graph"], SearchConfig(beam=12.0, max_active=500), scorer.num_pdfs)
    reader = FeatureReader(toy["dev"], "fbank", cmvn=True)
    lmwt = float((dev / "best_lmwt").read_text())
    hyp = dict(
        line.split(maxsplit=1) if " " in line else (line, "")
        for line in (dev / "hyp.txt").read_text().splitlines()
    )
    for utt in reader.utts:
        ids, _ = search.best_path(scorer.loglikes_of(reader[utt]), 1.0 / lmwt)
        assert hyp[utt].strip() == " ".join(words[i] for i in ids)
    assert (
        decode_nnet.main(
            [*common, "--data", str(toy["test"]), "--out", str(test), "--lm-weight-from", str(dev)]
        )
        == 0
    )
    assert (test / "best_lmwt").read_text() == (dev / "best_lmwt").read_text()
