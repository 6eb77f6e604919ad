"""Acoustic scorers: an utterance id in, unscaled pdf log-likelihoods [T, num_pdfs] out.

* ``GmmScorer``: a GMM (``exp/mono``: final.npz; or a triphone ``final.mdl`` + ``tree`` dir
  such as ``exp/tri1``) on MFCC + deltas with per-speaker
  CMVN (as it was trained); the diagonal-Gaussian log-likelihoods of all pdfs are computed
  at once with numpy (one matrix product per utterance, then a log-sum-exp per pdf), which
  lets GMM decoding use the same search as the networks.
* ``NnetScorer``: a hybrid network (``.safetensors`` from ``steps_py.parallel.train``) on CMVN-normalised fbank:
  log posteriors minus the log priors stored with the model ("scaled likelihoods").

``model_kind(path)`` tells them apart: a ``.safetensors`` file is a network, a dir holding
``final.npz`` (or an ``.npz`` file) is a GMM, and so is a Kaldi ``final.mdl`` or an exp dir holding one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from steps_py.decode.inputs import DecodeError


def model_kind(path: Path) -> str:
    p = Path(path)
    if p.suffix == ".safetensors":
        return "nnet"
    if p.suffix == ".npz" or (p / "final.npz").is_file() or (p / "final.mdl").is_file():
        return "gmm"
    if p.is_file():
        from steps_py.kaldi.model_file import is_kaldi_model_file

        if is_kaldi_model_file(p):
            return "gmm"
    raise DecodeError(
        f"model {p}: neither a network (.safetensors from steps_py.parallel.train) nor a GMM (a dir with "
        "final.npz from steps_py.gmm.train_mono, or a final.mdl / exp dir holding one); fix --model"
    )


def load_gmm_params(path: Path):  # -> steps_py.gmm.model_io.GmmParams
    """The GMM of a monophone model (read_model) or of a triphone final.mdl + tree dir."""
    from steps_py.gmm.cd_model import find_cd_model, read_cd_model
    from steps_py.gmm.model_io import read_model
    from steps_py.gmm.tri_init import from_kaldi_model

    cd = find_cd_model(path)
    if cd is not None:
        return from_kaldi_model(read_cd_model(*cd)[0])
    return read_model(path).gmm


class GmmScorer:
    """Log-likelihoods of every pdf of a diagonal-covariance GMM."""

    feature_kind = "mfcc"

    def __init__(self, model: Path) -> None:
        try:
            gmm = load_gmm_params(Path(model))
        except (ValueError, OSError, KeyError) as e:
            raise DecodeError(
                f"GMM {model}: cannot load ({e}); train it first (steps_py.gmm.train_mono or .train_tri) or fix --model"
            ) from None
        self.num_pdfs = gmm.num_pdfs
        self.dim = gmm.dim
        inv = [1.0 / np.asarray(v, np.float64) for v in gmm.variances]
        means = [np.asarray(m, np.float64) for m in gmm.means]
        # float32 products and exp (Kaldi's BaseFloat): about twice as fast as float64, and
        # the log-likelihoods differ by ~1e-5 of their size, far below any decoding beam.
        self._mi = np.concatenate([m * i for m, i in zip(means, inv, strict=True)]).astype(
            np.float32
        )  # [G, D]
        self._iv = np.concatenate(inv).astype(np.float32)  # [G, D]
        self._gconst = np.concatenate(
            [
                np.log(np.asarray(w, np.float64))
                - 0.5
                * (m.shape[1] * np.log(2 * np.pi) + np.log(1.0 / i).sum(1) + (m * m * i).sum(1))
                for w, m, i in zip(gmm.weights, means, inv, strict=True)
            ]
        )
        self._gconst = self._gconst.astype(np.float32)
        counts = np.array([len(w) for w in gmm.weights])
        self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._counts = counts

    def loglikes_of(self, feats: np.ndarray) -> np.ndarray:
        """[T, D] features with deltas -> [T, num_pdfs] float32."""
        x = np.asarray(feats, np.float32)
        comp = self._gconst + x @ self._mi.T - 0.5 * (x * x) @ self._iv.T  # [T, G]
        mx = np.maximum.reduceat(comp, self._starts, axis=1)
        s = np.add.reduceat(
            np.exp(comp - np.repeat(mx, self._counts, axis=1)), self._starts, axis=1
        )
        return (mx + np.log(s)).astype(np.float32)

    def open_features(self, data: Path) -> Any:
        from steps_py.features.io import FeatureReader

        return FeatureReader(Path(data), "mfcc", cmvn=True)

    def loglikes(self, reader: Any, utt: str) -> np.ndarray:
        from steps_py.gmm.feats import add_deltas

        x = add_deltas(reader[utt])
        if x.shape[1] != self.dim:
            raise ValueError(f"{x.shape[1]}-dim features with deltas, the GMM has {self.dim}")
        return self.loglikes_of(x)


class NnetScorer:
    """log p(pdf | x) - log p(pdf) of a hybrid network."""

    feature_kind = "fbank"

    def __init__(self, model: Path, priors: str = "model") -> None:
        from steps_py.nnet.model_io import load_acoustic_model

        if not Path(model).is_file():
            raise DecodeError(
                f"model {model} does not exist; train it first (steps_py.parallel.train) or fix --model"
            )
        try:
            self.model, self.cfg, log_priors = load_acoustic_model(model, priors=priors)
        except ValueError as e:  # ModelFileError: names the file and the fix
            raise DecodeError(str(e)) from None
        self.model.eval()
        self.log_priors = np.asarray(log_priors, np.float32).reshape(-1)
        self.num_pdfs = int(self.cfg["num_pdfs"])
        if self.log_priors.shape[0] != self.num_pdfs:
            raise DecodeError(
                f"model {model}: {self.num_pdfs} outputs but {self.log_priors.shape[0]} "
                "log priors; the model file is inconsistent, re-save it"
            )
        self.dim = int(self.cfg["feat_dim"])

    def open_features(self, data: Path) -> Any:
        from steps_py.features.io import FeatureReader

        return FeatureReader(Path(data), "fbank", cmvn=True)

    def loglikes_of(self, feats: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            lp = self.model.log_posteriors(
                torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
            )
        return (lp.float().cpu().numpy() - self.log_priors[None, :]).astype(np.float32)

    def loglikes(self, reader: Any, utt: str) -> np.ndarray:
        x = reader[utt]
        if x.shape[1] != self.dim:
            raise ValueError(f"{x.shape[1]}-dim fbank, the model expects {self.dim}")
        return self.loglikes_of(x)


def load_scorer(path: Path, priors: str = "model") -> GmmScorer | NnetScorer:
    return NnetScorer(path, priors) if model_kind(path) == "nnet" else GmmScorer(path)
