"""The command line stays in the command-line layer: library code under steps_py/ takes typed
values (dataclasses such as `parallel.config.TrainConfig`, `data.prepare.PrepareConfig`), and
no function outside the entry points has a parameter annotated `argparse.Namespace`."""

from __future__ import annotations

import ast
import dataclasses
import importlib
from pathlib import Path

import pytest

from steps_py.cli import dataclass_from_args

ROOT = Path(__file__).resolve().parents[1]

# modules that are the command line of steps (parsers, checks, Namespace -> config)
CLI_MODULES = {"steps_py/cli.py", "steps_py/parallel/options.py", "steps_py/decode/options.py"}
# entry points: a step's body and parser, the Namespace -> config constructors
ENTRY_NAMES = {"run", "main", "build_parser", "parse_args", "from_args"}


def is_namespace(annotation: ast.expr | None) -> bool:
    """`argparse.Namespace`, `Namespace`, or a union with one (`argparse.Namespace | None`)."""
    if annotation is None:
        return False
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return is_namespace(ast.parse(annotation.value, mode="eval").body)
    if isinstance(annotation, ast.BinOp):
        return is_namespace(annotation.left) or is_namespace(annotation.right)
    if isinstance(annotation, ast.Attribute):
        return annotation.attr == "Namespace"
    return isinstance(annotation, ast.Name) and annotation.id == "Namespace"


def is_entry(name: str) -> bool:
    return (
        name in ENTRY_NAMES
        or name.endswith("_from_args")
        or (name.startswith("add_") and name.endswith(("_args", "_options")))
    )


def namespace_takers(source: str) -> list[str]:
    """Names of the functions in `source` with a parameter annotated as a Namespace."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            if any(is_namespace(p.annotation) for p in a.posonlyargs + a.args + a.kwonlyargs):
                out.append(node.name)
    return out


def library_namespace_takers() -> set[str]:
    """`path:function` of every non-entry function outside the CLI modules taking a Namespace."""
    found = set()
    for path in sorted((ROOT / "steps_py").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in CLI_MODULES:
            continue
        for name in namespace_takers(path.read_text(encoding="utf-8")):
            if not is_entry(name):
                found.add(f"{rel}:{name}")
    return found


def test_the_scan_finds_a_namespace_parameter() -> None:
    src = """
import argparse
from argparse import Namespace
def run(args: argparse.Namespace) -> int: ...
def helper(x: int, args: argparse.Namespace) -> None: ...
def maybe(*, args: Namespace | None = None) -> None: ...
def quoted(args: "argparse.Namespace") -> None: ...
class Step:
    def method(self, args: argparse.Namespace) -> None: ...
def typed(config: dict, body: Callable[[argparse.Namespace], int]) -> None: ...
"""
    assert namespace_takers(src) == ["run", "helper", "maybe", "quoted", "method"]
    assert [n for n in namespace_takers(src) if not is_entry(n)] == [
        "helper",
        "maybe",
        "quoted",
        "method",
    ]
    assert is_entry("add_optimizer_args") and is_entry("request_from_args")
    assert not is_entry("settings") and not is_entry("build_averagers")


def test_library_code_takes_no_namespace() -> None:
    found = sorted(library_namespace_takers())
    assert not found, (
        "library functions taking an argparse.Namespace (give them a typed config, built "
        f"once in the step's run(args) or options.from_args): {found}"
    )


@pytest.mark.parametrize(
    ("module", "config", "argv", "every_option"),
    [
        ("steps_py.lang.lm", "LmConfig", [], True),
        ("steps_py.score.scoreboard", "ScoreboardConfig", [], True),
        ("steps_py.gmm.train_tri", "TreeConfig", [], False),
        (
            "steps_py.nnet.egs",
            "EgsSources",
            ["--feats", "d", "--model-type", "dnn", "--out", "o"],
            False,
        ),
    ],
)
def test_a_step_config_is_its_options(
    module: str, config: str, argv: list[str], every_option: bool
) -> None:
    """Each field is the option of its name (a field without one fails here, not in a run);
    a config that replaces the Namespace in the whole body carries every option."""
    mod = importlib.import_module(module)
    args = mod.build_parser().parse_args(argv)
    cfg = dataclass_from_args(getattr(mod, config), args)
    names = [f.name for f in dataclasses.fields(cfg)]
    assert {n: getattr(cfg, n) for n in names} == {n: getattr(args, n) for n in names}
    if every_option:
        assert sorted(names) == sorted(vars(args))


def imports_argparse(source: str) -> bool:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "argparse":
            return True
    return False


def test_only_modules_with_a_command_line_import_argparse() -> None:
    """A module importing argparse is a CLI module or has a command line of its own (`main`
    or `build_parser`); the trainer's library modules (config, averager_set, nnet.optim) do not."""
    offenders = []
    for path in sorted((ROOT / "steps_py").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        source = path.read_text(encoding="utf-8")
        if rel in CLI_MODULES or not imports_argparse(source):
            continue
        top = {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
        if not top & {"main", "build_parser"}:
            offenders.append(rel)
    assert not offenders, f"argparse imported by modules without a command line: {offenders}"
    for rel in ("parallel/config.py", "parallel/averager_set.py", "nnet/optim.py"):
        assert not imports_argparse((ROOT / "steps_py" / rel).read_text(encoding="utf-8")), rel
