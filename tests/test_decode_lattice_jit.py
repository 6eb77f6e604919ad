"""The compiled determinization loops (``steps_py.decode.lattice_jit``) give exactly the
lattices of the Python ones: same states, arcs, costs (bit for bit) and transition-id strings,
on random raw lattices (states numbered forward, as Kaldi's decoders do, and shuffled, the
general case), with pruning and without; and the compiled parser reads what the Python one
reads."""

from __future__ import annotations

from pathlib import Path

import kaldi_hmm_gmm  # noqa: F401  (kaldifst's import order, see steps_py/__init__.py)
import kaldifst
import numpy as np
import pytest

from steps_py.decode import lattice
from steps_py.decode.lattice import RawLattice, determinize, warm_up


def _frame_lattice(rng: np.random.Generator, frames: int, width: int, words: float) -> tuple:
    """A raw lattice shaped like a decoder's: ``width`` tokens per frame, each with arcs to
    tokens of the next frame (transition ids, a word on a fraction ``words`` of them), some
    epsilon-input arcs within a frame, and finals on the last frame."""
    arcs: list[list] = []
    for f in range(frames):
        for k in range(width):
            out = []
            if f + 1 < frames:
                for t in sorted(set(rng.integers(0, width, size=2).tolist())):
                    w = int(rng.integers(1, 6)) if rng.random() < words else 0
                    g = float(np.float32(rng.uniform(0, 1.5)))
                    a = float(np.float32(rng.uniform(0, 3)))
                    out.append((int(rng.integers(1, 40)), w, g, a, (f + 1) * width + t))
                if k + 1 < width and rng.random() < 0.2:  # a non-emitting arc in the frame
                    out.append((0, int(rng.integers(1, 6)), 0.5, 0.0, f * width + k + 1))
            arcs.append(out)
    finals = [None] * ((frames - 1) * width) + [
        (float(np.float32(rng.uniform(0, 1))), 0.0) for _ in range(width)
    ]
    return arcs, finals


def _shuffled(arcs: list[list], finals: list, rng: np.random.Generator) -> tuple:
    """The same lattice with its states renumbered at random (arcs to lower ids)."""
    n = len(arcs)
    perm = rng.permutation(n)  # old -> new
    new_arcs: list[list] = [[] for _ in range(n)]
    new_finals: list = [None] * n
    for s in range(n):
        new_arcs[perm[s]] = [(il, ol, g, a, int(perm[t])) for il, ol, g, a, t in arcs[s]]
        new_finals[perm[s]] = finals[s]
    return new_arcs, new_finals, int(perm[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beam", [2.0, 6.0, 1e9])
def test_jit_equals_python(seed: int, beam: float) -> None:
    rng = np.random.default_rng(seed)
    arcs, finals = _frame_lattice(rng, frames=30, width=5, words=0.15)
    s_arcs, s_finals, s_start = _shuffled(arcs, finals, rng)
    for start, a, f in [(0, arcs, finals), (s_start, s_arcs, s_finals)]:
        raw = RawLattice(start, a, f)
        want = determinize(RawLattice(start, a, f), beam, 0.1, jit=False)
        got = determinize(raw, beam, 0.1, jit=True)
        assert want.num_states > 1
        assert (got.start, got.arcs, got.finals) == (want.start, want.arcs, want.finals)


def test_jit_parser_reads_what_python_reads(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(5)
    arcs, finals = _frame_lattice(rng, frames=6, width=3, words=0.3)
    lat = kaldifst.Lattice()
    for _ in arcs:
        lat.add_state()
    lat.start = 0
    for s, out in enumerate(arcs):
        for il, ol, g, a, t in out:
            lat.add_arc(s, kaldifst.LatticeArc(il, ol, kaldifst.LatticeWeight(g, a), t))
        if finals[s] is not None:
            lat.set_final(s, kaldifst.LatticeWeight(*finals[s]))
    path = str(tmp_path / "raw.fst")
    lat.write(path)
    compiled = RawLattice.from_kaldifst_file(path)
    monkeypatch.setattr(lattice, "_jit", None)
    plain = RawLattice.from_kaldifst_file(path)
    assert compiled.arcs == plain.arcs == arcs
    assert compiled.finals == plain.finals == finals
    assert compiled.num_arcs == plain.num_arcs and compiled.num_states == len(arcs)
    # without numba, determinize runs the Python loops and says so when asked for the others
    assert determinize(plain, 5.0, 0.1).arcs == determinize(compiled, 5.0, 0.1, jit=False).arcs
    with pytest.raises(RuntimeError, match="numba"):
        determinize(plain, 5.0, 0.1, jit=True)


def test_warm_up_and_empty() -> None:
    warm_up()
    assert determinize(RawLattice(0, [], []), 5.0, 0.1, jit=True).num_states == 0
    with pytest.raises(ValueError, match="arcs and finals"):
        RawLattice(0)


def _tied_lattice(rng: np.random.Generator) -> tuple:
    """A frame lattice whose weights come from a few values, so that many paths tie exactly."""
    arcs, finals = _frame_lattice(rng, frames=25, width=6, words=0.12)
    tied = [
        [
            (il, ol, float(rng.choice([0.5, 1.0])), float(rng.choice([1.0, 2.0])), t)
            for il, ol, _g, _a, t in out
        ]
        for out in arcs
    ]
    return tied, [None if f is None else (0.0, 0.0) for f in finals]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_numbering_does_not_change_the_lattice(seed: int) -> None:
    """Kaldi's decoder numbers raw states by memory address order: the same lattice under
    another numbering must determinize to the same word lattice, ties included."""
    rng = np.random.default_rng(seed)
    arcs, finals = _tied_lattice(rng)
    s_arcs, s_finals, s_start = _shuffled(arcs, finals, rng)
    for jit in (True, False):
        a = determinize(RawLattice(0, arcs, finals), 1e9, 1.0, jit=jit)
        b = determinize(RawLattice(s_start, s_arcs, s_finals), 1e9, 1.0, jit=jit)
        assert (a.start, a.arcs, a.finals) == (b.start, b.arcs, b.finals)


def test_ties_do_depend_on_numbering_without_canonical_order(monkeypatch) -> None:
    """The test above can fail: without the canonical numbering, some tied lattice here
    determinizes differently under another numbering."""
    monkeypatch.setattr(
        lattice.RawArrays, "canonical", lambda self, start: (self, start), raising=True
    )
    differ = 0
    for seed in range(4):
        rng = np.random.default_rng(seed)
        arcs, finals = _tied_lattice(rng)
        s_arcs, s_finals, s_start = _shuffled(arcs, finals, rng)
        a = determinize(RawLattice(0, arcs, finals), 1e9, 1.0, jit=True)
        b = determinize(RawLattice(s_start, s_arcs, s_finals), 1e9, 1.0, jit=True)
        differ += (a.arcs, a.finals) != (b.arcs, b.finals)
    assert differ > 0
