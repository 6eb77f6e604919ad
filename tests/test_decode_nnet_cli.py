"""NN decoding CLI: input errors (missing graph, pdf mismatch, test set without a dev LM
weight) and an end-to-end decode with a real tiny model, a fake decoder and fake features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from steps_py.decode import nnet
from steps_py.nnet.model_io import save_acoustic_model
from steps_py.nnet.models import build_model

NUM_PDFS = 6
WORDS = ["<eps>", "!SIL", "<UNK>", "打", "开", "导", "航", "去"]  # ids 0..7


def _model(path: Path, num_pdfs: int = NUM_PDFS) -> Path:
    torch.manual_seed(0)
    cfg = {"type": "dnn", "feat_dim": 4, "num_pdfs": num_pdfs, "context": 1, "hidden_layers": 1, "hidden_dim": 8}
    save_acoustic_model(path, build_model(cfg), cfg, np.log(np.full(num_pdfs, 1.0 / num_pdfs)))
    return path


def _graph(d: Path, num_pdfs: int = NUM_PDFS) -> Path:
    d.mkdir(parents=True)
    (d / "HCLG_pdf.fst").write_bytes(b"fake")
    (d / "topo").write_text("fake")
    (d / "num_pdfs").write_text(f"{num_pdfs}\n")
    (d / "words.txt").write_text("".join(f"{w} {i}\n" for i, w in enumerate(WORDS)), encoding="utf-8")
    return d


def _data(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "text").write_text("s1-a 打 开 导 航\ns1-b 去 导 航\ns2-a 打 开\n", encoding="utf-8")
    return d


class FakeReader:
    """Fake fbank: one utterance lacks features."""

    utts = ["s1-a", "s1-b"]
    dim = 4

    def __getitem__(self, utt: str) -> np.ndarray:
        return np.ones(({"s1-a": 14, "s1-b": 20}[utt], 4), dtype=np.float32)


class FakeDecoder:
    """The right words at LM weight >= 10, one inserted word below; checks the score shape."""

    def decode_loglikes(self, loglikes: np.ndarray, lm_weights: list[float]) -> dict[float, list[int]]:
        assert loglikes.shape[1] == NUM_PDFS and loglikes.dtype == np.float32
        right = [3, 4, 5, 6] if loglikes.shape[0] == 14 else [7, 5, 6]
        return {w: (right if w >= 10 else [*right, 7]) for w in lm_weights}


@pytest.fixture()
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nnet, "make_feature_reader", lambda data: FakeReader())
    monkeypatch.setattr(nnet, "make_decoder", lambda cfg: FakeDecoder())


def test_missing_graph_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = nnet.main(["--model", str(_model(tmp_path / "m.safetensors")), "--graph", str(tmp_path / "nograph"),
                    "--data", str(_data(tmp_path / "dev")), "--out", str(tmp_path / "out")])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"graph dir {tmp_path / 'nograph'} does not exist" in err and "Traceback" not in err
    (tmp_path / "g").mkdir()
    assert nnet.main(["--model", str(tmp_path / "m.safetensors"), "--graph", str(tmp_path / "g"),
                      "--data", str(tmp_path / "dev"), "--out", str(tmp_path / "out")]) == 1
    assert "lacks HCLG_pdf.fst, words.txt, num_pdfs, topo" in capsys.readouterr().err


def test_pdf_mismatch_names_both_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _model(tmp_path / "m.safetensors", num_pdfs=NUM_PDFS + 1)
    graph = _graph(tmp_path / "graph")
    rc = nnet.main(["--model", str(model), "--graph", str(graph), "--data", str(_data(tmp_path / "dev")),
                    "--out", str(tmp_path / "out")])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"model {model} has {NUM_PDFS + 1} pdfs but graph {graph / 'num_pdfs'} says {NUM_PDFS}" in err
    assert not (tmp_path / "out" / ".done").exists()


def test_end_to_end_dev_then_test(tmp_path: Path, fakes: None, capsys: pytest.CaptureFixture[str]) -> None:
    model, graph = _model(tmp_path / "m.safetensors"), _graph(tmp_path / "graph")
    dev_out = tmp_path / "decode_dev"
    args = ["--model", str(model), "--graph", str(graph), "--nj", "1"]
    assert nnet.main([*args, "--data", str(_data(tmp_path / "dev")), "--out", str(dev_out),
                      "--lm-weights", "8:12:2"]) == 0
    # s2-a has no features -> 2 deletions; at LM weight 8 one insertion per utterance as well
    cer_lines = (dev_out / "cer_lmwt.txt").read_text(encoding="utf-8").splitlines()
    assert cer_lines[0] == "8 %CER 44.44 [ 4 / 9, 2 ins, 2 del, 0 sub ]"
    assert (dev_out / "cer").read_text().strip() == "%CER 22.22 [ 2 / 9, 0 ins, 2 del, 0 sub ]"
    assert (dev_out / "best_lmwt").read_text().strip() == "10"  # 10 and 12 tie: the smaller wins
    assert (dev_out / "hyp.txt").read_text(encoding="utf-8") == "s1-a 打 开 导 航\ns1-b 去 导 航\n"
    assert sorted(p.name for p in dev_out.glob("hyp_lmwt*")) == ["hyp_lmwt10.txt", "hyp_lmwt12.txt", "hyp_lmwt8.txt"]
    assert (dev_out / ".done").is_file() and (dev_out / "scoring" / "per_utt").is_file()
    # a test set needs the dev LM weight
    test_data = _data(tmp_path / "test")
    assert nnet.main([*args, "--data", str(test_data), "--out", str(tmp_path / "decode_test")]) == 1
    assert "never chosen on test" in capsys.readouterr().err
    assert nnet.main([*args, "--data", str(test_data), "--out", str(tmp_path / "decode_test"),
                      "--lm-weight-from", str(dev_out)]) == 0
    assert [p.name for p in (tmp_path / "decode_test").glob("hyp_lmwt*")] == ["hyp_lmwt10.txt"]
    assert nnet.main([*args, "--data", str(test_data), "--out", str(tmp_path / "decode_test2"),
                      "--lm-weight-from", str(tmp_path / "nodev")]) == 1
    assert "best_lmwt not found" in capsys.readouterr().err
    # idempotent: a done dir is skipped
    (dev_out / "cer").write_text("kept\n")
    assert nnet.main([*args, "--data", str(tmp_path / "dev"), "--out", str(dev_out)]) == 0
    assert (dev_out / "cer").read_text() == "kept\n"


def test_parse_lm_weights() -> None:
    assert nnet.parse_lm_weights("7:10") == [7.0, 8.0, 9.0, 10.0]
    assert nnet.parse_lm_weights("0.5:1.5:0.5") == [0.5, 1.0, 1.5]
    assert nnet.parse_lm_weights("12,8") == [8.0, 12.0]
    with pytest.raises(nnet.DecodeError, match="START:STOP"):
        nnet.parse_lm_weights("a:b")
