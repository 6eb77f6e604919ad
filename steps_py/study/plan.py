"""The study plan: which training runs, with which options, and what is decoded.

A plan is a JSON file (e.g. `egs/synth/conf_study/study.json`)::

    {
      "egs": {"dnn": "exp/egs/dnn", "lstm": "exp/egs/lstm"},      # relative to the workdir
      "graph": "exp/mono/graph", "dev": "data/dev", "test": "data/test",
      "train_common": ["--epochs", "1", ...],          # every run
      "train_model": {"dnn": [...], "lstm": [...]},    # per model type
      "train_sync": {"ma": [...], "ddp": [...]},       # per sync method (optional)
      "families": [                                    # one entry = runs that share options
        {"model": "dnn", "sync": "ma", "workers": [1, 4, 16, 64], "seeds": [1]},
        {"model": "dnn", "sync": "ma", "workers": [1, 16], "seeds": [2, 3]},
        {"model": "dnn", "sync": "ma", "workers": [16], "seeds": [1], "tag": "lrxN",
         "extra": ["--lr-times-workers"]}
      ],
      "posthoc": {"runs": ["dnn_ma_n16_seed1"], "half_lives": [12500, ...]},
      "decode": {"nj": 1, "opts": ["--no-lattices", "--beam", "10", "--max-active", "1000"],
                 "calibrate": {"dnn": "dnn_ma_n1_seed1"}, "calibrate_lm_weights": "6:14",
                 "test_models": "chosen"}
    }

A run is named `<model>_<sync>_n<N>[_<tag>]_seed<S>`; a config (what seeds are pooled over,
and what the EMA half-life is chosen for) is the name without `_seed<S>`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steps_py.cli import StepError
from steps_py.parallel.sync import SYNC_CHOICES


class PlanError(StepError):
    """The study plan is malformed; the message names the key and the fix."""


@dataclass(frozen=True)
class RunSpec:
    model: str
    sync: str
    workers: int
    seed: int
    tag: str = ""
    extra: tuple[str, ...] = ()

    @property
    def config(self) -> str:
        return f"{self.model}_{self.sync}_n{self.workers}" + (f"_{self.tag}" if self.tag else "")

    @property
    def name(self) -> str:
        return f"{self.config}_seed{self.seed}"


@dataclass
class Plan:
    path: Path
    egs: dict[str, str]
    graph: str
    dev: str
    test: str
    train_common: list[str]
    train_model: dict[str, list[str]]
    train_sync: dict[str, list[str]]
    runs: list[RunSpec]
    posthoc_runs: list[str] = field(default_factory=list)
    posthoc_half_lives: list[float] = field(default_factory=list)
    decode_nj: int = 1
    decode_opts: list[str] = field(default_factory=list)
    test_models: str = "chosen"  # or "all"
    calibrate: dict[str, str] = field(
        default_factory=dict
    )  # model type -> run whose global picks the LM weight
    calibrate_lm_weights: str = "6:14"

    def train_argv(self, run: RunSpec) -> list[str]:
        """The run's options (without --egs/--exp-dir/--simulate)."""
        return [
            *self.train_common,
            *self.train_model.get(run.model, []),
            *self.train_sync.get(run.sync, []),
            "--sync",
            run.sync,
            "--seed",
            str(run.seed),
            *run.extra,
        ]


def _need(d: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in d:
        raise PlanError(f"{where}: missing key '{key}'")
    if not isinstance(d[key], kind):
        raise PlanError(f"{where}: '{key}' must be a {kind.__name__}, got {d[key]!r}")
    return d[key]


def load_plan(path: Path) -> Plan:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"study plan {path} not found") from None
    except json.JSONDecodeError as e:
        raise PlanError(f"{path}: not valid JSON ({e})") from None
    known = {
        "description",
        "egs",
        "graph",
        "dev",
        "test",
        "train_common",
        "train_model",
        "train_sync",
        "families",
        "posthoc",
        "decode",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise PlanError(f"{path}: unknown keys {unknown}; allowed: {sorted(known)}")
    runs: list[RunSpec] = []
    egs = _need(raw, "egs", dict, str(path))
    for i, fam in enumerate(_need(raw, "families", list, str(path))):
        where = f"{path}: families[{i}]"
        model, sync = _need(fam, "model", str, where), _need(fam, "sync", str, where)
        if model not in egs:
            raise PlanError(f"{where}: model '{model}' has no entry in 'egs' ({sorted(egs)})")
        if sync not in SYNC_CHOICES:
            raise PlanError(f"{where}: sync '{sync}' is not one of {SYNC_CHOICES}")
        for n in _need(fam, "workers", list, where):
            for s in _need(fam, "seeds", list, where):
                runs.append(
                    RunSpec(
                        model,
                        sync,
                        int(n),
                        int(s),
                        str(fam.get("tag", "")),
                        tuple(str(x) for x in fam.get("extra", [])),
                    )
                )
    names = [r.name for r in runs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise PlanError(f"{path}: runs listed twice: {dup}")
    ph = raw.get("posthoc", {})
    for r in ph.get("runs", []):
        if r not in names:
            raise PlanError(f"{path}: posthoc run '{r}' is not one of the plan's runs")
    dec = raw.get("decode", {})
    test_models = str(dec.get("test_models", "chosen"))
    if test_models not in ("chosen", "all"):
        raise PlanError(f"{path}: decode.test_models must be 'chosen' or 'all'")
    calibrate = dict(dec.get("calibrate", {}))
    for model, run in calibrate.items():
        if run not in names or not run.startswith(f"{model}_"):
            raise PlanError(
                f"{path}: decode.calibrate[{model}] = '{run}' is not a {model} run of the plan"
            )
    missing = sorted({r.model for r in runs} - set(calibrate))
    if missing:
        raise PlanError(f"{path}: decode.calibrate needs a run per model type; missing {missing}")
    return Plan(
        path,
        egs,
        _need(raw, "graph", str, str(path)),
        _need(raw, "dev", str, str(path)),
        _need(raw, "test", str, str(path)),
        list(raw.get("train_common", [])),
        dict(raw.get("train_model", {})),
        dict(raw.get("train_sync", {})),
        runs,
        list(ph.get("runs", [])),
        [float(h) for h in ph.get("half_lives", [])],
        int(dec.get("nj", 1)),
        list(dec.get("opts", [])),
        test_models,
        calibrate,
        str(dec.get("calibrate_lm_weights", "6:14")),
    )
