"""Word lattices: Kaldi's CompactLattice in Python, lattice determinization, and what scoring
needs from a lattice (best path at many LM weights and insertion penalties at once, N-best,
oracle error count, density).

A ``CompactLattice`` is an acyclic acceptor over word ids; each arc and each final state
carries a ``LatticeWeight`` (graph cost, acoustic cost) and the string of transition ids
it covers, as in Kaldi (``src/lat/kaldi-lattice.h``). Costs are stored as float32 values
(what the file holds) and acoustic costs are unscaled (Kaldi's on-disk convention).

Why written here: the decoders that give a raw state-level lattice (kaldi-decoder's
``LatticeSimpleDecoder.get_raw_lattice``) stop there; kaldifst can determinize only
tropical FSTs, and Kaldi's ``DeterminizeLatticePruned`` (lattice semiring with strings of
transition ids) is not bound by any installable wheel. ``determinize`` follows Kaldi's
algorithm (``src/lat/determinize-lattice-pruned.cc``): subset construction over word
labels after epsilon closure, where an element of a subset is (raw state, residual
weight, residual transition-id string); subsets keep only states with word arcs out or a
final weight (Kaldi's ``ConvertToMinimal``); the output arc gets the best weight of the
subset (``LatticeWeight`` order: lower graph+acoustic, then lower graph cost) and the common
prefix of the strings; elements whose forward + backward cost exceeds the best path by
more than the lattice beam are pruned. For each word sequence the result keeps its best
alignment, so its best path at any scale is a path of the raw lattice.

Scaling as Kaldi's ``local/score.sh``: at LM weight ``L`` and word insertion penalty
``p`` a path costs ``graph + acoustic / L + p * (number of words)``.
"""

from __future__ import annotations

import heapq
import math
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from os.path import commonprefix

import numpy as np

try:  # the compiled loops of determinization; without numba the Python ones run
    from steps_py.decode import lattice_jit as _jit
except ImportError:  # pragma: no cover - numba is a dependency; this keeps a broken install usable
    _jit = None  # type: ignore[assignment]

INF = math.inf
Ali = tuple[int, ...]
Arc = tuple[
    int, int, float, float, Ali
]  # word, next state, graph cost, acoustic cost, transition ids
Final = tuple[float, float, Ali]


@dataclass
class CompactLattice:
    """An acyclic word lattice; ``arcs[s]`` leave state ``s``; ``finals[s]`` is None if not final."""

    start: int
    arcs: list[list[Arc]]
    finals: list[Final | None]

    @property
    def num_states(self) -> int:
        return len(self.arcs)

    @property
    def num_arcs(self) -> int:
        return sum(len(a) for a in self.arcs)

    def topo_order(self) -> list[int]:
        """States in topological order (Kahn); raises ValueError on a cycle."""
        return _topo([[a[1] for a in arcs] for arcs in self.arcs])

    def best_paths(
        self, grid: Sequence[tuple[float, float]]
    ) -> list[tuple[list[int], float, float]]:
        """Best path for each (LM weight, insertion penalty) of ``grid``, all in one pass:
        (word ids, graph cost, acoustic cost) each; ([], inf, inf) for an empty lattice."""
        k = len(grid)
        if self.num_states == 0 or k == 0:
            return [([], INF, INF)] * k
        inv_l = np.array([1.0 / lm for lm, _ in grid])
        wip = np.array([p for _, p in grid])
        n = self.num_states
        cost = np.full((n, k), INF)
        cost[self.start] = 0.0
        back: list[list[tuple[int, Arc] | None]] = [[None] * k for _ in range(n)]
        for s in self.topo_order():
            cs = cost[s]
            if not np.isfinite(cs).any():
                continue
            for arc in self.arcs[s]:
                c = cs + arc[2] + arc[3] * inv_l + wip
                better = c < cost[arc[1]]
                if better.any():
                    cost[arc[1]][better] = c[better]
                    bk = back[arc[1]]
                    for j in np.flatnonzero(better):
                        bk[j] = (s, arc)
        out = []
        fin = [(s, f) for s, f in enumerate(self.finals) if f is not None]
        for j in range(k):
            best, arg = INF, None
            for s, f in fin:
                c = cost[s, j] + f[0] + f[1] * inv_l[j]
                if c < best:
                    best, arg = c, s
            if arg is None:
                out.append(([], INF, INF))
                continue
            words: list[int] = []
            g, a = self.finals[arg][0], self.finals[arg][1]  # type: ignore[index]
            s = arg
            while back[s][j] is not None:
                prev, arc = back[s][j]  # type: ignore[misc]
                words.append(arc[0])
                g += arc[2]
                a += arc[3]
                s = prev
            out.append((words[::-1], g, a))
        return out

    def nbest(
        self, n: int, lm_weight: float, wip: float = 0.0
    ) -> list[tuple[list[int], float, float]]:
        """The ``n`` best distinct word sequences at these scales (the lattice is deterministic,
        so paths are distinct sequences), best first: (word ids, graph cost, acoustic cost)."""
        if self.num_states == 0 or n <= 0:
            return []
        inv_l = 1.0 / lm_weight

        def arc_cost(arc: Arc) -> float:
            return arc[2] + arc[3] * inv_l + wip

        h = [INF] * self.num_states  # exact cost to the end: A* finds paths in order
        for s in reversed(self.topo_order()):
            f = self.finals[s]
            best = f[0] + f[1] * inv_l if f is not None else INF
            for arc in self.arcs[s]:
                best = min(best, arc_cost(arc) + h[arc[1]])
            h[s] = best
        heap: list[tuple[float, int, int, float, tuple[Arc, ...]]] = [
            (h[self.start], 0, self.start, 0.0, ())
        ]
        tick = 1
        out: list[tuple[list[int], float, float]] = []
        while heap and len(out) < n:
            _, _, s, so_far, path = heapq.heappop(heap)
            if s < 0:  # a completed path
                f = self.finals[-s - 1]
                assert f is not None
                out.append(
                    (
                        [a[0] for a in path],
                        sum(a[2] for a in path) + f[0],
                        sum(a[3] for a in path) + f[1],
                    )
                )
                continue
            f = self.finals[s]
            if f is not None:
                c = so_far + f[0] + f[1] * inv_l
                heapq.heappush(heap, (c, tick, -s - 1, c, path))
                tick += 1
            for arc in self.arcs[s]:
                c = so_far + arc_cost(arc)
                if h[arc[1]] < INF:
                    heapq.heappush(heap, (c + h[arc[1]], tick, arc[1], c, (*path, arc)))
                    tick += 1
        return out

    def oracle_errors(self, ref: Sequence[str], units: Callable[[int], Sequence[str]]) -> int:
        """Fewest edits (ins + del + sub) between ``ref`` (scoring units, e.g. characters) and
        any path of the lattice, a word spelling as ``units(word_id)`` (Kaldi's lattice-oracle,
        on the units CER counts)."""
        nref = len(ref)
        if self.num_states == 0:
            return nref
        ramp = np.arange(nref + 1, dtype=np.float64)
        refa = np.array(ref, dtype=object)
        d: list[np.ndarray | None] = [None] * self.num_states
        d[self.start] = ramp.copy()
        best = INF
        for s in self.topo_order():
            cur = d[s]
            if cur is None:
                continue
            if self.finals[s] is not None:
                best = min(best, float(cur[nref]))
            for arc in self.arcs[s]:
                v = cur
                for u in units(arc[0]):
                    tmp = np.empty_like(v)
                    tmp[0] = v[0] + 1.0  # u inserted
                    if nref:
                        tmp[1:] = np.minimum(v[1:] + 1.0, v[:-1] + (refa != u))
                    # deletions of reference units: new[j] = min(tmp[j], new[j-1] + 1)
                    v = np.minimum.accumulate(tmp - ramp) + ramp
                old = d[arc[1]]
                d[arc[1]] = v if old is None else np.minimum(old, v)
        return int(best) if best < INF else nref


def f32(values: Sequence[float]) -> list[float]:
    """Round to float32 (what a lattice file stores), so in-memory and on-disk scores agree."""
    return np.asarray(values, dtype=np.float32).astype(np.float64).tolist()


# ---------------------------------------------------------------- raw lattices

RawArc = tuple[
    int, int, float, float, int
]  # ilabel (transition id), olabel (word), graph, acoustic, next


class RawLattice:
    """A state-level lattice as the decoder gives it (states roughly by frame): per state its
    arcs (transition id, word, graph cost, acoustic cost, next state) and final weight.

    Held as Python lists (``arcs``, ``finals``) or, when read from a file with the compiled
    loops available (``lattice_jit``), as flat arrays (``arrays``); each form is made from
    the other when asked for."""

    def __init__(
        self,
        start: int,
        arcs: list[list[RawArc]] | None = None,
        finals: list[tuple[float, float] | None] | None = None,
        arrays: RawArrays | None = None,
    ) -> None:
        if (arcs is None or finals is None) and arrays is None:
            raise ValueError("RawLattice needs arcs and finals, or arrays")
        self.start = start
        self._arcs, self._finals, self._arrays = arcs, finals, arrays

    @property
    def arcs(self) -> list[list[RawArc]]:
        if self._arcs is None:
            assert self._arrays is not None
            r = self._arrays
            flat = list(
                zip(
                    r.il.tolist(),
                    r.ol.tolist(),
                    r.g.tolist(),
                    r.a.tolist(),
                    r.nx.tolist(),
                    strict=True,
                )
            )
            bounds = r.arc_start.tolist()
            self._arcs = [flat[bounds[s] : bounds[s + 1]] for s in range(len(bounds) - 1)]
        return self._arcs

    @property
    def finals(self) -> list[tuple[float, float] | None]:
        if self._finals is None:
            assert self._arrays is not None
            self._finals = [
                None if g == INF and a == INF else (g, a)
                for g, a in zip(
                    self._arrays.fin_g.tolist(), self._arrays.fin_a.tolist(), strict=True
                )
            ]
        return self._finals

    @property
    def arrays(self) -> RawArrays:
        if self._arrays is None:
            self._arrays = RawArrays.from_lists(self.arcs, self.finals)
        return self._arrays

    @property
    def num_states(self) -> int:
        return len(self._arcs) if self._arcs is not None else len(self.arrays.fin_g)

    @classmethod
    def from_kaldifst_file(cls, path: str) -> RawLattice:
        """Parse a ``kaldifst.Lattice`` written with ``.write(path)`` (OpenFst binary,
        arc type lattice4; exact float32 weights, which ``to_str`` would round)."""
        with open(path, "rb") as f:
            buf = f.read()
        magic, n = struct.unpack_from("<ii", buf, 0)
        if magic != 2125659606:
            raise ValueError(f"{path}: not an OpenFst binary FST")
        pos = 8 + n
        (n,) = struct.unpack_from("<i", buf, pos)
        arc_type = buf[pos + 4 : pos + 4 + n].decode()
        if arc_type != "lattice4":
            raise ValueError(f"{path}: arc type {arc_type}, expected lattice4")
        pos += 4 + n
        _v, _fl, _props, start, num_states, _num_arcs = struct.unpack_from("<iiQqqq", buf, pos)
        pos += struct.calcsize("<iiQqqq")
        if _jit is not None:
            count = (len(buf) - pos) // 4
            words = np.frombuffer(buf, dtype="<i4", count=count, offset=pos)
            floats = np.frombuffer(buf, dtype="<f4", count=count, offset=pos)
            parts = _jit.parse_states(words, floats, num_states, count // 5)
            return cls(start=max(start, 0), arrays=RawArrays(*parts))
        arcs: list[list[RawArc]] = []
        finals: list[tuple[float, float] | None] = []
        for _ in range(num_states):
            g, a, narcs = struct.unpack_from("<ffq", buf, pos)
            pos += 16
            finals.append(None if g == INF and a == INF else (g, a))
            end = pos + 20 * narcs
            arcs.append(list(struct.iter_unpack("<iiffi", buf[pos:end])))
            pos = end
        return cls(start=max(start, 0), arcs=arcs, finals=finals)

    @classmethod
    def from_kaldifst(cls, lat: object, scratch: str | None = None) -> RawLattice:
        """Read a ``kaldifst.Lattice`` through its binary form (written to ``scratch``, or to a
        temporary file in /dev/shm when there is one)."""
        if scratch is not None:
            lat.write(scratch)  # type: ignore[attr-defined]
            return cls.from_kaldifst_file(scratch)
        path = scratch_file()
        try:
            lat.write(path)  # type: ignore[attr-defined]
            return cls.from_kaldifst_file(path)
        finally:
            os.unlink(path)

    @property
    def num_arcs(self) -> int:
        if self._arcs is None:
            return len(self.arrays.il)
        return sum(len(a) for a in self._arcs)

    def topo_order(self) -> list[int]:
        return _topo([[a[4] for a in arcs] for arcs in self.arcs])


@dataclass
class RawArrays:
    """A raw lattice as flat arrays (see ``lattice_jit``): arcs grouped by source state,
    state ``s``'s from ``arc_start[s]`` to ``arc_start[s + 1]``; finals inf when not final."""

    arc_start: np.ndarray
    fin_g: np.ndarray
    fin_a: np.ndarray
    il: np.ndarray
    ol: np.ndarray
    g: np.ndarray
    a: np.ndarray
    nx: np.ndarray

    def canonical(self, start: int) -> tuple[RawArrays, int]:
        """The same lattice numbered in an order that depends only on its structure (states by
        (depth, key) of ``lattice_jit.structure_keys``, a topological order with every arc to
        a higher id; each state's arcs by (next state, labels, weights)), and its start state
        there. Determinization breaks
        exact ties between paths by state and arc order, so without this the same raw
        lattice under the decoder's address-dependent numbering could give (rarely) another
        alignment or lattice size in another process."""
        assert _jit is not None
        n = len(self.fin_g)
        if n == 0:
            return self, start
        order = np.asarray(_topo_arrays(self.arc_start, self.nx), dtype=np.int64)
        depth, key = _jit.structure_keys(
            start,
            order,
            self.arc_start,
            self.il,
            self.ol,
            self.g.view(np.uint64),
            self.a.view(np.uint64),
            self.nx,
        )
        # states the start does not reach are dropped (they never enter a subset, and their
        # place in the order would depend on the numbering); Kaldi's lattices have none
        reach = np.flatnonzero(depth >= 0)
        perm = reach[np.lexsort((reach, key[reach], depth[reach]))]  # new -> old
        m = len(perm)
        new_id = np.full(n, -1, dtype=np.int64)
        new_id[perm] = np.arange(m, dtype=np.int64)
        counts = np.diff(self.arc_start)
        src = new_id[np.repeat(np.arange(n, dtype=np.int64), counts)]
        nx = new_id[self.nx]
        arc_order = np.lexsort((self.a, self.g, self.ol, self.il, nx, src))
        arc_order = arc_order[src[arc_order] >= 0]
        arc_start = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(counts[perm], out=arc_start[1:])
        return (
            RawArrays(
                arc_start=arc_start,
                fin_g=self.fin_g[perm],
                fin_a=self.fin_a[perm],
                il=self.il[arc_order],
                ol=self.ol[arc_order],
                g=self.g[arc_order],
                a=self.a[arc_order],
                nx=nx[arc_order],
            ),
            int(new_id[start]),
        )

    @classmethod
    def from_lists(
        cls, arcs: list[list[RawArc]], finals: list[tuple[float, float] | None]
    ) -> RawArrays:
        flat = [arc for out in arcs for arc in out]
        cols = list(zip(*flat, strict=True)) if flat else [(), (), (), (), ()]
        fin = [(INF, INF) if f is None else f for f in finals]
        return cls(
            arc_start=np.concatenate([[0], np.cumsum([len(out) for out in arcs])]).astype(np.int64),
            fin_g=np.array([f[0] for f in fin], dtype=np.float64),
            fin_a=np.array([f[1] for f in fin], dtype=np.float64),
            il=np.array(cols[0], dtype=np.int64),
            ol=np.array(cols[1], dtype=np.int64),
            g=np.array(cols[2], dtype=np.float64),
            a=np.array(cols[3], dtype=np.float64),
            nx=np.array(cols[4], dtype=np.int64),
        )


def scratch_file() -> str:
    """A new empty temporary file for raw lattices, in memory (/dev/shm) where there is one."""
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    fd, path = tempfile.mkstemp(prefix="raw-lat-", suffix=".fst", dir=shm)
    os.close(fd)
    return path


def _topo(succ: list[list[int]]) -> list[int]:
    indeg = [0] * len(succ)
    for nx in succ:
        for t in nx:
            indeg[t] += 1
    stack = [s for s in range(len(succ)) if indeg[s] == 0]
    order = []
    while stack:
        s = stack.pop()
        order.append(s)
        for t in succ[s]:
            indeg[t] -= 1
            if indeg[t] == 0:
                stack.append(t)
    if len(order) != len(succ):
        raise ValueError("raw lattice has a cycle (the graph has an epsilon loop)")
    return order


def _topo_arrays(arc_start: np.ndarray, nx: np.ndarray) -> Sequence[int]:
    """A topological order of a raw lattice in arrays: the identity when every arc goes to a
    higher id (Kaldi's decoders), else Kahn's algorithm."""
    n = len(arc_start) - 1
    src = np.repeat(np.arange(n), np.diff(arc_start))
    if bool(np.all(nx > src)):
        return range(n)
    bounds, nxl = arc_start.tolist(), nx.tolist()
    return _topo([nxl[bounds[s] : bounds[s + 1]] for s in range(n)])


def _better(g1: float, a1: float, g2: float, a2: float) -> bool:
    """Kaldi's LatticeWeight order: lower total cost, then lower graph cost."""
    t1, t2 = g1 + a1, g2 + a2
    return t1 < t2 or (t1 == t2 and g1 < g2)


Elem = tuple[float, float, Ali]  # residual graph cost, residual acoustic cost, residual string


def determinize(
    raw: RawLattice, beam: float, acoustic_scale: float, jit: bool | None = None
) -> CompactLattice:
    """Word-level determinization with pruning (see the module docstring).

    ``raw`` has acoustic costs at the decoding scale; the result's are divided by
    ``acoustic_scale`` (unscaled), as Kaldi writes lattices. An empty lattice (no path)
    comes back with no states. ``jit``: run the compiled loops (``lattice_jit``; default:
    when numba is installed) or the Python ones (False); both give the same lattice.
    """
    if raw.num_states == 0:
        return CompactLattice(start=0, arcs=[], finals=[])
    use_jit = _jit is not None if jit is None else jit
    if use_jit and _jit is None:
        raise RuntimeError("determinize(jit=True) needs numba (pip install numba)")
    if _jit is not None:  # one numbering for one lattice, whatever the decoder's was
        arrays, start = raw.arrays.canonical(raw.start)
        raw = RawLattice(start, arrays=arrays)
    det = _JitDeterminizer(raw, beam) if use_jit else _Determinizer(raw, beam)
    if det.beta[raw.start] == INF:
        return CompactLattice(start=0, arcs=[], finals=[])
    return _finish(*det.run(), 1.0 / acoustic_scale)


def warm_up() -> None:
    """Compile (or load from numba's on-disk cache) the determinization loops now, so that
    the first utterance's timing does not include it. Without numba it does nothing."""
    if _jit is None:
        return
    body = struct.pack("<ffq", 0.0, 0.0, 1) + struct.pack("<iiffi", 1, 1, 0.5, 0.5, 1)
    body += struct.pack("<ffq", 0.0, 0.0, 0)
    words = np.frombuffer(body, dtype="<i4")
    floats = np.frombuffer(body, dtype="<f4")
    raw = RawLattice(start=0, arrays=RawArrays(*_jit.parse_states(words, floats, 2, 2)))
    determinize(raw, 4.0, 1.0, jit=True)


class _Determinizer:
    """The subset construction of ``determinize``.

    Implementation notes (it is the hot loop of lattice decoding): transition-id strings are
    tuples (the residual strings of a subset are short: they start at the last word arc);
    an epsilon closure expands raw states in topological order (a heap of ranks; the rank
    is the state id itself when, as with Kaldi's decoders, every arc goes to a higher id),
    so each is expanded once per closure.
    """

    def __init__(self, raw: RawLattice, beam: float) -> None:
        arcs, finals = raw.arcs, raw.finals
        n = len(arcs)
        self.raw, self.finals = raw, finals
        self.order: Sequence[int]
        self.rank: Sequence[int]
        self.order = self.rank = range(n)
        if not self._index(range(n - 1, -1, -1), forward_only=True):
            self.order = raw.topo_order()  # an arc to a lower id: the general (rarer) case
            rank = [0] * n
            for i, s in enumerate(self.order):
                rank[s] = i
            self.rank = rank
            self._index(reversed(self.order), forward_only=False)
        self.cutoff = self.beta[raw.start] + beam

    def _index(self, reverse_order: Iterable[int], forward_only: bool) -> bool:
        """One backward pass over the raw arcs: ``beta`` (best cost from a state to the end,
        graph + scaled acoustic) and, per state, its epsilon arcs and word arcs as
        (ilabel, [word,] g, a, next, g + a + beta[next]), arcs that reach no end dropped.
        With ``forward_only`` the states are taken in decreasing id, which is a reverse
        topological order when every arc goes to a higher id (Kaldi's decoders); False when
        one does not (then nothing is kept and the caller passes a topological order)."""
        arcs, finals = self.raw.arcs, self.finals
        n = len(arcs)
        beta = [INF] * n
        eps: list[list[tuple[int, float, float, int, float]]] = [[] for _ in range(n)]
        wrd: list[list[tuple[int, int, float, float, int, float]]] = [[] for _ in range(n)]
        keep = [False] * n
        for s in reverse_order:
            f = finals[s]
            b = f[0] + f[1] if f is not None else INF
            e, w = eps[s], wrd[s]
            for il, ol, g, a, nx in arcs[s]:
                if forward_only and nx <= s:
                    return False
                tail = g + a + beta[nx]
                if tail == INF:
                    continue
                if tail < b:
                    b = tail
                if ol == 0:
                    e.append((il, g, a, nx, tail))
                else:
                    w.append((il, ol, g, a, nx, tail))
            beta[s] = b
            keep[s] = f is not None or bool(w)
        self.beta, self.eps, self.wrd, self.keep_state = beta, eps, wrd, keep
        return True

    def closure(self, seeds: dict[int, Elem], alpha: float) -> dict[int, Elem]:
        """Epsilon (word 0) closure keeping per raw state the best (weight, string); returns
        the states a subset keeps (word arcs out or final)."""
        order, rank, eps, keep = self.order, self.rank, self.eps, self.keep_state
        cur = dict(seeds)
        lim = self.cutoff - alpha
        heap = [rank[s] for s in cur]  # each state enters once, when first reached
        heapq.heapify(heap)
        while heap:
            s = order[heapq.heappop(heap)]
            g0, a0, t0 = cur[s]
            tot0 = g0 + a0
            for il, g, a, nx, tail in eps[s]:
                if tot0 + tail > lim:
                    continue
                ng, na = g0 + g, a0 + a
                old = cur.get(nx)
                if old is None:
                    cur[nx] = (ng, na, t0 + (il,) if il else t0)
                    heapq.heappush(heap, rank[nx])
                else:
                    nt, ot = ng + na, old[0] + old[1]
                    if nt < ot or (nt == ot and ng < old[0]):
                        cur[nx] = (ng, na, t0 + (il,) if il else t0)
        return {s: v for s, v in cur.items() if keep[s]}

    @staticmethod
    def key(elems: dict[int, Elem]) -> tuple:
        return tuple(
            sorted((s, round(g * 1024.0), round(a * 1024.0), t) for s, (g, a, t) in elems.items())
        )

    def expand(self, subset: dict[int, Elem], lim: float) -> tuple[Final | None, dict]:
        """A subset's final weight and, per word, the raw states its word arcs reach."""
        finals, wrd = self.finals, self.wrd
        fin: Final | None = None
        by_word: dict[int, dict[int, Elem]] = {}
        for s, (g0, a0, t0) in sorted(subset.items()):
            f = finals[s]
            if (
                f is not None
                and g0 + f[0] + a0 + f[1] <= lim + 1e-3
                and (fin is None or _better(g0 + f[0], a0 + f[1], fin[0], fin[1]))
            ):
                fin = (g0 + f[0], a0 + f[1], t0)
            tot0 = g0 + a0
            for il, ol, g, a, nx, tail in wrd[s]:
                if tot0 + tail > lim:
                    continue
                ng, na = g0 + g, a0 + a
                grp = by_word.setdefault(ol, {})
                old = grp.get(nx)
                if old is None or _better(ng, na, old[0], old[1]):
                    grp[nx] = (ng, na, t0 + (il,) if il else t0)
        return fin, by_word

    def run(self) -> tuple[list[list[Arc]], list[Final | None]]:
        start = self.closure({self.raw.start: (0.0, 0.0, ())}, 0.0)
        subsets: list[dict[int, Elem]] = [start]
        alphas = [0.0]
        ids = {self.key(start): 0}
        out_arcs: list[list[Arc]] = [[]]
        out_finals: list[Final | None] = [None]
        heap = [(0.0, 0)]
        done = set()
        while heap:
            alpha, d = heapq.heappop(heap)
            if d in done:
                continue
            done.add(d)
            out_finals[d], by_word = self.expand(subsets[d], self.cutoff - alpha)
            for word in sorted(by_word):
                elems = self.closure(by_word[word], alpha)
                if not elems:
                    continue
                bg, ba = INF, INF
                for g, a, _t in elems.values():
                    if bg == INF or _better(g, a, bg, ba):
                        bg, ba = g, a
                prefix = commonprefix([t for _g, _a, t in elems.values()])
                k = len(prefix)
                norm = {s: (g - bg, a - ba, t[k:]) for s, (g, a, t) in elems.items()}
                kk = self.key(norm)
                nd = ids.get(kk)
                na_ = alpha + bg + ba
                if nd is None:
                    nd = len(subsets)
                    ids[kk] = nd
                    subsets.append(norm)
                    alphas.append(na_)
                    out_arcs.append([])
                    out_finals.append(None)
                    heapq.heappush(heap, (na_, nd))
                elif na_ < alphas[nd] and nd not in done:
                    alphas[nd] = na_
                    heapq.heappush(heap, (na_, nd))
                out_arcs[d].append((word, nd, bg, ba, prefix))
        return out_arcs, out_finals


class _JitDeterminizer(_Determinizer):
    """``_Determinizer`` with the backward pass and the epsilon closures compiled
    (``lattice_jit``) on the raw lattice's arrays; subsets, strings and output as before."""

    def __init__(self, raw: RawLattice, beam: float) -> None:  # noqa: D107
        assert _jit is not None
        r = raw.arrays
        n = len(r.fin_g)
        self.raw = raw
        order = np.asarray(_topo_arrays(r.arc_start, r.nx), dtype=np.int64)  # identity if
        rank = np.empty(n, dtype=np.int64)  # every arc goes to a higher id (the canonical order)
        rank[order] = np.arange(n, dtype=np.int64)
        self._order, self._rank = order, rank
        beta, tail, keep = _jit.index(order, r.arc_start, r.ol, r.g, r.a, r.nx, r.fin_g, r.fin_a)
        self.beta, self._keep = beta, keep
        self.cutoff = float(beta[raw.start]) + beam
        src = np.repeat(np.arange(n, dtype=np.int64), np.diff(r.arc_start))
        live = tail < INF
        eps = live & (r.ol == 0)
        eps_start = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(src[eps], minlength=n), out=eps_start[1:])
        self._eps = (eps_start, r.il[eps], r.g[eps], r.a[eps], r.nx[eps], tail[eps])
        wrd: list = [()] * n
        k = np.flatnonzero(live & (r.ol != 0))
        for s, arc in zip(
            src[k].tolist(),
            zip(
                r.il[k].tolist(),
                r.ol[k].tolist(),
                r.g[k].tolist(),
                r.a[k].tolist(),
                r.nx[k].tolist(),
                tail[k].tolist(),
                strict=True,
            ),
            strict=True,
        ):
            if wrd[s] == ():
                wrd[s] = []
            wrd[s].append(arc)
        self.wrd = wrd
        finals: list[tuple[float, float] | None] = [None] * n
        fk = np.flatnonzero((r.fin_g != INF) | (r.fin_a != INF))
        for s, g, a in zip(fk.tolist(), r.fin_g[fk].tolist(), r.fin_a[fk].tolist(), strict=True):
            finals[s] = (g, a)
        self.finals = finals
        self._work = _jit.work_arrays(n)

    def closure(self, seeds: dict[int, Elem], alpha: float) -> dict[int, Elem]:
        assert _jit is not None
        items = list(seeds.items())
        states = np.fromiter((s for s, _ in items), dtype=np.int64, count=len(items))
        seed_g = np.fromiter((v[0] for _, v in items), dtype=np.float64, count=len(items))
        seed_a = np.fromiter((v[1] for _, v in items), dtype=np.float64, count=len(items))
        reached, g, a, root, bounds, labels = _jit.closure(
            states,
            seed_g,
            seed_a,
            self.cutoff - alpha,
            self._order,
            self._rank,
            self._eps,
            self._keep,
            self._work,
        )
        seed_t = [v[2] for _, v in items]
        lab, b = labels.tolist(), bounds.tolist()
        return {
            s: (gg, aa, seed_t[r] + tuple(lab[b[j] : b[j + 1]]) if b[j + 1] > b[j] else seed_t[r])
            for j, (s, gg, aa, r) in enumerate(
                zip(reached.tolist(), g.tolist(), a.tolist(), root.tolist(), strict=True)
            )
        }


def _finish(arcs: list[list[Arc]], finals: list[Final | None], ac_unscale: float) -> CompactLattice:
    """Connect (drop states that reach no final state), renumber in topological order, unscale
    acoustic costs and round weights to float32."""
    n = len(arcs)
    order = _topo([[a[1] for a in out] for out in arcs])
    coacc = [False] * n
    for s in reversed(order):
        coacc[s] = finals[s] is not None or any(coacc[a[1]] for a in arcs[s])
    keep = [s for s in order if coacc[s]]
    if not keep or not coacc[0]:
        return CompactLattice(start=0, arcs=[], finals=[])
    new = {s: i for i, s in enumerate(keep)}
    out_arcs: list[list[Arc]] = []
    out_finals: list[Final | None] = []
    for s in keep:
        row = [a for a in arcs[s] if coacc[a[1]]]
        w = f32([x for a in row for x in (a[2], a[3] * ac_unscale)])
        out_arcs.append(
            [(a[0], new[a[1]], w[2 * i], w[2 * i + 1], a[4]) for i, a in enumerate(row)]
        )
        f = finals[s]
        if f is None:
            out_finals.append(None)
        else:
            g, a = f32([f[0], f[1] * ac_unscale])
            out_finals.append((g, a, f[2]))
    return CompactLattice(start=new[0], arcs=out_arcs, finals=out_finals)


def lattices_equal(a: CompactLattice, b: CompactLattice, tol: float = 1e-3) -> str:
    """'' if two word lattices have the same start, states, arcs (word, next state,
    transition ids) and final states, with costs equal to ``tol``; else the first difference."""
    if (a.start, a.num_states) != (b.start, b.num_states):
        return f"start/states differ: {a.start}/{a.num_states} vs {b.start}/{b.num_states}"

    def close(x: Sequence[float], y: Sequence[float]) -> bool:
        return all(abs(u - v) <= tol * max(1.0, abs(u), abs(v)) for u, v in zip(x, y, strict=True))

    for s in range(a.num_states):
        arcs_a = sorted(a.arcs[s], key=lambda t: (t[0], t[1], t[4]))
        arcs_b = sorted(b.arcs[s], key=lambda t: (t[0], t[1], t[4]))
        if [(w, n, t) for w, n, _g, _a, t in arcs_a] != [(w, n, t) for w, n, _g, _a, t in arcs_b]:
            return f"state {s}: arcs differ"
        if not all(close(x[2:4], y[2:4]) for x, y in zip(arcs_a, arcs_b, strict=True)):
            return f"state {s}: arc costs differ beyond {tol:g}"
        fa, fb = a.finals[s], b.finals[s]
        if (fa is None) != (fb is None):
            return f"state {s}: final in one lattice only"
        if fa is not None and fb is not None and (fa[2] != fb[2] or not close(fa[:2], fb[:2])):
            return f"state {s}: final weights differ"
    return ""
