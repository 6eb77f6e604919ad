"""Decision-tree building (Kaldi's build-tree: ``BuildTree`` in ``src/tree/build-tree.cc``).

1. ``stub_map``: the initial map (``GetStubMap``): one leaf per root of roots.int (shared
   roots: one leaf for all pdf classes of the set; not shared: one per pdf class), under
   tables or set splits on the central phone.
2. ``split_tree``: greedy splitting (``SplitDecisionTree``): every leaf knows its best
   question (the key and yes-set of largest likelihood gain over all keys and questions);
   the largest gain among all leaves is taken while it exceeds ``thresh`` and the tree has
   fewer than ``max_leaves`` leaves. The yes child keeps the leaf id, the no child takes
   the next one.
3. ``cluster_leaves``: leaves under the same stub leaf are merged bottom-up while the
   likelihood lost by a merge is at most ``cluster_thresh`` (default: the smallest gain of
   any split made), then renumbered 0..n-1 in order.

Statistics are ``TreeStats`` rows; gains are ``gauss_objf`` differences. Written here
because kaldi-hmm-gmm has no tree building (see ``steps_py.kaldi.tree`` for the format).
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass

import numpy as np

from steps_py.gmm.errors import GmmError
from steps_py.gmm.questions import PDF_CLASS_KEY, Roots
from steps_py.gmm.tree_stats import ABSENT, TreeStats, gauss_objf
from steps_py.kaldi.event_map import (
    ConstantEventMap,
    EventMap,
    SplitEventMap,
    TableEventMap,
)

log = logging.getLogger(__name__)


def stub_map(
    central: int, roots: Roots, num_pdf_classes: list[int], first_leaf: int = 0
) -> tuple[EventMap, int]:
    """Kaldi's GetStubMap; returns (map, next free leaf id)."""
    sets, shared = roots.phone_sets, roots.shared
    if len(sets) == 1:
        if shared[0]:
            return ConstantEventMap(first_leaf), first_leaf + 1
        n = max(num_pdf_classes[p] for p in sets[0])
        table: list[EventMap | None] = [ConstantEventMap(first_leaf + c) for c in range(n)]
        return TableEventMap(PDF_CLASS_KEY, table), first_leaf + n
    highest = max(max(s) for s in sets)
    if max(len(s) for s in sets) == 1 and len(sets) <= 2 * highest:
        phone_table: list[EventMap | None] = [None] * (highest + 1)
        leaf = first_leaf
        for s, sh in zip(sets, shared, strict=True):
            phone_table[s[0]], leaf = stub_map(
                central, Roots([s], [sh], [True]), num_pdf_classes, leaf
            )
        return TableEventMap(central, phone_table), leaf
    half = len(sets) // 2
    first = Roots(sets[:half], shared[:half], roots.split[:half])
    second = Roots(sets[half:], shared[half:], roots.split[half:])
    m1, leaf = stub_map(central, first, num_pdf_classes, first_leaf)
    m2, leaf = stub_map(central, second, num_pdf_classes, leaf)
    return SplitEventMap(central, sorted(p for s in sets[:half] for p in s), m1, m2), leaf


def map_rows(em: EventMap | None, stats: TreeStats, rows: np.ndarray | None = None) -> np.ndarray:
    """The leaf of every stats row under `em` (Kaldi's SplitStatsByMap); raises if one has none."""
    leaves = map_events(em, stats.events)
    return leaves if rows is None else leaves[rows]


def map_events(em: EventMap | None, events: np.ndarray) -> np.ndarray:
    """The answer of `em` for every row of events[E, N + 1] (column 0 the pdf class, 1 + j
    the phone at position j, ABSENT where missing); raises GmmError where there is none."""
    out = np.full(len(events), -1, dtype=np.int64)
    stack: list[tuple[EventMap | None, np.ndarray]] = [(em, np.arange(len(events)))]
    while stack:
        node, idx = stack.pop()
        if len(idx) == 0:
            continue
        if node is None:
            raise GmmError(
                f"tree: no leaf for event {events[idx[0]].tolist()} (pdf class, phones): "
                "the roots file and the statistics do not match"
            )
        if isinstance(node, ConstantEventMap):
            out[idx] = node.answer
            continue
        vals = events[idx, node.key + 1]
        if (vals == ABSENT).any():
            stack.append((None, idx[vals == ABSENT]))
            continue
        if isinstance(node, TableEventMap):  # rows grouped by value, in order within each
            order = np.argsort(vals, kind="stable")
            cuts = np.flatnonzero(np.diff(vals[order])) + 1
            for v, rows in zip(
                vals[order][np.r_[0, cuts]], np.split(idx[order], cuts), strict=True
            ):
                child = node.table[v] if v < len(node.table) else None
                stack.append((child, rows))
        else:
            yes = np.isin(vals, node.yes_set)
            stack += [(node.yes, idx[yes]), (node.no, idx[~yes])]
    return out


def sum_by(labels: np.ndarray, n: int, stats: TreeStats, rows: np.ndarray) -> tuple:
    """Stats of `rows` summed by `labels` (values 0..n-1): (count[n], x[n, D], x2[n, D])."""
    count = np.bincount(labels, weights=stats.count[rows], minlength=n)
    x = np.zeros((n, stats.dim))
    x2 = np.zeros((n, stats.dim))
    order = np.argsort(labels, kind="stable")
    lab = labels[order]
    seen, starts = np.unique(lab, return_index=True)
    x[seen] = np.add.reduceat(stats.x[rows[order]], starts, axis=0)
    x2[seen] = np.add.reduceat(stats.x2[rows[order]], starts, axis=0)
    return count, x, x2


def question_matrix(questions: list[list[int]], num_values: int) -> np.ndarray:
    """[num questions, num_values] 0/1: question i contains value v (values >= num_values ignored)."""
    q = np.zeros((len(questions), num_values))
    for i, yes in enumerate(questions):
        q[i, [v for v in yes if v < num_values]] = 1.0
    return q


def best_split_for_key(
    stats: TreeStats, rows: np.ndarray, key: int, questions: list[list[int]]
) -> tuple[float, list[int]]:
    """(gain, yes set) of the best question about `key` for these rows (FindBestSplitForKey)."""
    if len(rows) <= 1 or not questions:
        return 0.0, []
    vals = stats.column(key)[rows]
    if (vals == ABSENT).any():
        return 0.0, []  # key not always defined: cannot ask about it
    n = int(vals.max()) + 1
    return best_question(stats, rows, vals, question_matrix(questions, n), questions)


def best_question(
    stats: TreeStats, rows: np.ndarray, vals: np.ndarray, q: np.ndarray, questions: list
) -> tuple[float, list[int]]:
    """The best of the questions `q` (question_matrix, wide enough for `vals`)."""
    present, local = np.unique(vals, return_inverse=True)
    count, x, x2 = sum_by(local, len(present), stats, rows)
    q = q[:, present]
    yes_n = q.sum(1)
    useful = np.nonzero((yes_n > 0) & (yes_n < len(present)))[0]  # others split nothing off
    if len(useful) == 0:
        return 0.0, []
    q = q[useful]
    objf_yes = gauss_objf(q @ count, q @ x, q @ x2)
    objf_no = gauss_objf((1 - q) @ count, (1 - q) @ x, (1 - q) @ x2)
    unsplit = float(gauss_objf(count.sum(), x.sum(0), x2.sum(0)))
    gains = objf_yes + objf_no - unsplit
    i = int(np.argmax(gains))
    if gains[i] <= 0:
        return 0.0, []
    return float(gains[i]), sorted(questions[int(useful[i])])


class QuestionSets:
    """The questions per key with their question matrices (built once for all leaves)."""

    def __init__(self, questions: dict[int, list[list[int]]], stats: TreeStats):
        self.questions = questions
        self.matrix = {
            k: question_matrix(q, int(stats.column(k).max()) + 1) for k, q in questions.items()
        }


class Splitter:
    """One node of the growing tree (Kaldi's DecisionTreeSplitter)."""

    def __init__(self, leaf: int, rows: np.ndarray, stats: TreeStats, qs: QuestionSets):
        self.leaf, self.rows, self.stats, self.qs = leaf, rows, stats, qs
        self.yes: Splitter | None = None
        self.no: Splitter | None = None
        self.best, self.key, self.yes_set = 0.0, 0, []
        if len(rows) <= 1:
            return
        for key in sorted(qs.questions):
            vals = stats.column(key)[rows]
            if (vals == ABSENT).any() or not qs.questions[key]:
                continue
            gain, yes_set = best_question(stats, rows, vals, qs.matrix[key], qs.questions[key])
            if gain > self.best:
                self.best, self.key, self.yes_set = gain, key, yes_set

    def split(self, next_leaf: int) -> int:
        """Split the best leaf below this node; returns the next free leaf id."""
        if self.yes is None or self.no is None:
            vals = self.stats.column(self.key)[self.rows]
            yes = np.isin(vals, self.yes_set)
            self.yes = Splitter(self.leaf, self.rows[yes], self.stats, self.qs)
            self.no = Splitter(next_leaf, self.rows[~yes], self.stats, self.qs)
            next_leaf += 1
        else:
            child = self.yes if self.yes.best >= self.no.best else self.no
            next_leaf = child.split(next_leaf)
        self.best = max(self.yes.best, self.no.best)
        return next_leaf

    def to_map(self) -> EventMap:
        if self.yes is None or self.no is None:
            return ConstantEventMap(self.leaf)
        return SplitEventMap(self.key, self.yes_set, self.yes.to_map(), self.no.to_map())


def substitute_leaves(em: EventMap | None, new: dict[int, EventMap]) -> EventMap | None:
    """A copy of `em` whose leaves in `new` are replaced (Kaldi's EventMap::Copy(mapping))."""
    if em is None:
        return None
    if isinstance(em, ConstantEventMap):
        return new.get(em.answer, ConstantEventMap(em.answer))
    if isinstance(em, TableEventMap):
        return TableEventMap(em.key, [substitute_leaves(c, new) for c in em.table])
    yes, no = substitute_leaves(em.yes, new), substitute_leaves(em.no, new)
    assert yes is not None and no is not None
    return SplitEventMap(em.key, list(em.yes_set), yes, no)


@dataclass
class SplitResult:
    tree: EventMap
    num_leaves: int
    gain: float  # total likelihood gain of the splits
    smallest_split: float
    splits: int


def split_tree(
    stub: EventMap,
    num_stub_leaves: int,
    stats: TreeStats,
    qs: dict[int, list[list[int]]],
    thresh: float,
    max_leaves: int,
) -> SplitResult:
    """Kaldi's SplitDecisionTree from the stub map."""
    leaf_of = map_rows(stub, stats)
    sets = QuestionSets(qs, stats)
    builders = [
        Splitter(i, np.nonzero(leaf_of == i)[0], stats, sets) for i in range(num_stub_leaves)
    ]
    heap = [(-b.best, -i) for i, b in enumerate(builders)]
    heapq.heapify(heap)
    num_leaves, gain, smallest, count = num_stub_leaves, 0.0, 1.0e20, 0
    while -heap[0][0] > thresh and (max_leaves <= 0 or num_leaves < max_leaves):
        best, i = heapq.heappop(heap)
        smallest = min(smallest, -best)
        gain += -best
        num_leaves = builders[-i].split(num_leaves)
        heapq.heappush(heap, (-builders[-i].best, i))
        count += 1
    tree = substitute_leaves(stub, {i: b.to_map() for i, b in enumerate(builders)})
    assert tree is not None
    return SplitResult(tree, num_leaves, gain, smallest, count)
