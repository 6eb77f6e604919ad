"""The docs cannot drift from the code: every flag of every documented ``python -m`` command
exists, docs/INTERFACES.md names every artifact class and only files they know, and stage
numbers live only in run.sh and the docs (library code names the command instead)."""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import inspect
import io
import re
from pathlib import Path

import pytest

from tests.kaldi_digits import KALDI_EXP, needs_digits

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"python -m ((?:steps_py|local)(?:\.\w+)+)([^`\n|;&]*)")
FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")


def documented_commands() -> dict[str, dict[str, set[str]]]:
    """{module: {flag: the docs that use it}} of every ``python -m steps_py/local...`` line
    (``\\`` continuations joined; ``launch ... -m steps_py.parallel.train`` split in two)."""
    out: dict[str, dict[str, set[str]]] = {}
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8").replace("\\\n", " ")
        for m in COMMAND.finditer(text):
            parts = re.split(r"\s-m\s+((?:steps_py|local)(?:\.\w+)+)", m.group(2))
            mods, args = [m.group(1), *parts[1::2]], parts[0::2]
            for mod, rest in zip(mods, args, strict=True):
                flags = out.setdefault(mod, {})
                for f in FLAG.findall(QUOTED.sub("", rest)):  # not those of a quoted value
                    flags.setdefault(f, set()).add(doc.name)
    return out


def _parser_flags(parser: argparse.ArgumentParser) -> set[str]:
    flags: set[str] = set()
    for a in parser._actions:
        flags.update(s for s in a.option_strings if s.startswith("--"))
        if isinstance(a, argparse._SubParsersAction):
            for sub in a.choices.values():
                flags |= _parser_flags(sub)
    return flags


def accepted_flags(module: str) -> set[str]:
    """The module's flags: from its build_parser() when it has one, else from its --help."""
    if module == "steps_py.parallel.launch":  # torchrun itself, with torchrun's arguments
        from torch.distributed.run import get_args_parser

        return _parser_flags(get_args_parser())
    mod = importlib.import_module(module)
    if not hasattr(mod, "main"):  # a package run as python -m: its __main__
        mod = importlib.import_module(module + ".__main__")
    build = getattr(mod, "build_parser", None)
    if build is not None and not any(
        p.default is inspect.Parameter.empty for p in inspect.signature(build).parameters.values()
    ):
        return _parser_flags(build()) | {"--help"}
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        mod.main(["--help"])
    return set(FLAG.findall(buf.getvalue()))


def test_the_command_finder_reads_continuations_and_launch_lines() -> None:
    cmds = documented_commands()
    assert "--nproc_per_node" in cmds["steps_py.parallel.launch"]
    assert len(cmds) > 20 and all(m.startswith(("steps_py.", "local.")) for m in cmds)


@pytest.mark.parametrize("module", sorted(documented_commands()))
def test_every_documented_flag_exists(module: str) -> None:
    documented = documented_commands()[module]
    unknown = {f: sorted(docs) for f, docs in documented.items() if f not in accepted_flags(module)}
    assert not unknown, f"python -m {module}: documented flags it does not accept: {unknown}"


STAGE = re.compile(r"\bstages? ?\d|\bstage-\d|--(?:stop-)?stage\b", re.IGNORECASE)


def test_no_stage_numbers_in_library_code() -> None:
    """Stage numbers live in run.sh and docs/DESIGN.md's table; a step names the command that
    writes its input instead (run.sh may renumber its stages)."""
    hits = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for top in ("steps_py", "local")
        for p in sorted((ROOT / top).rglob("*.py"))
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if STAGE.search(line)
    ]
    assert not hits, "stage numbers in library code:\n" + "\n".join(hits)


def artifact_classes() -> dict[str, tuple[str, ...]]:
    """{module.Class: FILES} of every class in steps_py with a FILES attribute."""
    found: dict[str, tuple[str, ...]] = {}
    for path in sorted((ROOT / "steps_py").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Assign)
                and any(getattr(t, "id", "") == "FILES" for t in b.targets)
                for b in node.body
            ):
                module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                cls = getattr(importlib.import_module(module), node.name)
                found[f"{module}.{node.name}"] = tuple(cls.FILES)
    return found


def test_interfaces_md_lists_every_artifact_class_and_only_their_files() -> None:
    classes = artifact_classes()
    assert {"steps_py.decode.artifact.DecodeDir", "steps_py.parallel.run_dir.RunDir"} <= set(
        classes
    )
    text = (ROOT / "docs" / "INTERFACES.md").read_text(encoding="utf-8")
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `([\w.]+)` \| [^|]+ \| ([^|]+) \|", text, re.MULTILINE)
    }
    assert set(classes) <= set(rows), f"not in docs/INTERFACES.md: {set(classes) - set(rows)}"
    for name, files in classes.items():
        listed = re.findall(r"`([^`]+)`", rows[name])
        assert sorted(listed) == sorted(files), (name, listed, files)


@needs_digits
def test_decode_gmm_takes_a_kaldi_final_mdl() -> None:
    """docs/DESIGN.md: a Kaldi final.mdl, or an exp dir holding one, decodes as a GMM."""
    from steps_py.decode.scorers import model_kind

    assert model_kind(KALDI_EXP / "final.mdl") == "gmm" and model_kind(KALDI_EXP) == "gmm"
