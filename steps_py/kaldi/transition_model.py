"""Kaldi's ``TransitionModel`` (``src/hmm/transition-model.cc``), text and binary.

A transition model is the topology, the sorted list of tuples (phone, HMM state, forward
pdf, self-loop pdf) -- one "transition state" each, numbered from 1 -- and the log
probabilities indexed by transition id (entry 0 unused). Transition ids number the
transitions out of each transition state in order: transition state ``s`` owns ids
``state2id[s] .. state2id[s+1]-1``, one per ``<Transition>`` of its HMM state. A
transition id's pdf is the self-loop pdf when it is the state's self-loop, else the
forward pdf. Ordinary HMMs are written as ``<Triples>`` (no self-loop pdf), others as
``<Tuples>``; both are read.

Everything here is numpy arrays indexed by transition id, so converting a whole
alignment (``tid2pdf[ali]``) is one gather. Written by hand: kaldi-hmm-gmm's
TransitionModel has no Read/Write and cannot be built from a list of tuples, only from a
ContextDependency (see ``steps_py.kaldi.model_file`` for building one that matches).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from steps_py.kaldi.stream import KaldiFormatError, KaldiInput, KaldiOutput
from steps_py.kaldi.topology import NO_PDF, HmmTopology


class TransitionTuple(NamedTuple):
    phone: int
    hmm_state: int
    forward_pdf: int
    self_loop_pdf: int


@dataclass
class TransitionModel:
    topo: HmmTopology
    tuples: list[TransitionTuple]
    log_probs: np.ndarray  # float32 [num_transition_ids + 1], entry 0 unused
    # derived (filled by __post_init__), all indexed by transition id (entry 0 unused)
    state2id: np.ndarray = field(init=False, repr=False)
    tid2state: np.ndarray = field(init=False, repr=False)
    tid2pdf: np.ndarray = field(init=False, repr=False)
    tid2phone: np.ndarray = field(init=False, repr=False)
    tid2hmm_state: np.ndarray = field(init=False, repr=False)
    tid_is_self_loop: np.ndarray = field(init=False, repr=False)
    tid_is_final: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.log_probs = np.asarray(self.log_probs, dtype=np.float32)
        n_states = len(self.tuples)
        state2id = np.zeros(n_states + 2, dtype=np.int64)
        cur = 1
        for s, t in enumerate(self.tuples, 1):
            state2id[s] = cur
            entry = self.topo.entry_for_phone(t.phone)
            if not 0 <= t.hmm_state < len(entry) - 1:
                raise KaldiFormatError(
                    f"transition tuple {t}: phone {t.phone} has no emitting HMM state {t.hmm_state}"
                )
            cur += len(entry[t.hmm_state].transitions)
        state2id[n_states + 1] = cur
        n_tids = cur - 1
        tid2state = np.zeros(n_tids + 1, np.int32)
        tid2pdf = np.full(n_tids + 1, -1, np.int32)
        tid2phone = np.zeros(n_tids + 1, np.int32)
        tid2hmm = np.full(n_tids + 1, -1, np.int32)
        loop = np.zeros(n_tids + 1, bool)
        final = np.zeros(n_tids + 1, bool)
        for s, t in enumerate(self.tuples, 1):
            entry = self.topo.entry_for_phone(t.phone)
            for k, (dst, _) in enumerate(entry[t.hmm_state].transitions):
                tid = int(state2id[s]) + k
                tid2state[tid] = s
                loop[tid] = dst == t.hmm_state
                final[tid] = dst == len(entry) - 1
                tid2pdf[tid] = t.self_loop_pdf if loop[tid] else t.forward_pdf
                tid2phone[tid] = t.phone
                tid2hmm[tid] = t.hmm_state
        self.state2id, self.tid2state, self.tid2pdf, self.tid2phone = (
            state2id,
            tid2state,
            tid2pdf,
            tid2phone,
        )
        self.tid2hmm_state, self.tid_is_self_loop, self.tid_is_final = tid2hmm, loop, final
        if len(self.log_probs) != n_tids + 1:
            raise KaldiFormatError(
                f"transition model: {len(self.log_probs)} log-probs for {n_tids} transition ids "
                f"(expected {n_tids + 1}, entry 0 unused)"
            )
        bad = ~np.isfinite(self.log_probs[1:]) | (self.log_probs[1:] > 0)
        if bad.any():
            raise KaldiFormatError(
                f"transition model: log-prob of transition id {int(np.argmax(bad)) + 1} is "
                f"{self.log_probs[1:][bad][0]} (must be finite and <= 0)"
            )

    # ---- sizes
    @property
    def num_transition_ids(self) -> int:
        return len(self.log_probs) - 1

    @property
    def num_transition_states(self) -> int:
        return len(self.tuples)

    @property
    def num_pdfs(self) -> int:
        return 1 + max(max(t.forward_pdf, t.self_loop_pdf) for t in self.tuples)

    def is_hmm(self) -> bool:
        return self.topo.is_hmm()

    def check_ids(self, tids: np.ndarray, what: str = "alignment") -> None:
        """Raise if `tids` holds ids outside 1..num_transition_ids (a model/alignment mismatch)."""
        tids = np.asarray(tids)
        if len(tids) and (tids.min() < 1 or tids.max() > self.num_transition_ids):
            bad = int(tids[(tids < 1) | (tids > self.num_transition_ids)][0])
            raise KaldiFormatError(
                f"{what}: transition id {bad} outside 1..{self.num_transition_ids}; "
                "the alignment was made with another model (use that model's final.mdl)"
            )

    # ---- construction from a tree (Kaldi's ComputeTuplesIsHmm + InitializeProbs)
    @classmethod
    def from_tree(cls, tree: object, topo: HmmTopology) -> TransitionModel:
        """The transition model Kaldi's ``TransitionModel(ctx_dep, topo)`` builds (ordinary HMMs).

        `tree` is a ``steps_py.kaldi.tree.ContextDependency``. Probabilities are the topology's.
        """
        if not topo.is_hmm():
            raise KaldiFormatError(
                "building a transition model from a tree is supported for ordinary HMM "
                "topologies only (this one has separate self-loop pdf classes)"
            )
        pdf_info = tree.pdf_info(topo.phones, topo.phone2num_pdf_classes())  # type: ignore[attr-defined]
        tuples: list[TransitionTuple] = []
        for pdf, pairs in enumerate(pdf_info):
            for phone, pdf_class in pairs:
                for j, s in enumerate(topo.entry_for_phone(phone)):
                    if s.forward_pdf_class == pdf_class and s.forward_pdf_class != NO_PDF:
                        tuples.append(TransitionTuple(phone, j, pdf, pdf))
        tuples.sort()
        probs: list[float] = [0.0]
        for t in tuples:
            for _, p in topo.entry_for_phone(t.phone)[t.hmm_state].transitions:
                probs.append(float(np.log(np.float32(p))))
        return cls(topo, tuples, np.asarray(probs, dtype=np.float32))

    # ---- I/O
    @classmethod
    def read(cls, inp: KaldiInput) -> TransitionModel:
        inp.expect_token("<TransitionModel>")
        topo = HmmTopology.read(inp)
        tok = inp.read_token()
        if tok not in ("<Triples>", "<Tuples>"):
            raise inp.error(f"expected <Triples> or <Tuples>, got {tok!r}")
        n = inp.read_int32()
        tuples = []
        for _ in range(n):
            phone, state, fwd = inp.read_int32(), inp.read_int32(), inp.read_int32()
            slp = inp.read_int32() if tok == "<Tuples>" else fwd
            tuples.append(TransitionTuple(phone, state, fwd, slp))
        end = inp.read_token()
        if end not in ("</Triples>", "</Tuples>"):
            raise inp.error(f"expected </Triples> or </Tuples>, got {end!r}")
        inp.expect_token("<LogProbs>")
        log_probs = inp.read_vector().astype(np.float32)
        inp.expect_token("</LogProbs>")
        inp.expect_token("</TransitionModel>")
        return cls(topo, tuples, log_probs)

    def write(self, out: KaldiOutput) -> None:
        is_hmm = self.is_hmm()
        out.token("<TransitionModel>")
        out.newline()
        self.topo.write(out)
        out.token("<Triples>" if is_hmm else "<Tuples>")
        out.int32(len(self.tuples))
        out.newline()
        for t in self.tuples:
            out.int32(t.phone)
            out.int32(t.hmm_state)
            out.int32(t.forward_pdf)
            if not is_hmm:
                out.int32(t.self_loop_pdf)
            out.newline()
        out.token("</Triples>" if is_hmm else "</Tuples>")
        out.newline()
        out.token("<LogProbs>")
        out.newline()
        out.vector(self.log_probs)
        out.token("</LogProbs>")
        out.newline()
        out.token("</TransitionModel>")
        out.newline()
