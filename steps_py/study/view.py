"""What the study's tables and plots read from a study: its plan, its results dir and its
records (``steps_py.study.run.Study`` is one). The tables take this view, never the
orchestrator itself, so ``study.run`` imports the tables and not the other way round."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from steps_py.study.plan import Plan, RunSpec


class StudyView(Protocol):
    plan: Plan
    results: Path

    def record(self, run: RunSpec) -> dict | None: ...

    def dev_cer(self, run: RunSpec, tag: str) -> float | None: ...

    def dev_ce(self, run: RunSpec, tag: str) -> float | None: ...

    def pilot_diverged(self, run: RunSpec) -> bool: ...
