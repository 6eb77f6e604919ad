"""The array steps of the triphone graph build (``graph.make_cd_hclg``): context composition
and relabelling, in numpy on the arrays of ``steps_py.decode.fst_arrays``.

``compose_context`` is Kaldi's ComposeContext (``src/fstext/context-fst.cc``: the
InverseContextFst composed on the left of LG by ``ComposeDeterministicOnDemandInverse``,
after ``AddSubsequentialLoop``) for N=3, P=1; ``relabel`` is what ``graph.relabel_input``
and the weight composition of ``make_cd_hclg(arrays=False)`` do: OpenFst's ArcSort on input
labels (kaldifst's own, as OpenFst sorts with std::sort, which is not stable: only the
same code gives the same order of arcs with equal labels), Compose with a one-state
relabelling or weight transducer on the left, then Connect.

Both give exactly what kaldifst gives (the same states in the same order, the same arcs
in the same order, the same float32 weights), including the OpenFst property bits that
the later kaldifst steps (composition with H, determinization, minimization) see, so the
graph is the same to the byte (``tests/test_cd_graph.py`` on the toy lexicon,
``benchmarks/bench_tri_stage.py`` on the recipe's graph). Both are breadth-first
searches, done here one level at a time with whole-array operations: both kaldifst
calls number the states they create in breadth-first order of discovery (ComposeContext
with a queue, Compose as its lazy states are expanded in turn), and the states of a level
are numbered in the order of the arcs that reach them first.

Why hand-written: kaldifst's ``compose_context`` spends most of its 11 s on the recipe's
LG hashing the 3.2 million phone windows it labels and handing them to Python as lists,
which only get merged to the 310 HMMs that differ; and kaldifst has no relabelling (no
fstrelabel, no mutable arc access), so relabelling meant composing with a transducer of
one arc per label. Here the windows are integer codes, merged by ``h_transducer``'s
``group_windows``, and the relabelling is an array lookup.

OpenFst property bits (``fst/properties.h``) used: a composition's result keeps
kAccessible and what ComposeProperties keeps from both inputs, then Connect adds
kCoAccessible; the relabelling transducers of ``relabel_input`` and ``weight_fst`` carry
no acyclicity or determinism bits, so only kAcceptor and the epsilon bits pass through.
"""

from __future__ import annotations

import kaldifst
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order

from steps_py.decode.fst_arrays import FstArrays, to_arrays

K_EXPANDED_MUTABLE = 0x3
K_ACCEPTOR = 0x10000
K_NO_EPSILONS = 0x800000
K_NO_IEPSILONS = 0x2000000
K_NO_OEPSILONS = 0x8000000
K_ACCESSIBLE = 0x10000000000
K_COACCESSIBLE = 0x40000000000
EPSILON, PHONE, DISAMBIG, SUBSEQ = 0, 1, 2, 3  # kinds of an input label of LG
NO_LABEL = np.iinfo(np.int64).min  # the window key of an input epsilon (label 0)
ZERO = np.float32(0.0)  # the tropical One: OpenFst's Times(One, w) = 0 + w (-0 becomes +0)


def content_props(arcs: np.ndarray) -> int:
    """The bits an FST built arc by arc (VectorFst::AddArc) keeps that compositions use."""
    il, ol = arcs[:, 0], arcs[:, 1]
    props = K_EXPANDED_MUTABLE
    if not (il == 0).any():
        props |= K_NO_IEPSILONS
    if not (ol == 0).any():
        props |= K_NO_OEPSILONS
    if not ((il == 0) & (ol == 0)).any():
        props |= K_NO_EPSILONS
    if (il == ol).all():
        props |= K_ACCEPTOR
    return props


def composed_props(left: int, right: int) -> int:
    """OpenFst's ComposeProperties(left, right) for inputs without acyclicity or determinism
    bits, then Connect (kAccessible | kCoAccessible)."""
    both = left & right
    if both & K_ACCEPTOR:
        keep = K_ACCEPTOR | (both & (K_NO_EPSILONS | K_NO_IEPSILONS | K_NO_OEPSILONS))
    else:
        keep = both & K_NO_IEPSILONS
    return K_EXPANDED_MUTABLE | K_ACCESSIBLE | K_COACCESSIBLE | keep


def arc_ranges(starts: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the arcs of `states`, in order, as indices; for each, its state's position in states)."""
    counts = starts[states + 1] - starts[states]
    owner = np.repeat(np.arange(len(states)), counts)
    first = np.cumsum(counts) - counts
    return np.arange(len(owner)) - first[owner] + starts[states][owner], owner


def _kinds(lg: FstArrays, disambig: list[int]) -> tuple[np.ndarray, int]:
    """(kind of every input label 0..$, the subsequential symbol $), as ComposeContext
    finds them: phones are LG's input labels that are no disambiguation symbols."""
    ils = np.unique(lg.arcs[:, 0])
    ils = ils[ils > 0]
    syms = sorted(set(disambig))
    subseq = max(int(ils.max(initial=0)) + 1, (syms[-1] + 1) if syms else 1)
    kind = np.full(subseq + 1, EPSILON, np.int8)
    kind[ils] = PHONE
    kind[syms] = DISAMBIG
    kind[subseq] = SUBSEQ
    return kind, subseq


def _with_subsequential_loop(lg: FstArrays, subseq: int) -> FstArrays:
    """Kaldi's AddSubsequentialLoop: a new final state with a $ loop, and from every final
    state a last arc $:0 to it weighted by the final weight (which stays)."""
    n = lg.num_states
    is_final = lg.finals != np.inf
    counts = np.append(np.diff(lg.starts) + is_final, 1)
    starts = np.concatenate([[0], np.cumsum(counts)])
    arcs = np.empty((starts[-1], 4), np.int32)
    src = lg.arc_states()
    arcs[starts[src] + np.arange(len(src)) - lg.starts[src]] = lg.arcs
    finals = np.append(lg.finals, ZERO)
    ends = np.append(np.nonzero(is_final)[0], n)  # each one's last arc: $:0 to state n
    last = starts[ends + 1] - 1
    arcs[last, 0], arcs[last, 1], arcs[last, 3] = subseq, 0, n
    arcs[last, 2] = finals[ends].view(np.int32)
    return FstArrays(lg.start, starts, arcs, finals, 0)


class _StateTable:
    """Composed state ids by key, numbered in order of discovery (sorted keys + ids)."""

    def __init__(self, key: int) -> None:
        self.keys = np.array([key], np.int64)
        self.ids = np.array([0], np.int64)

    def add(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(id of every key, the new keys in id order): unseen keys get the next ids in the
        order of their first occurrence in `keys`."""
        u, first, inv = np.unique(keys, return_index=True, return_inverse=True)
        pos = np.searchsorted(self.keys, u)
        found = pos < len(self.keys)
        found[found] = self.keys[pos[found]] == u[found]
        uid = np.empty(len(u), np.int64)
        uid[found] = self.ids[pos[found]]
        new = np.nonzero(~found)[0]
        by_first = new[np.argsort(first[new], kind="stable")]
        uid[by_first] = len(self.ids) + np.arange(len(new))
        self.keys = np.insert(self.keys, pos[new], u[new])
        self.ids = np.insert(self.ids, pos[new], uid[new])
        return uid[inv.reshape(-1)], u[by_first]


def _expand(
    right: FstArrays, ctx: np.ndarray, lg: np.ndarray, kind: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The arcs out of composed states (context a * k + b, state of LG): (their source's
    position, LG arc index, next context, window key) of those InverseContextFst allows."""
    idx, owner = arc_ranges(right.starts, lg)
    il = right.arcs[idx, 0].astype(np.int64)
    kd = kind[il]
    a, b = ctx[owner] // k, ctx[owner] % k
    shift = (kd == PHONE) | (kd == SUBSEQ)
    ok = ~shift | (b != k - 1)  # nothing follows $ (and $ never becomes the central phone)
    idx, owner, il, kd, a, b, shift = (x[ok] for x in (idx, owner, il, kd, a, b, shift))
    nxt = np.where(shift, b * k + il, a * k + b)
    c = np.where(kd == SUBSEQ, 0, il)
    key = np.where(b == 0, -1, (a * k + b) * k + c)  # -1: #-1 (no central phone yet)
    key = np.where(kd == DISAMBIG, -il - 2, key)  # [-d]
    key[kd == EPSILON] = NO_LABEL
    return owner, idx, nxt, key


def compose_context(lg: FstArrays, disambig: list[int]) -> tuple[FstArrays, np.ndarray]:
    """Kaldi's ComposeContext(disambig, 3, 1, LG): (CLG, windows[L, 4]) where row j of
    windows is ilabel j's ilabel info as (length, phones...), e.g. (3, a, b, c) for a-b+c.

    Every state of CLG reaches a final state if every state of LG does: a state pairs a
    state of LG with a context whose last phone is not $ (only the states after $ end in
    it, and they are final), so LG's path to a final state, then $, can be followed."""
    kind, subseq = _kinds(lg, disambig)
    right = _with_subsequential_loop(lg, subseq)
    k, n1 = subseq + 1, right.num_states
    table = _StateTable(lg.start)  # key: context * n1 + LG state; context (0, 0) first
    ctx, state = np.zeros(1, np.int64), np.array([lg.start], np.int64)
    levels: list[tuple[np.ndarray, ...]] = []
    while len(state):
        owner, idx, nxt, key = _expand(right, ctx, state, kind, k)
        ids, new = table.add(nxt * n1 + right.arcs[idx, 3])
        arcs = right.arcs[idx]
        times = key != NO_LABEL  # Times(One, w); an input epsilon's weight is copied as it is
        arcs[times, 2] = (ZERO + arcs[times, 2].view(np.float32)).view(np.int32)
        arcs[:, 3] = ids
        levels.append((ctx, state, np.bincount(owner, minlength=len(state)), arcs, key))
        ctx, state = new // n1, new % n1
    ctx, state, counts, arcs, keys = (np.concatenate(x) for x in zip(*levels, strict=True))
    rf = right.finals[state]
    finals = np.where((ctx % k == subseq) & (rf != np.inf), ZERO + rf, np.float32(np.inf))
    arcs[:, 0], label_keys = _labels(keys, bool(disambig))
    starts = np.concatenate([[0], np.cumsum(counts)])
    clg = FstArrays(0, starts, arcs, finals.astype(np.float32), content_props(arcs))
    return clg, _windows(label_keys, k)


def _labels(keys: np.ndarray, pseudo: bool) -> tuple[np.ndarray, np.ndarray]:
    """(ilabel of every arc, key of every ilabel): as InverseContextFst::FindLabel numbers
    windows, in order of first use after [] (0) and, with disambiguation symbols
    (`pseudo`), [0] (1, #-1); without, #-1 arcs get epsilon."""
    real = (keys != NO_LABEL) & (keys != -1)
    u, first, inv = np.unique(keys[real], return_index=True, return_inverse=True)
    rank = np.empty(len(u), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(u))
    fixed = np.array([NO_LABEL, -1] if pseudo else [NO_LABEL], np.int64)
    labels = np.zeros(len(keys), np.int32)
    labels[keys == -1] = 1 if pseudo else 0
    labels[real] = len(fixed) + rank[inv.reshape(-1)]
    label_keys = np.concatenate([fixed, np.empty(len(u), np.int64)])
    label_keys[len(fixed) + rank] = u
    return labels, label_keys


def _windows(keys: np.ndarray, k: int) -> np.ndarray:
    """Kaldi's ilabel info from the window keys: rows (length, phones...)."""
    windows = np.zeros((len(keys), 4), np.int64)
    windows[keys == -1, 0] = 1  # [0], #-1
    dis = np.nonzero((keys <= -2) & (keys != NO_LABEL))[0]
    windows[dis, 0], windows[dis, 1] = 1, keys[dis] + 2  # [-d]
    tri = np.nonzero(keys >= 0)[0]
    code = keys[tri]
    windows[tri, 0], windows[tri, 3] = 3, code % k
    windows[tri, 1], windows[tri, 2] = code // k // k, code // k % k
    return windows


def relabel(
    fst: kaldifst.StdVectorFst,
    mapping: dict[int, int] | np.ndarray,
    cost: np.ndarray | None = None,
    starts: np.ndarray | None = None,
    trim: bool = False,
) -> FstArrays:
    """``graph.relabel_input(fst, mapping)`` (mapping a dict, or an array: label l -> mapping[l]
    where they differ), or with `cost` (float32, label 0 unused) ``compose(weight_fst, fst)``
    with weight_fst's parsed weights, as arrays. Sorts `fst` on input labels, as they do.
    `starts`: the arc offsets of fst's states if known (``fst_arrays.to_arrays``); `trim`:
    every state of fst is known to reach a final state (then Connect has nothing to do
    unless arcs are dropped)."""
    if cost is not None:
        new = np.arange(len(cost), dtype=np.int32)
        x_props = K_ACCEPTOR | K_NO_EPSILONS | K_NO_IEPSILONS | K_NO_OEPSILONS
    else:
        new = _label_map(mapping)
        if new is None:  # relabel_input returns the FST as it is
            return to_arrays(fst, starts)
        cost = np.zeros(len(new), np.float32)
        x_props = K_NO_OEPSILONS | K_NO_EPSILONS | (K_NO_IEPSILONS if new[1:].all() else 0)
    kaldifst.arcsort(fst, sort_type="ilabel")
    f = to_arrays(fst, starts)
    keep = f.arcs[:, 0] < len(new)  # labels the transducer lacks have no match
    order, new_id = _bfs_order(f, keep)
    idx, owner = arc_ranges(f.starts, order)
    idx, owner = idx[keep[idx]], owner[keep[idx]]
    il = f.arcs[idx, 0]
    arcs = f.arcs[idx]
    arcs[:, 0], arcs[:, 3] = new[il], new_id[arcs[:, 3]]
    arcs[:, 2] = (np.where(il == 0, ZERO, cost[il]) + f.weights[idx]).view(np.int32)
    starts = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=len(order)))])
    out = FstArrays(0, starts, arcs, ZERO + f.finals[order], composed_props(x_props, f.props))
    trim = trim or bool(f.props & K_COACCESSIBLE)
    return out if keep.all() and trim else _connect(out)


def _label_map(mapping: dict[int, int] | np.ndarray) -> np.ndarray | None:
    """relabel_input's transducer as an array: new label of every label 0..max (None: no
    transducer, the mapping is empty)."""
    if isinstance(mapping, dict):
        keys = np.fromiter(mapping.keys(), np.int64, len(mapping))
        values = np.fromiter(mapping.values(), np.int64, len(mapping))
    else:
        keys = np.nonzero(mapping != np.arange(len(mapping)))[0]
        keys = keys[keys > 0]
        values = np.asarray(mapping)[keys]
    if len(keys) == 0:
        return None
    new = np.arange(int(max(keys.max(), values.max())) + 1, dtype=np.int32)
    new[keys] = values
    return new


def _bfs_order(f: FstArrays, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The states a composition reaches over the `keep` arcs, in the order it numbers them,
    and the new id of every state (-1: not reached)."""
    new_id = np.full(f.num_states, -1, np.int64)
    new_id[f.start] = 0
    front = np.array([f.start], np.int64)
    levels = [front]
    num = 1
    while len(front):
        idx, _ = arc_ranges(f.starts, front)
        dest = f.arcs[idx[keep[idx]], 3]
        dest = dest[new_id[dest] < 0]
        u, first = np.unique(dest, return_index=True)
        front = u[np.argsort(first, kind="stable")]
        new_id[front] = num + np.arange(len(front))
        num += len(front)
        levels.append(front)
    return np.concatenate(levels), new_id


def _connect(f: FstArrays) -> FstArrays:
    """OpenFst's Connect of an FST whose states are all accessible: the states that reach
    no final state deleted (VectorFst::DeleteStates: the others keep their order)."""
    n = f.num_states
    dest = f.arcs[:, 3]
    src = f.arc_states()
    finals = np.nonzero(f.finals != np.inf)[0]
    # the reversed graph plus a state n with an arc to every final state, searched from n
    indptr = np.concatenate([[0], np.cumsum(np.bincount(dest, minlength=n)), [len(dest)]])
    indptr[-1] += len(finals)
    indices = np.concatenate([src[np.argsort(dest, kind="stable")], finals])
    reverse = csr_matrix((np.ones(len(indices), np.int8), indices, indptr), shape=(n + 1, n + 1))
    ok = np.zeros(n + 1, bool)
    ok[breadth_first_order(reverse, n, directed=True, return_predecessors=False)] = True
    ok = ok[:n]
    if ok.all():
        return f
    new = np.cumsum(ok) - 1
    keep = ok[src] & ok[dest]
    arcs = f.arcs[keep]
    arcs[:, 3] = new[arcs[:, 3]]
    counts = np.bincount(new[src[keep]], minlength=int(ok.sum()))
    start = 0 if ok[f.start] else -1
    starts = np.concatenate([[0], np.cumsum(counts)])
    return FstArrays(start, starts, arcs, f.finals[ok], f.props)
