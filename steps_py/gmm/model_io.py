"""Save and load a monophone GMM-HMM (topology, transition model, diagonal GMMs).

One loading function for every GMM the project can use, ``read_model(path)``:

* the project's own ``final.npz`` (or a dir holding it), written by ``save_model``;
* a Kaldi ``final.mdl`` (text or binary; or a dir holding it and no final.npz), read by
  ``steps_py.kaldi.model_file``; a ``tree`` beside it is read and checked against the
  model. Context-independent models only (``gmm-init-mono``, with or without
  ``--shared-phones``): kaldi-hmm-gmm cannot build a triphone ContextDependency.

kaldi-hmm-gmm's TransitionModel and AmDiagGmm have no read/write methods, and pickling
them is not allowed here, so the parameters go to a plain npz and the objects are
rebuilt on load: topology from its text, monophone tree from the topology (or the shared
monophone tree of a Kaldi model), transition probabilities restored by an MLE update on
counts proportional to the saved probabilities (checked after the rebuild), GMMs set
Gaussian by Gaussian.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import kaldi_hmm_gmm as khg
import numpy as np

from steps_py.fileio import atomic_path
from steps_py.kaldi.model_file import KaldiGmmModel, shared_phone_sets


class ModelError(ValueError):
    """A model file is missing or inconsistent; the message names the file and the fix."""


@dataclass
class GmmParams:
    """Numpy form of an AmDiagGmm: one (weights[K], means[K, D], variances[K, D]) per pdf."""

    weights: list[np.ndarray]
    means: list[np.ndarray]
    variances: list[np.ndarray]

    @property
    def num_pdfs(self) -> int:
        return len(self.weights)

    @property
    def num_gauss(self) -> int:
        return int(sum(len(w) for w in self.weights))

    @property
    def dim(self) -> int:
        return int(self.means[0].shape[1])

    @classmethod
    def from_am(cls, am: khg.AmDiagGmm) -> GmmParams:
        w, m, v = [], [], []
        for j in range(am.num_pdfs):
            g = am.get_pdf(j)
            w.append(np.array(g.weights, dtype=np.float32).reshape(-1))
            m.append(np.array(g.means, dtype=np.float32))
            v.append(np.array(g.vars, dtype=np.float32))
        return cls(w, m, v)

    def to_am(self) -> khg.AmDiagGmm:
        am = khg.AmDiagGmm()
        for w, m, v in zip(self.weights, self.means, self.variances, strict=True):
            g = khg.DiagGmm(nmix=len(w), dim=m.shape[1])
            g.set_weights(np.ascontiguousarray(w, dtype=np.float32))
            g.set_invvars_and_means(
                np.ascontiguousarray(1.0 / v, dtype=np.float32),
                np.ascontiguousarray(m, dtype=np.float32),
            )
            g.compute_gconsts()
            am.add_pdf(g)
        return am


@dataclass
class MonoModel:
    """Everything that defines the model: topology text, transition log-probs, GMMs."""

    topo_text: str
    transition_log_probs: np.ndarray
    gmm: GmmParams
    shared_phones: list[list[int]] | None = None  # a Kaldi model's --shared-phones sets, else None

    def build(
        self,
    ) -> tuple[khg.HmmTopology, khg.ContextDependency, khg.TransitionModel, khg.AmDiagGmm]:
        topo = read_topology(self.topo_text)
        if self.shared_phones:
            tree = khg.monophone_context_dependency_shared(
                self.shared_phones, topo.get_phone_to_num_pdf_classes()
            )
        else:
            tree = monophone_tree(topo)
        tm = khg.TransitionModel(ctx_dep=tree, hmm_topo=topo)
        set_transition_log_probs(tm, self.transition_log_probs)
        return topo, tree, tm, self.gmm.to_am()


def read_topology(text: str) -> khg.HmmTopology:
    topo = khg.HmmTopology()
    try:
        topo.read(text)
    except Exception as e:
        raise ModelError(
            f"cannot parse the HMM topology ({e}); lang/topo must be Kaldi text format"
        ) from e
    return topo


def monophone_tree(topo: khg.HmmTopology) -> khg.ContextDependency:
    return khg.monophone_context_dependency(
        phones=topo.phones, phone2num_pdf_classes=topo.get_phone_to_num_pdf_classes()
    )


def set_transition_log_probs(tm: khg.TransitionModel, log_probs: np.ndarray) -> None:
    """Make `tm` carry `log_probs` (indexed by transition id, entry 0 unused)."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    if len(log_probs) != tm.num_transition_ids + 1:
        raise ModelError(
            f"{len(log_probs) - 1} transition ids saved but the topology gives {tm.num_transition_ids}; model and lang do not match"
        )
    counts = np.exp(log_probs) * 1.0e6
    counts[0] = 0.0
    tm.mle_update(counts, khg.MleTransitionUpdateConfig(floor=1e-10, mincount=0.0))
    got = np.asarray(tm.log_probs, dtype=np.float64)
    if not np.allclose(got[1:], log_probs[1:], atol=1e-3):
        raise ModelError("could not restore transition probabilities exactly")


def save_model(path: Path, model: MonoModel) -> None:
    """Write `model` as an npz (no pickled objects), atomically."""
    g = model.gmm
    counts = np.array([len(w) for w in g.weights], dtype=np.int64)
    arrays = {
        "topo": np.frombuffer(model.topo_text.encode("utf-8"), dtype=np.uint8),
        "transition_log_probs": np.asarray(model.transition_log_probs, dtype=np.float64),
        "gauss_per_pdf": counts,
        "weights": np.concatenate(g.weights).astype(np.float32),
        "means": np.concatenate(g.means).astype(np.float32),
        "variances": np.concatenate(g.variances).astype(np.float32),
    }
    if model.shared_phones:
        arrays["shared_phone_set_sizes"] = np.array(
            [len(x) for x in model.shared_phones], dtype=np.int64
        )
        arrays["shared_phones"] = np.array(
            [p for x in model.shared_phones for p in x], dtype=np.int64
        )
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(buf.getvalue())


def read_model(path: Path) -> MonoModel:
    """The GMM at `path`: a project npz, a Kaldi final.mdl, or a dir holding one of them."""
    path = Path(path)
    if path.is_dir():
        if not (path / "final.npz").is_file() and (path / "final.mdl").is_file():
            return read_kaldi_gmm(path / "final.mdl")
        path = path / "final.npz"
    if not path.is_file():
        raise ModelError(
            f"{path} not found: train it with `python -m steps_py.gmm.train_mono` "
            "(or pass a Kaldi final.mdl, or a Kaldi exp dir holding one)"
        )
    if path.suffix != ".npz":
        from steps_py.kaldi.model_file import is_kaldi_model_file

        if is_kaldi_model_file(path):
            return read_kaldi_gmm(path)
        raise ModelError(f"{path} is neither a model npz nor a Kaldi GMM model (final.mdl)")
    with np.load(path, allow_pickle=False) as z:
        bounds = np.concatenate([[0], np.cumsum(z["gauss_per_pdf"])])
        sl = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        gmm = GmmParams(
            [z["weights"][s] for s in sl],
            [z["means"][s] for s in sl],
            [z["variances"][s] for s in sl],
        )
        shared = None
        if "shared_phones" in z.files:
            ends = np.cumsum(z["shared_phone_set_sizes"])
            shared = [[int(p) for p in x] for x in np.split(z["shared_phones"], ends[:-1])]
        return MonoModel(bytes(z["topo"]).decode("utf-8"), z["transition_log_probs"], gmm, shared)


def load_gmm(path: Path) -> tuple[khg.TransitionModel, khg.AmDiagGmm]:
    """Rebuild (TransitionModel, AmDiagGmm) from a model npz (or a dir holding final.npz)."""
    _, _, tm, am = read_model(path).build()
    return tm, am


def read_kaldi_gmm(path: Path, tree_path: Path | None = None) -> MonoModel:
    """A Kaldi ``final.mdl`` as a MonoModel whose kaldi-hmm-gmm objects map ids as Kaldi's do.

    `tree_path` (default: ``tree`` beside the model, if present) is checked against the model:
    the transition model Kaldi would build from that tree must be the one in the file.
    """
    from steps_py.kaldi.model_file import read_kaldi_model
    from steps_py.kaldi.stream import KaldiFormatError
    from steps_py.kaldi.transition_model import TransitionModel
    from steps_py.kaldi.tree import read_tree

    path = Path(path)
    try:
        kmodel = read_kaldi_model(path)
        tm = kmodel.transition_model
        tree_path = Path(tree_path) if tree_path is not None else path.parent / "tree"
        if tree_path.is_file():
            tree = read_tree(tree_path)
            if not tree.is_monophone():
                raise ModelError(
                    f"{tree_path}: context width {tree.context_width}: a context-dependent model; "
                    "steps_py.gmm.align and steps_py.decode.graph take its dir (final.mdl + tree), "
                    "GMM decoding takes monophone models only (kaldi-hmm-gmm cannot build a "
                    "triphone tree); its alignments can train networks (steps_py.nnet.egs --ali-dir)"
                )
            if tm.is_hmm() and TransitionModel.from_tree(tree, tm.topo).tuples != tm.tuples:
                raise ModelError(
                    f"{tree_path} does not belong to {path}: the transition states it defines differ"
                )
        mono = to_mono_model(kmodel)
    except KaldiFormatError as e:
        raise ModelError(f"{path}: {e}") from None
    _, _, ktm, _ = mono.build()
    tid2pdf = np.asarray(ktm.transition_id_to_pdf_array(), dtype=np.int64)
    if len(tid2pdf) == tm.num_transition_ids:
        tid2pdf = np.concatenate([[-1], tid2pdf])
    if ktm.num_transition_ids != tm.num_transition_ids or not np.array_equal(
        tid2pdf[1:], tm.tid2pdf[1:]
    ):
        raise ModelError(
            f"{path}: kaldi-hmm-gmm numbers this model's transition ids differently from Kaldi "
            "(unusual tree); it cannot be used for decoding or alignment here"
        )
    return mono


class HasTopology(Protocol):
    topo_text: str


def check_model_matches_lang(
    model: HasTopology, phones: dict[str, int], where: str, model_phones_txt: Path | None = None
) -> None:
    """Every phone of the model's topology must be a phone of the lang (`phones`: phones.txt).

    With `model_phones_txt` (the phones.txt Kaldi keeps in an exp dir) the phone names must
    agree too, as Kaldi's utils/lang/check_phones_compatible.sh requires.
    """
    topo = read_topology(model.topo_text)
    ids = set(phones.values())
    missing = [p for p in topo.phones if p not in ids]
    if missing:
        raise ModelError(
            f"the model's topology has phone ids {missing[:5]} that {where}/phones.txt lacks: "
            "model and lang dir come from different lang dirs"
        )
    if model_phones_txt is not None and Path(model_phones_txt).is_file():
        theirs = {i: p for p, i in read_phone_table(Path(model_phones_txt)).items()}
        ours = {i: p for p, i in phones.items()}
        differ = [i for i in topo.phones if theirs.get(i) != ours.get(i)]
        if differ:
            i = differ[0]
            raise ModelError(
                f"phone {i} is {theirs.get(i)!r} in {model_phones_txt} but {ours.get(i)!r} in "
                f"{where}/phones.txt: use the lang dir the model was trained with (for a Kaldi "
                "model: python -m steps_py.kaldi.lang_import)"
            )


def read_phone_table(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        f = line.split()
        if len(f) == 2 and f[1].isdigit():
            out[f[0]] = int(f[1])
    return out


# Kaldi's model -> the project's (kaldi/ never imports gmm/: the conversion lives here)
def to_mono_model(model: KaldiGmmModel) -> MonoModel:
    """The project's MonoModel for a context-independent Kaldi model (see the module docstring)."""
    tm = model.transition_model
    sets = shared_phone_sets(tm)
    gmm = GmmParams(
        [g.weights.copy() for g in model.am.pdfs],
        [g.means for g in model.am.pdfs],
        [g.variances for g in model.am.pdfs],
    )
    return MonoModel(tm.topo.to_text(), tm.log_probs.astype(np.float64), gmm, shared_phones=sets)
