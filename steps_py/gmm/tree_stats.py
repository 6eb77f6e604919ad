"""Tree statistics (Kaldi's acc-tree-stats) and the Gaussian objective the tree is built on.

For every phone-in-context seen in an alignment (left phone, central phone, right phone,
pdf class) the count, sum and sum of squares of its feature frames. Events follow
``src/hmm/tree-accu.cc``: phone 0 stands for "no phone" at an utterance edge, and a
context-independent central phone (silence, ``--ci-phones``) has no context keys at all,
so no question can ever be asked about its neighbours.

``gauss_objf`` is Kaldi's ``GaussClusterable::Objf`` (the log-likelihood of the frames
under one diagonal Gaussian with variances floored at ``var_floor``), vectorised over many
statistics at once; the tests check it equals kaldi-hmm-gmm's GaussClusterable. Written
here because kaldi-hmm-gmm has no acc-tree-stats and its Clusterables cannot be pickled,
summed across processes or evaluated in bulk.

Stats are numpy arrays: ``events[E, N+1]`` (column 0 the pdf class = Kaldi key -1,
column 1+j the phone at context position j, -1 where the key is absent), ``count[E]``,
``x[E, D]``, ``x2[E, D]``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steps_py.fileio import atomic_path
from steps_py.kaldi.transition_model import TransitionModel

LOG_2PI = float(np.log(2.0 * np.pi))
VAR_FLOOR = 0.01  # acc-tree-stats --var-floor
ABSENT = -1  # an event key that is not present (context of a context-independent phone)


def gauss_objf(
    count: np.ndarray, x: np.ndarray, x2: np.ndarray, var_floor: float = VAR_FLOOR
) -> np.ndarray:
    """GaussClusterable::Objf for stats with leading shape S: count[S], x[S, D], x2[S, D] -> [S].

    Zero for a zero (or negative) count, as Kaldi.
    """
    count = np.asarray(count, dtype=np.float64)
    safe = np.where(count > 0, count, 1.0)[..., None]
    mean = x / safe
    var = x2 / safe - mean * mean
    floored = np.maximum(var, var_floor)
    dim = x.shape[-1]
    per_frame = -0.5 * (var / floored).sum(-1) - 0.5 * (np.log(floored).sum(-1) + LOG_2PI * dim)
    return np.where(count > 0, per_frame * count, 0.0)


@dataclass
class TreeStats:
    """Summed Gaussian statistics per event; see the module docstring."""

    context_width: int
    central_position: int
    events: np.ndarray  # int32 [E, N + 1]
    count: np.ndarray  # float64 [E]
    x: np.ndarray  # float64 [E, D]
    x2: np.ndarray  # float64 [E, D]

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])

    def __len__(self) -> int:
        return len(self.count)

    def column(self, key: int) -> np.ndarray:
        """The values of Kaldi event key `key` (-1 = pdf class, 0..N-1 context positions)."""
        return self.events[:, key + 1]

    def subset(self, idx: np.ndarray) -> TreeStats:
        return TreeStats(
            self.context_width,
            self.central_position,
            self.events[idx],
            self.count[idx],
            self.x[idx],
            self.x2[idx],
        )

    def objf(self) -> float:
        """Objective of all these stats pooled into one Gaussian."""
        return float(gauss_objf(self.count.sum(), self.x.sum(0), self.x2.sum(0)))

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        np.savez(
            buf,
            context=np.array([self.context_width, self.central_position]),
            events=self.events,
            count=self.count,
            x=self.x,
            x2=self.x2,
        )
        with atomic_path(Path(path)) as tmp:
            tmp.write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> TreeStats:
        with np.load(path, allow_pickle=False) as z:
            n, p = (int(v) for v in z["context"])
            return cls(n, p, z["events"], z["count"], z["x"], z["x2"])


def split_to_phones(tm: TransitionModel, ali: np.ndarray) -> list[tuple[int, int, int]]:
    """Phone instances of a transition-id alignment: (phone, first frame, end frame).

    A new instance starts where the phone changes or where the alignment enters HMM state 0
    from another state (no topology returns to its entry state), which holds for alignments
    made with and without Kaldi's self-loop reordering.
    """
    phones = tm.tid2phone[ali]
    states = tm.tid2hmm_state[ali]
    start = np.ones(len(ali), dtype=bool)
    start[1:] = (phones[1:] != phones[:-1]) | ((states[1:] == 0) & (states[:-1] != 0))
    bounds = np.nonzero(start)[0].tolist() + [len(ali)]
    return [(int(phones[a]), a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def pdf_class_of_tids(tm: TransitionModel) -> np.ndarray:
    """Transition id -> pdf class of its HMM state (entry 0 unused)."""
    out = np.zeros(tm.num_transition_ids + 1, dtype=np.int32)
    for tid in range(1, tm.num_transition_ids + 1):
        state = tm.topo.entry_for_phone(int(tm.tid2phone[tid]))[int(tm.tid2hmm_state[tid])]
        out[tid] = (
            state.self_loop_pdf_class if tm.tid_is_self_loop[tid] else state.forward_pdf_class
        )
    return out


class TreeStatsAccumulator:
    """acc-tree-stats over many utterances; `stats()` returns the summed TreeStats."""

    def __init__(
        self,
        tm: TransitionModel,
        ci_phones: list[int],
        context_width: int = 3,
        central_position: int = 1,
    ):
        self.tm = tm
        self.ci = set(ci_phones)
        self.n, self.p = context_width, central_position
        self.pdf_class = pdf_class_of_tids(tm)
        self.rows: dict[tuple[int, ...], int] = {}
        self.events: list[tuple[int, ...]] = []
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []  # (row per frame, feats)

    def add(self, ali: np.ndarray, feats: np.ndarray) -> None:
        """Accumulate one utterance (`ali` transition ids, one per row of `feats`)."""
        ali = np.asarray(ali, dtype=np.int64)
        if len(ali) != len(feats):
            raise ValueError(f"alignment has {len(ali)} frames, features {len(feats)}")
        segs = split_to_phones(self.tm, ali)
        seq = [ph for ph, _, _ in segs]
        rows = np.empty(len(ali), dtype=np.int64)
        for i, (central, a, b) in enumerate(segs):
            ctx = []
            for j in range(self.n):
                k = i + j - self.p
                phone = seq[k] if 0 <= k < len(seq) else 0
                ctx.append(phone if (central not in self.ci or j == self.p) else ABSENT)
            pcs = self.pdf_class[ali[a:b]]
            for pc in np.unique(pcs):
                ev = (int(pc), *ctx)
                row = self.rows.get(ev)
                if row is None:
                    row = self.rows[ev] = len(self.events)
                    self.events.append(ev)
                rows[a:b][pcs == pc] = row
        self.parts.append((rows, np.asarray(feats, dtype=np.float64)))

    def stats(self) -> TreeStats:
        e, d = len(self.events), (self.parts[0][1].shape[1] if self.parts else 0)
        count, x, x2 = np.zeros(e), np.zeros((e, d)), np.zeros((e, d))
        if self.parts:
            rows = np.concatenate([r for r, _ in self.parts])
            feats = np.concatenate([f for _, f in self.parts])
            order = np.argsort(rows, kind="stable")
            rows, feats = rows[order], feats[order]
            seen, starts = np.unique(rows, return_index=True)
            count[seen] = np.diff(np.append(starts, len(rows)))
            x[seen] = np.add.reduceat(feats, starts, axis=0)
            x2[seen] = np.add.reduceat(feats * feats, starts, axis=0)
        events = np.array(self.events, dtype=np.int32).reshape(e, self.n + 1)
        return TreeStats(self.n, self.p, events, count, x, x2)
