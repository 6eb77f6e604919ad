"""Save and load a monophone GMM-HMM (topology, transition model, diagonal GMMs) as npz.

kaldi-hmm-gmm's TransitionModel and AmDiagGmm have no read/write methods, and pickling
them is not allowed here, so the parameters go to a plain npz and the objects are
rebuilt on load: topology from its text, monophone tree from the topology, transition
probabilities restored by an MLE update on counts proportional to the saved
probabilities (checked after the rebuild), GMMs set Gaussian by Gaussian.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import kaldi_hmm_gmm as khg
import numpy as np

from steps_py.fileio import atomic_path


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
            g.set_invvars_and_means(np.ascontiguousarray(1.0 / v, dtype=np.float32), np.ascontiguousarray(m, dtype=np.float32))
            g.compute_gconsts()
            am.add_pdf(g)
        return am


@dataclass
class MonoModel:
    """Everything that defines the model: topology text, transition log-probs, GMMs."""

    topo_text: str
    transition_log_probs: np.ndarray
    gmm: GmmParams

    def build(self) -> tuple[khg.HmmTopology, khg.ContextDependency, khg.TransitionModel, khg.AmDiagGmm]:
        topo = read_topology(self.topo_text)
        tree = monophone_tree(topo)
        tm = khg.TransitionModel(ctx_dep=tree, hmm_topo=topo)
        set_transition_log_probs(tm, self.transition_log_probs)
        return topo, tree, tm, self.gmm.to_am()


def read_topology(text: str) -> khg.HmmTopology:
    topo = khg.HmmTopology()
    try:
        topo.read(text)
    except Exception as e:
        raise ModelError(f"cannot parse the HMM topology ({e}); lang/topo must be Kaldi text format") from e
    return topo


def monophone_tree(topo: khg.HmmTopology) -> khg.ContextDependency:
    return khg.monophone_context_dependency(phones=topo.phones, phone2num_pdf_classes=topo.get_phone_to_num_pdf_classes())


def set_transition_log_probs(tm: khg.TransitionModel, log_probs: np.ndarray) -> None:
    """Make `tm` carry `log_probs` (indexed by transition id, entry 0 unused)."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    if len(log_probs) != tm.num_transition_ids + 1:
        raise ModelError(f"{len(log_probs) - 1} transition ids saved but the topology gives {tm.num_transition_ids}; model and lang do not match")
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
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(buf.getvalue())


def read_model(path: Path) -> MonoModel:
    path = Path(path)
    if path.is_dir():
        path = path / "final.npz"
    if not path.is_file():
        raise ModelError(f"{path} not found: train it with `python -m steps_py.gmm.train_mono`")
    with np.load(path, allow_pickle=False) as z:
        bounds = np.concatenate([[0], np.cumsum(z["gauss_per_pdf"])])
        sl = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        gmm = GmmParams([z["weights"][s] for s in sl], [z["means"][s] for s in sl], [z["variances"][s] for s in sl])
        return MonoModel(bytes(z["topo"]).decode("utf-8"), z["transition_log_probs"], gmm)


def load_gmm(path: Path) -> tuple[khg.TransitionModel, khg.AmDiagGmm]:
    """Rebuild (TransitionModel, AmDiagGmm) from a model npz (or a dir holding final.npz)."""
    _, _, tm, am = read_model(path).build()
    return tm, am
