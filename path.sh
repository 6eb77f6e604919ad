# Source this file: creates or reuses .venv and puts the recipe on PATH/PYTHONPATH.
# torch is installed first (TORCH_SPEC, default torch==2.13.0, a CPU wheel on our machines)
# so that resolving the project never pulls a multi-GB CUDA build; then the project itself.
# A second call installs nothing.
_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_VENV="${VENV_DIR:-$_ROOT/.venv}"
_PY="${PYTHON:-python3}"
if [ ! -x "$_VENV/bin/python" ]; then
  echo "[path.sh] creating $_VENV" >&2
  "$_PY" -m venv "$_VENV" || return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$_VENV/bin/activate"
_STAMP="$_VENV/.ema-asr-installed"
_WANT="$(cat "$_ROOT/pyproject.toml") TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}"
if [ ! -f "$_STAMP" ] || [ "$(cat "$_STAMP")" != "$_WANT" ]; then
  echo "[path.sh] installing ${TORCH_SPEC:-torch==2.13.0} and the project into $_VENV" >&2
  python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}" || { echo "[path.sh] torch install failed" >&2; return 1 2>/dev/null || exit 1; }
  python -m pip install -q -e "$_ROOT[dev]" || { echo "[path.sh] project install failed" >&2; return 1 2>/dev/null || exit 1; }
  printf '%s' "$_WANT" > "$_STAMP"
fi
export PYTHONPATH="$_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
unset _ROOT _VENV _PY _STAMP _WANT
