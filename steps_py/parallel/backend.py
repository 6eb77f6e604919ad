"""Where the training loop gets models, examples and optimizers from.

The loop is written against the examples and model API of docs/INTERFACES.md
(`steps_py.nnet.models.build_model`, `steps_py.nnet.egs.EgsReader`,
`steps_py.nnet.model_io.save_acoustic_model`, `steps_py.nnet.optim.make_optimizer`).
`NnetBackend` binds those (imported lazily, so `--help` works without them). Tests inject
their own backend with the same API (`tests/toy_nnet.py`: a tiny MLP on numpy examples) by
calling `steps_py.parallel.train.run(args, backend=...)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from steps_py.nnet.egs_dir import EgsDir


class Reader(Protocol):
    frames_per_epoch: int
    minibatches_per_epoch: int

    def set_epoch(self, epoch: int) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def __iter__(self): ...  # noqa: ANN204


class Backend(Protocol):
    name: str

    def egs_info(self, egs_dir: Path) -> dict[str, Any]: ...
    def model_config(self, info: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]: ...
    def build_model(self, cfg: dict[str, Any]) -> nn.Module: ...
    def make_reader(
        self, egs_dir: Path, rank: int, world_size: int, batch_size: int, seed: int, split: str
    ) -> Reader: ...
    def make_optimizer(self, model: nn.Module, **kwargs: Any) -> torch.optim.Optimizer: ...
    def log_priors(self, egs_dir: Path) -> np.ndarray: ...
    def save_model(
        self,
        path: Path,
        model: nn.Module,
        cfg: dict[str, Any],
        log_priors: np.ndarray,
        count_log_priors: np.ndarray | None = None,
    ) -> None: ...


class NnetBackend:
    """The project's models/egs/optimizers from steps_py.nnet."""

    name = "nnet"

    def egs_info(self, egs_dir: Path) -> dict[str, Any]:
        return EgsDir(egs_dir).info()

    def model_config(self, info: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        cfg: dict[str, Any] = {}
        for key in (
            "model_type",
            "feat_dim",
            "num_pdfs",
            "context",
            "left_context",
            "right_context",
            "chunk",
            "chunk_size",
            "target_delay",
        ):
            if key in info:
                cfg[key] = info[key]
        if "model_type" in cfg:
            cfg.setdefault("type", cfg["model_type"])
        cfg.update(user)
        return cfg

    def build_model(self, cfg: dict[str, Any]) -> nn.Module:
        from steps_py.nnet.models import build_model

        return build_model(cfg)

    def make_reader(
        self, egs_dir: Path, rank: int, world_size: int, batch_size: int, seed: int, split: str
    ) -> Reader:
        from steps_py.nnet.egs import EgsReader

        return EgsReader(
            egs_dir, rank=rank, world_size=world_size, batch_size=batch_size, seed=seed, split=split
        )

    def make_optimizer(self, model: nn.Module, **kwargs: Any) -> torch.optim.Optimizer:
        """`steps_py.nnet.optim.make_optimizer` (ngsgd, sgd-mc, sgd)."""
        from steps_py.nnet.optim import make_optimizer

        return make_optimizer(model, **kwargs)

    def log_priors(self, egs_dir: Path) -> np.ndarray:
        return EgsDir(egs_dir).log_priors()

    def save_model(
        self,
        path: Path,
        model: nn.Module,
        cfg: dict[str, Any],
        log_priors: np.ndarray,
        count_log_priors: np.ndarray | None = None,
    ) -> None:
        from steps_py.nnet.model_io import save_acoustic_model

        save_acoustic_model(path, model, cfg, log_priors, count_log_priors)
