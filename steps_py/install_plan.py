"""What path.sh installs: keep a compatible torch, install one only when missing or asked.

    python -m steps_py.install_plan torch    # prints "keep <version>" or "install <spec>"
    python -m steps_py.install_plan missing  # prints the project's requirements not installed

path.sh runs this with the venv's bare python (only the standard library is imported, and
the project need not be installed), so the decision is one small function tests can call:

* ``FORCE_TORCH=1``, or ``TORCH_SPEC`` set by the user: install ``TORCH_SPEC`` (default
  ``torch==2.13.0``), whatever is there;
* otherwise a torch that meets the project's range (``torch>=2.1`` in pyproject.toml) is kept,
  CPU or CUDA build alike; a missing or older one gets the default spec.

Why not let pip decide: ``pip install torch==X`` replaces a user's CUDA build with the CPU
one (or the reverse) even when theirs works, and resolving the project with no torch
present pulls the multi-GB CUDA wheel on most machines.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

DEFAULT_TORCH_SPEC = "torch==2.13.0"
ROOT = Path(__file__).resolve().parent.parent


def version_tuple(version: str) -> tuple[int, ...]:
    """(2, 13, 0) for '2.13.0+cpu'; only the leading numeric release parts count."""
    parts = []
    for p in version.split("+")[0].split("."):
        m = re.match(r"\d+", p)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def torch_minimum(pyproject: Path = ROOT / "pyproject.toml") -> tuple[int, ...]:
    """The lower bound of the torch requirement in pyproject.toml (``torch>=X``)."""
    deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    for d in deps:
        m = re.fullmatch(r"torch\s*>=\s*([\d.]+)", d.split(";")[0].strip())
        if m:
            return version_tuple(m.group(1))
    return (0,)


def installed_version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def torch_action(
    env: Mapping[str, str], installed: str | None, minimum: tuple[int, ...]
) -> tuple[str, str]:
    """("keep", version) or ("install", spec): the decision path.sh acts on."""
    spec = env.get("TORCH_SPEC") or DEFAULT_TORCH_SPEC
    if env.get("FORCE_TORCH") == "1" or env.get("TORCH_SPEC"):
        return "install", spec
    if installed is not None and version_tuple(installed) >= minimum:
        return "keep", installed
    return "install", spec


def missing_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """Requirements of pyproject.toml whose distribution is not installed at all."""
    deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    names = [re.split(r"[<>=!~;\s\[]", d, maxsplit=1)[0] for d in deps]
    return [n for n in names if installed_version(n) is None]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["torch"]:
        action, what = torch_action(os.environ, installed_version("torch"), torch_minimum())
        print(action, what)
        return 0
    if args == ["missing"]:
        print(" ".join(missing_requirements()))
        return 0
    print("usage: python -m steps_py.install_plan torch|missing", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
