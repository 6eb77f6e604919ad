"""Stage-5 examples: round trip, splicing/chunking at edges, any-N sharding, resume, skipping."""

from __future__ import annotations

import json
import logging
import sys
import types

import numpy as np
import pytest
import torch

from steps_py.nnet.egs import EgsError, EgsParams, EgsReader, chunk_starts, main, write_egs
from steps_py.nnet.models import build_model

P = 7


def _corpus(
    lengths: dict[str, int],
) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Features encode (utterance number, frame): col0 = 1000*u + t, col1 = t, col2 = u."""
    utts = sorted(lengths)
    feats, alis = {}, {}
    for u, utt in enumerate(utts):
        t = np.arange(lengths[utt])
        feats[utt] = np.stack([1000.0 * u + t, t, np.full_like(t, u)], 1).astype(np.float32)
        alis[utt] = ((t + u) % P).astype(np.int32)
    return utts, feats, alis


LENGTHS = {f"spk{i % 3}-utt{i:02d}": 5 + 3 * i for i in range(12)}


def _write(tmp_path, model_type="dnn", lengths=LENGTHS, mismatch=None, dev=True, **kw):
    utts, feats, alis = _corpus(lengths)
    if mismatch:
        alis[mismatch] = alis[mismatch][:-1]
    params = EgsParams(model_type=model_type, num_shards=kw.pop("num_shards", 3), seed=1, **kw)
    dev_set = (utts[:4], feats.__getitem__, alis) if dev else None
    info = write_egs(tmp_path / "egs", (utts, feats.__getitem__, alis), P, params, dev_set)
    return info, utts, feats, alis


def _decode_row(v: np.ndarray) -> tuple[int, int]:
    return int(round(v[2])), int(round(v[1]))  # (utterance number, frame)


def test_dnn_round_trip_targets_and_edge_splicing(tmp_path) -> None:
    info, utts, feats, alis = _write(tmp_path, context=2)
    assert (
        info["feat_dim"] == 3 and info["num_pdfs"] == P and info["frames"] == sum(LENGTHS.values())
    )
    reader = EgsReader(tmp_path / "egs", batch_size=5, seed=3)
    seen = set()
    for x, y in reader:
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (5, 5 * 3)
        for xi, yi in zip(x.numpy().reshape(5, 5, 3), y.numpy(), strict=True):
            u, t = _decode_row(xi[2])
            n = LENGTHS[utts[u]]
            assert yi == (t + u) % P  # target aligned with its frame
            for k, off in enumerate(range(-2, 3)):  # neighbours clamped inside the utterance
                assert _decode_row(xi[k]) == (u, min(max(t + off, 0), n - 1))
            seen.add((u, t))
    total = sum(LENGTHS.values())
    assert len(seen) == reader.minibatches_per_epoch * 5 > total - 3 * 5
    assert reader.frames_per_epoch == reader.minibatches_per_epoch * 5
    # dev covers every frame of its utterances exactly once, partial last minibatch kept
    dev = EgsReader(tmp_path / "egs", batch_size=4, split="dev")
    frames = [_decode_row(r[6:9]) for x, _ in dev for r in x.numpy()]  # centre frame
    assert sorted(frames) == sorted((u, t) for u in range(4) for t in range(LENGTHS[utts[u]]))
    assert dev.frames_per_epoch == len(frames)
    # priors: log of the (floored) train pdf frequencies
    counts = np.bincount(np.concatenate(list(alis.values())), minlength=P)
    assert np.allclose(
        np.exp(np.load(tmp_path / "egs" / "priors.npy")), counts / counts.sum(), atol=1e-6
    )


def test_dnn_egs_match_model_splicing(tmp_path) -> None:
    _, utts, feats, _ = _write(tmp_path, context=2, dev=False)
    model = build_model(
        {
            "type": "dnn",
            "feat_dim": 3,
            "num_pdfs": P,
            "context": 2,
            "hidden_layers": 1,
            "hidden_dim": 8,
        }
    )
    x, _ = next(iter(EgsReader(tmp_path / "egs", batch_size=6)))
    for xi in x:
        u, t = _decode_row(xi.reshape(5, 3)[2].numpy())
        whole = model.log_posteriors(torch.from_numpy(feats[utts[u]]))
        assert torch.allclose(whole[t], torch.log_softmax(model(xi[None]), -1)[0], atol=1e-5)


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_any_n_sharding_covers_minibatches_once(tmp_path, world_size) -> None:
    _write(tmp_path, dev=False)
    readers = [
        EgsReader(tmp_path / "egs", r, world_size, batch_size=4, seed=9) for r in range(world_size)
    ]
    total = readers[0].total_minibatches
    for epoch in (0, 1):
        ids = []
        for r in readers:
            r.set_epoch(epoch)
            mine = r.minibatch_ids()
            assert len(mine) == r.minibatches_per_epoch == total // world_size
            ids += mine
        assert len(ids) == len(set(ids)) == total - total % world_size
    # the minibatch order and content change from epoch to epoch
    r = readers[0]
    r.set_epoch(0)
    a = next(iter(r))[1]
    r.set_epoch(1)
    b = next(iter(r))[1]
    assert not torch.equal(a, b)


def test_dev_split_any_n_exactly_once(tmp_path) -> None:
    _write(tmp_path)
    readers = [EgsReader(tmp_path / "egs", r, 3, batch_size=5, split="dev") for r in range(3)]
    ys = torch.cat([y for r in readers for _, y in r])
    assert (
        len(ys)
        == sum(r.frames_per_epoch for r in readers)
        == sum(LENGTHS[u] for u in sorted(LENGTHS)[:4])
    )


def test_resume_reads_the_same_minibatches(tmp_path) -> None:
    _write(tmp_path, dev=False)
    ref = EgsReader(tmp_path / "egs", 1, 2, batch_size=4, seed=5)
    ref.set_epoch(2)
    expected = [x for x, _ in ref]
    r = EgsReader(tmp_path / "egs", 1, 2, batch_size=4, seed=5)
    r.set_epoch(2)
    it = iter(r)
    for _ in range(3):
        next(it)
    state = json.loads(json.dumps(r.state_dict()))  # survives a JSON/torch.save round trip
    r2 = EgsReader(tmp_path / "egs", 1, 2, batch_size=4, seed=5)
    r2.load_state_dict(state)
    r2.set_epoch(2)  # the loop calls this again: keeps the position
    rest = [x for x, _ in r2]
    assert len(rest) == len(expected) - 3
    assert all(torch.equal(a, b) for a, b in zip(rest, expected[3:], strict=True))
    with pytest.raises(EgsError, match="world_size"):
        EgsReader(tmp_path / "egs", 0, 3, batch_size=4, seed=5).load_state_dict(state)


def test_mismatched_utterance_is_skipped_and_named(tmp_path, caplog) -> None:
    lengths = {f"spk{i % 3}-utt{i:02d}": 5 + i for i in range(24)}  # 1 of 24 < 5 %
    bad = sorted(lengths)[5]
    with caplog.at_level(logging.WARNING):
        info, *_ = _write(tmp_path, mismatch=bad, dev=False, lengths=lengths)
    assert bad in caplog.text
    assert info["skipped"]["train"] == {"length_mismatch": 1}
    assert info["frames"] == sum(lengths.values()) - lengths[bad]
    assert (tmp_path / "egs" / "skipped.txt").read_text().split() == [
        "train",
        bad,
        "length_mismatch",
    ]


def test_lstm_chunks_and_target_delay(tmp_path) -> None:
    left, chunk, delay = 4, 5, 2
    _write(tmp_path, "lstm", chunk=chunk, left_context=left, target_delay=delay, dev=False)
    reader = EgsReader(tmp_path / "egs", batch_size=3)
    assert reader.frames_per_epoch == reader.minibatches_per_epoch * 3 * chunk
    utts = sorted(LENGTHS)
    for x, y in reader:
        assert x.shape == (3, left + chunk, 3) and y.shape == (3, chunk)
        for xi, yi in zip(x.numpy(), y.numpy(), strict=True):
            u = _decode_row(xi[0])[0]
            n = LENGTHS[utts[u]]
            got = [_decode_row(r) for r in xi]

            def cut(c: int, n: int = n, u: int = u) -> tuple[list, list]:
                # input position p is frame c + delay - left + p; label j is frame c + j (clamped)
                rows = [(u, min(max(c + delay - left + p, 0), n - 1)) for p in range(left + chunk)]
                return rows, [(min(c + j, n - 1) + u) % P for j in range(chunk)]

            assert any(cut(c) == (got, list(yi)) for c in chunk_starts(n, chunk))


def test_lstm_training_chunk_matches_whole_utterance_output(tmp_path) -> None:
    torch.manual_seed(0)
    left, chunk, delay = 4, 5, 2
    cfg = {
        "type": "lstm",
        "feat_dim": 3,
        "num_pdfs": P,
        "left_context": left,
        "chunk": chunk,
        "target_delay": delay,
        "lstm_layers": 2,
        "cells": 6,
        "proj": 3,
    }
    model = build_model(cfg)
    feats = torch.randn(30, 3)
    # the first chunk of an utterance as the egs cut it: frames delay-left .. delay+chunk-1, clamped
    rows = np.clip(np.arange(left + chunk) + delay - left, 0, 29)
    out = torch.log_softmax(model(feats[rows][None]), -1)[0]
    whole = model.log_posteriors(feats)
    assert whole.shape == (30, P)
    assert torch.allclose(out, whole[:chunk], atol=1e-5)
    # output for label frame t depends on input frames up to t + delay, not beyond
    changed = feats.clone()
    changed[10 + delay + 1 :] += 5.0
    assert torch.allclose(model.log_posteriors(changed)[10], whole[10], atol=1e-6)
    assert not torch.allclose(model.log_posteriors(changed)[11], whole[11], atol=1e-4)


def _ali_dir_and_reader(ali_dir, alis, feats, utts, monkeypatch) -> None:
    """A gmm.align-style pdf alignment dir, and a stand-in for the feature reader."""
    import kaldi_native_io

    ali_dir.mkdir(parents=True)
    with kaldi_native_io.Int32VectorWriter(f"ark,scp:{ali_dir}/pdf.ark,{ali_dir}/pdf.scp") as w:
        for u, a in alis.items():
            w.write(u, a.tolist())
    (ali_dir.parent / "num_pdfs").write_text(f"{P}\n")

    class FakeReader(dict):
        def __init__(self, data_dir, kind, cmvn=True):
            super().__init__(feats)
            self.utts, self.dim = utts, 3

    monkeypatch.setitem(
        sys.modules, "steps_py.features.io", types.SimpleNamespace(FeatureReader=FakeReader)
    )


def test_cli_idempotent_with_kaldi_alignments(tmp_path, monkeypatch) -> None:
    utts, feats, alis = _corpus({"a-1": 9, "a-2": 12, "b-1": 7})
    ali_dir = tmp_path / "ali" / "train"
    _ali_dir_and_reader(ali_dir, {u: alis[u] for u in utts}, feats, utts, monkeypatch)
    out = tmp_path / "egs"
    args = [
        "--feats",
        "data/train",
        "--ali",
        str(ali_dir),
        "--model-type",
        "dnn",
        "--out",
        str(out),
        "--num-shards",
        "2",
    ]
    assert main(args) == 0
    info = json.loads((out / "info.json").read_text())
    assert info["num_pdfs"] == P and info["frames"] == 28
    stamp = (out / "info.json").stat().st_mtime_ns
    assert main(args) == 0  # done: skipped
    assert (out / "info.json").stat().st_mtime_ns == stamp
    # a missing alignment dir is a one-line error naming the file, not a traceback
    bad = [
        "--feats",
        "d",
        "--ali",
        str(tmp_path / "nope"),
        "--model-type",
        "dnn",
        "--out",
        str(tmp_path / "e2"),
    ]
    assert main(bad) == 1
    assert not (tmp_path / "e2").exists()


def test_nan_features_are_a_counted_skip_and_over_5_percent_an_error(tmp_path, caplog) -> None:
    lengths = {f"spk{i % 3}-utt{i:02d}": 5 + i for i in range(24)}
    utts, feats, alis = _corpus(lengths)
    feats[utts[3]][2, 1] = np.nan
    params = EgsParams(model_type="dnn", num_shards=2, seed=1)
    with caplog.at_level(logging.WARNING):
        info = write_egs(tmp_path / "egs", (utts, feats.__getitem__, alis), P, params)
    assert info["skipped"]["train"] == {"non_finite_features": 1}
    assert f"skipping {utts[3]}: 1 of {3 * lengths[utts[3]]} feature values are NaN" in caplog.text
    feats[utts[4]][0, 0] = np.inf
    with pytest.raises(EgsError, match=r"train: 2 of 24 utterances would be skipped \(2 non_fin"):
        write_egs(tmp_path / "egs2", (utts, feats.__getitem__, alis), P, params)
    assert not (tmp_path / "egs2").exists()


def test_utterances_the_aligner_reported_are_not_held_against_the_cap(
    tmp_path, monkeypatch
) -> None:
    """gmm.align's report.txt lists what it could not align (its own report and limit): egs
    skips them as alignment_failed; ids unknown to the alignments count towards the 5 %."""
    lengths = {f"u{i:02d}": 6 + i for i in range(10)}
    utts, feats, alis = _corpus(lengths)
    ali_dir = tmp_path / "ali" / "train"
    _ali_dir_and_reader(ali_dir, {u: alis[u] for u in utts[3:]}, feats, utts, monkeypatch)
    report = "data d\nutterances 10\naligned 7\nnot_aligned 3\n"
    (ali_dir / "report.txt").write_text(report + "".join(f"{u} beam\n" for u in utts[:3]))
    argv = ["--feats", "d", "--ali", str(ali_dir), "--model-type", "dnn", "--num-shards", "1"]
    assert main([*argv, "--out", str(tmp_path / "egs")]) == 0
    info = json.loads((tmp_path / "egs" / "info.json").read_text())
    assert info["skipped"]["train"] == {"alignment_failed": 3}
    (ali_dir / "report.txt").write_text(report)  # the same 3 now unknown to the aligner
    assert main([*argv, "--out", str(tmp_path / "egs2")]) == 1
