"""Kaldi's LatticeFasterDecoder through the kaldi-hmm-gmm binding layer: its self-test and the
fallback, lattices equal to LatticeSimpleDecoder's, max-active respected, partial decodes kept."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from steps_py.decode import lattice_faster as lf
from steps_py.decode.lattice import RawLattice, lattices_equal
from steps_py.decode.scorers import GmmScorer
from steps_py.decode.search import Search, SearchConfig
from steps_py.gmm.feats import add_deltas
from tests.toy_decode import build_graph
from tests.toy_gmm import toy_utterance


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    graph, model = build_graph(tmp_path_factory.mktemp("toy"))
    return graph, model, int((graph / "num_pdfs").read_text())


def _loglikes(model: Path, seed: int, noise: float = 15.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    feats, _ = toy_utterance(["B", "A", "C", "A"], rng, seed=seed)
    ll = GmmScorer(model).loglikes_of(add_deltas(feats))
    return (ll + rng.normal(0.0, noise, size=ll.shape)).astype(np.float32)


def test_self_test_passes_in_a_child_process_and_the_faster_decoder_is_chosen() -> None:
    lf._RESOLVED.clear()
    assert lf.check_binding() == ""
    assert lf.resolve_decoder("faster") == "faster"
    assert lf.resolve_decoder("simple") == "simple"


def test_a_failed_self_test_falls_back_to_the_simple_decoder_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(lf, "check_binding", lambda: "lattices differ at state 3")
    with caplog.at_level(logging.WARNING, logger="decode"):
        assert lf.resolve_decoder("faster") == "simple"
    assert "failed its self-test (lattices differ at state 3" in caplog.text
    assert "LatticeSimpleDecoder instead" in caplog.text


def test_a_missing_symbol_fails_the_self_test_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name, restype, argtypes = lf._SYMBOLS["raw_lattice"]
    monkeypatch.setitem(lf._SYMBOLS, "raw_lattice", (name + "_gone", restype, argtypes))
    monkeypatch.setattr(lf, "_FUNCS", {})
    assert lf.main() == 1
    err = capsys.readouterr().err
    assert "does not export LatticeFasterDecoderTpl::raw_lattice" in err


def test_word_lattices_equal_lattice_simple_decoders(toy) -> None:
    graph, model, n = toy
    cfg = {"beam": 30.0, "lattice_beam": 8.0, "acoustic_scale": 0.1, "max_active": 100000}
    faster = Search(graph, SearchConfig(**cfg, decoder="faster"), n)
    simple = Search(graph, SearchConfig(**cfg, decoder="simple"), n)
    sizes = []
    for seed in range(4):
        ll = _loglikes(model, seed)
        a, ta = faster.lattice(ll)
        b, _ = simple.lattice(ll)
        assert lattices_equal(a, b, tol=1e-3) == "", seed
        assert ta.extra["partial"] == 0.0
        sizes.append(a.num_arcs)
    assert max(sizes) > 5  # real alternatives, not a single path


def _expanded_per_frame(raw: RawLattice) -> Counter[int]:
    """How many raw-lattice states with an emitting arc out (tokens the decoder expanded)
    each frame has."""
    frame = [0] * len(raw.arcs)
    for s in raw.topo_order():
        for il, _ol, _g, _a, nx in raw.arcs[s]:
            frame[nx] = frame[s] + (1 if il else 0)
    return Counter(frame[s] for s in range(len(raw.arcs)) if any(a[0] for a in raw.arcs[s]))


def test_max_active_bounds_the_tokens_expanded_per_frame(toy) -> None:
    graph, model, n = toy
    ll = _loglikes(model, 0)
    most = {}
    for ma in (3, 5, 100000):
        s = Search(graph, SearchConfig(beam=1000.0, lattice_beam=1000.0, max_active=ma), n)
        res = s._lattice_faster.decode(s._scaled(ll))
        most[ma] = max(_expanded_per_frame(RawLattice.from_kaldifst(res.lattice)).values())
    # Kaldi's cutoff keeps the token at the cutoff too: at most max_active + 1
    assert most[3] <= 4 and most[5] <= 6
    assert most[100000] > 10  # without the limit the toy graph keeps far more


def test_a_decode_that_reaches_no_final_state_keeps_its_partial_lattice(toy) -> None:
    graph, model, n = toy
    s = Search(graph, SearchConfig(beam=30.0, lattice_beam=8.0), n)
    lat, t = s.lattice(_loglikes(model, 1)[:2])  # two frames: no word can end
    assert t.extra["partial"] == 1.0
    assert lat.num_states > 0
