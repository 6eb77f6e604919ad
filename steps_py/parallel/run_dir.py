"""A training run dir as later steps read it: `RunDir`, the one reader of what a run wrote.

``exp/<model>_<sync>_n<N>[_seed<S>]/`` is written by ``python -m steps_py.parallel.train``
(``steps_py/parallel/train.py``, ``export.py``):

* ``summary.json``: the run's settings, history, timing and final dev CE of every model;
* ``final/<tag>.safetensors`` (and ``final/.done``): one file per model, `<tag>` a
  `steps_py.model_tag.ModelTag` (``global``, ``ema-...``, ``icefall-avg``, ...); post-hoc
  models (``posthoc-...``) are added by ``python -m steps_py.parallel.posthoc``;
* ``epoch<E>/<tag>.safetensors`` (and ``.done``): epoch-end models (``--save-epoch-models``);
* ``log/train.csv``: a row per block (train CE, frames, timing) and per epoch, with the dev
  CE and accuracy of every model where it evaluated; ``decode_<tag>_<set>/``: decodes of its models
  (`steps_py.decode.artifact.DecodeDir`).

The scoreboard, the study and the post-hoc step read a run only through this class; a
missing or damaged file is a `RunDirError` that names the training command.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps_py.cli import StepError
from steps_py.fileio import is_done
from steps_py.model_tag import ModelTag, TagKind

PRODUCER = "python -m steps_py.parallel.train"


class RunDirError(StepError):
    """A run dir lacks a file or holds a damaged one; the message names the training command."""


@dataclass(frozen=True)
class RunDir:
    path: Path

    SUMMARY = "summary.json"
    FINAL = "final"
    MODEL_SUFFIX = ".safetensors"
    TRAIN_CSV = "log/train.csv"
    FILES = (SUMMARY, "final/<tag>.safetensors", "epoch<E>/<tag>.safetensors", TRAIN_CSV)

    @property
    def summary_path(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def final(self) -> Path:
        return self.path / self.FINAL

    def is_finished(self) -> bool:
        """Training ended and wrote every final model (``final/.done``)."""
        return is_done(self.final)

    def summary(self) -> dict[str, Any]:
        """summary.json; a RunDirError naming the training command when missing or damaged."""
        p = self.summary_path
        if not p.is_file():
            raise RunDirError(
                f"{p} not found: {self.path} is not a finished training run (train it with "
                f"{PRODUCER} --exp-dir {self.path})"
            )
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunDirError(
                f"{p}: unreadable ({e}); train again with {PRODUCER} --force"
            ) from None
        if not isinstance(obj, dict):
            raise RunDirError(f"{p}: not a JSON object; train again with {PRODUCER} --force")
        return obj

    def training_log(self) -> list[dict[str, str]]:
        """The rows of ``log/train.csv`` as written (empty cells for what a row lacks); [] when
        the run has none (a run trained before it was written, or not yet started)."""
        p = self.path / self.TRAIN_CSV
        if not p.is_file():
            return []
        with open(p, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))

    def model_tags(self, posthoc: bool | None = None) -> list[str]:
        """Tags of ``final/*.safetensors``, sorted; only post-hoc ones (True), none (False)."""
        tags = sorted(p.stem for p in self.final.glob("*" + self.MODEL_SUFFIX))
        if posthoc is None:
            return tags
        return [t for t in tags if (ModelTag.parse(t).kind == TagKind.POSTHOC) == posthoc]

    def model_path(self, tag: ModelTag) -> Path:
        """``final/<tag>.safetensors``, or ``epoch<E>/<model>.safetensors`` for an epoch tag."""
        if tag.epoch is not None:
            return self.path / f"epoch{tag.epoch}" / f"{tag.at_epoch(None)}{self.MODEL_SUFFIX}"
        return self.final / f"{tag}{self.MODEL_SUFFIX}"

    def epochs(self) -> list[int]:
        """The finished epoch-end model dirs ``epoch<E>/``, in order."""
        found = (p for p in self.path.glob("epoch[0-9]*") if p.name[5:].isdigit())
        return sorted(int(p.name[5:]) for p in found if is_done(p))
