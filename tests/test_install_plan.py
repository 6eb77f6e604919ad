"""path.sh keeps a compatible torch, installs one only when missing or asked, and can be told
to install nothing (SKIP_INSTALL=1).

Each case sources the real path.sh against a fresh venv (``--without-pip``, so it takes a
fraction of a second) whose torch is a dist-info record of the wanted version and whose
``pip`` is a stand-in that records its arguments: what path.sh decides is observed without
installing anything.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
import venv
from pathlib import Path

import pytest

from steps_py.install_plan import DEFAULT_TORCH_SPEC, torch_action, torch_minimum

ROOT = Path(__file__).resolve().parent.parent

FAKE_PIP = """import pathlib, sys
with open(pathlib.Path(sys.prefix) / "pip_calls.txt", "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
"""


def make_venv(tmp: Path, torch_version: str | None) -> Path:
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    (site / "pip").mkdir()
    (site / "pip" / "__init__.py").write_text("")
    (site / "pip" / "__main__.py").write_text(FAKE_PIP)
    if torch_version is not None:
        dist = site / f"torch-{torch_version}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: torch\nVersion: {torch_version}\n"
        )
    return env_dir


def source_path_sh(env_dir: Path, **env: str) -> tuple[list[str], str]:
    """Source path.sh with VENV_DIR=env_dir; the pip calls it made and its stderr."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TORCH_SPEC", "FORCE_TORCH", "SKIP_INSTALL", "VIRTUAL_ENV")
    }
    clean.update(env, VENV_DIR=str(env_dir))
    proc = subprocess.run(
        ["bash", "-c", f'. "{ROOT}/path.sh" && echo "PY=$(command -v python)"'],
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    log = env_dir / "pip_calls.txt"
    calls = log.read_text().splitlines() if log.is_file() else []
    return calls, proc.stderr + proc.stdout


def test_existing_compatible_torch_is_kept(tmp_path: Path) -> None:
    env_dir = make_venv(tmp_path, "2.5.1+cu121")
    calls, out = source_path_sh(env_dir)
    assert calls == [f"install -q -e {ROOT}[dev]"]
    assert "keeping torch 2.5.1+cu121" in out
    calls2, _ = source_path_sh(env_dir)  # a second call installs nothing
    assert calls2 == calls


def test_missing_torch_gets_the_default_spec_first(tmp_path: Path) -> None:
    calls, _ = source_path_sh(make_venv(tmp_path, None))
    assert calls == [f"install -q {DEFAULT_TORCH_SPEC}", f"install -q -e {ROOT}[dev]"]


def test_too_old_torch_is_replaced(tmp_path: Path) -> None:
    calls, _ = source_path_sh(make_venv(tmp_path, "2.0.1"))
    assert calls[0] == f"install -q {DEFAULT_TORCH_SPEC}"


@pytest.mark.parametrize(
    ("env", "spec"),
    [({"TORCH_SPEC": "torch==2.5.1"}, "torch==2.5.1"), ({"FORCE_TORCH": "1"}, DEFAULT_TORCH_SPEC)],
)
def test_user_asks_for_a_torch(tmp_path: Path, env: dict[str, str], spec: str) -> None:
    calls, _ = source_path_sh(make_venv(tmp_path, "2.13.0"), **env)
    assert calls == [f"install -q {spec}", f"install -q -e {ROOT}[dev]"]


def test_skip_install_touches_nothing_and_lists_what_is_missing(tmp_path: Path) -> None:
    env_dir = make_venv(tmp_path, "2.13.0")
    calls, out = source_path_sh(env_dir, SKIP_INSTALL="1")
    assert calls == []
    assert not (env_dir / ".ema-asr-installed").exists()
    assert f"PY={env_dir}/bin/python" in out
    assert "SKIP_INSTALL=1: not installed in" in out and "lhotse" in out and " torch" not in out


def test_torch_action_follows_the_pyproject_range() -> None:
    assert torch_minimum() == (2, 1)
    assert torch_action({}, "2.1.0", (2, 1)) == ("keep", "2.1.0")
    assert torch_action({}, "2.0.9", (2, 1)) == ("install", DEFAULT_TORCH_SPEC)
    assert torch_action({"TORCH_SPEC": "torch==2.4.0"}, None, (2, 1)) == ("install", "torch==2.4.0")


def test_local_is_not_installed_and_tools_are_pinned() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["tool"]["setuptools"]["packages"]["find"]["include"] == ["steps_py*"]
    dev = meta["project"]["optional-dependencies"]["dev"]
    assert any(d.startswith("ruff==") for d in dev)
    assert meta["project"]["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()
