"""One job of a step (started by `steps_py.runner`): ``python -m steps_py.job_worker IN OUT``.

Reads ``(module, function, args)`` from IN, runs it, writes its result to OUT atomically.
Its log lines go to stderr, which the runner writes to the job's log. Exit 1 on failure:
a `StepError` as one ERROR line, anything else with its traceback (a bug).
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import sys

from steps_py.cli import StepError
from steps_py.log import setup_logging


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m steps_py.job_worker IN OUT", file=sys.stderr)
        return 2
    spec, out = args
    setup_logging("job")
    with open(spec, "rb") as f:
        module, name, job_args = pickle.load(f)
    func = getattr(importlib.import_module(module), name)
    logging.getLogger("job").info("%s.%s (job file %s)", module, name, spec)
    try:
        result = func(*job_args)
    except StepError as e:
        logging.getLogger("job").error("%s", e)
        return 1
    tmp = f"{out}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        pickle.dump(result, f)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
