"""`python -m tests.toy_train ARGS`: the trainer's main() with the toy backend, for torchrun tests.

`TOY_KILL_AT_BLOCK=B TOY_KILL_RANK=R` makes rank R SIGKILL itself at the end of block B in
the first torchrun attempt (the fault-tolerance test); the hook is injected here, the
trainer has no such code.
"""

from __future__ import annotations

import logging
import os
import signal

from steps_py.parallel.group import Group
from steps_py.parallel.state import TrainState
from steps_py.parallel.train import Hooks, main
from tests.toy_nnet import ToyBackend


def _kill_hook(block: int, rank: int):  # noqa: ANN202
    def after_block(st: TrainState, group: Group) -> bool:
        first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        if st.block == block and first_attempt and rank in group.local_ranks:
            logging.getLogger("toy_train").warning(
                "debug: SIGKILL to myself (rank %d) in block %d", rank, block
            )
            os.kill(os.getpid(), signal.SIGKILL)
        return False

    return after_block


if __name__ == "__main__":
    kill = int(os.environ.get("TOY_KILL_AT_BLOCK", "0"))
    hooks = (
        Hooks(after_block=_kill_hook(kill, int(os.environ.get("TOY_KILL_RANK", "1"))))
        if kill
        else None
    )
    raise SystemExit(main(backend=ToyBackend(), hooks=hooks))
