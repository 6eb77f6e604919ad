"""One BLAS thread per process unless the user says otherwise (steps_py/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import steps_py, os; print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['MKL_NUM_THREADS'])"
)


def _probe(**env_set: str) -> str:
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(env_set)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_importing_the_package_sets_one_blas_thread() -> None:
    assert _probe() == "1 1"


def test_a_users_blas_threads_are_kept() -> None:
    assert _probe(OPENBLAS_NUM_THREADS="4") == "4 1"


def test_path_sh_exports_one_blas_thread_by_default() -> None:
    text = (ROOT / "path.sh").read_text()
    assert 'OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"' in text
