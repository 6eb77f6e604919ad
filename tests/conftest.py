"""Shared fixtures: the toy training backend (tests/toy_nnet.py) and a helper that runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.toy_nnet import ToyBackend, make_toy_egs, toy_train_argv


def train_toy(egs: Path, exp: Path, stop_after_blocks: int = 0, **opts: object) -> dict[str, Any]:
    """Train the toy model in-process (`toy_train_argv` defaults, overridden by `opts`)."""
    from steps_py.parallel.train import Hooks, build_parser, parse_args, run

    args = parse_args(build_parser(), toy_train_argv(egs, exp, **opts))
    hooks = Hooks(
        after_block=(lambda st, g: st.block >= stop_after_blocks) if stop_after_blocks else None
    )
    return run(args, backend=ToyBackend(), hooks=hooks)


@pytest.fixture(scope="module")
def toy_egs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small learnable toy examples dir (1024 train frames, 128 dev frames)."""
    return make_toy_egs(tmp_path_factory.mktemp("toy") / "egs", frames=1024, dev_frames=128)
