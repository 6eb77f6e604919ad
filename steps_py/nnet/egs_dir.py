"""An examples dir as later steps read it: `EgsDir`, written by ``python -m steps_py.nnet.egs``
(``exp/egs/<model>``; the layout is in ``steps_py/nnet/egs.py``): ``info.json`` (feature and
pdf dimensions, context, frame counts), ``priors.npy`` (log priors from the train pdf
counts), ``train/shard-<k>/`` and ``dev/shard-0/`` (the examples, read by
``steps_py.nnet.egs.EgsReader``). A missing file is an `EgsMissing` naming the egs command.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from steps_py.cli import StepError

PRODUCER = "python -m steps_py.nnet.egs"


class EgsMissing(StepError):
    """The examples dir is not one written by ``python -m steps_py.nnet.egs``."""


@dataclass(frozen=True)
class EgsDir:
    path: Path

    INFO, PRIORS = "info.json", "priors.npy"
    FILES = (INFO, PRIORS, "train/shard-<k>/", "dev/shard-0/")

    def info(self) -> dict[str, Any]:
        f = Path(self.path) / self.INFO
        if not f.is_file():
            raise EgsMissing(f"{f} not found: --egs must be an examples dir written by {PRODUCER}")
        return json.loads(f.read_text(encoding="utf-8"))

    def log_priors(self) -> np.ndarray:
        f = Path(self.path) / self.PRIORS
        if not f.is_file():
            raise EgsMissing(f"{f} not found: {PRODUCER} writes the log priors next to info.json")
        return np.load(f, allow_pickle=False)
