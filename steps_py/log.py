"""Logging set-up shared by every step: timestamped lines, Kaldi-style prefixes."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def setup_logging(
    name: str, log_file: Path | None = None, level: int = logging.INFO
) -> logging.Logger:
    """Configure the root logger once: `YYYY-mm-dd HH:MM:SS [step] LEVEL message`.

    Writes to stderr and, when `log_file` is given, appends to it as well.
    """
    fmt = logging.Formatter(f"%(asctime)s [{name}] %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    root = logging.getLogger()
    root.setLevel(level)
    for h in list(root.handlers):
        root.removeHandler(h)
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(fmt)
    root.addHandler(sh)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    return logging.getLogger(name)
