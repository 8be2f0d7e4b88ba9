#!/usr/bin/env bash
# A separate virtual environment for txtai, the peer of benchmarks/service_load.py.
#
#     bash benchmarks/setup_txtai.sh [VENV]        # default /tmp/txtai-venv (or $TXTAI_VENV)
#
# txtai lives in its own venv so that its dependencies can never change ours (.venv). torch is
# installed FIRST and pinned to the CPU wheel these machines carry (found through
# PIP_FIND_LINKS=/opt/wheels): any other torch spec makes pip fetch a CUDA build of several GB.
# Then txtai[api] goes in with torch already satisfied, and the script checks torch is still
# 2.13.0+cpu. Re-running it on an existing venv only re-checks and prints the versions.
set -euo pipefail

VENV="${1:-${TXTAI_VENV:-/tmp/txtai-venv}}"
PYTHON="${PYTHON:-python3.11}"
TORCH_SPEC="torch==2.13.0"
TXTAI_SPEC="${TXTAI_SPEC:-txtai[api]}"
export PIP_FIND_LINKS="${PIP_FIND_LINKS:-/opt/wheels}"

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi

# 1. torch, alone, before anything can ask for it.
"$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
# 2. txtai with its API extra (FastAPI + uvicorn); torch is already there and satisfies it.
"$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC" "$TXTAI_SPEC"

# 3. torch must still be the CPU wheel: a resolver that replaced it would have pulled CUDA.
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import sys

import torch

if torch.__version__ != "2.13.0+cpu":
    sys.exit(f"torch is {torch.__version__}, expected 2.13.0+cpu: txtai's install replaced it")
names = ["txtai", "torch", "transformers", "sentence-transformers", "faiss-cpu", "fastapi", "uvicorn", "httpx"]
for name in names:
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name} (not installed)")
print(f"python {sys.version.split()[0]}")
PY
echo "txtai venv ready: $VENV"
