"""Kaldi's ``DiagGmm`` and ``AmDiagGmm`` (``src/gmm/diag-gmm.cc``, ``src/gmm/am-diag-gmm.cc``).

A DiagGmm is stored in Kaldi's natural parameters, exactly as in the file::

    <DiagGMM> <GCONSTS> [K] <WEIGHTS> [K] <MEANS_INVVARS> [K x D] <INV_VARS> [K x D] </DiagGMM>

(``<GCONSTS>`` is optional on reading; Kaldi recomputes it anyway.) An AmDiagGmm is
``<DIMENSION> D <NUMPDFS> P`` followed by P DiagGmms. Values are kept as the float32
arrays read, so writing back reproduces the file. ``means``/``variances`` give the
moment form the project's GMM code uses; ``from_moments`` goes the other way and
computes gconsts as Kaldi's ComputeGconsts does (float32 accumulation over dimensions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from steps_py.kaldi.stream import KaldiFormatError, KaldiInput, KaldiOutput

LOG_2PI = math.log(2.0 * math.pi)


def compute_gconsts(
    weights: np.ndarray, means_invvars: np.ndarray, inv_vars: np.ndarray
) -> np.ndarray:
    """Kaldi's DiagGmm::ComputeGconsts: log w - D/2 log 2pi + 1/2 sum(log ivar - mivar^2/ivar).

    Follows Kaldi's float arithmetic: a float accumulator, each dimension's term in double.
    """
    w = np.asarray(weights, np.float32)
    mi = np.asarray(means_invvars, np.float32).astype(np.float64)
    iv = np.asarray(inv_vars, np.float32)
    dim = iv.shape[1]
    offset = np.float32(-0.5 * LOG_2PI * dim)
    with np.errstate(divide="ignore"):
        gc = (np.log(w) + offset).astype(np.float32)
    log_iv = np.log(iv).astype(np.float64)
    iv64 = iv.astype(np.float64)
    for d in range(dim):
        gc = (
            gc.astype(np.float64) + (0.5 * log_iv[:, d] - 0.5 * mi[:, d] * mi[:, d] / iv64[:, d])
        ).astype(np.float32)
    if np.isnan(gc).any():
        raise KaldiFormatError(
            f"Gaussian {int(np.argmax(np.isnan(gc)))}: not a number in the gconst computation"
        )
    return np.where(np.isposinf(gc), -gc, gc).astype(np.float32)


@dataclass
class DiagGmm:
    weights: np.ndarray  # float32 [K]
    means_invvars: np.ndarray  # float32 [K, D]
    inv_vars: np.ndarray  # float32 [K, D]
    gconsts: np.ndarray  # float32 [K]

    @property
    def num_gauss(self) -> int:
        return len(self.weights)

    @property
    def dim(self) -> int:
        return int(self.inv_vars.shape[1])

    @property
    def means(self) -> np.ndarray:
        return (self.means_invvars / self.inv_vars).astype(np.float32)

    @property
    def variances(self) -> np.ndarray:
        return (1.0 / self.inv_vars).astype(np.float32)

    @classmethod
    def from_moments(cls, weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> DiagGmm:
        """From weights, means and variances (Kaldi's SetInvVarsAndMeans + ComputeGconsts)."""
        w = np.asarray(weights, np.float32).reshape(-1)
        iv = (1.0 / np.asarray(variances, np.float64)).astype(np.float32)
        mi = (np.asarray(means, np.float32) * iv).astype(np.float32)
        return cls(w, mi, iv, compute_gconsts(w, mi, iv))

    @classmethod
    def read(cls, inp: KaldiInput) -> DiagGmm:
        tok = inp.read_token()
        if tok not in ("<DiagGMM>", "<DiagGMMBegin>"):
            raise inp.error(f"expected <DiagGMM>, got {tok!r}")
        tok = inp.read_token()
        gconsts = None
        if tok == "<GCONSTS>":
            gconsts = inp.read_vector().astype(np.float32)
            inp.expect_token("<WEIGHTS>")
        elif tok != "<WEIGHTS>":
            raise inp.error(f"expected <GCONSTS> or <WEIGHTS>, got {tok!r}")
        weights = inp.read_vector().astype(np.float32)
        inp.expect_token("<MEANS_INVVARS>")
        mi = inp.read_matrix().astype(np.float32)
        inp.expect_token("<INV_VARS>")
        iv = inp.read_matrix().astype(np.float32)
        tok = inp.read_token()
        if tok not in ("</DiagGMM>", "<DiagGMMEnd>"):
            raise inp.error(f"expected </DiagGMM>, got {tok!r}")
        if mi.shape != iv.shape or mi.shape[0] != len(weights):
            raise inp.error(
                f"DiagGMM shapes disagree: weights {weights.shape}, means_invvars {mi.shape}, inv_vars {iv.shape}"
            )
        if (iv <= 0).any():
            raise inp.error("DiagGMM has a non-positive inverse variance")
        if gconsts is None or len(gconsts) != len(weights):
            gconsts = compute_gconsts(weights, mi, iv)
        return cls(weights, mi, iv, gconsts)

    def write(self, out: KaldiOutput) -> None:
        out.token("<DiagGMM>")
        out.newline()
        out.token("<GCONSTS>")
        out.vector(self.gconsts)
        out.token("<WEIGHTS>")
        out.vector(self.weights)
        out.token("<MEANS_INVVARS>")
        out.matrix(self.means_invvars)
        out.token("<INV_VARS>")
        out.matrix(self.inv_vars)
        out.token("</DiagGMM>")
        out.newline()


@dataclass
class AmDiagGmm:
    pdfs: list[DiagGmm]

    @property
    def num_pdfs(self) -> int:
        return len(self.pdfs)

    @property
    def dim(self) -> int:
        return self.pdfs[0].dim if self.pdfs else 0

    @property
    def num_gauss(self) -> int:
        return sum(g.num_gauss for g in self.pdfs)

    @classmethod
    def read(cls, inp: KaldiInput) -> AmDiagGmm:
        inp.expect_token("<DIMENSION>")
        dim = inp.read_int32()
        inp.expect_token("<NUMPDFS>")
        n = inp.read_int32()
        if n <= 0:
            raise inp.error(f"<NUMPDFS> {n} must be positive")
        pdfs = []
        for j in range(n):
            g = DiagGmm.read(inp)
            if g.dim != dim:
                raise inp.error(f"pdf {j} has dimension {g.dim}, the model says {dim}")
            pdfs.append(g)
        return cls(pdfs)

    def write(self, out: KaldiOutput) -> None:
        out.token("<DIMENSION>")
        out.int32(self.dim)
        out.token("<NUMPDFS>")
        out.int32(self.num_pdfs)
        for g in self.pdfs:
            g.write(out)
