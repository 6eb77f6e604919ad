"""Post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of
Diffusion Models", EDM2's ``reconstruct_phema.py``): choose the EMA length after training.

During training `PowerEmaSnapshots` keeps one or more power-function EMAs of the global
model, E_g(t) = beta_t E_g(t-1) + (1 - beta_t) G(t) with beta_t = (1 - 1/t) ** (gamma + 1)
(t = synchronizations, from 1), whose weights on the past grow like tau ** gamma; gamma
comes from the relative width sigma_rel of the averaging profile,
sigma_rel ** 2 = (gamma + 1) / ((gamma + 2) ** 2 (gamma + 3)). Every `every` syncs (and at
the end) it writes each power EMA to `<exp>/posthoc/`, plus G(0) and the final G(T), with a
manifest of the frames every synchronization covered.

After training, any other average of the G(t) sequence, here the exponential EMA of a given
half-life in frames (optionally with warm-up), is a linear combination of the snapshots:
every snapshot, and the target, is an exactly known weighting w[tau] of G(0), ..., G(T)
(computed from the recursions), so the coefficients x minimise ||P x - w|| by least squares
(P: one column of weights per snapshot). This is EDM2's construction with the continuous
power profiles replaced by the exact discrete weights of our updates (it needs no
approximation of the profiles, and any target profile works). The reconstructed model is
sum_i x_i snapshot_i.

    python -m steps_py.parallel.posthoc --exp-dir exp/dnn_ma_n16 --half-life-frames 50000,200000 \
        --egs exp/egs/dnn            # writes final/posthoc-hl<H>.safetensors (with priors)
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from steps_py.cli import StepError, step_main
from steps_py.fileio import atomic_path, atomic_write_json
from steps_py.model_tag import TagKind
from steps_py.parallel.averagers import Averager
from steps_py.parallel.ema import EmaSpec

log = logging.getLogger("posthoc")

MANIFEST = "manifest.json"


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """The exponent gamma of a power EMA whose profile has relative width sigma_rel."""
    if not 0 < sigma_rel < 0.28:  # gamma > 0 needs sigma_rel^2 < 1/12
        raise ValueError(f"sigma_rel must be in (0, 0.28), got {sigma_rel}")
    t = sigma_rel**-2
    roots = np.roots([1.0, 7.0, 16.0 - t, 12.0 - t])
    return float(max(r.real for r in roots if abs(r.imag) < 1e-9))


def power_ema_weights(gamma: float, upto: int, length: int) -> np.ndarray:
    """Weights on G(0..length-1) of the power EMA after `upto` updates (t = 1..upto)."""
    w = np.zeros(length)
    if upto < 1:
        return w
    t = np.arange(1, upto + 1, dtype=np.float64)
    beta = (1.0 - 1.0 / t) ** (gamma + 1.0)  # beta_1 = 0: E(1) = G(1)
    # weight of G(tau) = (1 - beta_tau) * prod_{s > tau} beta_s
    tail = np.ones(upto)
    for i in range(upto - 2, -1, -1):
        tail[i] = tail[i + 1] * beta[i + 1]
    w[1 : upto + 1] = (1.0 - beta) * tail
    return w


def exp_ema_weights(spec: EmaSpec, frames: list[float]) -> np.ndarray:
    """Weights on G(0..T) of the tracked exponential EMA `spec` after the T = len(frames) syncs."""
    n = len(frames)
    alphas = np.array([spec.alpha(t, f) for t, f in enumerate(frames, start=1)], dtype=np.float64)
    w = np.zeros(n + 1)
    tail = 1.0
    for t in range(n, 0, -1):
        w[t] = (1.0 - alphas[t - 1]) * tail
        tail *= alphas[t - 1]
    w[0] = tail  # E(0) = G(0)
    return w


class PowerEmaSnapshots(Averager):
    """Power EMAs of G(t), written to disk every `every` syncs, for post-hoc reconstruction."""

    def __init__(self, out_dir: Path, sigma_rels: list[float], every: int) -> None:
        if every < 1:
            raise ValueError(f"post-hoc snapshots need an interval >= 1 sync, got {every}")
        self.out_dir = Path(out_dir)
        self.sigma_rels = list(sigma_rels)
        self.gammas = [sigma_rel_to_gamma(s) for s in self.sigma_rels]
        self.every = every
        self.values: list[torch.Tensor] = []
        self.frames: list[float] = []
        self.snapshots: list[dict[str, object]] = []

    def init(self, global_flat: torch.Tensor) -> None:
        self.values = [global_flat.detach().clone() for _ in self.gammas]
        self.frames = []
        self.snapshots = []
        self._write("g0", global_flat, kind="global", t=0)

    @torch.no_grad()
    def update(self, global_flat: torch.Tensor, frames: float, steps: int) -> None:
        self.frames.append(float(frames))
        t = len(self.frames)
        for e, gamma in zip(self.values, self.gammas, strict=True):
            beta = (1.0 - 1.0 / t) ** (gamma + 1.0)
            e.lerp_(global_flat, 1.0 - beta)
        if t % self.every == 0:
            self.snapshot()

    def snapshot(self) -> None:
        """Write every power EMA at the current sync (idempotent: same file name, same data)."""
        t = len(self.frames)
        for e, sigma, gamma in zip(self.values, self.sigma_rels, self.gammas, strict=True):
            self._write(f"pema-{sigma:g}-t{t:07d}", e, kind="power", t=t, gamma=gamma, sigma=sigma)

    def final_outputs(self, global_flat: torch.Tensor) -> dict[str, str]:
        return {"posthoc_manifest": str(self.finish(global_flat))}

    def finish(self, global_flat: torch.Tensor) -> Path:
        """Final snapshots (power EMAs and G(T)) and the manifest; returns the manifest path."""
        t = len(self.frames)
        if not any(s["t"] == t and s["kind"] == "power" for s in self.snapshots):
            self.snapshot()
        self._write(f"gT-t{t:07d}", global_flat, kind="global", t=t)
        path = self.out_dir / MANIFEST
        atomic_write_json(
            path,
            {
                "frames_per_sync": self.frames,
                "snapshots": self.snapshots,
                "sigma_rels": self.sigma_rels,
                "gammas": self.gammas,
            },
        )
        return path

    def _write(self, name: str, flat: torch.Tensor, **meta: object) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{name}.safetensors"
        with atomic_path(path) as tmp:
            save_file({"flat": flat.detach().cpu().contiguous()}, str(tmp))
        entry = {"file": path.name, **meta}
        self.snapshots = [s for s in self.snapshots if s["file"] != path.name] + [entry]

    def state_dict(self) -> dict[str, object]:
        return {
            "sigma_rels": self.sigma_rels,
            "every": self.every,
            "values": list(self.values),
            "frames": list(self.frames),
            "snapshots": json.dumps(self.snapshots),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        if list(state["sigma_rels"]) != self.sigma_rels or int(state["every"]) != self.every:  # type: ignore[call-overload]
            raise ValueError(
                "checkpoint has other post-hoc snapshot settings "
                f"({state['sigma_rels']}, every {state['every']})"
            )
        self.values = [v.clone() for v in state["values"]]  # type: ignore[union-attr]
        self.frames = [float(f) for f in state["frames"]]  # type: ignore[union-attr]
        self.snapshots = json.loads(str(state["snapshots"]))


def snapshot_weights(manifest: dict) -> tuple[list[str], np.ndarray]:
    """(snapshot files, P [T+1, S]): each column the weights of one snapshot on G(0..T)."""
    n = len(manifest["frames_per_sync"]) + 1
    files, cols = [], []
    for s in manifest["snapshots"]:
        col = np.zeros(n)
        if s["kind"] == "global":
            col[int(s["t"])] = 1.0
        else:
            col = power_ema_weights(float(s["gamma"]), int(s["t"]), n)
        files.append(str(s["file"]))
        cols.append(col)
    return files, np.stack(cols, axis=1)


def reconstruct(snap_dir: Path, spec: EmaSpec) -> tuple[torch.Tensor, dict[str, float]]:
    """The flat model of the exponential EMA `spec`, from the snapshots in `snap_dir`."""
    mpath = Path(snap_dir) / MANIFEST
    if not mpath.is_file():
        raise StepError(f"{mpath} not found: train with --posthoc-snapshots N to keep snapshots")
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    files, p = snapshot_weights(manifest)
    target = exp_ema_weights(spec, manifest["frames_per_sync"])
    x, *_ = np.linalg.lstsq(p, target, rcond=None)
    fit = p @ x
    acc: torch.Tensor | None = None
    for f, c in zip(files, x, strict=True):
        v = load_file(str(Path(snap_dir) / f))["flat"].double()
        acc = v * float(c) if acc is None else acc.add_(v, alpha=float(c))
    assert acc is not None
    info = {
        "weight_residual": float(np.linalg.norm(fit - target)),
        "weight_norm": float(np.linalg.norm(target)),
        "snapshots": len(files),
    }
    return acc.float(), info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m steps_py.parallel.posthoc",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--exp-dir", type=Path, required=True, help="training run dir (with posthoc/)")
    p.add_argument("--egs", type=Path, required=True, help="the run's examples (for the priors)")
    p.add_argument(
        "--half-life-frames",
        required=True,
        help="comma-separated half-lives in training frames to reconstruct",
    )
    p.add_argument("--warmup", action="store_true", help="reconstruct EMAs with warm-up")
    p.add_argument(
        "--out-dir", type=Path, default=None, help="where the models go (default <exp-dir>/final)"
    )
    p.add_argument(
        "--prior-frames",
        type=int,
        default=30000,
        help="training frames for each model's adjusted priors (default %(default)s)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from steps_py.parallel.export import ModelWriter

    try:
        half_lives = [float(x) for x in args.half_life_frames.split(",") if x.strip()]
        specs = [EmaSpec(half_life=h, warmup=args.warmup) for h in half_lives]
    except ValueError as e:
        raise StepError(f"--half-life-frames {args.half_life_frames!r}: {e}") from None
    out = args.out_dir or args.exp_dir / "final"
    writer = ModelWriter.for_run(args.exp_dir, args.egs, args.prior_frames)
    for spec in specs:
        flat, info = reconstruct(args.exp_dir / "posthoc", spec)
        name = str(spec.tag.as_kind(TagKind.POSTHOC))
        writer.write(out / f"{name}.safetensors", name, flat)
        log.info(
            "%s: least-squares residual %.2e of weight norm %.3f (%d snapshots)",
            name,
            info["weight_residual"],
            info["weight_norm"],
            info["snapshots"],
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main("posthoc", build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
