"""H for context-dependent models (Kaldi's GetHTransducer, ``src/hmm/hmm-utils.cc``), and
the transition weights (AddTransitionProbs / AddSelfLoops) as a one-state weight FST.

``h_transducer(ilabel_info, tree, tm)`` maps transition ids to the context-dependent
labels of C: for every ilabel (a phone window) the HMM of its central phone with the
pdfs the tree gives that window, entered from and returning to one start/final state; the
window's label is output on the first arc. Disambiguation ilabels (``[-d]``, and ``[0]``
for ``#-1``) become loops with new ids above the transition ids, returned so the caller
can remove them after determinization, as mkgraph.sh does. ``WindowHmms`` keeps each
window's HMM once computed, for the training graphs of many utterances; ``group_windows``
merges the windows of a CLG that have the same HMM (phone and pdfs), so H has one entry
per distinct HMM.

Unlike Kaldi's H, this one carries the HMM self-loops (not reordered) and no weights:
kaldi-hmm-gmm's ``add_self_loops`` and ``add_transition_probs`` need its own
TransitionModel, which it can build only for monophone trees. The weights come from
composing with ``transition_weight_fst``, which gives every transition id the weight
mkgraph.sh gives it (``-log p`` scaled by 1 for forward transitions after removing the
self-loop mass, and the self-loop scale for self-loops and the remaining mass) or the
alignment weight of gmm-align-compiled (``mkgraph=False``: ``-scale * log p``).
Works with the project's ``steps_py.kaldi`` TransitionModel and ContextDependency, so
Kaldi triphone models and the project's own are handled alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import kaldifst
import numpy as np

from steps_py.kaldi.transition_model import TransitionModel
from steps_py.kaldi.tree import ContextDependency


class HBuildError(ValueError):
    """The tree cannot give a pdf for a phone window the graph needs."""


def _phone_tids(
    window: list[int], tree: ContextDependency, tm: TransitionModel, state_of: dict
) -> list[list[tuple[int, int]]]:
    """For each emitting HMM state of the window's central phone: [(destination, tid)]."""
    phone = window[tree.central_position]
    entry = tm.topo.entry_for_phone(phone)
    out = []
    for j, hs in enumerate(entry[:-1]):
        fwd = tree.compute(window, hs.forward_pdf_class)
        loop = tree.compute(window, hs.self_loop_pdf_class)
        ts = state_of.get((phone, j, fwd, loop))
        if ts is None:
            raise HBuildError(
                f"no transition state for phone window {window}, HMM state {j} (pdfs {fwd}, {loop}): "
                "the tree and the transition model do not belong together"
            )
        first = int(tm.state2id[ts])
        out.append([(dst, first + k) for k, (dst, _) in enumerate(hs.transitions)])
    return out


@dataclass(frozen=True)
class HmmArcs:
    """A window's HMM as arcs of H numbered from its first state: `inner` rows (HMM state,
    destination state or -1 for H's start/final state, transition id), `entry` rows
    (destination or -1, transition id) of the arcs into it from the start state (those out
    of its first state), and its number of states."""

    inner: np.ndarray
    entry: np.ndarray
    states: int


class WindowHmms:
    """The HMM arcs of phone windows (``_phone_tids``), each window's computed once: the
    training graphs of thousands of utterances share most of their windows, and every
    window costs two tree lookups per HMM state."""

    def __init__(self, tree: ContextDependency, tm: TransitionModel) -> None:
        self.tree, self.tm = tree, tm
        self.state_of = {tuple(t): s for s, t in enumerate(tm.tuples, 1)}
        self.known: dict[tuple[int, ...], HmmArcs] = {}

    def __call__(self, window: list[int]) -> HmmArcs:
        key = tuple(window)
        arcs = self.known.get(key)
        if arcs is None:
            hmm = _phone_tids(window, self.tree, self.tm, self.state_of)
            final = len(hmm)
            inner = [(j, -1 if d == final else d, t) for j, out in enumerate(hmm) for d, t in out]
            entry = [(-1 if d == final else d, t) for d, t in (hmm[0] if hmm else [])]
            arcs = self.known[key] = HmmArcs(
                np.array(inner, np.int64).reshape(-1, 3),
                np.array(entry, np.int64).reshape(-1, 2),
                final,
            )
        return arcs


def h_transducer(
    ilabel_info: list[list[int]],
    tree: ContextDependency,
    tm: TransitionModel,
    compact: bool = False,
    hmms: WindowHmms | None = None,
) -> tuple[kaldifst.StdVectorFst, list[int]]:
    """(H with self-loops and no weights, disambiguation transition ids).

    With `compact` the input labels are 1..K instead, and the second value lists the K
    transition ids they stand for (label k is tids[k - 1]); disambiguation ilabels are not
    allowed then (training graphs have none). `hmms`: the windows' HMMs of this tree and
    transition model, computed so far (to share between calls).

    The window of label l gets the next states of H (its HMM state j is the j-th); its
    first state's arcs are also arcs out of the start state 0, with output l. The arcs are
    compiled from text with the start state's first, label after label, then the others
    window after window (fstcompile numbers states in order of appearance).
    """
    hmms = hmms or WindowHmms(tree, tm)
    parts: list[HmmArcs] = []
    labels: list[int] = []
    loops: list[tuple[int, int, int, int]] = []  # disambiguation symbols: loops on state 0
    for label, window in enumerate(ilabel_info):
        if not window:
            continue
        if len(window) == 1 and window[0] <= 0:
            if compact:
                raise HBuildError(f"disambiguation ilabel {window} in a compact H")
            loops.append((0, 0, tm.num_transition_ids + 1 + len(loops), label))
            continue
        parts.append(hmms(window))
        labels.append(label)
    start, inner = _h_arcs(parts, labels)
    start = np.concatenate([start, np.array(loops, np.int64).reshape(-1, 4)])
    arcs = np.concatenate([start[np.argsort(start[:, 3], kind="stable")], inner])
    disambig = [t for _, _, t, _ in loops]
    if compact:
        used, index = np.unique(arcs[:, 2], return_inverse=True)
        arcs[:, 2] = index.reshape(-1) + 1
        disambig = used.tolist()
    text = ("%d %d %d %d\n" * len(arcs)) % tuple(arcs.ravel().tolist()) + "0\n"
    return kaldifst.compile(s=text, acceptor=False), disambig


def _h_arcs(parts: list[HmmArcs], labels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The arcs (source, destination, tid, output label) of H out of its start state, and
    the others, for the windows' HMMs in order (`labels`: their output labels)."""
    if not parts:
        return np.zeros((0, 4), np.int64), np.zeros((0, 4), np.int64)
    states = np.array([p.states for p in parts])
    base = 1 + np.cumsum(states) - states  # the first state of each window's HMM
    inner = np.concatenate([p.inner for p in parts])
    at = np.repeat(base, [len(p.inner) for p in parts])
    entry = np.concatenate([p.entry for p in parts])
    entry_count = [len(p.entry) for p in parts]
    entry_at = np.repeat(base, entry_count)
    zeros = np.zeros(len(inner), np.int64)
    inner_arcs = np.stack([at + inner[:, 0], _dest(inner[:, 1], at), inner[:, 2], zeros], 1)
    out = np.repeat(np.asarray(labels, np.int64), entry_count)
    start = np.stack([np.zeros_like(out), _dest(entry[:, 0], entry_at), entry[:, 1], out], 1)
    return start, inner_arcs


def _dest(relative: np.ndarray, base: np.ndarray) -> np.ndarray:
    """H states of HMM states numbered from `base` (-1: H's start/final state 0)."""
    return np.where(relative < 0, 0, base + relative)


def transition_weights(
    tm: TransitionModel, transition_scale: float, self_loop_scale: float, mkgraph: bool
) -> np.ndarray:
    """Weight (cost) of every transition id (entry 0 unused); see the module docstring."""
    logp = tm.log_probs.astype(np.float64)
    cost = np.zeros(len(logp))
    for s in range(1, tm.num_transition_states + 1):
        ids = range(int(tm.state2id[s]), int(tm.state2id[s + 1]))
        loops = [t for t in ids if tm.tid_is_self_loop[t]]
        p_loop = math.exp(logp[loops[0]]) if loops else 0.0
        for t in ids:
            if not mkgraph:
                scale = self_loop_scale if tm.tid_is_self_loop[t] else transition_scale
                cost[t] = -scale * logp[t]
            elif tm.tid_is_self_loop[t]:
                cost[t] = -self_loop_scale * logp[t]
            else:
                rest = max(1.0 - p_loop, 1e-30)
                cost[t] = -transition_scale * (
                    logp[t] - math.log(rest)
                ) - self_loop_scale * math.log(rest)
    return cost


def weight_fst(costs: np.ndarray) -> kaldifst.StdVectorFst:
    """One-state FST t:t / costs[t] for every label t >= 1 (compose it on the left of a graph)."""
    lines = [f"0 0 {t} {t} {costs[t]:.8g}" for t in range(1, len(costs))]
    lines.append("0")
    fst = kaldifst.compile(s="\n".join(lines) + "\n", acceptor=False)
    kaldifst.arcsort(fst, sort_type="olabel")
    return fst


def ilabel_windows(ilabel_info: list[list[int]], width: int) -> np.ndarray:
    """Kaldi's ilabel info as lists (e.g. from kaldifst's compose_context) as the rows
    (length, phones..., padding) ``group_windows`` takes."""
    width = max([width, *map(len, ilabel_info)])
    windows = np.zeros((len(ilabel_info), 1 + width), dtype=np.int64)
    for j, w in enumerate(ilabel_info):
        windows[j, 0] = len(w)
        windows[j, 1 : 1 + len(w)] = w
    return windows


def group_ilabels(
    ilabel_info: list[list[int]], tree: ContextDependency, tm: TransitionModel
) -> tuple[np.ndarray, list[list[int]]]:
    """``group_windows`` of Kaldi's ilabel info as lists."""
    return group_windows(ilabel_windows(ilabel_info, tree.context_width), tree, tm)


def group_windows(
    windows: np.ndarray, tree: ContextDependency, tm: TransitionModel
) -> tuple[np.ndarray, list[list[int]]]:
    """Merge the context-dependent labels that have the same HMM (phone and pdfs).

    `windows[j]` is label j's ilabel info as (length, phones..., padding). Returns (new
    label of every old label, the ilabel info of the new labels: one representative window
    per HMM, then the disambiguation entries). Composing C with many thousands of phone
    windows gives far fewer distinct HMMs, so H stays small (the ilabel remapping of
    Kaldi's make-ilabel-transducer); the pdfs come from the tree for all windows at once
    (``steps_py.gmm.build_tree.map_events``).
    """
    from steps_py.gmm.build_tree import map_events

    n = tree.context_width
    lengths = windows[:, 0]
    real = np.nonzero(lengths == n)[0]
    phone_windows = np.ascontiguousarray(windows[real, 1 : 1 + n], dtype=np.int64)
    phones = phone_windows[:, tree.central_position]
    n_classes = np.asarray(tm.topo.phone2num_pdf_classes())[phones]
    keys = [phones]
    for c in range(int(n_classes.max(initial=0))):
        pdf = np.full(len(real), -1, dtype=np.int64)
        has = np.nonzero(n_classes > c)[0]
        events = np.concatenate([np.full((len(has), 1), c), phone_windows[has]], axis=1)
        pdf[has] = map_events(tree.to_pdf, events)
        keys.append(pdf)
    _, first, inverse = np.unique(
        _row_codes(np.stack(keys, 1)), return_index=True, return_inverse=True
    )
    new = np.zeros(len(windows), dtype=np.int64)
    new[real] = inverse.reshape(-1) + 1
    info: list[list[int]] = [[]] + phone_windows[first].tolist()
    other = np.nonzero((lengths > 0) & (lengths != n))[0]  # disambiguation symbols: own labels
    new[other] = len(info) + np.arange(len(other))
    info += [windows[j, 1 : 1 + lengths[j]].tolist() for j in other]
    return new, info


def _row_codes(rows: np.ndarray) -> np.ndarray:
    """One integer per row, equal exactly for equal rows (mixed radix when it fits in int64,
    else the rows' bytes), so that np.unique need not sort whole rows."""
    shifted = rows - rows.min(axis=0) if len(rows) else rows
    radix = [int(m) + 1 for m in (shifted.max(axis=0) if len(rows) else [])]
    if math.prod(radix) < 2**62:
        code = np.zeros(len(rows), dtype=np.int64)
        for col, r in zip(shifted.T, radix, strict=True):
            code = code * r + col
        return code
    return (
        np.ascontiguousarray(rows)
        .view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1])))
        .ravel()
    )
