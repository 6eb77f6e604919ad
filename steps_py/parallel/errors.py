"""The trainer's user-facing errors (each message names the cause and the fix)."""

from __future__ import annotations

from steps_py.cli import StepError


class TrainingError(StepError):
    """Training cannot go on: diverged loss, model and examples that do not fit, bad resume."""


class ResumeError(TrainingError):
    """A checkpoint cannot continue this run (other model, workers or settings; none loadable)."""


class DimsError(TrainingError):
    """The model and the examples do not fit together."""


class DivergenceError(TrainingError):
    """The run diverged (non-finite loss, gradient or Fisher estimate); exit status 3."""

    exit_status = 3
