"""The trainer's typed configuration (steps_py/parallel/config.py): `options.from_args` carries
every option into it, and a run's `settings` are the ones the Namespace gave before the
configs existed, so a checkpoint of an older run still resumes."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from steps_py.parallel.config import TrainConfig, settings
from steps_py.parallel.options import build_parser, from_args, parse_args
from steps_py.parallel.state import settings_diff

# options.settings(args, cfg, block) as it was when it read the Namespace (before issue 22)
LEGACY_KEYS = (
    "sync",
    "epochs",
    "batch_size",
    "seed",
    "optimizer",
    "lr_initial",
    "lr_final",
    "momentum",
    "max_change",
    "max_change_global",
    "ng_rank_in",
    "ng_rank_out",
    "ng_update_period",
    "bmuf_momentum",
    "bmuf_lr",
    "warmup_blocks",
    "lr_times_workers",
    "ema_interfering",
    "icefall_average_period",
    "combine_max_models",
    "posthoc_snapshots",
    "posthoc_sigma_rels",
    "priors",
    "prior_frames",
    "ddp_impl",
)


def legacy_settings(args: argparse.Namespace, cfg: dict[str, Any], block: int) -> dict[str, Any]:
    out = {k: getattr(args, k) for k in LEGACY_KEYS}
    out.update(
        egs=str(Path(args.egs).resolve()),
        model_config=cfg,
        block_minibatches=block,
        emas=[s.label for s in args.ema_specs],
    )
    return out


OPTION_SETS = [
    [],
    [
        "--sync",
        "bmuf-cbm",
        "--bmuf-momentum",
        "0.5",
        "--bmuf-lr",
        "1.5",
        "--warmup-blocks",
        "2",
        "--lr-times-workers",
        "--optimizer",
        "sgd-mc",
        "--momentum",
        "0.9",
        "--max-change",
        "0.5",
        "--max-change-global",
        "1.5",
        "--ng-rank-in",
        "10",
        "--ng-rank-out",
        "40",
        "--ng-update-period",
        "2",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--seed",
        "7",
        "--lr-initial",
        "0.01",
        "--lr-final",
        "0.001",
    ],
    [
        "--ema-half-life-fractions",
        "0.05",
        "--ema-decays",
        "0.9",
        "--ema-warmup",
        "--ema-start",
        "0.1",
        "--ema-bias-correction",
        "--posthoc-snapshots",
        "8",
        "--posthoc-sigma-rels",
        "0.05,0.15",
        "--combine-max-models",
        "4",
        "--icefall-average-period",
        "3",
        "--priors",
        "counts",
        "--prior-frames",
        "100",
        "--ddp-impl",
        "flat",
        "--model-config",
        "hidden=8,kind=x",
    ],
    ["--ema-interfering", "--ema-half-life-frames", "5000", "--sync", "ddp"],
]


def parsed(tmp_path: Path, extra: list[str]) -> argparse.Namespace:
    argv = ["--egs", str(tmp_path / "egs"), "--exp-dir", str(tmp_path / "exp"), *extra]
    return parse_args(build_parser(None), argv)


@pytest.mark.parametrize(
    "extra", OPTION_SETS, ids=["defaults", "sync-opt", "averagers", "ablation"]
)
def test_settings_are_those_of_the_namespace_before(tmp_path: Path, extra: list[str]) -> None:
    ns = parsed(tmp_path, extra)
    cfg = {"type": "toy", "hidden": 8}
    new = settings(from_args(ns), cfg, 7)
    old = legacy_settings(ns, cfg, 7)
    assert new == old
    assert json.dumps(new) == json.dumps(old)  # same key order, lists (not tuples)
    saved = json.loads(json.dumps(old, sort_keys=True))  # as a checkpoint stores it
    assert settings_diff(saved, new) == []


def config_fields(config: TrainConfig) -> dict[str, Any]:
    """{field: value} of every group of `config` (field names are unique across groups)."""
    out: dict[str, Any] = {}
    for group in dataclasses.fields(config):
        part = getattr(config, group.name)
        for f in dataclasses.fields(part):
            assert f.name not in out, f"{f.name} in two groups"
            out[f.name] = getattr(part, f.name)
    return out


def test_every_option_reaches_the_config_and_nothing_else(tmp_path: Path) -> None:
    """A flag added to the parser but not to the config (or the reverse) fails here."""
    for extra in OPTION_SETS:
        ns = parsed(tmp_path, extra)
        config = from_args(ns)
        fields = config_fields(config)
        ema_flags = {k for k in vars(ns) if k.startswith("ema_") and k != "ema_interfering"}
        renamed = {
            "optimizer": "name",
            "model_config": "overrides",
            "no_tensorboard": "tensorboard",
        }
        for dest, value in vars(ns).items():
            if dest in ema_flags:
                continue  # -> averagers.ema_specs
            got = fields[renamed.get(dest, dest)]
            want = (not value) if dest == "no_tensorboard" else value
            assert (list(got) if isinstance(got, tuple) else got) == want, dest
        assert list(config.averagers.ema_specs) == ns.ema_specs
        assert set(fields) == {renamed.get(k, k) for k in vars(ns)} - ema_flags | {"ema_specs"}


def test_the_config_is_frozen(tmp_path: Path) -> None:
    config = from_args(parsed(tmp_path, []))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.sync.sync = "bmuf-nbm"  # type: ignore[misc]
    assert config.sync.block_size(100.0) == 16  # neither --block-minibatches nor --block-frames
    frames = from_args(parsed(tmp_path, ["--block-frames", "1000"]))
    assert frames.sync.block_size(300.0) == 3
