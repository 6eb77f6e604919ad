"""The user-facing error of the GMM steps (train_mono, align): bad or missing input."""

from __future__ import annotations

from steps_py.cli import StepError


class GmmError(StepError):
    """A GMM step cannot go on; the message names the file or utterance and the fix."""
