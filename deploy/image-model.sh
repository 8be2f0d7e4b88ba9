#!/usr/bin/env bash
# The image's model folder, /opt/semsearch/model (the Dockerfile's builder stage runs this).
#   deploy/image-model.sh VENV TARGET
# The Dockerfile has copied --build-arg MODEL_DIR to TARGET. When that is a model folder
# (sentence-transformers layout: modules.json), it stays. Otherwise (the default MODEL_DIR,
# deploy/model, holds only a README) TARGET becomes a link to the packaged all-MiniLM-L6-v2
# that scripts/install.sh put in VENV: no hub download, ever. Either way the model is loaded
# once here, so a broken folder fails the build instead of the first request.
set -euo pipefail

VENV="$1"
TARGET="$2"
cd /  # import the installed code, not a checkout in the working directory
if [ -f "$TARGET/modules.json" ]; then
    echo "image model: the folder given as MODEL_DIR"
else
    rm -rf "$TARGET"
    packaged="$("$VENV/bin/python" -c 'from core.defaults import default_model_dir; print(default_model_dir())')"
    ln -s "$packaged" "$TARGET"
    echo "image model: the packaged all-MiniLM-L6-v2 ($packaged)"
fi
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$VENV/bin/python" -c "
import sys
from core.encoder import Encoder
enc = Encoder.load(sys.argv[1], device='cpu')
print('image model:', sys.argv[1], '| dim', enc.dim, '| fingerprint', (enc.fingerprint or '?')[:12])
" "$TARGET"
