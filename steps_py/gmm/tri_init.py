"""Starting a triphone GMM: gmm-init-model, convert-ali, and the pieces EM needs that
kaldi-hmm-gmm offers only for monophone trees.

* ``init_gmm``: one Gaussian per tree leaf from the tree statistics (gmm-init-model);
  a leaf without statistics (a phone never aligned) gets the global mean and variance,
  and is counted.
* ``convert_alignment``: a monophone alignment as transition ids of the triphone model
  (convert-ali): every frame keeps its HMM state and transition, the pdf comes from the
  tree for the phone's context.
* ``update_transition_probs``: Kaldi's TransitionModel::MleUpdate (mincount 5, floor 0.01)
  on the project's Kaldi-format TransitionModel (kaldi-hmm-gmm's needs its own tree).
* ``to_kaldi_model`` / ``from_kaldi_model``: GmmParams and a transition model to and from a
  Kaldi ``final.mdl`` (the triphone model is kept in Kaldi's format).
"""

from __future__ import annotations

import numpy as np

from steps_py.gmm.build_tree import map_rows, sum_by
from steps_py.gmm.model_io import GmmParams
from steps_py.gmm.tree_stats import VAR_FLOOR, TreeStats, split_to_phones
from steps_py.kaldi.diag_gmm import AmDiagGmm, DiagGmm
from steps_py.kaldi.model_file import KaldiGmmModel
from steps_py.kaldi.transition_model import TransitionModel
from steps_py.kaldi.tree import ContextDependency


def init_gmm(tree: ContextDependency, stats: TreeStats) -> tuple[GmmParams, int]:
    """(single-Gaussian GMM per pdf, number of pdfs that had no statistics)."""
    leaf = map_rows(tree.to_pdf, stats)
    n = tree.num_pdfs
    count, x, x2 = sum_by(leaf, n, stats, np.arange(len(stats)))
    tot_c, tot_x, tot_x2 = count.sum(), x.sum(0), x2.sum(0)
    empty = count <= 0
    count[empty], x[empty], x2[empty] = tot_c, tot_x, tot_x2
    mean = x / count[:, None]
    var = np.maximum(x2 / count[:, None] - mean * mean, VAR_FLOOR)
    gmm = GmmParams(
        [np.ones(1, np.float32) for _ in range(n)],
        [mean[j][None].astype(np.float32) for j in range(n)],
        [var[j][None].astype(np.float32) for j in range(n)],
    )
    return gmm, int(empty.sum())


def transition_lookup(tm: TransitionModel) -> dict[tuple[int, int, int, int], int]:
    """(phone, HMM state, forward pdf, self-loop pdf) -> transition state (from 1)."""
    return {tuple(t): s for s, t in enumerate(tm.tuples, 1)}


def convert_alignment(
    ali: np.ndarray,
    old: TransitionModel,
    new: TransitionModel,
    tree: ContextDependency,
    lookup: dict[tuple[int, int, int, int], int],
    known: dict[tuple[tuple[int, ...], int], int] | None = None,
) -> np.ndarray:
    """The alignment `ali` (ids of `old`) in transition ids of `new` (convert-ali).

    `known`: the transition states of (phone window, HMM state) found so far, to share
    between utterances (each one costs two tree lookups).
    """
    known = {} if known is None else known
    ali = np.asarray(ali, dtype=np.int64)
    segs = split_to_phones(old, ali)
    phones = [p for p, _, _ in segs]
    out = np.empty(len(ali), dtype=np.int32)
    p_pos = tree.central_position
    for k, (phone, a, b) in enumerate(segs):
        window = tuple(
            phones[k + j - p_pos] if 0 <= k + j - p_pos < len(phones) else 0
            for j in range(tree.context_width)
        )
        entry = new.topo.entry_for_phone(phone)
        for t in range(a, b):
            tid = int(ali[t])
            hmm_state = int(old.tid2hmm_state[tid])
            ts = known.get((window, hmm_state))
            if ts is None:
                hs = entry[hmm_state]
                fwd = tree.compute(window, hs.forward_pdf_class)
                loop = tree.compute(window, hs.self_loop_pdf_class)
                ts = lookup.get((phone, hmm_state, fwd, loop))  # type: ignore[arg-type]
                if ts is None:
                    raise ValueError(
                        f"no transition state for {list(window)}, HMM state {hmm_state}"
                    )
                known[(window, hmm_state)] = ts
            index = tid - int(old.state2id[int(old.tid2state[tid])])
            out[t] = int(new.state2id[ts]) + index
    return out


def update_transition_probs(
    tm: TransitionModel, counts: np.ndarray, mincount: float = 5.0, floor: float = 0.01
) -> TransitionModel:
    """A copy of `tm` with ML transition probabilities from per-transition-id `counts`."""
    logp = tm.log_probs.astype(np.float64).copy()
    for s in range(1, tm.num_transition_states + 1):
        ids = np.arange(int(tm.state2id[s]), int(tm.state2id[s + 1]))
        c = counts[ids]
        total = float(c.sum())
        if total < mincount or len(ids) < 2:
            continue
        p = np.maximum(c / total, floor)
        logp[ids] = np.log(p / p.sum())
    return TransitionModel(tm.topo, tm.tuples, logp.astype(np.float32))


def to_kaldi_model(tm: TransitionModel, gmm: GmmParams) -> KaldiGmmModel:
    am = AmDiagGmm(
        [
            DiagGmm.from_moments(w, m, v)
            for w, m, v in zip(gmm.weights, gmm.means, gmm.variances, strict=True)
        ]
    )
    model = KaldiGmmModel(tm, am)
    model.check()
    return model


def from_kaldi_model(model: KaldiGmmModel) -> GmmParams:
    return GmmParams(
        [g.weights.astype(np.float32) for g in model.am.pdfs],
        [g.means.astype(np.float32) for g in model.am.pdfs],
        [g.variances.astype(np.float32) for g in model.am.pdfs],
    )
