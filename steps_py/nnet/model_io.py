"""Save/load acoustic models as safetensors: weights + log priors as tensors, config as JSON metadata.

File layout: tensors ``model.<param>`` and ``log_priors``; metadata ``format`` =
``ema-asr-acoustic-model``, ``version`` = ``1``, ``config`` = JSON of the full model config.

Usage::

    save_acoustic_model("exp/run/final/global.safetensors", model, cfg, log_priors)
    model, cfg, log_priors = load_acoustic_model("exp/run/final/global.safetensors")
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


def save_acoustic_model(path: Path | str, model: nn.Module, cfg: dict[str, Any],
                        log_priors: np.ndarray | torch.Tensor | None) -> None:
    """Write model weights, config and log priors (None: zeros, i.e. no prior division) atomically."""
    full = model_config(cfg)
    tensors = {f"model.{k}": v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    if log_priors is None:
        lp = torch.zeros(full["num_pdfs"], dtype=torch.float32)
    else:
        lp = torch.as_tensor(np.asarray(log_priors), dtype=torch.float32).reshape(-1)
    if lp.numel() != full["num_pdfs"]:
        raise ValueError(f"log_priors has {lp.numel()} entries but the model has {full['num_pdfs']} pdfs")
    tensors["log_priors"] = lp
    meta = {"format": FORMAT, "version": VERSION, "config": json.dumps(full, sort_keys=True)}
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_acoustic_model(path: Path | str, device: str | torch.device = "cpu"
                        ) -> tuple[nn.Module, dict[str, Any], np.ndarray]:
    """Return (model in eval mode, config, log priors float32 [P])."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ModelFileError(f"{path}: not an acoustic model of this recipe (metadata format "
                                     f"{meta.get('format')!r}, expected {FORMAT!r}); pass a file "
                                     f"written by steps_py.nnet.model_io.save_acoustic_model")
            cfg = json.loads(meta["config"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, json.JSONDecodeError, KeyError) as e:
        raise ModelFileError(f"{path}: cannot read as a safetensors acoustic model ({e})") from None
    model = build_model(cfg)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelFileError(f"{path}: weights do not match the stored config ({e})") from None
    model.to(device).eval()
    return model, cfg, tensors["log_priors"].cpu().numpy().astype(np.float32)
