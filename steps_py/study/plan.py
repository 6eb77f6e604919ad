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

The second study (`egs/synth/conf_study_kaldi/study.json`) adds optional keys:

    "corpus": "what the corpus is (written into table.json)",
    "families": [{..., "lr_final_ratio": 0.01}],     # --lr-final = that x --lr-initial
    "choice": {"by": "dev_ce" | "dev_cer", "global_candidate": true},
    "statistics": {"bootstrap": "hierarchical" | "utterances", "resamples": 2000, "seed": 0,
                   "equivalence_margin_percent": 2.0, "primary": ["dnn_ma_n16", ...]},
    "pilot": {"factors": [0.5, 1, 2], "extend_to": 8, "seed": 1, "train_extra": ["--epochs", "1"],
              "groups": [{"pilot": "dnn_ma_n16", "configs": ["dnn_ma_n4", "dnn_ma_n16"]}]},
    "convergence": {"configs": ["dnn_ma_n16"]},     # epoch-end models decoded on dev
    "folds": {"speakers": ["fsi001", ...], "workdir": "fold_{speaker}"}   # leave one out

Every key, nested ones too, is checked against the keys a plan may have: a misspelt one is
an error naming it and where it is, never silently ignored.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steps_py.cli import StepError
from steps_py.parallel.sync import SYNC_CHOICES


class PlanError(StepError):
    """The study plan is malformed; the message names the key and the fix."""


TOP_KEYS = (
    "description",
    "corpus",
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
    "choice",
    "statistics",
    "pilot",
    "convergence",
    "folds",
)
NESTED_KEYS = {
    "families": ("model", "sync", "workers", "seeds", "tag", "extra", "lr_final_ratio"),
    "posthoc": ("runs", "half_lives"),
    "decode": ("nj", "opts", "calibrate", "calibrate_lm_weights", "test_models"),
    "choice": ("by", "global_candidate"),
    "statistics": ("bootstrap", "resamples", "seed", "equivalence_margin_percent", "primary"),
    "pilot": ("factors", "extend_to", "seed", "train_extra", "groups"),
    "pilot.groups": ("pilot", "configs"),
    "convergence": ("configs",),
    "folds": ("speakers", "workdir"),
}


@dataclass(frozen=True)
class RunSpec:
    model: str
    sync: str
    workers: int
    seed: int
    tag: str = ""
    extra: tuple[str, ...] = ()
    lr_final_ratio: float | None = None

    @property
    def config(self) -> str:
        return f"{self.model}_{self.sync}_n{self.workers}" + (f"_{self.tag}" if self.tag else "")

    @property
    def name(self) -> str:
        return f"{self.config}_seed{self.seed}"


@dataclass(frozen=True)
class Statistics:
    bootstrap: str = "utterances"  # or "hierarchical": seeds, speakers, utterances
    resamples: int = 1000
    seed: int = 0
    margin: float = 2.0  # TOST equivalence margin, percent relative
    primary: tuple[str, ...] = ()  # configs whose EMA-vs-global contrast is primary


@dataclass(frozen=True)
class Pilot:
    """Short runs at `factors` x the plan's learning rates; each group's factor is chosen by
    the dev CE of the pilot config's global model and applies to the group's configs. A group
    whose best factor is the largest it tried gets a pilot at twice that factor, again and
    again while it stays at the top and the factor is at most `extend_to` (0: never)."""

    factors: tuple[float, ...] = ()
    extend_to: float = 0.0
    seed: int = 1
    train_extra: tuple[str, ...] = ()
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # pilot config -> configs

    def next_factor(self, top: float) -> float | None:
        """The factor the top-edge rule adds after `top` (None: `extend_to` reached)."""
        return 2 * top if 2 * top <= self.extend_to else None


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
    corpus: str = ""
    choice_by: str = "dev_cer"  # or "dev_ce" (the final whole-dev CE in summary.json)
    global_candidate: bool = False  # the global model (half-life 0) competes in the choice
    stats: Statistics = field(default_factory=Statistics)
    pilot: Pilot = field(default_factory=Pilot)
    convergence: tuple[str, ...] = ()
    fold_speakers: tuple[str, ...] = ()
    fold_workdir: str = "fold_{speaker}"

    @property
    def second_study(self) -> bool:
        """Plans of the second study: hierarchical statistics, the second table."""
        return self.stats.bootstrap == "hierarchical"

    def train_argv(self, run: RunSpec, lr_scale: float = 1.0) -> list[str]:
        """The run's options (without --egs/--exp-dir/--simulate); the learning rates times
        `lr_scale` (the pilot's factor) and the final one from `lr_final_ratio` if given."""
        argv = [
            *self.train_common,
            *self.train_model.get(run.model, []),
            *self.train_sync.get(run.sync, []),
            "--sync",
            run.sync,
            "--seed",
            str(run.seed),
            *run.extra,
        ]
        if lr_scale == 1.0 and run.lr_final_ratio is None:
            return argv
        return scale_lr(argv, lr_scale, run.lr_final_ratio)

    def pilot_runs(self, extended: bool = False) -> list[tuple[str, float, RunSpec]]:
        """(pilot config, factor, run) of every pilot run of the grid (with `extended`, also
        every run the top-edge rule may add); named `<config>_pilot-lrx<f>`."""
        factors = list(self.pilot.factors)
        while extended and factors and (f := self.pilot.next_factor(max(factors))) is not None:
            factors.append(f)
        return [(c, f, self.pilot_run(c, f)) for c in self.pilot.groups for f in factors]

    def pilot_run(self, config: str, factor: float) -> RunSpec:
        """The pilot run of `config` at `factor` x the plan's learning rates."""
        base = next(r for r in self.runs if r.config == config)
        tag = "_".join(t for t in (base.tag, f"pilot-lrx{factor:g}") if t)
        extra = (*base.extra, *self.pilot.train_extra)
        return RunSpec(
            base.model, base.sync, base.workers, self.pilot.seed, tag, extra, base.lr_final_ratio
        )

    def pilot_group_of(self, config: str) -> str | None:
        return next((p for p, cs in self.pilot.groups.items() if config in cs), None)


def _flag_value(argv: list[str], flag: str) -> tuple[int, float] | None:
    """(index of the value, value) of the last `flag V` or `flag=V` in argv."""
    found = None
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            found = (i + 1, float(argv[i + 1]))
        elif a.startswith(flag + "="):
            found = (i, float(a.split("=", 1)[1]))
    return found


def _set_flag(argv: list[str], flag: str, where: tuple[int, float] | None, value: float) -> None:
    if where is None:
        argv += [flag, f"{value:g}"]
    elif argv[where[0]].startswith(flag + "="):
        argv[where[0]] = f"{flag}={value:g}"
    else:
        argv[where[0]] = f"{value:g}"


def scale_lr(argv: list[str], scale: float, final_ratio: float | None) -> list[str]:
    """argv with --lr-initial and --lr-final times `scale` (the last of each counts), and
    --lr-final = final_ratio x --lr-initial when final_ratio is given."""
    out = list(argv)
    ini, fin = _flag_value(out, "--lr-initial"), _flag_value(out, "--lr-final")
    if ini is None:
        raise PlanError(f"cannot scale the learning rate: no --lr-initial in {' '.join(argv)}")
    lr0 = ini[1] * scale
    _set_flag(out, "--lr-initial", ini, lr0)
    if final_ratio is not None:
        _set_flag(out, "--lr-final", fin, lr0 * final_ratio)
    elif fin is not None:
        _set_flag(out, "--lr-final", fin, fin[1] * scale)
    return out


def _need(d: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in d:
        raise PlanError(f"{where}: missing key '{key}'")
    if not isinstance(d[key], kind):
        raise PlanError(f"{where}: '{key}' must be a {kind.__name__}, got {d[key]!r}")
    return d[key]


def _check_keys(d: Any, allowed: tuple[str, ...], where: str) -> dict[str, Any]:
    """`d` must be an object with only `allowed` keys (a misspelt key names itself)."""
    if not isinstance(d, dict):
        raise PlanError(f"{where} must be a JSON object, got {d!r}")
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        close = {u: difflib.get_close_matches(u, allowed, n=1) for u in unknown}
        hint = "; ".join(
            f"'{u}' (did you mean '{c[0]}'?)" if c else f"'{u}'" for u, c in close.items()
        )
        raise PlanError(f"{where}: unknown key {hint}; allowed: {sorted(allowed)}")
    return d


def _families(raw: dict[str, Any], egs: dict[str, str], path: Path) -> list[RunSpec]:
    runs: list[RunSpec] = []
    for i, fam in enumerate(_need(raw, "families", list, str(path))):
        where = f"{path}: families[{i}]"
        _check_keys(fam, NESTED_KEYS["families"], where)
        model, sync = _need(fam, "model", str, where), _need(fam, "sync", str, where)
        if model not in egs:
            raise PlanError(f"{where}: model '{model}' has no entry in 'egs' ({sorted(egs)})")
        if sync not in SYNC_CHOICES:
            raise PlanError(f"{where}: sync '{sync}' is not one of {SYNC_CHOICES}")
        ratio = fam.get("lr_final_ratio")
        if ratio is not None and not (isinstance(ratio, int | float) and ratio > 0):
            raise PlanError(f"{where}: 'lr_final_ratio' must be a number > 0, got {ratio!r}")
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
                        None if ratio is None else float(ratio),
                    )
                )
    names = [r.name for r in runs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise PlanError(f"{path}: runs listed twice: {dup}")
    return runs


def _decode(raw: dict[str, Any], runs: list[RunSpec], path: Path) -> dict[str, Any]:
    names = [r.name for r in runs]
    dec = _check_keys(raw.get("decode", {}), NESTED_KEYS["decode"], f"{path}: decode")
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
    return {
        "decode_nj": int(dec.get("nj", 1)),
        "decode_opts": list(dec.get("opts", [])),
        "test_models": test_models,
        "calibrate": calibrate,
        "calibrate_lm_weights": str(dec.get("calibrate_lm_weights", "6:14")),
    }


def _configs(items: Any, configs: set[str], where: str) -> tuple[str, ...]:
    if not isinstance(items, list):
        raise PlanError(f"{where} must be a list of config names, got {items!r}")
    bad = sorted(set(map(str, items)) - configs)
    if bad:
        raise PlanError(f"{where}: {bad} are not configs of the plan ({sorted(configs)})")
    return tuple(str(x) for x in items)


def _second_study(raw: dict[str, Any], runs: list[RunSpec], path: Path) -> dict[str, Any]:
    """The second study's keys (choice, statistics, pilot, convergence, folds), checked."""
    configs = {r.config for r in runs}
    ch = _check_keys(raw.get("choice", {}), NESTED_KEYS["choice"], f"{path}: choice")
    by = str(ch.get("by", "dev_cer"))
    if by not in ("dev_cer", "dev_ce"):
        raise PlanError(f"{path}: choice.by must be 'dev_cer' or 'dev_ce', got {by!r}")
    st = _check_keys(raw.get("statistics", {}), NESTED_KEYS["statistics"], f"{path}: statistics")
    boot = str(st.get("bootstrap", "utterances"))
    if boot not in ("utterances", "hierarchical"):
        raise PlanError(f"{path}: statistics.bootstrap must be 'utterances' or 'hierarchical'")
    stats = Statistics(
        boot,
        int(st.get("resamples", 1000)),
        int(st.get("seed", 0)),
        float(st.get("equivalence_margin_percent", 2.0)),
        _configs(st.get("primary", []), configs, f"{path}: statistics.primary"),
    )
    pl = _check_keys(raw.get("pilot", {}), NESTED_KEYS["pilot"], f"{path}: pilot")
    groups: dict[str, tuple[str, ...]] = {}
    for i, g in enumerate(pl.get("groups", [])):
        where = f"{path}: pilot.groups[{i}]"
        _check_keys(g, NESTED_KEYS["pilot.groups"], where)
        pilot = _configs([_need(g, "pilot", str, where)], configs, f"{where}.pilot")[0]
        groups[pilot] = _configs(_need(g, "configs", list, where), configs, f"{where}.configs")
    twice = sorted(
        {c for cs in groups.values() for c in cs if sum(c in o for o in groups.values()) > 1}
    )
    if twice:
        raise PlanError(f"{path}: pilot.groups give configs {twice} more than one pilot")
    cv = _check_keys(raw.get("convergence", {}), NESTED_KEYS["convergence"], f"{path}: convergence")
    fo = _check_keys(raw.get("folds", {}), NESTED_KEYS["folds"], f"{path}: folds")
    return {
        "corpus": str(raw.get("corpus", "")),
        "choice_by": by,
        "global_candidate": bool(ch.get("global_candidate", False)),
        "stats": stats,
        "pilot": Pilot(
            tuple(float(f) for f in pl.get("factors", [])),
            float(pl.get("extend_to", 0)),
            int(pl.get("seed", 1)),
            tuple(str(x) for x in pl.get("train_extra", [])),
            groups,
        ),
        "convergence": _configs(cv.get("configs", []), configs, f"{path}: convergence.configs"),
        "fold_speakers": tuple(str(s) for s in fo.get("speakers", [])),
        "fold_workdir": str(fo.get("workdir", "fold_{speaker}")),
    }


def load_plan(path: Path) -> Plan:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"study plan {path} not found") from None
    except json.JSONDecodeError as e:
        raise PlanError(f"{path}: not valid JSON ({e})") from None
    _check_keys(raw, TOP_KEYS, str(path))
    egs = _need(raw, "egs", dict, str(path))
    runs = _families(raw, egs, path)
    names = [r.name for r in runs]
    ph = _check_keys(raw.get("posthoc", {}), NESTED_KEYS["posthoc"], f"{path}: posthoc")
    for r in ph.get("runs", []):
        if r not in names:
            raise PlanError(f"{path}: posthoc run '{r}' is not one of the plan's runs")
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
        **_decode(raw, runs, path),
        **_second_study(raw, runs, path),
    )
