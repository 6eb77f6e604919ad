"""Test double of the training backend (stage-5/6 API): tiny MLP, numpy examples, SGD.

Tests inject `ToyBackend()` into `steps_py.parallel.train.run(args, backend=...)` (and
`tests/toy_train.py` does so for torchrun) so the parallel engine is checked without real
features. `make_toy_egs(dir)` writes `info.json`, `priors.npy` and
`{train,dev}.npz` (x: float32 [N, D], y: int64 [N]) from a seed: labels come from a
fixed random linear teacher plus noise, so the task is learnable but not trivial.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from steps_py.parallel.backend import NnetBackend


def make_toy_egs(
    out: Path,
    frames: int = 4096,
    dev_frames: int = 512,
    dim: int = 16,
    pdfs: int = 8,
    seed: int = 0,
) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((dim, pdfs)).astype(np.float32)
    counts = np.zeros(pdfs)
    for split, n in (("train", frames), ("dev", dev_frames)):
        x = rng.standard_normal((n, dim)).astype(np.float32)
        y = (x @ teacher + 0.8 * rng.standard_normal((n, pdfs))).argmax(1).astype(np.int64)
        np.savez(out / f"{split}.npz", x=x, y=y)
        if split == "train":
            counts = np.bincount(y, minlength=pdfs) + 1.0
    np.save(out / "priors.npy", np.log(counts / counts.sum()).astype(np.float32))
    info = {"model_type": "toy", "feat_dim": dim, "num_pdfs": pdfs, "frames": frames}
    (out / "info.json").write_text(json.dumps(info), encoding="utf-8")
    return out


class ToyMlp(nn.Module):
    def __init__(self, feat_dim: int, num_pdfs: int, hidden: int = 32, layers: int = 2) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        d = feat_dim
        for _ in range(layers):
            mods += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        mods.append(nn.Linear(d, num_pdfs))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def log_posteriors(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.forward(feats), dim=-1)


class ToyReader:
    """This worker's share (every world_size-th example), reshuffled per epoch."""

    def __init__(
        self,
        egs_dir: Path,
        rank: int,
        world_size: int,
        batch_size: int,
        seed: int,
        split: str = "train",
    ) -> None:
        f = Path(egs_dir) / f"{split}.npz"
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found")
        with np.load(f) as z:
            x, y = z["x"], z["y"]
        self.x = torch.from_numpy(x[rank::world_size].copy())
        self.y = torch.from_numpy(y[rank::world_size].copy())
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.shuffle = split == "train"
        self.epoch = 0
        self.position = 0
        self.frames_per_epoch = len(self.y)
        self.minibatches_per_epoch = (
            len(self.y) // batch_size if self.shuffle else -(-len(self.y) // batch_size)
        )

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.position = 0
        self.epoch = epoch

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch * 101 + self.rank)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        while self.position < self.minibatches_per_epoch:
            i = self.position
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            self.position += 1
            yield self.x[idx], self.y[idx]
        self.position = 0 if not self.shuffle else self.position


class ToyBackend(NnetBackend):
    """NnetBackend's egs info, optimizers and priors; a tiny MLP, numpy reader and saver."""

    name = "toy"

    def model_config(self, info: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        cfg = {
            "type": "toy",
            "feat_dim": info["feat_dim"],
            "num_pdfs": info["num_pdfs"],
            "hidden": 32,
            "layers": 2,
        }
        cfg.update(user)
        return cfg

    def build_model(self, cfg: dict[str, Any]) -> nn.Module:
        return ToyMlp(
            int(cfg["feat_dim"]), int(cfg["num_pdfs"]), int(cfg["hidden"]), int(cfg["layers"])
        )

    def make_reader(
        self, egs_dir: Path, rank: int, world_size: int, batch_size: int, seed: int, split: str
    ) -> ToyReader:
        return ToyReader(egs_dir, rank, world_size, batch_size, seed, split)

    def save_model(
        self,
        path: Path,
        model: nn.Module,
        cfg: dict[str, Any],
        log_priors: np.ndarray,
        count_log_priors: np.ndarray | None = None,
    ) -> None:
        tensors = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        tensors["log_priors"] = torch.from_numpy(np.asarray(log_priors, dtype=np.float32))
        if count_log_priors is not None:
            tensors["log_priors_counts"] = torch.from_numpy(
                np.asarray(count_log_priors, dtype=np.float32)
            )
        save_file(tensors, str(path), metadata={"config": json.dumps(cfg)})


def toy_train_argv(egs: Path, exp: Path, **opts: object) -> list[str]:
    """Command-line arguments of a small deterministic toy run.

    `opts` override the defaults (`block_minibatches=4` -> `--block-minibatches 4`);
    a value of True is a bare flag, None or False drops the option.
    """
    base: dict[str, object] = {
        "egs": egs,
        "exp_dir": exp,
        "sync": "ma",
        "optimizer": "sgd",
        "lr_initial": 0.1,
        "lr_final": 0.02,
        "momentum": 0.5,
        "batch_size": 32,
        "epochs": 2,
        "block_minibatches": 8,
        "ema_decays": "0.9,0.99",
        "ema_half_life_frames": "",
        "checkpoint_every_blocks": 3,
        "threads": 1,
        "seed": 3,
        "no_tensorboard": True,
    }
    base.update(opts)
    argv: list[str] = []
    for k, v in base.items():
        if v is None or v is False:
            continue
        argv.append("--" + k.replace("_", "-"))
        if v is not True:
            argv.append(str(v))
    return argv
