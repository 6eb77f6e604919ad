"""Jobs for tests/test_runner.py, in a module that imports little: each job process imports
the module of its function by name."""

from __future__ import annotations

from steps_py.cli import StepError


def square_plus(x: int, y: int) -> int:
    """A job for the contract tests (imported by name in the job process)."""
    print(f"job says {x}")
    return x * x + y


def fail_on_three(x: int) -> int:
    if x == 3:
        raise StepError(f"input {x} is bad: give another")
    return x
