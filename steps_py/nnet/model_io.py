"""Save/load acoustic models as safetensors: weights + log priors as tensors, config as JSON metadata.

File layout: tensors ``model.<param>``, ``log_priors`` (what decoding divides by) and,
optionally, ``log_priors_counts`` (the alignment-count priors, kept when ``log_priors`` are
the model's own adjusted priors, see ``steps_py.nnet.priors``); metadata ``format`` =
``ema-asr-acoustic-model``, ``version`` = ``1``, ``config`` = JSON of the full model config.

Usage::

    save_acoustic_model("exp/run/final/global.safetensors", model, cfg, log_priors)
    model, cfg, log_priors = load_acoustic_model("exp/run/final/global.safetensors")
    model, cfg, count_priors = load_acoustic_model(path, priors="counts")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from steps_py.fileio import atomic_path
from steps_py.nnet.models import build_model, model_config

FORMAT = "ema-asr-acoustic-model"
VERSION = "1"


class ModelFileError(ValueError):
    """The file is not an acoustic model written by `save_acoustic_model`."""


PRIOR_KINDS = ("model", "counts")


def save_acoustic_model(
    path: Path | str,
    model: nn.Module,
    cfg: dict[str, Any],
    log_priors: np.ndarray | torch.Tensor | None,
    count_log_priors: np.ndarray | torch.Tensor | None = None,
) -> None:
    """Write weights, config and log priors (None: zeros, i.e. no prior division) atomically.

    ``count_log_priors``: the alignment-count priors, stored beside ``log_priors`` when those
    are something else (the model's adjusted priors) so decoding can still choose them.
    """
    full = model_config(cfg)
    tensors = {
        f"model.{k}": v.detach().to("cpu").contiguous().clone()
        for k, v in model.state_dict().items()
    }
    if log_priors is None:
        log_priors = np.zeros(full["num_pdfs"], dtype=np.float32)
    for key, value in (("log_priors", log_priors), ("log_priors_counts", count_log_priors)):
        if value is None:
            continue
        lp = torch.as_tensor(np.asarray(value), dtype=torch.float32).reshape(-1)
        if lp.numel() != full["num_pdfs"]:
            raise ValueError(
                f"{key} has {lp.numel()} entries but the model has {full['num_pdfs']} pdfs"
            )
        tensors[key] = lp
    meta = {"format": FORMAT, "version": VERSION, "config": json.dumps(full, sort_keys=True)}
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_acoustic_model(
    path: Path | str, device: str | torch.device = "cpu", priors: str = "model"
) -> tuple[nn.Module, dict[str, Any], np.ndarray]:
    """Return (model in eval mode, config, log priors float32 [P]).

    ``priors``: ``"model"`` (the file's ``log_priors``) or ``"counts"`` (its alignment-count
    priors; for a file without a separate copy these are ``log_priors`` themselves).
    """
    if priors not in PRIOR_KINDS:
        raise ValueError(f"priors must be one of {PRIOR_KINDS}, got {priors!r}")
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ModelFileError(
                    f"{path}: not an acoustic model of this recipe (metadata format "
                    f"{meta.get('format')!r}, expected {FORMAT!r}); pass a file "
                    f"written by steps_py.nnet.model_io.save_acoustic_model"
                )
            cfg = json.loads(meta["config"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, json.JSONDecodeError, KeyError) as e:
        raise ModelFileError(f"{path}: cannot read as a safetensors acoustic model ({e})") from None
    model = build_model(cfg)
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelFileError(f"{path}: weights do not match the stored config ({e})") from None
    model.to(device).eval()
    key = (
        "log_priors_counts"
        if priors == "counts" and "log_priors_counts" in tensors
        else "log_priors"
    )
    return model, cfg, tensors[key].cpu().numpy().astype(np.float32)
