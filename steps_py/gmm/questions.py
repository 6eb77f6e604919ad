"""Questions for the decision tree (Kaldi's cluster-phones + compile-questions) and roots.

``cluster_phones`` is ``AutomaticallyObtainQuestions`` (``src/tree/build-tree.cc``): the
tree statistics of the central phone's pdf classes 1 (the middle HMM state), summed per
phone set of ``phones/sets.int``, are clustered top-down into a binary tree (each node
split in two by 2-means on the Gaussian objective, ``TreeCluster``); every node of that
tree, and every original set, is a question. ``compile_questions`` gives every context
position these phone questions (with ``phones/extra_questions.int`` appended, as
``steps/train_deltas.sh`` does) and the pdf-class key the questions {0}, {0, 1}, ... .
``read_roots`` reads ``phones/roots.int`` (``shared|not-shared split|not-split phones``).

The 2-means starts from random assignments (``num_tries`` of them, seeded), so the
questions can differ from Kaldi's where several splits are about equally good.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steps_py.gmm.errors import GmmError
from steps_py.gmm.tree_stats import TreeStats, gauss_objf
from steps_py.lang.lang_dir import PRODUCER as LANG_PRODUCER

PDF_CLASS_KEY = -1


@dataclass
class Roots:
    phone_sets: list[list[int]]
    shared: list[bool]
    split: list[bool]


def read_int_lines(path: Path) -> list[list[int]]:
    """Sets of integers, one per line (phones/sets.int, extra_questions.int)."""
    if not Path(path).is_file():
        raise GmmError(f"{path} not found: the lang dir is incomplete (rerun {LANG_PRODUCER})")
    try:
        return [
            sorted({int(x) for x in ln.split()})
            for ln in Path(path).read_text().splitlines()
            if ln.strip()
        ]
    except ValueError:
        raise GmmError(f"{path}: expected integer phone ids on every line") from None


def read_roots(path: Path) -> Roots:
    """phones/roots.int: `shared|not-shared split|not-split <phone ids>` per line."""
    if not Path(path).is_file():
        raise GmmError(f"{path} not found: the lang dir is incomplete (rerun {LANG_PRODUCER})")
    roots = Roots([], [], [])
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        f = line.split()
        if not f:
            continue
        if len(f) < 3 or f[0] not in ("shared", "not-shared") or f[1] not in ("split", "not-split"):
            raise GmmError(f"{path}:{n}: expected 'shared|not-shared split|not-split phones...'")
        roots.phone_sets.append(sorted({int(x) for x in f[2:]}))
        roots.shared.append(f[0] == "shared")
        roots.split.append(f[1] == "split")
    return roots


def _move_gains(
    a: np.ndarray, count: np.ndarray, x: np.ndarray, x2: np.ndarray, sums: tuple
) -> np.ndarray:
    """Objective change of moving each point alone to the other cluster."""
    c, s, s2 = sums
    k, o = a, 1 - a
    before = gauss_objf(c[k], s[k], s2[k]) + gauss_objf(c[o], s[o], s2[o])
    after = gauss_objf(c[k] - count, s[k] - x, s2[k] - x2) + gauss_objf(
        c[o] + count, s[o] + x, s2[o] + x2
    )
    return after - before


def two_means(
    count: np.ndarray, x: np.ndarray, x2: np.ndarray, rng: np.random.Generator, tries: int = 10
) -> tuple[np.ndarray, float]:
    """Best split of points (stats count[n], x[n, D], x2[n, D]) into two clusters.

    Random initial assignment, then the point whose move to the other cluster raises the
    objective most moves, while any does (Kaldi's ClusterKMeansOnce + RefineClusters; the
    gains of all points are computed at once). Returns (assignment 0/1, improvement over
    one cluster).
    """
    n = len(count)
    total = float(gauss_objf(count.sum(), x.sum(0), x2.sum(0)))
    best_a, best = np.zeros(n, dtype=np.int64), total
    for _ in range(tries):
        a = rng.integers(0, 2, n)
        a[rng.permutation(n)[:2]] = [0, 1]
        c, s, s2 = (np.stack([v[a == k].sum(0) for k in (0, 1)]) for v in (count, x, x2))
        for _ in range(10 * n):
            gains = _move_gains(a, count, x, x2, (c, s, s2))
            sizes = np.bincount(a, minlength=2)
            gains[sizes[a] <= 1] = -np.inf  # never empty a cluster
            i = int(np.argmax(gains))
            if not gains[i] > 1e-9:
                break
            k, o = a[i], 1 - a[i]
            for tot, v in ((c, count), (s, x), (s2, x2)):
                tot[k] -= v[i]
                tot[o] += v[i]
            a[i] = o
        objf = float(gauss_objf(c, s, s2).sum())
        if objf > best:
            best, best_a = objf, a.copy()
    return best_a, best - total


def cluster_phones(
    stats: TreeStats,
    phone_sets: list[list[int]],
    pdf_classes: tuple[int, ...] = (1,),
    seed: int = 0,
) -> list[list[int]]:
    """Automatic questions (cluster-phones): every node of a top-down clustering of the sets."""
    keep = np.isin(stats.column(PDF_CLASS_KEY), pdf_classes)
    central = stats.column(stats.central_position)
    n, d = len(phone_sets), stats.dim
    count, x, x2 = np.zeros(n), np.zeros((n, d)), np.zeros((n, d))
    for i, ps in enumerate(phone_sets):
        m = keep & np.isin(central, ps)
        count[i], x[i], x2[i] = stats.count[m].sum(), stats.x[m].sum(0), stats.x2[m].sum(0)
    rng = np.random.default_rng(seed)
    questions: set[tuple[int, ...]] = {tuple(sorted(ps)) for ps in phone_sets}
    stack = [np.arange(n)]
    while stack:
        node = stack.pop()
        questions.add(tuple(sorted(p for i in node for p in phone_sets[i])))
        if len(node) < 2:
            continue
        a, impr = two_means(count[node], x[node], x2[node], rng)
        if impr > 0 and 0 < a.sum() < len(node):
            stack += [node[a == 1], node[a == 0]]
    return [list(q) for q in sorted(questions) if q]


def compile_questions(
    phone_questions: list[list[int]], max_num_pdf_classes: int, context_width: int = 3
) -> dict[int, list[list[int]]]:
    """Questions per event key (compile-questions): phone sets for every context position,
    {0}, {0, 1}, ... for the pdf class. Duplicates are removed, each set sorted."""
    phone_qs = sorted({tuple(sorted(set(q))) for q in phone_questions if q})
    out: dict[int, list[list[int]]] = {j: [list(q) for q in phone_qs] for j in range(context_width)}
    out[PDF_CLASS_KEY] = [list(range(i + 1)) for i in range(max_num_pdf_classes - 1)]
    return out
