"""Run the EMA study: every training run of a plan, its decodes, the choices made on dev.

    python -m steps_py.study.run --plan egs/synth/conf_study/study.json --workdir study_work

Resumable and idempotent: each step of each run is skipped when its output is done (a
trained run has `final/.done`, a decode dir `.done`), and a killed training run resumes
from its last checkpoint. So the command can be stopped at any time and run again, in
this session or a later one, and continues where it stopped. Per run, in plan order:

1. train (`python -m steps_py.parallel.train`, `--simulate N` for N > 1: bit-identical to
   torchrun, see tests/test_parallel_dist.py), into `<workdir>/exp/study/<run>/`;
2. decode every final model on dev (the LM weight and insertion penalty chosen there);
3. decode the global model and the non-EMA averagers on test (with dev's LM weight);
4. once every seed of a config has its dev decodes: choose the EMA (half-life, or the one
   with warm-up) with the lowest mean dev CER over the seeds, write it to
   `results/study/choices.json`, and decode that EMA on test for every seed.
A plan of the second study (`plan.py`) first trains its learning-rate pilot (short runs at
the plan's factors (x0.5-x32), each group's factor chosen by the final whole-dev CE of the global model,
`pilot.json`); chooses by final whole-dev CE instead of dev CER when it says so (then only
the chosen model is decoded, on dev and test) and with the global model as a candidate;
decodes the epoch-end models of its convergence configs on dev; and runs each
leave-one-speaker-out fold in its own workdir (`fold_studies`).
Then the post-hoc runs of the plan: EMAs of many half-lives reconstructed from the
snapshots (`steps_py.parallel.posthoc`), each decoded on dev (the CER-vs-half-life curve),
and the tracked half-lives reconstructed for the comparison with the tracked EMAs.
After each step a run's record (`results/study/runs/<run>.json`, `record.py`) is brought up
to date; the table and plots (`steps_py.study.table`) are built from the records, and a
decode already in a record is never redone, so a later session needs only the repository
(and regenerates the deterministic corpus) to continue. If such a session must retrain a run
(for a model its record lacks) and gets another model than the record's (other examples,
code or machine), the record is superseded, not merged: kept in `<results>/superseded/`, and the
run decoded again (`Study.supersede`). Nothing is ever chosen on test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from steps_py.cli import StepError, step_main
from steps_py.decode.artifact import DecodeDir
from steps_py.decode.options import DecodeCall
from steps_py.fileio import atomic_write_json, atomic_write_text, is_done
from steps_py.model_tag import ModelTag, TagKind, format_number, is_ema
from steps_py.parallel.errors import DivergenceError
from steps_py.parallel.run_dir import RunDir
from steps_py.study.plan import Plan, RunSpec, load_plan
from steps_py.study.record import (
    diverged_record,
    final_global_ce,
    is_diverged,
    make_record,
    read_choices,
    read_record,
    same_training,
    write_record,
)

log = logging.getLogger("study")


class StudyError(StepError):
    """A step of the study failed; the message names the run and its log."""


class Study:
    def __init__(
        self, plan: Plan, workdir: Path, results: Path, python: str = sys.executable
    ) -> None:
        self.plan, self.wd, self.results, self.python = plan, Path(workdir), Path(results), python
        self.root = self.wd / "exp" / self.results.name  # exp/study, exp/study_kaldi, ...
        self.lock = threading.RLock()
        self.calib_locks = {m: threading.Lock() for m in plan.egs}
        self.pilot_factor = {r.name: f for _, f, r in plan.pilot_runs(extended=True)}
        self.run_locks: dict[str, threading.Lock] = {}
        self.decode_locks: dict[str, threading.Lock] = {}
        self.superseded: set[str] = set()  # runs whose record a retraining replaced

    def _named_lock(self, locks: dict[str, threading.Lock], name: str) -> threading.Lock:
        """The lock of `name` in `locks` (per-run train or decode locks), made once."""
        with self.lock:
            return locks.setdefault(name, threading.Lock())

    def run_dir(self, run: RunSpec) -> Path:
        return self.root / run.name

    def record_path(self, run: RunSpec) -> Path:
        if run.name in self.pilot_factor:
            return self.results / "pilot" / f"{run.name}.json"
        return self.results / "runs" / f"{run.name}.json"

    def record(self, run: RunSpec) -> dict | None:
        return read_record(self.record_path(run))

    def has(self, run: RunSpec, tag: str, split: str) -> bool:
        rec = self.record(run)
        return rec is not None and split in rec["models"].get(tag, {})

    def update_record(self, run: RunSpec) -> None:
        """Merge what the run dir now holds into the run's record (never drops an entry)."""
        d = self.run_dir(run)
        if not RunDir(d).is_finished():
            return
        epoch_tags = sorted(DecodeDir.parse_name(p.name)[0] for p in d.glob("decode_epoch*_dev"))  # type: ignore[index]
        new = make_record(d, self.models(run) + self.models(run, posthoc=True), epoch_tags)
        old = self.record(run)
        if old is not None and same_training(old, new) is False:
            self.supersede(run, old, new)
        elif old is not None:
            for tag, splits in old["models"].items():
                for split, e in splits.items():
                    new["models"].setdefault(tag, {}).setdefault(split, e)
        write_record(self.record_path(run), new)

    def supersede(self, run: RunSpec, old: dict, new: dict) -> None:
        """The run dir holds another training than the run's record (the run was retrained in
        a later session: other examples, other code, or another machine whose floating point
        differs): its decodes must not join the record's. The record moves to
        `<results>/superseded/` and every decode is redone from the run dir (`run_all` goes
        over the run again)."""
        keep = self.results / "superseded" / f"{run.name}.{old.get('fingerprint', 'legacy')}.json"
        keep.parent.mkdir(parents=True, exist_ok=True)
        write_record(keep, old)
        self.superseded.add(run.name)
        log.warning(
            "%s: retrained, and not into the training its record holds (global model %s, final "
            "dev CE %s; the record's: %s, %s): the examples, the code or the machine differ from "
            "the record's; the record is kept as %s and every decode is redone from the new training",
            run.name,
            new.get("fingerprint"),
            final_global_ce(new),
            old.get("fingerprint", "(none)"),
            final_global_ce(old),
            keep,
        )

    def models(self, run: RunSpec, posthoc: bool = False) -> list[str]:
        """Tags of the run's final models (`posthoc-*` only when asked), from its dir or record."""
        rd = RunDir(self.run_dir(run))
        if rd.is_finished():
            return rd.model_tags(posthoc)
        rec = self.record(run)
        tags = sorted(rec["final_models"]) if rec else []
        return [t for t in tags if (ModelTag.parse(t).kind == TagKind.POSTHOC) == posthoc]

    def lr_scale(self, run: RunSpec) -> float:
        """The pilot's factor of a pilot run; for a plan run, the one its pilot chose on dev."""
        if run.name in self.pilot_factor:
            return self.pilot_factor[run.name]
        group = self.plan.pilot_group_of(run.config)
        if group is None:
            return 1.0
        chosen = read_choices(self.results / "pilot.json")
        if group not in chosen:
            raise StudyError(
                f"{run.name}: its learning rate comes from the pilot of {group}, which has not "
                "chosen yet (run the study without --only-train first, or let it finish the pilot)"
            )
        if chosen[group]["factor"] is None:
            raise StudyError(f"{run.name}: every learning-rate pilot of {group} diverged")
        return float(chosen[group]["factor"])

    def pilot_diverged(self, run: RunSpec) -> bool:
        """Whether every pilot of the run's group diverged (the run is then not trained)."""
        group = self.plan.pilot_group_of(run.config)
        chosen = read_choices(self.results / "pilot.json")
        return group in chosen and chosen[group]["factor"] is None

    def model_path(self, run: RunSpec, tag: str) -> Path:
        """`final/<tag>.safetensors`, or `epoch<E>/<model>.safetensors` for `epoch<E>-<model>`."""
        return RunDir(self.run_dir(run)).model_path(ModelTag.parse(tag))

    # ----------------------------------------------------------------- steps
    def train(self, run: RunSpec) -> bool:
        """Train `run` unless done; False when it diverged (recorded as such, not retried).

        One run is trained by one thread: the LM-weight calibration of another thread waits
        for the calibration run that is training instead of starting it a second time."""
        with self._named_lock(self.run_locks, run.name):
            return self._train(run)

    def _train(self, run: RunSpec) -> bool:
        d = self.run_dir(run)
        if RunDir(d).is_finished():
            return True
        if is_diverged(self.record(run)):
            return False
        argv = [
            self.python,
            "-m",
            "steps_py.parallel.train",
            "--egs",
            str(self.wd / self.plan.egs[run.model]),
            "--exp-dir",
            str(d),
            "--resume",
            *self.plan.train_argv(run, self.lr_scale(run)),
        ]
        if run.workers > 1:
            argv += ["--simulate", str(run.workers)]
        log.info("training %s (%d workers)", run.name, run.workers)
        t0 = time.time()
        rc = self._call(
            argv, d / "log" / "study_train.out", run.name, allow=(DivergenceError.exit_status,)
        )
        if rc == DivergenceError.exit_status and (d / "diverged.json").is_file():
            with self.lock:
                write_record(self.record_path(run), diverged_record(d))
            log.warning(
                "%s diverged after %.0f s (%s); recorded, and the study goes on",
                run.name,
                time.time() - t0,
                d / "diverged.json",
            )
            return False
        if rc != 0:
            raise StudyError(f"{run.name}: training exited {rc}; see {d / 'log/study_train.out'}")
        log.info("trained %s in %.0f s", run.name, time.time() - t0)
        return True

    def decode(self, run: RunSpec, tags: list[str], split: str, wait: bool = True) -> None:
        """Decode the run's models `tags` on dev or test (one pool, the graph read once).

        Every model of a model type is decoded at the same LM weight, chosen on dev once
        (`lm_weight`); test reads it from the model's dev decode dir. One thread decodes a
        run at a time; another waits for it, or with `wait=False` leaves the decodes to it.
        """
        if not self._to_decode(run, tags, split):
            return
        lmwt = self.lm_weight(run.model) if split == "dev" else None
        decode_lock = self._named_lock(self.decode_locks, run.name)
        if not decode_lock.acquire(blocking=wait):
            return
        try:
            todo = self._to_decode(run, tags, split)
            if todo:
                self._decode(run, todo, split, lmwt)
        finally:
            decode_lock.release()

    def _to_decode(self, run: RunSpec, tags: list[str], split: str) -> list[str]:
        d = self.run_dir(run)
        return [
            t
            for t in tags
            if not is_done(d / f"decode_{t}_{split}") and not self.has(run, t, split)
        ]

    def _decode(self, run: RunSpec, todo: list[str], split: str, lmwt: float | None) -> None:
        d = self.run_dir(run)
        if not self.train(run):
            raise StudyError(f"{run.name} diverged: it has no models to decode")
        call = self.decode_call(
            [self.model_path(run, t) for t in todo],
            self.plan.dev if split == "dev" else self.plan.test,
            [d / f"decode_{t}_{split}" for t in todo],
            lm_weights=format_number(lmwt) if lmwt is not None else None,
            lm_weight_from=[d / f"decode_{t}_dev" for t in todo] if split != "dev" else [],
            log_file=d / "log" / f"decode_{split}.log",
        )
        self._call(
            call.command(self.python),
            d / "log" / f"study_decode_{split}.out",
            f"{run.name} {split} decode",
        )

    def decode_call(
        self,
        models: list[Path],
        data: str,
        outs: list[Path],
        *,
        lm_weights: str | None = None,
        lm_weight_from: list[Path] | None = None,
        log_file: Path | None = None,
    ) -> DecodeCall:
        """The `steps_py.decode.nnet` run of `models` on the plan's data dir `data` (its dev or
        test) with the plan's graph, jobs and decode options: every decode of the study."""
        return DecodeCall(
            models,
            self.wd / self.plan.graph,
            self.wd / data,
            outs,
            self.plan.decode_nj,
            lm_weights=lm_weights,
            lm_weight_from=lm_weight_from or [],
            log_file=log_file,
            opts=self.plan.decode_opts,
        )

    def lm_weight(self, model: str) -> float:
        """The LM weight of every `model` decode: the best of `calibrate_lm_weights` for the
        global model of the plan's calibration run, on dev (results/study/lm_weights.json)."""
        path = self.results / "lm_weights.json"
        with self.calib_locks[model]:  # one calibration per model type; other types go on
            with self.lock:
                known = json.loads(path.read_text()) if path.is_file() else {}
            if model in known:
                return float(known[model]["lm_weight"])
            run = next(r for r in self.plan.runs if r.name == self.plan.calibrate[model])
            d = self.run_dir(run)
            out = d / "decode_global_dev"
            if not is_done(out):
                if not self.train(run):
                    raise StudyError(
                        f"{run.name} diverged, so it cannot set the {model} LM weight: give "
                        f"decode.calibrate.{model} another run in {self.plan.path}"
                    )
                call = self.decode_call(
                    [RunDir(d).model_path(ModelTag(TagKind.GLOBAL))],
                    self.plan.dev,
                    [out],
                    lm_weights=self.plan.calibrate_lm_weights,
                )
                self._call(
                    call.command(self.python),
                    d / "log" / "study_decode_calibrate.out",
                    f"{run.name} LM weight",
                )
            summary = DecodeDir(out).summary()
            cer_lines = DecodeDir(out).cer_by_file()
            with self.lock:
                known = json.loads(path.read_text()) if path.is_file() else {}
                known[model] = {
                    "lm_weight": summary["lm_weight"],
                    "from": f"{run.name}/global on dev",
                    "cer_by_file": dict(sorted(cer_lines.items())),
                }
                atomic_write_json(path, known)
            log.info(
                "LM weight for every %s decode: %s (chosen on dev with %s's global model)",
                model,
                summary["lm_weight"],
                run.name,
            )
            return float(summary["lm_weight"])

    def _call(self, argv: list[str], log_path: Path, what: str, allow: tuple[int, ...] = ()) -> int:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n")
            f.flush()
            p = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=env, check=False)
        if p.returncode != 0 and p.returncode not in allow:
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
            raise StudyError(
                f"{what} failed (exit {p.returncode}); see {log_path}:\n  " + "\n  ".join(tail)
            )
        return p.returncode

    # ----------------------------------------------------------------- choices
    def dev_cer(self, run: RunSpec, tag: str) -> float | None:
        rec = self.record(run)
        e = rec["models"].get(tag, {}).get("dev") if rec else None
        return None if e is None else float(e["cer"])

    def dev_ce(self, run: RunSpec, tag: str) -> float | None:
        """The model's whole-dev cross entropy at the end of training (summary history)."""
        rec = self.record(run)
        curve = rec.get("epoch_curve") if rec else None
        return None if not curve or tag not in curve[-1] else float(curve[-1][tag])

    def choose(self) -> dict[str, dict[str, object]]:
        """Per config whose seeds are all recorded: the EMA (or, where the plan says so, the
        global model too) with the lowest mean dev CER (or final dev CE) over the seeds."""
        by_config: dict[str, list[RunSpec]] = defaultdict(list)
        for r in self.plan.runs:
            by_config[r.config].append(r)
        by_ce = self.plan.choice_by == "dev_ce"
        choices: dict[str, dict[str, object]] = {}
        for config, all_runs in by_config.items():
            if not all(self.record(r) is not None for r in all_runs):
                continue
            runs = [r for r in all_runs if not is_diverged(self.record(r))]
            if not runs:
                continue
            tags = [t for t in self.models(runs[0]) if is_ema(t)]
            if self.plan.global_candidate:
                tags = ["global", *tags]  # half-life 0
            score = self.dev_ce if by_ce else self.dev_cer
            values = {t: [score(r, t) for r in runs] for t in tags}
            if not tags or any(c is None for cs in values.values() for c in cs):
                continue
            mean = {t: sum(cs) / len(cs) for t, cs in values.items()}  # type: ignore[arg-type]
            best = min(tags, key=lambda t: (mean[t], t))
            key = "dev_ce_mean" if by_ce else "dev_cer_mean"
            choices[config] = {"ema": best, key: mean, "seeds": [r.seed for r in runs]}
        atomic_write_json(self.results / "choices.json", choices)
        return choices

    # ----------------------------------------------------------------- learning-rate pilot
    def run_pilot(self, jobs: int) -> dict[str, dict[str, object]]:
        """Train every pilot run (short; no decodes) and choose each group's factor by the
        final whole-dev CE of the pilot's global model (never test); a group whose best factor
        is the largest it tried gets the next one while the plan's `extend_to` allows (run
        and chosen the same way); `results/pilot.json`."""
        pilots = self.plan.pilot_runs()
        if not pilots:
            return {}
        while True:
            self._train_pilots([r for _, _, r in pilots], jobs)
            chosen = self._choose_pilot(pilots)
            more = []
            for g, c in chosen.items():
                top = max(f for p, f, _ in pilots if p == g)
                nxt = self.plan.pilot.next_factor(top)
                if c["factor"] == top and nxt is not None:
                    more.append((g, nxt, self.plan.pilot_run(g, nxt)))
            if not more:
                break
            for g, f, _ in more:
                log.info("learning-rate pilot of %s: best at the top of its grid, adding x%g", g, f)
            pilots += more
        for group, c in chosen.items():
            if c["factor"] is None:  # a result, not a failure: the group's configs are not run
                log.warning(
                    "every learning-rate pilot of %s diverged; %s are not run (lower the "
                    "plan's rates to run them)",
                    group,
                    ", ".join(self.plan.pilot.groups[group]),
                )
            else:
                log.info(
                    "learning-rate pilot of %s: x%g (dev CE by factor %s)",
                    group,
                    c["factor"],
                    c["dev_ce_global_by_factor"],
                )
        atomic_write_json(self.results / "pilot.json", chosen)
        return chosen

    def _train_pilots(self, runs: list[RunSpec], jobs: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        def one(run: RunSpec) -> None:
            if self.record(run) is None and self.train(run):
                with self.lock:
                    write_record(self.record_path(run), make_record(self.run_dir(run), []))

        with ThreadPoolExecutor(max_workers=jobs) as ex:
            for f in [ex.submit(one, r) for r in runs]:
                f.result()

    def _choose_pilot(
        self, pilots: list[tuple[str, float, RunSpec]]
    ) -> dict[str, dict[str, object]]:
        """Per group: the factor with the lowest final dev CE of the global model (ties: the
        one nearest x1; a diverged pilot has none) and the CE of every factor tried."""
        chosen: dict[str, dict[str, object]] = {}
        for group in self.plan.pilot.groups:
            ce = {
                f: self.dev_ce(r, "global")
                for g, f, r in sorted(pilots, key=lambda p: p[1])
                if g == group
            }
            ok = {f: v for f, v in ce.items() if v is not None}  # a diverged pilot: None
            best = min(ok, key=lambda f: (ok[f], abs(f - 1.0))) if ok else None
            chosen[group] = {
                "factor": best,
                "dev_ce_global_by_factor": {f"{f:g}": v for f, v in ce.items()},
                "applies_to": list(self.plan.pilot.groups[group]),
            }
        return chosen

    # ----------------------------------------------------------------- whole study
    def run_one(self, run: RunSpec) -> None:
        if self.record(run) is None and self.train(run):
            self.update_record(run)
        if is_diverged(self.record(run)):
            return
        tags = self.models(run)
        by_ce = self.plan.choice_by == "dev_ce"  # then EMAs are decoded once chosen
        self.decode(run, [t for t in tags if not (by_ce and is_ema(t))], "dev")
        self.decode(
            run,
            [t for t in tags if self.plan.test_models == "all" or not is_ema(t)],
            "test",
        )
        with self.lock:
            self.update_record(run)

    def test_chosen(self, choices: dict[str, dict[str, object]], wait: bool = True) -> None:
        """Dev and test decodes of each config's chosen model (and its epoch-end models where
        the plan tracks convergence); with `wait=False` a run another thread is decoding is
        left to it (every thread calls this after each run; the last call waits)."""
        chosen = [
            (r, str(c["ema"]))
            for r in self.plan.runs
            if (c := choices.get(r.config)) is not None and not is_diverged(self.record(r))
        ]
        for r, tag in chosen:  # the contrasts first, then the (longer) convergence decodes
            for split in ("dev", "test"):
                if not self.has(r, tag, split):
                    self.decode(r, [tag], split, wait)
                    with self.lock:
                        self.update_record(r)
        for r, tag in chosen:
            if r.config in self.plan.convergence:
                self.decode_epochs(r, ["global", tag], wait)

    def decode_epochs(self, run: RunSpec, models: list[str], wait: bool = True) -> None:
        """Dev decodes of the epoch-end models (`epoch<E>/`, from --save-epoch-models)."""
        d = self.run_dir(run)
        epochs = RunDir(d).epochs()
        if not epochs and self.record(run) and not RunDir(d).is_finished():
            return  # a later session without the run dir: its record has what was decoded
        tags = [str(ModelTag.parse(m).at_epoch(e)) for e in epochs for m in dict.fromkeys(models)]
        todo = [t for t in tags if not self.has(run, t, "dev")]
        if todo:
            self.decode(run, todo, "dev", wait)
            with self.lock:
                self.update_record(run)

    def posthoc(self, run: RunSpec) -> None:
        compared = self.results / "posthoc" / f"{run.name}.json"
        if (
            self.record(run) is not None
            and self.models(run, posthoc=True)
            and all(self.has(run, t, "dev") for t in self.models(run, posthoc=True))
        ):
            if not compared.is_file() and RunDir(self.run_dir(run)).is_finished():
                compare_posthoc(self.run_dir(run) / "final", compared)
            return
        self.train(run)
        d = self.run_dir(run)
        tags = [ModelTag.parse(t) for t in self.models(run)]
        tracked = [  # EMAs with a half-life in frames (not fractions, starts, corrections)
            t.half_life for t in tags if t.is_ema and t.is_plain_half_life
        ]
        wanted = sorted(set(self.plan.posthoc_half_lives) | set(tracked))
        todo = [
            h
            for h in wanted
            if not RunDir(d).model_path(ModelTag(TagKind.POSTHOC, half_life=h)).is_file()
        ]
        if todo:
            argv = [
                self.python,
                "-m",
                "steps_py.parallel.posthoc",
                "--exp-dir",
                str(d),
                "--egs",
                str(self.wd / self.plan.egs[run.model]),
                "--half-life-frames",
                ",".join(format_number(h) for h in todo),
            ]
            self._call(argv, d / "log" / "study_posthoc.out", f"{run.name} post-hoc")
        self.decode(run, self.models(run, posthoc=True), "dev")
        self.update_record(run)
        compare_posthoc(d / "final", compared)

    def run_all(self, only_train: bool = False, jobs: int = 1) -> None:
        """Every run (`jobs` at a time, each single-threaded), then the post-hoc runs."""
        from concurrent.futures import ThreadPoolExecutor

        def one(run: RunSpec) -> None:
            if self.pilot_diverged(run):
                return
            if only_train:
                self.train(run)
                return
            self.run_one(run)
            with self.lock:
                choices = self.choose()
            self.test_chosen(choices, wait=False)  # the others' runs: the last call waits

        self.run_pilot(jobs)
        with ThreadPoolExecutor(max_workers=jobs) as ex:
            for f in [ex.submit(one, r) for r in self.plan.runs]:
                f.result()  # the first failure stops the study with its message
        if only_train:
            return
        self.test_chosen(self.choose())
        names = {r.name: r for r in self.plan.runs}
        while self.superseded:  # their decodes again, from the training their dirs hold
            redo = [names[n] for n in sorted(self.superseded) if n in names]
            self.superseded.clear()
            for run in redo:
                self.run_one(run)
            self.test_chosen(self.choose())
        for name in self.plan.posthoc_runs:
            self.posthoc(names[name])


def compare_posthoc(final: Path, out: Path) -> dict[str, dict[str, float]]:
    """Max parameter difference of each reconstructed EMA from the tracked one of the same
    half-life, beside the tracked EMA's own difference from the global model (the scale a
    difference is small against); written to `out` (committed with the records)."""
    from safetensors.torch import load_file

    glob_ = load_file(str(final / "global.safetensors"))
    rows: dict[str, dict[str, float]] = {}
    for p in sorted(final.glob("posthoc-hl*.safetensors")):
        tracked = final / (p.name.replace("posthoc-", "ema-"))
        if not tracked.is_file():
            continue
        a, b = load_file(str(p)), load_file(str(tracked))
        rows[p.stem.removeprefix("posthoc-")] = {
            "max_abs_diff_posthoc_vs_tracked": max(float((a[k] - b[k]).abs().max()) for k in b),
            "max_abs_diff_tracked_vs_global": max(float((b[k] - glob_[k]).abs().max()) for k in b),
            "max_abs_param_tracked": max(float(b[k].abs().max()) for k in b),
        }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, rows)
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m steps_py.study.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--plan",
        type=Path,
        default=Path("egs/synth/conf_study/study.json"),
        help="study plan JSON (default %(default)s)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("study_work"),
        help="where run.sh prepared the study corpus (corpus/ data/ exp/: features, GMM, examples) "
        "(default %(default)s)",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=Path("results/study"),
        help="where the table and plots go (default %(default)s)",
    )
    p.add_argument("--only-train", action="store_true", help="train every run, decode nothing")
    p.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="runs trained and decoded at the same time, one thread each (default %(default)s)",
    )
    p.add_argument(
        "--table-only",
        action="store_true",
        help="only rebuild the table and plots from what is done",
    )
    return p


def fold_studies(plan: Plan, workdir: Path, results: Path) -> list[Study]:
    """One study per leave-one-speaker-out fold (its own workdir and records), or the one."""
    if not plan.fold_speakers:
        return [Study(plan, workdir, results)]
    return [
        Study(plan, workdir / plan.fold_workdir.format(speaker=s), results / f"fold-{s}")
        for s in plan.fold_speakers
    ]


def check_targets_match_graph(study: Study) -> None:
    """Every examples dir of the plan has the graph's pdfs (its targets come from the alignments
    the graph was built with): checked before any training, not at the first decode."""
    from steps_py.nnet.egs_dir import EgsDir

    graph = study.wd / study.plan.graph
    want = int((graph / "num_pdfs").read_text().split()[0])  # decode.inputs checks it fully
    for model, egs in study.plan.egs.items():
        info = EgsDir(study.wd / egs).info()
        if int(info["num_pdfs"]) != want:
            raise StudyError(
                f"the plan's examples for {model} ({study.wd / egs}) have {info['num_pdfs']} "
                f"pdfs but its graph {graph} has {want}: set the plan's 'graph' to the one built "
                "from the alignments the examples were made from (e.g. exp/tri1/graph for "
                "triphone targets)"
            )


def run(args: argparse.Namespace) -> int:
    from steps_py.study.table import write_study_table
    from steps_py.study.table_kaldi import write_kaldi_table

    plan = load_plan(args.plan)
    studies = fold_studies(plan, args.workdir, args.results)
    for study in studies if not args.table_only else []:
        for key in (plan.graph, plan.dev, plan.test, *plan.egs.values()):
            if not (study.wd / key).exists():
                raise StudyError(
                    f"{study.wd / key} does not exist: prepare the study corpus first "
                    "(local/run_study.sh runs ./run.sh up to the examples for it)"
                )
        check_targets_match_graph(study)
    t0 = time.time()
    if not args.table_only:
        if args.jobs < 1:
            raise StudyError(f"--jobs must be >= 1, not {args.jobs}")
        if plan.second_study:  # the plan as run, beside its results
            args.results.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.results / "plan.json", plan.path.read_text(encoding="utf-8"))
        for study in studies:
            study.run_all(args.only_train, args.jobs)
        log.info("study steps done in %.0f s", time.time() - t0)
    if plan.second_study:  # the second study's table (issue 19); the first's is unchanged
        write_kaldi_table(studies, args.results)
    else:
        write_study_table(studies[0])
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main(
        "study", build_parser(), run, argv, log_file=lambda a: a.workdir / "logs" / "study.log"
    )


if __name__ == "__main__":
    raise SystemExit(main())
