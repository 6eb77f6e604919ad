"""``final.mdl`` of a Kaldi GMM system: TransitionModel followed by AmDiagGmm.

    model = read_kaldi_model("exp/mono/final.mdl")          # text or binary
    write_kaldi_model("out/final.mdl", model, binary=False)  # what gmm-copy --binary=false writes
    mono = steps_py.gmm.model_io.to_mono_model(model)  # the project's MonoModel
    model, tree = from_mono_model(mono)                      # the project's GMM as Kaldi's

Kaldi writes ``trans_model.Write(os, binary); am_gmm.Write(os, binary)`` after the binary
header, so the file is exactly the concatenation of the two objects.

kaldi-hmm-gmm 1.1.4 has no Read/Write for TransitionModel or AmDiagGmm and builds a
TransitionModel only from a ContextDependency, which it can make only for monophone
systems (``monophone_context_dependency`` and its ``_shared`` variant). A context-
independent Kaldi model (one pdf per phone and HMM state, as ``gmm-init-mono`` makes,
with or without ``--shared-phones``) therefore becomes a kaldi-hmm-gmm model here; the
transition ids are checked to map to the same pdfs. A context-dependent model (triphone
tree) can be read, written, and used for its alignments (``steps_py.kaldi.alignment``), but
not turned into kaldi-hmm-gmm objects for decoding or aligning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steps_py.fileio import atomic_path
from steps_py.kaldi.diag_gmm import AmDiagGmm, DiagGmm
from steps_py.kaldi.stream import KaldiFormatError, KaldiInput, KaldiOutput, read_bytes
from steps_py.kaldi.topology import HmmTopology
from steps_py.kaldi.transition_model import TransitionModel
from steps_py.kaldi.tree import ContextDependency


@dataclass
class KaldiGmmModel:
    transition_model: TransitionModel
    am: AmDiagGmm

    def check(self, name: str = "model") -> None:
        n_tm, n_am = self.transition_model.num_pdfs, self.am.num_pdfs
        if n_tm != n_am:
            raise KaldiFormatError(
                f"{name}: the transition model has {n_tm} pdfs but the GMM has {n_am}"
            )

    def to_bytes(self, binary: bool = False) -> bytes:
        out = KaldiOutput(binary)
        self.transition_model.write(out)
        self.am.write(out)
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<final.mdl>") -> KaldiGmmModel:
        inp = KaldiInput(data, name=name)
        model = cls(TransitionModel.read(inp), AmDiagGmm.read(inp))
        model.check(name)
        return model


def is_kaldi_model_file(path: Path) -> bool:
    """True if `path` starts like a Kaldi GMM model (text or binary ``<TransitionModel>``)."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(64)
    return head.startswith(b"\0B<TransitionModel>") or head.lstrip().startswith(
        b"<TransitionModel>"
    )


def read_kaldi_model(path: Path) -> KaldiGmmModel:
    path = Path(path)
    return KaldiGmmModel.from_bytes(read_bytes(path), name=str(path))


def write_kaldi_model(path: Path, model: KaldiGmmModel, binary: bool = False) -> None:
    """Write `model` as Kaldi's ``final.mdl`` (atomically)."""
    data = model.to_bytes(binary)
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)


# ---------------------------------------------------------------------------------
# monophone structure
def monophone_pdf_table(tm: TransitionModel) -> dict[int, list[int]] | None:
    """phone -> pdf of each pdf class, if the model is context independent (else None).

    Context independent means every (phone, HMM state) has exactly one transition state,
    i.e. the same pdf whatever the neighbouring phones.
    """
    seen: dict[tuple[int, int], int] = {}
    for t in tm.tuples:
        if (t.phone, t.hmm_state) in seen or t.forward_pdf != t.self_loop_pdf:
            return None
        seen[(t.phone, t.hmm_state)] = t.forward_pdf
    table: dict[int, list[int]] = {}
    for phone in tm.topo.phones:
        states = tm.topo.entry_for_phone(phone)
        k = tm.topo.num_pdf_classes(phone)
        pdfs = [-1] * k
        for j, s in enumerate(states[:-1]):
            if (phone, j) not in seen:
                return None
            pdf = seen[(phone, j)]
            if pdfs[s.forward_pdf_class] not in (-1, pdf):
                return None
            pdfs[s.forward_pdf_class] = pdf
        table[phone] = pdfs
    return table


def shared_phone_sets(tm: TransitionModel) -> list[list[int]] | None:
    """Phones grouped by identical pdfs (``gmm-init-mono --shared-phones``); None if none share.

    Raises if the model is not context independent.
    """
    table = monophone_pdf_table(tm)
    if table is None:
        raise KaldiFormatError(
            "the model is context dependent (a phone state has several pdfs): "
            "only monophone models can be built into kaldi-hmm-gmm objects"
        )
    groups: dict[tuple[int, ...], list[int]] = {}
    for phone in sorted(table):
        groups.setdefault(tuple(table[phone]), []).append(phone)
    if all(len(g) == 1 for g in groups.values()):
        return None
    return sorted(groups.values(), key=lambda g: g[0])


# ---------------------------------------------------------------------------------
# conversion to and from the project's GMM
def from_mono_model(mono) -> tuple[KaldiGmmModel, ContextDependency]:  # mono: MonoModel
    """The project's monophone GMM as a Kaldi model and tree (what gmm-init-mono + gmm-est make)."""
    if getattr(mono, "shared_phones", None):
        raise KaldiFormatError(
            "a model with shared phones came from Kaldi: write its KaldiGmmModel instead"
        )
    topo = HmmTopology.from_text(mono.topo_text)
    tree = ContextDependency.monophone(topo)
    tm = TransitionModel.from_tree(tree, topo)
    log_probs = np.asarray(mono.transition_log_probs, dtype=np.float32)
    if len(log_probs) != tm.num_transition_ids + 1:
        raise KaldiFormatError(
            f"{len(log_probs) - 1} transition log-probs for {tm.num_transition_ids} transition ids"
        )
    tm = TransitionModel(topo, tm.tuples, log_probs)
    g = mono.gmm
    if g.num_pdfs != tm.num_pdfs:
        raise KaldiFormatError(
            f"the GMM has {g.num_pdfs} pdfs, the topology's monophone tree {tm.num_pdfs}"
        )
    am = AmDiagGmm(
        [
            DiagGmm.from_moments(w, m, v)
            for w, m, v in zip(g.weights, g.means, g.variances, strict=True)
        ]
    )
    return KaldiGmmModel(tm, am), tree
