"""How often max-change limited the last epoch of study runs trained before the trainer
counted it (bf73266).

    python -m local.recount_max_change --root study_work/exp/study_kaldi \\
        --out results/study_kaldi/max_change_recount.tsv dnn_ma_n16_seed1 dnn_ma_n16_seed2

Each run's last epoch is trained again, in a scratch copy (`<root>/recount/<run>`), from the
checkpoint at the end of its previous epoch, with the command line the study trained it with
(the last one in `<run>/log/study_train.out`, run from the directory it was run from). The
final global model must come out bit-identical to the run's own `final/global.safetensors`,
so the count is that run's; a row says whether it did. The run itself is not touched.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from steps_py.cli import StepError, step_main

HEADER = "run\tepoch\tmax_change_layer_pct\tmax_change_global_pct\tfinal_global_bit_identical\n"


class RecountError(StepError):
    """A run that cannot be recounted (no command, no checkpoint)."""


def train_command(run: Path) -> list[str]:
    """The last training command of the run's study log (one per attempt, the last resumed)."""
    log = run / "log" / "study_train.out"
    if not log.is_file():
        raise RecountError(f"{log} not found: {run.name} was not trained by the study runner")
    lines = [ln for ln in log.read_text(encoding="utf-8").splitlines() if ln.startswith("# ")]
    cmds = [ln.split(" ", 3)[3] for ln in lines if "--exp-dir" in ln]  # "# date time cmd"
    if not cmds:
        raise RecountError(f"{log} names no training command")
    return shlex.split(cmds[-1])


def previous_epoch_checkpoint(run: Path) -> tuple[Path, int]:
    if not (run / "summary.json").is_file():
        raise RecountError(f"{run / 'summary.json'} not found: {run.name} has not finished")
    history = json.loads((run / "summary.json").read_text(encoding="utf-8"))["history"]
    if len(history) < 2:
        raise RecountError(f"{run.name} has one epoch: nothing to resume from")
    ckpt = run / "checkpoints" / f"block-{history[-2]['blocks']:08d}"
    if not ckpt.is_dir():
        raise RecountError(
            f"{ckpt} not found: the run kept no checkpoint at the end of epoch "
            f"{history[-2]['epoch']} (--keep-checkpoints)"
        )
    return ckpt, int(history[-1]["epoch"])


def with_exp_dir(cmd: list[str], exp: Path) -> list[str]:
    out = list(cmd)
    out[out.index("--exp-dir") + 1] = str(exp)
    extra = ["--no-tensorboard"] + ([] if "--resume" in out else ["--resume"])
    return [sys.executable, *out[1:], *extra]


def recount(run: Path, scratch: Path, cwd: Path) -> str:
    cmd = train_command(run)
    ckpt, epoch = previous_epoch_checkpoint(run)
    if scratch.exists():
        shutil.rmtree(scratch)
    (scratch / "checkpoints").mkdir(parents=True)
    shutil.copytree(ckpt, scratch / "checkpoints" / ckpt.name)
    log = scratch.parent / f"{run.name}.log"
    with log.open("w", encoding="utf-8") as f:
        rc = subprocess.run(
            with_exp_dir(cmd, scratch.resolve()), cwd=cwd, stdout=f, stderr=f
        ).returncode
    if rc != 0:
        raise RecountError(f"retraining the last epoch of {run.name} failed (exit {rc}); see {log}")
    h = json.loads((scratch / "summary.json").read_text(encoding="utf-8"))["history"][-1]
    a = load_file(str(run / "final" / "global.safetensors"))
    b = load_file(str(scratch / "final" / "global.safetensors"))
    same = set(a) == set(b) and all(bool((a[k] == b[k]).all()) for k in a)
    return (
        f"{run.name}\t{epoch}\t{h['max_change_layer_pct']:.2f}\t"
        f"{h['max_change_global_pct']:.2f}\t{same}\n"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m local.recount_max_change",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", help="run names, e.g. dnn_ma_n16_seed1")
    p.add_argument(
        "--root",
        type=Path,
        default=Path("study_work/exp/study_kaldi"),
        help="the study's runs (default %(default)s)",
    )
    p.add_argument(
        "--cwd",
        type=Path,
        default=Path("."),
        help="where the study ran its training commands (their paths are relative to it; "
        "default %(default)s)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("results/study_kaldi/max_change_recount.tsv"),
        help="the table written (default %(default)s)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    rows = [recount(args.root / r, args.root / "recount" / r, args.cwd) for r in args.runs]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(HEADER + "".join(rows), encoding="utf-8")
    sys.stdout.write(HEADER + "".join(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main("recount_max_change", build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
