"""Word lattices: Kaldi's binary format (against OpenFst's own writer, and a bit-for-bit round
trip), determinization, and best path / N-best / oracle against brute-force enumeration."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import kaldi_hmm_gmm  # noqa: F401  (kaldifst's import order, see steps_py/__init__.py)
import kaldifst
import numpy as np
import pytest

from steps_py.decode.lattice import CompactLattice, RawLattice, determinize
from steps_py.decode.lattice_io import (
    LatticeFormatError,
    compact_lattice_bytes,
    lattice_bytes,
    read_compact_lattice,
    read_lattice_archive,
    write_lattice_archive,
)
from steps_py.score.cer import align_units


def _random_lattice(rng: np.random.Generator, states: int = 7, words: int = 4) -> CompactLattice:
    """An acyclic, connected CompactLattice with random float32 weights and alignments."""
    arcs: list[list] = [[] for _ in range(states)]
    for s in range(states - 1):
        for t in sorted(set(rng.integers(s + 1, states, size=2).tolist())):
            for w in sorted(set(rng.integers(1, words + 1, size=2).tolist())):
                g, a = np.float32(rng.uniform(0, 5)), np.float32(rng.uniform(0, 50))
                arcs[s].append(
                    (
                        int(w),
                        int(t),
                        float(g),
                        float(a),
                        tuple(int(x) for x in rng.integers(1, 30, size=3)),
                    )
                )
    finals = [None] * states
    finals[-1] = (0.0, 0.0, ())
    finals[states - 2] = (float(np.float32(1.5)), float(np.float32(2.25)), (7, 8))
    return CompactLattice(start=0, arcs=arcs, finals=finals)


def _all_paths(
    lat: CompactLattice, s: int = 0
) -> list[tuple[list[int], float, float, tuple[int, ...]]]:
    out = []
    f = lat.finals[s]
    if f is not None:
        out.append(([], f[0], f[1], f[2]))
    for w, t, g, a, ali in lat.arcs[s]:
        for ws, g2, a2, ali2 in _all_paths(lat, t):
            out.append(([w, *ws], g + g2, a + a2, ali + ali2))
    return out


def test_lattice4_layout_matches_openfst(tmp_path: Path) -> None:
    """Our OpenFst writer gives the bytes kaldifst (OpenFst itself) writes for a Lattice."""
    lat = kaldifst.Lattice()
    for _ in range(3):
        lat.add_state()
    lat.start = 0
    lat.add_arc(0, kaldifst.LatticeArc(3, 7, kaldifst.LatticeWeight(1.5, 2.25), 1))
    lat.add_arc(1, kaldifst.LatticeArc(0, 0, kaldifst.LatticeWeight(0.0, 0.5), 2))
    lat.add_arc(0, kaldifst.LatticeArc(4, 0, kaldifst.LatticeWeight(-1.0, 3.0), 2))
    lat.set_final(2, kaldifst.LatticeWeight(0.25, 0))
    lat.write(str(tmp_path / "l.fst"))
    theirs = (tmp_path / "l.fst").read_bytes()
    props = int.from_bytes(
        theirs[34:42], "little"
    )  # after magic, "vector", "lattice4", version, flags
    ours = lattice_bytes(
        3,
        0,
        [None, None, (0.25, 0.0)],
        [[(3, 7, 1.5, 2.25, 1), (4, 0, -1.0, 3.0, 2)], [(0, 0, 0.0, 0.5, 2)], []],
        props,
    )
    assert ours == theirs
    raw = RawLattice.from_kaldifst_file(str(tmp_path / "l.fst"))
    assert raw.arcs[0] == [(3, 7, 1.5, 2.25, 1), (4, 0, -1.0, 3.0, 2)] and raw.finals[2] == (
        0.25,
        0.0,
    )


def test_compact_lattice_round_trip_bit_for_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lats = [(f"utt{i}", _random_lattice(rng)) for i in range(3)]
    b = compact_lattice_bytes(lats[0][1])
    assert b[:4] == (2125659606).to_bytes(4, "little") and b"compactlattice44" in b[:40]
    again, end = read_compact_lattice(b)
    assert end == len(b) and again == lats[0][1] and compact_lattice_bytes(again) == b
    write_lattice_archive(tmp_path / "lat.1.gz", lats)
    first = (tmp_path / "lat.1.gz").read_bytes()
    got = list(read_lattice_archive(tmp_path / "lat.1.gz"))
    assert got == lats
    write_lattice_archive(tmp_path / "lat.2.gz", got)
    assert (
        tmp_path / "lat.2.gz"
    ).read_bytes() == first  # same lattices, same bytes (no gzip timestamp)
    raw = gzip.decompress(first)
    assert raw.startswith(
        b"utt0 \xd6"
    )  # Kaldi archive: key, space, the FST's magic (no \0B marker)
    (tmp_path / "bad.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(LatticeFormatError, match="bad.gz"):
        list(read_lattice_archive(tmp_path / "bad.gz"))


def test_best_paths_nbest_oracle_against_enumeration() -> None:
    rng = np.random.default_rng(1)
    grid = [(lw, p) for p in (0.0, 0.5, 1.0) for lw in (1.0, 7.0, 12.0, 17.0)]
    for _ in range(5):
        lat = _random_lattice(rng)
        paths = _all_paths(lat)
        for k, (ws, g, a) in enumerate(lat.best_paths(grid)):
            lw, p = grid[k]
            costs = [pg + pa / lw + p * len(pw) for pw, pg, pa, _ in paths]
            assert g + a / lw + p * len(ws) == pytest.approx(min(costs), abs=1e-6)
        nb = lat.nbest(4, 10.0, 0.5)
        want = sorted(pg + pa / 10.0 + 0.5 * len(pw) for pw, pg, pa, _ in paths)[:4]
        assert [g + a / 10.0 + 0.5 * len(ws) for ws, g, a in nb] == pytest.approx(want, abs=1e-6)
        ref = ["x", "y", "x"]
        units = {1: ("x",), 2: ("y",), 3: ("x", "y"), 4: ()}
        want_err = min(
            sum(o != "C" for o in align_units(ref, [u for w in pw for u in units[w]])[1])
            for pw, *_ in paths
        )
        assert lat.oracle_errors(ref, units.__getitem__) == want_err


def test_determinize_keeps_each_word_sequence_once_with_its_best_alignment() -> None:
    # raw lattice: words on arcs (olabel), transition ids as ilabels; two alignments of "5 6"
    # (costs 3 and 4) and one of "5 7" (cost 5.5); acoustic costs at scale 0.5
    arcs = [
        [(1, 5, 1.0, 0.0, 1), (2, 5, 1.0, 1.0, 2)],
        [(3, 0, 0.0, 1.0, 3)],
        [(4, 0, 0.0, 1.0, 3)],
        [(5, 6, 1.0, 0.0, 4), (6, 7, 2.0, 1.5, 4)],
        [],
    ]
    raw = RawLattice(start=0, arcs=arcs, finals=[None, None, None, None, (0.0, 0.0)])
    lat = determinize(raw, beam=10.0, acoustic_scale=0.5)
    paths = {tuple(w): (g, a, ali) for w, g, a, ali in _all_paths(lat)}
    assert set(paths) == {(5, 6), (5, 7)}
    g, a, ali = paths[(5, 6)]
    assert (g, a, ali) == (2.0, 2.0, (1, 3, 5))  # best alignment; acoustic unscaled (1.0 / 0.5)
    g, a, ali = paths[(5, 7)]
    assert (g, a, ali) == (3.0, 5.0, (1, 3, 6))
    for s in range(lat.num_states):  # deterministic: one arc per word per state
        ws = [arc[0] for arc in lat.arcs[s]]
        assert len(ws) == len(set(ws))
    assert (
        determinize(raw, beam=2.0, acoustic_scale=0.5).num_arcs < lat.num_arcs
    )  # "5 7" (+2.5) pruned


@pytest.mark.parametrize("seed", [2, 3])
def test_determinize_random_raw_lattices(seed: int) -> None:
    """Every word sequence of the raw lattice survives with its best cost (no pruning)."""
    rng = np.random.default_rng(seed)
    n = 8
    arcs: list[list] = [[] for _ in range(n)]
    for s in range(n - 1):
        for t in sorted(set(rng.integers(s + 1, n, size=2).tolist())):
            w = int(rng.integers(0, 3))  # 0: epsilon
            arcs[s].append(
                (
                    int(rng.integers(1, 9)),
                    w,
                    float(np.float32(rng.uniform(0, 2))),
                    float(np.float32(rng.uniform(0, 2))),
                    t,
                )
            )
    raw = RawLattice(0, arcs, [None] * (n - 1) + [(0.0, 0.0)])
    best: dict[tuple[int, ...], float] = {}

    def walk(s: int, ws: tuple[int, ...], c: float) -> None:
        if raw.finals[s] is not None:
            best[ws] = min(best.get(ws, np.inf), c)
        for _il, w, g, a, t in raw.arcs[s]:
            walk(t, ws + ((w,) if w else ()), c + g + a)

    walk(0, (), 0.0)
    lat = determinize(raw, beam=1e9, acoustic_scale=1.0)
    got = {tuple(w): g + a for w, g, a, _ in _all_paths(lat)}
    assert set(got) == set(best)
    for ws, c in best.items():
        assert got[ws] == pytest.approx(c, abs=1e-4)
    assert len(list(itertools.chain(*lat.arcs))) == lat.num_arcs
