"""Hybrid acoustic models: a feed-forward DNN on spliced frames and a deep LSTMP on chunks.

Both return logits over pdf ids (the training loop applies cross entropy) and offer
``log_posteriors(feats[T, D]) -> [T, P]`` for a whole utterance (for decoding).

* ``type="dnn"``: input ``x[B, (2*context+1)*D]`` (frames ``t-context .. t+context``
  concatenated, oldest first); ``hidden_layers`` x (Linear -> ReLU -> norm) -> Linear.
  ``norm="renorm"`` (default) is Kaldi's ``relu-renorm-layer`` normalisation: each vector
  is scaled to unit RMS, with no learned parameters (``nn.RMSNorm`` without affine).
  BatchNorm is not offered: its running statistics do not average well across workers.
  ``norm="layer"`` (LayerNorm without affine) and ``"none"`` are the alternatives.
* ``type="lstm"``: LSTMP (``nn.LSTM`` with ``proj_size``), ``lstm_layers`` layers of ``cells``
  cells projected to ``proj``; forward ``x[B, left_context+chunk, D] -> logits[B, chunk, P]``
  (the last ``chunk`` positions). The output at frame ``f`` predicts the label of frame
  ``f - target_delay``; examples (``steps_py.nnet.egs``) are cut accordingly.
  The loop does ``F.cross_entropy(logits.reshape(-1, P), y.reshape(-1))`` for both types.

Usage::

    cfg = {"type": "dnn", "feat_dim": 40, "num_pdfs": 120, "context": 5,
           "hidden_layers": 4, "hidden_dim": 512}
    model = build_model(cfg)
    logits = model(x)                     # x: [B, 11 * 40]
    logp = model.log_posteriors(feats)    # feats: [T, 40] -> [T, 120]
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

# torch warns at every LSTMP forward on CPU that oneDNN has no projection kernel (it then runs
# its own, correctly); once per job log it is noise, so it is not shown
warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")

DNN_DEFAULTS: dict[str, Any] = {
    "context": 5,
    "hidden_layers": 4,
    "hidden_dim": 512,
    "norm": "renorm",
}
LSTM_DEFAULTS: dict[str, Any] = {
    "left_context": 20,
    "chunk": 20,
    "target_delay": 5,
    "lstm_layers": 3,
    "cells": 512,
    "proj": 128,
}


def splice_frames(feats: Tensor, context: int) -> Tensor:
    """[T, D] -> [T, (2c+1) D]: frames t-c..t+c side by side, edges padded by repetition."""
    t = feats.shape[0]
    offs = torch.arange(-context, context + 1, device=feats.device)
    idx = (torch.arange(t, device=feats.device).unsqueeze(1) + offs).clamp_(0, max(t - 1, 0))
    return feats[idx].reshape(t, -1)


def _norm(kind: str, dim: int) -> nn.Module:
    if kind == "renorm":
        return nn.RMSNorm(dim, elementwise_affine=False)
    if kind == "layer":
        return nn.LayerNorm(dim, elementwise_affine=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}': use renorm, layer or none")


class DnnAM(nn.Module):
    """Feed-forward acoustic model on spliced frames."""

    def __init__(
        self,
        feat_dim: int,
        num_pdfs: int,
        context: int = 5,
        hidden_layers: int = 4,
        hidden_dim: int = 512,
        norm: str = "renorm",
    ) -> None:
        super().__init__()
        self.feat_dim, self.num_pdfs, self.context = feat_dim, num_pdfs, context
        layers: list[nn.Module] = []
        d = feat_dim * (2 * context + 1)
        for _ in range(hidden_layers):
            layers += [nn.Linear(d, hidden_dim), nn.ReLU(), _norm(norm, hidden_dim)]
            d = hidden_dim
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(d, num_pdfs)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.hidden(x))

    @torch.no_grad()
    def log_posteriors(self, feats: Tensor, block: int = 4096) -> Tensor:
        """[T, D] -> [T, P] log posteriors of a whole utterance."""
        spliced = splice_frames(feats.float(), self.context)
        outs = [
            torch.log_softmax(self(spliced[i : i + block]), dim=-1)
            for i in range(0, spliced.shape[0], block)
        ]
        return torch.cat(outs) if outs else torch.zeros(0, self.num_pdfs)


class LstmpAM(nn.Module):
    """Deep unidirectional LSTM with projection, trained on chunks with a target delay."""

    def __init__(
        self,
        feat_dim: int,
        num_pdfs: int,
        left_context: int = 20,
        chunk: int = 20,
        target_delay: int = 5,
        lstm_layers: int = 3,
        cells: int = 512,
        proj: int = 128,
    ) -> None:
        super().__init__()
        if proj >= cells:
            raise ValueError(f"proj ({proj}) must be smaller than cells ({cells}) for an LSTMP")
        self.feat_dim, self.num_pdfs = feat_dim, num_pdfs
        self.left_context, self.chunk, self.target_delay = left_context, chunk, target_delay
        self.lstm = nn.LSTM(
            feat_dim, cells, num_layers=lstm_layers, batch_first=True, proj_size=proj
        )
        self.output = nn.Linear(proj, num_pdfs)

    def forward(self, x: Tensor) -> Tensor:
        """x[B, left_context + chunk, D] -> logits[B, chunk, P] (last `chunk` positions)."""
        h, _ = self.lstm(x)
        return self.output(h[:, -self.chunk :])

    @torch.no_grad()
    def log_posteriors(self, feats: Tensor) -> Tensor:
        """[T, D] -> [T, P]: the whole utterance, padded as in training, shifted by the delay."""
        t = feats.shape[0]
        if t == 0:
            return torch.zeros(0, self.num_pdfs)
        feats = feats.float()
        pad_left = max(self.left_context - self.target_delay, 0)
        padded = torch.cat(
            [feats[:1].expand(pad_left, -1), feats, feats[-1:].expand(self.target_delay, -1)]
        )
        h, _ = self.lstm(padded.unsqueeze(0))
        start = pad_left + self.target_delay
        return torch.log_softmax(self.output(h[0, start : start + t]), dim=-1)


# keys that may ride along in a config (egs info of either model type) and are ignored
_PASSTHROUGH = (
    {"model_type", "right_context", "chunk_size"} | set(DNN_DEFAULTS) | set(LSTM_DEFAULTS)
)

# sizes that make an empty layer when 0 (hidden_layers, context, left_context, target_delay may be 0)
_POSITIVE = frozenset({"hidden_dim", "cells", "proj", "lstm_layers", "chunk"})


def model_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The full config (defaults filled in) that `build_model` uses and `model_io` stores.

    Unknown keys are an error (a misspelt size would otherwise be silently replaced by its default).
    """
    kind = cfg.get("type", cfg.get("model_type"))
    unknown = sorted(set(cfg) - _PASSTHROUGH - {"type", "feat_dim", "num_pdfs"})
    if unknown:
        raise ValueError(
            f"unknown model config keys {unknown}; dnn takes {sorted(DNN_DEFAULTS)}, "
            f"lstm takes {sorted(LSTM_DEFAULTS)}"
        )
    for key in ("feat_dim", "num_pdfs"):
        if not isinstance(cfg.get(key), int) or cfg[key] <= 0:
            raise ValueError(f"model config needs a positive integer '{key}', got {cfg.get(key)!r}")
    if kind == "dnn":
        defaults = DNN_DEFAULTS
    elif kind == "lstm":
        defaults = LSTM_DEFAULTS
    else:
        raise ValueError(f"model config 'type' must be 'dnn' or 'lstm', got {kind!r}")
    out = {"type": kind, "feat_dim": cfg["feat_dim"], "num_pdfs": cfg["num_pdfs"]}
    for k, v in defaults.items():
        out[k] = cfg.get(k, v)
        if isinstance(v, int) and (
            not isinstance(out[k], int) or isinstance(out[k], bool) or out[k] < 0
        ):
            raise ValueError(f"model config '{k}' must be a non-negative integer, got {out[k]!r}")
        if k in _POSITIVE and out[k] == 0:
            raise ValueError(
                f"model config '{k}' is 0: a layer needs at least one unit; give {k}=<n> with "
                f"n >= 1 (default {v})"
            )
        if isinstance(v, str) and not isinstance(out[k], str):
            raise ValueError(f"model config '{k}' must be a string, got {out[k]!r}")
    return out


def build_model(cfg: dict[str, Any]) -> nn.Module:
    """Build a DNN or LSTMP from a config dict (keys: see DNN_DEFAULTS / LSTM_DEFAULTS)."""
    c = model_config(cfg)
    kw = {k: v for k, v in c.items() if k != "type"}
    return DnnAM(**kw) if c["type"] == "dnn" else LstmpAM(**kw)
