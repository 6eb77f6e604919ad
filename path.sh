# Source this file: creates or reuses a venv, installs what is missing, and puts the recipe
# on PYTHONPATH (the corpus code under local/ is found there, it is not installed).
#   VENV_DIR=DIR      the venv to use or create (default .venv beside this file)
#   SKIP_INSTALL=1    install nothing, create no venv: use the python on PATH (or VENV_DIR if
#                     given) as you manage it; missing requirements are listed, not installed
#   TORCH_SPEC=SPEC   install this torch (e.g. 'torch==2.5.1'; see README "Install")
#   FORCE_TORCH=1     (re)install TORCH_SPEC (default torch==2.13.0) even if a torch is there
# An existing torch that meets pyproject.toml's range (CPU or CUDA build) is kept; only a
# missing or too old one is installed (steps_py/install_plan.py decides). A second call
# installs nothing.
_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# one BLAS thread per job (parallelism comes from --nj); see steps_py/__init__.py
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
_VENV="${VENV_DIR:-$_ROOT/.venv}"
_PY="${PYTHON:-python3}"
if [ "${SKIP_INSTALL:-0}" = 1 ]; then
  # shellcheck disable=SC1091
  if [ -n "${VENV_DIR:-}" ]; then . "$VENV_DIR/bin/activate" || return 1 2>/dev/null || exit 1; fi
  _MISSING="$(python -m steps_py.install_plan missing)" || { echo "[path.sh] no usable python" >&2; return 1 2>/dev/null || exit 1; }
  [ -z "$_MISSING" ] || echo "[path.sh] SKIP_INSTALL=1: not installed in $(command -v python): $_MISSING (pip install -e '$_ROOT[dev]' installs them)" >&2
else
  if [ ! -x "$_VENV/bin/python" ]; then
    echo "[path.sh] creating $_VENV" >&2
    "$_PY" -m venv "$_VENV" || return 1 2>/dev/null || exit 1
  fi
  # shellcheck disable=SC1091
  . "$_VENV/bin/activate"
  _STAMP="$_VENV/.ema-asr-installed"
  _WANT="$(cat "$_ROOT/pyproject.toml") TORCH_SPEC=${TORCH_SPEC:-} FORCE_TORCH=${FORCE_TORCH:-}"
  if [ ! -f "$_STAMP" ] || [ "$(cat "$_STAMP")" != "$_WANT" ]; then
    read -r _ACTION _WHAT <<< "$(python -m steps_py.install_plan torch)"
    if [ "$_ACTION" = install ]; then
      echo "[path.sh] installing $_WHAT into $_VENV" >&2
      python -m pip install -q "$_WHAT" || { echo "[path.sh] torch install failed ($_WHAT); set TORCH_SPEC (README: Install)" >&2; return 1 2>/dev/null || exit 1; }
    else
      echo "[path.sh] keeping torch $_WHAT (FORCE_TORCH=1 or TORCH_SPEC=... to replace it)" >&2
    fi
    echo "[path.sh] installing the project into $_VENV" >&2
    python -m pip install -q -e "$_ROOT[dev]" || { echo "[path.sh] project install failed" >&2; return 1 2>/dev/null || exit 1; }
    printf '%s' "$_WANT" > "$_STAMP"
  fi
fi
unset _ROOT _VENV _PY _STAMP _WANT _ACTION _WHAT _MISSING
