"""The shared option groups of steps_py/cli.py: every step with one output dir declares
``--out`` and ``--force`` through `add_output_options`, with the same meaning everywhere."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest

from steps_py.cli import add_output_options

# step -> its --out default (None: --out is required)
ONE_OUTPUT_DIR = {
    "steps_py.nnet.egs": None,
    "steps_py.kaldi.loglikes": None,
    "steps_py.kaldi.lang_import": None,
    "steps_py.kaldi.export": "exp/mono_kaldi",
    "steps_py.decode.graph": "exp/mono/graph",
    "steps_py.decode.bundle": None,
    "steps_py.lang.prepare": "data/lang",
    "steps_py.lang.lm": "data/lang_test",
    "steps_py.gmm.align": "exp/mono_ali/train",
    "steps_py.gmm.train_mono": "exp/mono",
    "steps_py.gmm.train_tri": "exp/tri1",
}


@pytest.mark.parametrize("module", sorted(ONE_OUTPUT_DIR))
def test_steps_with_one_output_dir_declare_out_and_force_alike(module: str) -> None:
    default = ONE_OUTPUT_DIR[module]
    actions = {a.dest: a for a in importlib.import_module(module).build_parser()._actions}
    out, force = actions["out"], actions["force"]
    assert out.option_strings == ["--out"] and out.type is Path and out.nargs is None
    assert out.required == (default is None)
    assert out.default == (None if default is None else Path(default))
    assert ("(default %(default)s)" in (out.help or "")) == (default is not None)
    assert force.option_strings == ["--force"] and force.nargs == 0
    assert force.default is False and force.const is True  # store_true


def test_add_output_options_parses_and_requires_out(capsys: pytest.CaptureFixture[str]) -> None:
    p = argparse.ArgumentParser(prog="step")
    add_output_options(p, "the dir")
    args = p.parse_args(["--out", "exp/x", "--force"])
    assert (args.out, args.force) == (Path("exp/x"), True)
    with pytest.raises(SystemExit) as e:
        p.parse_args([])
    assert (
        e.value.code == 2
        and "the following arguments are required: --out" in capsys.readouterr().err
    )
    q = argparse.ArgumentParser(prog="step")
    add_output_options(q, "the dir", Path("exp/y"), force_help="rebuild even if --out is done")
    args = q.parse_args([])
    assert (args.out, args.force) == (Path("exp/y"), False)
    assert "the dir (default exp/y)" in q.format_help() and "rebuild even if" in q.format_help()
