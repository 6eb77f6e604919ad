"""Acoustic models, model_io round trip and priors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from steps_py.nnet.model_io import ModelFileError, load_acoustic_model, save_acoustic_model
from steps_py.nnet.models import build_model, splice_frames
from steps_py.nnet.priors import (
    average_log_posteriors,
    load_log_priors,
    log_priors_from_counts,
    pdf_counts,
    save_log_priors,
)

DNN = {
    "type": "dnn",
    "feat_dim": 4,
    "num_pdfs": 6,
    "context": 1,
    "hidden_layers": 2,
    "hidden_dim": 8,
}
LSTM = {
    "type": "lstm",
    "feat_dim": 4,
    "num_pdfs": 6,
    "left_context": 3,
    "chunk": 4,
    "target_delay": 1,
    "lstm_layers": 2,
    "cells": 8,
    "proj": 3,
}


def test_splice_frames_edges() -> None:
    f = torch.arange(4.0).reshape(4, 1)
    assert splice_frames(f, 1).tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]


@pytest.mark.parametrize("cfg", [DNN, LSTM], ids=["dnn", "lstm"])
def test_model_io_round_trip(tmp_path, cfg) -> None:
    torch.manual_seed(0)
    model = build_model(cfg)
    priors = np.log(np.full(6, 1 / 6, dtype=np.float32))
    path = tmp_path / "m.safetensors"
    save_acoustic_model(path, model, cfg, priors)
    loaded, cfg2, priors2 = load_acoustic_model(path)
    assert cfg2["type"] == cfg["type"] and all(cfg2[k] == v for k, v in cfg.items())
    assert np.allclose(priors2, priors)
    feats = torch.randn(13, 4)
    assert torch.allclose(loaded.log_posteriors(feats), model.log_posteriors(feats))
    assert not loaded.training
    # forward shapes the loop relies on
    x = torch.randn(2, 12) if cfg["type"] == "dnn" else torch.randn(2, 7, 4)
    out = model(x)
    assert out.shape == ((2, 6) if cfg["type"] == "dnn" else (2, 4, 6))


def test_model_io_keeps_count_priors_beside_adjusted_ones(tmp_path) -> None:
    model = build_model(DNN)
    counts = np.log(np.array([0.5, 0.2, 0.1, 0.1, 0.05, 0.05], dtype=np.float32))
    adjusted = np.log(np.full(6, 1 / 6, dtype=np.float32))
    path = tmp_path / "m.safetensors"
    save_acoustic_model(path, model, DNN, adjusted, counts)
    assert np.allclose(load_acoustic_model(path)[2], adjusted)
    assert np.allclose(load_acoustic_model(path, priors="counts")[2], counts)
    save_acoustic_model(path, model, DNN, counts)  # one set only: it serves both
    assert np.allclose(load_acoustic_model(path, priors="counts")[2], counts)
    with pytest.raises(ValueError, match="priors must be one of"):
        load_acoustic_model(path, priors="uniform")
    with pytest.raises(ValueError, match="log_priors_counts has 3 entries"):
        save_acoustic_model(path, model, DNN, adjusted, counts[:3])


def test_average_log_posteriors_is_the_mean_softmax_over_labelled_frames() -> None:
    torch.manual_seed(1)
    model = build_model(DNN)
    xs = [torch.randn(5, 12) for _ in range(4)]
    ys = [torch.tensor([0, 1, -100, 2, 3]) for _ in range(4)]
    got, frames = average_log_posteriors(model, zip(xs[:3], ys[:3], strict=True), max_frames=8)
    assert frames == 8  # two minibatches of 4 labelled frames reach 8, the third is not read
    with torch.no_grad():
        post = torch.cat(
            [
                torch.softmax(model(x)[y != -100].double(), -1)
                for x, y in zip(xs[:2], ys[:2], strict=True)
            ]
        )
    assert np.allclose(got, np.log(post.mean(0).numpy()), atol=1e-6)
    assert model.training  # mode restored
    with pytest.raises(ValueError, match="no frames"):
        average_log_posteriors(model, [], max_frames=10)


def test_load_rejects_foreign_files(tmp_path) -> None:
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(ModelFileError, match="not an acoustic model"):
        load_acoustic_model(other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelFileError, match="cannot read"):
        load_acoustic_model(junk)
    with pytest.raises(ModelFileError, match="no such"):
        load_acoustic_model(tmp_path / "missing.safetensors")


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="unknown model config keys"):
        build_model({**DNN, "hiden_dim": 3})
    with pytest.raises(ValueError, match="'type'"):
        build_model({"feat_dim": 4, "num_pdfs": 6})
    with pytest.raises(ValueError, match="'hidden_dim' must be a non-negative integer, got 'abc'"):
        build_model({**DNN, "hidden_dim": "abc"})
    with pytest.raises(ValueError, match="'norm' must be a string"):
        build_model({**DNN, "norm": 3})
    with pytest.raises(ValueError, match="priors"):
        save_acoustic_model("/nonexistent/x", build_model(DNN), DNN, np.zeros(5))


def test_priors(tmp_path) -> None:
    counts = pdf_counts([np.array([0, 0, 1]), np.array([1, 1, 0, 0])], 4)
    assert counts.tolist() == [4, 3, 0, 0]
    lp = log_priors_from_counts(counts, floor=0.01)
    p = np.exp(lp)
    assert p[:2].sum() == pytest.approx(1.0, abs=1e-6)  # a distribution over the seen pdfs
    assert p[0] / p[1] == pytest.approx(4 / 3, rel=1e-5)
    assert lp[2] == lp[3] == 0.0  # unseen pdfs: no prior correction, never boosted
    rare = log_priors_from_counts(np.array([10000, 1, 0]), floor=0.01)
    assert np.exp(rare[1]) == pytest.approx(0.01 / (10000 / 10001 + 0.01), rel=1e-5)  # floored
    save_log_priors(tmp_path / "p.npy", lp)
    assert np.array_equal(load_log_priors(tmp_path / "p.npy"), lp)


@pytest.mark.parametrize(("base", "key"), [(DNN, "hidden_dim"), (LSTM, "cells"), (LSTM, "proj")])
def test_a_zero_layer_size_is_a_one_line_error(base: dict, key: str) -> None:
    with pytest.raises(ValueError, match=rf"model config '{key}' is 0: a layer needs at least one"):
        build_model({**base, key: 0})
    build_model({**base, "hidden_layers": 0} if base is DNN else {**base, "target_delay": 0})
