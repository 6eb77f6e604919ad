"""Training checkpoints: one directory per checkpoint, complete or absent.

Layout `<exp>/checkpoints/block-<BBBBBBBB>/`:
  global.pt       written by rank 0: G, B, sync state (BMUF Delta), every EMA, counters,
                  history, model description (shapes) for the dims check.
  worker-<r>.pt   one per worker: optimizer state, data position (EgsReader.state_dict),
                  RNG states.
All files are `torch.save` of plain tensors/dicts/lists/numbers/strings, read back with
`torch.load(weights_only=True)` (no pickle of objects).

Atomicity: everyone writes into `.tmp-block-<B>/`, then (after a barrier) rank 0
renames it to `block-<B>/`; a directory named `block-*` is therefore complete.
Multi-node runs need `--exp-dir` on a shared filesystem.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from steps_py.fileio import disk_errors_named
from steps_py.parallel.group import Group

log = logging.getLogger(__name__)
_NAME = re.compile(r"^block-(\d{8})$")


class CheckpointError(RuntimeError):
    pass


class DamagedCheckpoint(CheckpointError):
    """A checkpoint file exists but cannot be read (truncated, empty, not a checkpoint)."""


def ckpt_dir(exp_dir: Path, block: int) -> Path:
    return Path(exp_dir) / "checkpoints" / f"block-{block:08d}"


def list_checkpoints(exp_dir: Path) -> list[Path]:
    root = Path(exp_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))  # type: ignore[union-attr]


def latest_checkpoint(exp_dir: Path) -> Path | None:
    cps = list_checkpoints(exp_dir)
    return cps[-1] if cps else None


def _save(obj: Any, path: Path, shown: Path) -> None:
    """torch.save to ``path`` atomically; a full disk is reported as writing ``shown``."""
    tmp = path.with_name(path.name + ".part")
    with disk_errors_named(shown):  # torch.save says "unexpected pos ..." on a full disk
        torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(
    exp_dir: Path,
    block: int,
    group: Group,
    global_state: dict[str, Any],
    worker_states: dict[int, dict[str, Any]],
    keep: int = 2,
) -> Path:
    """Collective: every rank calls it with its local workers' states."""
    final = ckpt_dir(exp_dir, block)
    tmp = final.with_name(f".tmp-{final.name}")
    if group.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    group.barrier()
    for r, st in worker_states.items():
        _save(st, tmp / f"worker-{r}.pt", final / f"worker-{r}.pt")
    if group.is_main:
        _save(global_state, tmp / "global.pt", final / "global.pt")
    group.barrier()
    if group.is_main:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(exp_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        log.info("checkpoint %s written", final)
    group.barrier()
    return final


def _load(f: Path, device: torch.device | str) -> dict[str, Any]:
    try:
        return torch.load(f, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        pickle.UnpicklingError,
    ) as e:  # truncated, empty, junk
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise DamagedCheckpoint(f"checkpoint file {f} is damaged ({reason})") from None


def load_global(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    f = Path(path) / "global.pt"
    if not f.is_file():
        raise DamagedCheckpoint(f"{path} has no global.pt")
    return _load(f, device)


def load_worker(path: Path, rank: int, device: torch.device | str = "cpu") -> dict[str, Any]:
    f = Path(path) / f"worker-{rank}.pt"
    if not f.is_file():
        have = sorted(p.name for p in Path(path).glob("worker-*.pt"))
        raise CheckpointError(
            f"{path} has no {f.name} (it holds {', '.join(have) or 'no worker files'}); "
            "resume with the same number of workers it was written with"
        )
    return _load(f, device)


def set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint to `damaged-block-*` so that it is never tried again."""
    path = Path(path)
    dest = path.with_name(f"damaged-{path.name}")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(path, dest)
    log.warning("set %s aside as %s", path, dest.name)
    return dest
