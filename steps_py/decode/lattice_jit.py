"""The per-state loops of lattice determinization, compiled (numba).

``steps_py.decode.lattice.determinize`` is a subset construction over the raw lattice of
Kaldi's LatticeFasterDecoder. Its cost is one pass per raw state and arc: the backward pass
(``index``: best cost to the end, arcs split into epsilon and word arcs) and the epsilon
closures (``closure``). A raw lattice of a 4-second utterance has about 4,000 states and
6,000 arcs within the lattice beam (the decoder has pruned it: every state is within the
beam of the best path), against about 70 word arcs, so in pure Python these two loops were
75-85 % of determinization and determinization a quarter to a third of decoding CPU.

kaldi-hmm-gmm, kaldifst and kaldi-decoder export no lattice determinization (issue 20), so
the algorithm stays ours; only these loops are compiled, with numba (a maintained LLVM JIT
on PyPI, cached on disk after the first call), on flat arrays. The subsets, their strings
of transition ids and the output lattice stay in Python (``lattice.py``), where they are few.
The compiled loops do exactly what the Python ones do (same order of operations in float64,
same tie-breaking), so both give identical lattices; ``tests/test_decode_lattice_jit.py``
checks that on random and real lattices. Without numba ``lattice.py`` runs its Python loops.

Arrays (``n`` raw states, arcs grouped by source state as in the OpenFst file):
``arc_start[n + 1]``, ``il``, ``ol``, ``nx`` (int64) and ``g``, ``a`` (float64) per arc;
``fin_g``, ``fin_a`` per state (inf when not final).
"""

from __future__ import annotations

import numpy as np
from numba import njit

INF = np.inf


@njit(cache=True)
def parse_states(words: np.ndarray, floats: np.ndarray, num_states: int, max_arcs: int) -> tuple:
    """The states and arcs of an OpenFst binary lattice4 FST body (after its header) seen as
    int32 ``words`` and float32 ``floats`` (the same bytes): per state a (graph, acoustic)
    final weight, an int64 arc count, then per arc (ilabel, olabel, graph, acoustic, next)."""
    arc_start = np.empty(num_states + 1, np.int64)
    fin_g = np.empty(num_states, np.float64)
    fin_a = np.empty(num_states, np.float64)
    il = np.empty(max_arcs, np.int64)
    ol = np.empty(max_arcs, np.int64)
    g = np.empty(max_arcs, np.float64)
    a = np.empty(max_arcs, np.float64)
    nx = np.empty(max_arcs, np.int64)
    p = 0
    k = 0
    for s in range(num_states):
        fin_g[s] = floats[p]
        fin_a[s] = floats[p + 1]
        narcs = np.int64(words[p + 2]) + (np.int64(words[p + 3]) << 32)
        p += 4
        arc_start[s] = k
        for _ in range(narcs):
            il[k] = words[p]
            ol[k] = words[p + 1]
            g[k] = floats[p + 2]
            a[k] = floats[p + 3]
            nx[k] = words[p + 4]
            p += 5
            k += 1
    arc_start[num_states] = k
    return arc_start, fin_g, fin_a, il[:k], ol[:k], g[:k], a[:k], nx[:k]


@njit(cache=True)
def index(
    order: np.ndarray,
    arc_start: np.ndarray,
    ol: np.ndarray,
    g: np.ndarray,
    a: np.ndarray,
    nx: np.ndarray,
    fin_g: np.ndarray,
    fin_a: np.ndarray,
) -> tuple:
    """The backward pass over ``order`` (a topological order) reversed: ``beta`` (best cost
    to the end), per arc its ``tail`` (cost through it to the end; inf when it reaches no
    end) and per state ``keep`` (final, or a word arc that reaches an end)."""
    n = arc_start.shape[0] - 1
    beta = np.full(n, INF)
    tail = np.full(g.shape[0], INF)
    keep = np.zeros(n, np.bool_)
    for i in range(n - 1, -1, -1):
        s = order[i]
        final = fin_g[s] != INF or fin_a[s] != INF
        b = fin_g[s] + fin_a[s] if final else INF
        word = False
        for k in range(arc_start[s], arc_start[s + 1]):
            t = g[k] + a[k] + beta[nx[k]]
            if t == INF:
                continue
            tail[k] = t
            if t < b:
                b = t
            if ol[k] != 0:
                word = True
        beta[s] = b
        keep[s] = final or word
    return beta, tail, keep


@njit(cache=True)
def _heap_push(heap: np.ndarray, size: int, value: int) -> int:
    i = size
    heap[i] = value
    while i > 0:
        parent = (i - 1) >> 1
        if heap[parent] <= heap[i]:
            break
        heap[parent], heap[i] = heap[i], heap[parent]
        i = parent
    return size + 1


@njit(cache=True)
def _heap_pop(heap: np.ndarray, size: int) -> int:
    top = heap[0]
    size -= 1
    heap[0] = heap[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        c = left
        if left + 1 < size and heap[left + 1] < heap[left]:
            c = left + 1
        if heap[i] <= heap[c]:
            break
        heap[i], heap[c] = heap[c], heap[i]
        i = c
    return top


@njit(cache=True)
def _seed(seeds: np.ndarray, seed_g: np.ndarray, seed_a: np.ndarray, rank: np.ndarray, work: tuple):
    """Start a closure: a new ``mark``, the seeds reached at their costs (each its own root)
    and on the heap. Returns (mark, heap size, the states reached so far)."""
    stamp, cur_g, cur_a, back, back_il, root, heap, counter = work
    counter[0] += 1
    mark = counter[0]
    size = 0
    touched = []
    for i in range(seeds.shape[0]):
        s = seeds[i]
        if stamp[s] == mark:
            continue
        stamp[s] = mark
        cur_g[s] = seed_g[i]
        cur_a[s] = seed_a[i]
        back[s] = -1
        back_il[s] = 0
        root[s] = i
        touched.append(s)
        size = _heap_push(heap, size, rank[s])
    return mark, size, touched


@njit(cache=True)
def _relax(
    mark: int,
    size: int,
    touched,
    lim: float,
    order: np.ndarray,
    rank: np.ndarray,
    eps: tuple,
    work: tuple,
) -> None:
    """Pop reached states in topological order and follow their epsilon arcs within ``lim``,
    keeping per state the best (graph + acoustic, then graph) path; ties keep the first."""
    eps_start, eps_il, eps_g, eps_a, eps_nx, eps_tail = eps
    stamp, cur_g, cur_a, back, back_il, root, heap, counter = work
    while size > 0:
        s = order[_heap_pop(heap, size)]
        size -= 1
        g0 = cur_g[s]
        a0 = cur_a[s]
        tot0 = g0 + a0
        for k in range(eps_start[s], eps_start[s + 1]):
            if tot0 + eps_tail[k] > lim:
                continue
            t = eps_nx[k]
            ng = g0 + eps_g[k]
            na = a0 + eps_a[k]
            if stamp[t] != mark:
                stamp[t] = mark
                touched.append(t)
                size = _heap_push(heap, size, rank[t])
            else:
                nt = ng + na
                ot = cur_g[t] + cur_a[t]
                if not (nt < ot or (nt == ot and ng < cur_g[t])):
                    continue
            cur_g[t] = ng
            cur_a[t] = na
            back[t] = s
            back_il[t] = eps_il[k]


@njit(cache=True)
def _collect(touched, keep: np.ndarray, work: tuple) -> tuple:
    """The kept states among those reached, their costs, roots and label strings (each
    read back along its best predecessors to its seed)."""
    stamp, cur_g, cur_a, back, back_il, root, heap, counter = work
    nkept = 0
    for s in touched:
        if keep[s]:
            nkept += 1
    reached = np.empty(nkept, np.int64)
    out_g = np.empty(nkept, np.float64)
    out_a = np.empty(nkept, np.float64)
    out_root = np.empty(nkept, np.int64)
    label_start = np.zeros(nkept + 1, np.int64)
    labels = []
    j = 0
    for s in touched:
        if not keep[s]:
            continue
        reached[j] = s
        out_g[j] = cur_g[s]
        out_a[j] = cur_a[s]
        chain = []
        u = s
        while back[u] >= 0:
            if back_il[u] != 0:
                chain.append(back_il[u])
            u = back[u]
        out_root[j] = root[u]
        for q in range(len(chain) - 1, -1, -1):
            labels.append(chain[q])
        label_start[j + 1] = len(labels)
        j += 1
    lab = np.empty(len(labels), np.int64)
    for q in range(len(labels)):
        lab[q] = labels[q]
    return reached, out_g, out_a, out_root, label_start, lab


@njit(cache=True)
def closure(
    seeds: np.ndarray,
    seed_g: np.ndarray,
    seed_a: np.ndarray,
    lim: float,
    order: np.ndarray,
    rank: np.ndarray,
    eps: tuple,
    keep: np.ndarray,
    work: tuple,
) -> tuple:
    """The epsilon closure of ``_Determinizer.closure``: the best (graph, acoustic) per raw
    state reached through epsilon arcs within ``lim``, the states popped in topological
    order. Returns the kept states (final or with word arcs), their costs, the seed each
    one's best path starts from and its transition ids after that seed (``labels`` from
    ``label_start[i]`` to ``label_start[i + 1]``).

    ``eps`` is the epsilon arcs as CSR arrays (start per state, ilabel, graph, acoustic, next,
    tail). ``work`` holds arrays the size of the raw lattice reused across calls: ``stamp``
    marks the states this call reached (``stamp[s] == mark``), ``cur_g``/``cur_a`` their
    costs, ``back``/``back_il`` their best predecessor and its label (-1: a seed, ``root`` its
    index), ``heap`` the ranks to visit."""
    mark, size, touched = _seed(seeds, seed_g, seed_a, rank, work)
    _relax(mark, size, touched, lim, order, rank, eps, work)
    return _collect(touched, keep, work)


def work_arrays(n: int) -> tuple:
    """The reusable arrays of ``closure`` for a raw lattice of ``n`` states."""
    return (
        np.zeros(n, np.int64),
        np.empty(n, np.float64),
        np.empty(n, np.float64),
        np.empty(n, np.int64),
        np.empty(n, np.int64),
        np.empty(n, np.int64),
        np.empty(n + 1, np.int64),
        np.zeros(1, np.int64),
    )


@njit(cache=True)
def _mix(x: np.uint64) -> np.uint64:
    """splitmix64's finalizer: a well-spread 64-bit hash of a 64-bit value."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True)
def structure_keys(
    start: int,
    order: np.ndarray,
    arc_start: np.ndarray,
    il: np.ndarray,
    ol: np.ndarray,
    g_bits: np.ndarray,
    a_bits: np.ndarray,
    nx: np.ndarray,
) -> tuple:
    """Per state, keys that do not depend on how the states are numbered: ``depth`` (the most
    arcs on a path from the start; every arc goes to a greater depth) and ``key``, a hash of
    the state's incoming arcs (labels, weights' bits and their source's key), summed so that
    arc order does not matter. Kaldi's LatticeFasterDecoder numbers the raw lattice's states
    in an order that depends on memory addresses (``TopSortTokens`` walks an
    ``unordered_map`` keyed by token pointers), so the same utterance gives the same lattice
    under another numbering in another process; sorting states by (depth, key) undoes that."""
    n = arc_start.shape[0] - 1
    depth = np.full(n, -1, np.int64)
    key = np.zeros(n, np.uint64)
    depth[start] = 0
    key[start] = np.uint64(0x9E3779B97F4A7C15)
    for i in range(n):
        s = order[i]
        if depth[s] < 0:
            continue
        for k in range(arc_start[s], arc_start[s + 1]):
            t = nx[k]
            if depth[s] + 1 > depth[t]:
                depth[t] = depth[s] + 1
            h = _mix(key[s] ^ np.uint64(il[k]))
            h = _mix(h ^ np.uint64(ol[k]))
            h = _mix(h ^ g_bits[k])
            h = _mix(h ^ a_bits[k])
            key[t] += h
    return depth, key
