"""Leaf clustering after tree splitting, and the whole of build-tree.

``cluster_bottom_up`` is Kaldi's ``ClusterBottomUp`` (``src/tree/cluster-utils.cc``): the
two clusters whose merge loses the least likelihood are merged while that loss is at most
the threshold. ``cluster_tree_leaves`` applies it separately to the leaves under each leaf
of the stub map (``ClusterEventMapRestrictedByMap``: leaves of different roots are never
tied), and ``renumber`` numbers the remaining leaves 0..n-1 in order (``RenumberEventMap``).
``build_tree`` chains stub map, splitting and clustering as ``BuildTree`` does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from steps_py.gmm.build_tree import map_rows, split_tree, stub_map, substitute_leaves, sum_by
from steps_py.gmm.questions import Roots
from steps_py.gmm.tree_stats import TreeStats, gauss_objf
from steps_py.kaldi.event_map import ConstantEventMap, EventMap, multi_map

log = logging.getLogger(__name__)


def cluster_bottom_up(
    count: np.ndarray, x: np.ndarray, x2: np.ndarray, thresh: float
) -> tuple[np.ndarray, float]:
    """Assignments of n points to clusters (numbered by first member) and the objf change (<= 0)."""
    n = len(count)
    c, s, s2 = count.astype(np.float64).copy(), x.copy(), x2.copy()
    own = gauss_objf(c, s, s2)
    alive = np.ones(n, dtype=bool)
    owner = np.arange(n)
    dist = np.full((n, n), np.inf)
    for i in range(n):
        j = np.arange(i + 1, n)
        dist[i, j] = own[i] + own[j] - gauss_objf(c[i] + c[j], s[i] + s[j], s2[i] + s2[j])
    change = 0.0
    while alive.sum() > 1:
        flat = int(np.argmin(dist))
        i, j = divmod(flat, n)
        if not dist[i, j] <= thresh:
            break
        change -= dist[i, j]
        c[i], s[i], s2[i] = c[i] + c[j], s[i] + s[j], s2[i] + s2[j]
        own[i] = gauss_objf(c[i], s[i], s2[i])
        alive[j] = False
        owner[owner == j] = i
        dist[j, :] = dist[:, j] = np.inf
        others = np.nonzero(alive)[0]
        others = others[others != i]
        merged = (
            own[i]
            + own[others]
            - gauss_objf(c[i] + c[others], s[i] + s[others], s2[i] + s2[others])
        )
        lo, hi = np.minimum(i, others), np.maximum(i, others)
        dist[lo, hi] = merged
    _, assign = np.unique(owner, return_inverse=True)
    return assign, change


def cluster_tree_leaves(
    tree: EventMap, stub: EventMap, stats: TreeStats, thresh: float
) -> tuple[EventMap, int]:
    """Tie leaves under the same stub leaf; returns (tree, number of leaves removed)."""
    leaf = map_rows(tree, stats)
    group = map_rows(stub, stats)
    mapping: dict[int, EventMap] = {}
    removed = 0
    for g in np.unique(group):
        rows = np.nonzero(group == g)[0]
        leaves, local = np.unique(leaf[rows], return_inverse=True)
        count, x, x2 = sum_by(local, len(leaves), stats, rows)
        assign, _ = cluster_bottom_up(count, x, x2, thresh)
        removed += len(leaves) - (assign.max() + 1)
        for k, lf in enumerate(leaves):
            mapping[int(lf)] = ConstantEventMap(int(leaves[assign[k]]))
    out = substitute_leaves(tree, mapping)
    assert out is not None
    return out, removed


def renumber(tree: EventMap) -> tuple[EventMap, int]:
    """Leaves renumbered 0..n-1 in increasing order of their old ids."""
    old = sorted(multi_map(tree, {}))
    out = substitute_leaves(tree, {o: ConstantEventMap(i) for i, o in enumerate(old)})
    assert out is not None
    return out, len(old)


def objf_given_map(tree: EventMap, stats: TreeStats) -> float:
    """Total objective of the stats with one Gaussian per leaf (ObjfGivenMap)."""
    leaf = map_rows(tree, stats)
    n = int(leaf.max()) + 1
    count, x, x2 = sum_by(leaf, n, stats, np.arange(len(stats)))
    return float(gauss_objf(count, x, x2).sum())


@dataclass
class TreeBuildReport:
    stub_leaves: int
    split_leaves: int
    num_leaves: int
    splits: int
    gain_per_frame: float
    cluster_thresh: float
    objf_per_frame: float


def build_tree(
    stats: TreeStats,
    roots: Roots,
    questions: dict[int, list[list[int]]],
    num_pdf_classes: list[int],
    max_leaves: int,
    thresh: float = 300.0,
    cluster_thresh: float = -1.0,
) -> tuple[EventMap, TreeBuildReport]:
    """Kaldi's BuildTree: stub map, greedy splits, clustering, renumbering."""
    stub, n_stub = stub_map(stats.central_position, roots, num_pdf_classes)
    nonsplit = [p for s, sp in zip(roots.phone_sets, roots.split, strict=True) if not sp for p in s]
    central = stats.column(stats.central_position)
    filtered = stats.subset(np.nonzero(~np.isin(central, nonsplit))[0])
    res = split_tree(stub, n_stub, filtered, questions, thresh, max_leaves)
    if cluster_thresh < 0:
        cluster_thresh = res.smallest_split
    tree = res.tree
    if cluster_thresh != 0:
        tree, removed = cluster_tree_leaves(tree, stub, stats, cluster_thresh)
        log.info("clustering (threshold %.1f) removed %d leaves", cluster_thresh, removed)
    tree, n = renumber(tree)
    frames = float(stats.count.sum())
    report = TreeBuildReport(
        n_stub,
        res.num_leaves,
        n,
        res.splits,
        res.gain / max(frames, 1.0),
        cluster_thresh,
        objf_given_map(tree, stats) / max(frames, 1.0),
    )
    return tree, report
