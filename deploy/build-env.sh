# Sourced (POSIX sh) by the Dockerfile's install steps before scripts/install.sh:
#   . deploy/build-env.sh && bash scripts/install.sh /opt/venv "$EXTRAS"
# It turns the build's VARIANT, TORCH_INDEX_URL and FAISS_PACKAGE arguments into the variables
# scripts/install.sh reads, and points pip at the build secrets when they were given:
#   pip_conf   a pip configuration file (index mirrors, find-links), as PIP_CONFIG_FILE
#   ca_bundle  the CA bundle that TLS to those indexes verifies against, as PIP_CERT
# Secrets are mounted under /run/secrets for the one RUN only, so neither lands in a layer.

case "${VARIANT:-cpu}" in
cpu)
    default_index=https://download.pytorch.org/whl/cpu  # PyPI's default torch build is CUDA's
    default_faiss=faiss-cpu
    ;;
cuda)
    default_index=https://pypi.org/simple  # PyPI's torch 2.13.0 is the CUDA 13 build
    default_faiss=faiss-gpu
    ;;
*)
    echo "build: VARIANT must be cpu or cuda, not '${VARIANT}'" >&2
    exit 2
    ;;
esac
case "${TORCH_INDEX_URL:-}" in
"") TORCH_INDEX_URL="$default_index" ;;
config) TORCH_INDEX_URL="" ;;  # the given pip configuration decides, torch included
esac
FAISS_PACKAGE="${FAISS_PACKAGE:-$default_faiss}"
export TORCH_INDEX_URL FAISS_PACKAGE
if [ -s /run/secrets/pip_conf ]; then
    export PIP_CONFIG_FILE=/run/secrets/pip_conf
    echo "build: pip settings from the pip_conf build secret" >&2
fi
if [ -s /run/secrets/ca_bundle ]; then
    export PIP_CERT=/run/secrets/ca_bundle
    echo "build: TLS verified against the ca_bundle build secret" >&2
fi
echo "build: variant ${VARIANT:-cpu}, torch from ${TORCH_INDEX_URL:-the pip settings}, $FAISS_PACKAGE" >&2
