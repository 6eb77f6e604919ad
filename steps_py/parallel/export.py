"""The end of a training run: every final model, with its own priors, and summary.json.

`final/` holds `global.safetensors` and one file per averager model (`ema-hl<H>`,
`ema-hl<H>-warmup`, `icefall-avg`, `kaldi-combine`, `ema-interfering-...`). Each gets its own
adjusted log priors (its mean posterior over `--prior-frames` training frames, Kaldi nnet3's
adjust-priors) for decoding, with the alignment-count priors of the examples (steps_py.nnet.egs) beside them
(`--priors counts` stores only those). `ModelWriter` is also what `posthoc.py` uses to
write reconstructed EMAs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from steps_py.fileio import atomic_path
from steps_py.parallel.averagers import Averager, LastModelsCombination
from steps_py.parallel.backend import Backend, NnetBackend
from steps_py.parallel.flat import FlatState
from steps_py.parallel.metrics import IGNORE_LABEL
from steps_py.parallel.run_dir import RunDir

log = logging.getLogger("train")


@dataclass
class ModelWriter:
    """Writes flat parameter vectors as acoustic models with their priors."""

    backend: Backend
    cfg: dict[str, Any]
    egs: Path
    priors: str  # "adjusted" or "counts"
    prior_frames: int
    batch_size: int
    seed: int
    device: torch.device

    def __post_init__(self) -> None:
        self.model: nn.Module = self.backend.build_model(self.cfg).to(self.device)
        self.flat = FlatState(self.model)
        self.count_priors = self.backend.log_priors(self.egs)
        self.shifts: dict[str, Any] = {"priors": self.priors}

    @classmethod
    def for_run(cls, exp: Path, egs: Path, prior_frames: int) -> ModelWriter:
        """A writer for the models of a finished run (its summary.json gives the config)."""
        summary = RunDir(Path(exp)).summary()
        return cls(
            NnetBackend(),
            summary["model_config"],
            Path(egs),
            "adjusted",
            prior_frames,
            int(summary["batch_size"]),
            int(summary.get("seed", 1)),
            torch.device("cpu"),
        )

    def load(self, flat: torch.Tensor) -> nn.Module:
        self.flat.set(flat)
        return self.model

    def write(self, path: Path, name: str, flat: torch.Tensor) -> None:
        self.flat.set(flat)
        if self.priors == "counts":
            self.backend.save_model(path, self.model, self.cfg, self.count_priors)
            return
        adjusted, frames = self.adjusted_priors()
        self.shifts[name] = prior_shift(name, adjusted, self.count_priors, frames)
        self.backend.save_model(path, self.model, self.cfg, adjusted, self.count_priors)

    def adjusted_priors(self) -> tuple[np.ndarray, int]:
        """The model's mean posterior over the first `prior_frames` training frames (fixed order)."""
        from steps_py.nnet.priors import average_log_posteriors

        reader = self.backend.make_reader(self.egs, 0, 1, self.batch_size, self.seed, "train")
        reader.set_epoch(0)
        return average_log_posteriors(
            self.model, reader, self.prior_frames, self.device, IGNORE_LABEL
        )


def prior_shift(name: str, adjusted: np.ndarray, counts: np.ndarray, frames: int) -> dict[str, Any]:
    """How far a model's adjusted priors are from the count priors (logged, kept in summary.json)."""
    seen = counts != 0  # count priors store 0 for pdfs never seen in the alignments
    diff = adjusted[seen] - counts[seen]
    p = np.exp(adjusted[seen].astype(np.float64))
    info = {
        "frames": frames,
        "kl_adjusted_vs_counts": float(np.sum(p * diff)),
        "pdfs_raised_over_e": int((diff > 1.0).sum()),
        "max_raise_nats": float(diff.max()),
    }
    log.info(
        "adjusted priors of %s from %d training frames: KL to the count priors %.3f nats; "
        "%d pdfs above e x their count prior (max %+.2f nats)",
        name,
        frames,
        info["kl_adjusted_vs_counts"],
        info["pdfs_raised_over_e"],
        info["max_raise_nats"],
    )
    return info


def write_final_models(
    final: Path,
    writer: ModelWriter,
    models: list[tuple[str, torch.Tensor]],
    averagers: dict[str, Averager],
    dev_loss: Callable[[torch.Tensor], float],
    global_flat: torch.Tensor,
) -> dict[str, Any]:
    """Write `final/` (atomically): every model, the Kaldi combination with k chosen by
    `dev_loss`, and the post-hoc manifest. Returns what goes into summary.json about them."""
    extra: dict[str, Any] = {}
    with atomic_path(final) as tmp:
        tmp.mkdir(parents=True)
        for name, vec in models:
            writer.write(tmp / f"{name}.safetensors", name, vec)
        comb = averagers.get("combine")
        if isinstance(comb, LastModelsCombination) and comb.kept:
            k, losses = comb.choose_k(dev_loss)
            writer.write(tmp / f"{comb.label}.safetensors", comb.label, comb.average_of_last(k))
            extra["combine"] = {"k": k, "dev_ce_by_k": losses, "kept": len(comb.kept)}
            log.info(
                "Kaldi-style combination: the last %d of %d models (dev CE %.4f)",
                k,
                len(comb.kept),
                losses[k - 1],
            )
        for averager in averagers.values():
            extra.update(averager.final_outputs(global_flat))
    return extra
