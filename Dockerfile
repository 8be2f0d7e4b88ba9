# syntax=docker/dockerfile:1.7
# semsearch images. Built and run in this project's CI with podman/buildah (tests/deploy/
# test_containers.py); BuildKit builds the same file. See the README's "Deploy with Docker".
#
#   deploy/build-image.py                                      CPU image, with the builder's pip
#                                                              settings and CA (podman or docker)
#   docker build -t semsearch .                                CPU image (the default)
#   docker build --build-arg VARIANT=cuda -t semsearch:cuda .  CUDA torch + faiss-gpu (add
#       --build-arg PYTHON_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu24.04 for NVIDIA's base)
#   docker build --target trainer -t semsearch:train .         adds the training extras
#   docker build --build-arg MODEL_DIR=runs/sts -t semsearch . ships your trained model
#
# One install path: the builder runs scripts/install.sh, as `make` and CI do, with no extras by
# default (serving + indexing only) and a regular (not editable) install, so the runtime stage
# copies just the venv. Settings come from SEMSEARCH_* environment variables at run time; API keys
# never enter the image (.dockerignore keeps secrets and .env files out of the context).
#
# Every FROM names a stage or an ARG-given image, never a stage chosen by an ARG
# (`FROM builder-${VARIANT}`): buildah resolves that as an image name and fails. The variant is
# chosen inside deploy/build-env.sh instead.

ARG VARIANT=cpu
# Any image with python3 (3.11+) and its venv module, or one apt can put them on. For the CUDA
# variant, --build-arg PYTHON_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu24.04 adds the base's CUDA
# libraries and NVIDIA driver check; PyPI's torch 2.13.0 brings its own CUDA 13 libraries, so a
# plain Python base works too with the NVIDIA Container Toolkit (driver 580 or newer).
# deploy/base-image.sh makes one from Debian's packages where no registry is reachable.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- base: the OS and Python that the builders and runtimes share ------------------------------
FROM ${PYTHON_IMAGE} AS base
# Installs Python only where the base lacks it (nvidia/cuda); a Python base skips it.
# hadolint ignore=DL3008
RUN if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# ---- builder: the venv, the model folder and the health check ----------------------------------
FROM base AS builder
ARG VARIANT
# Where torch==2.13.0 comes from. Empty: the variant's default (PyTorch's CPU index for cpu,
# PyPI's CUDA build for cuda). `config`: the pip settings given as the pip_conf secret, torch
# included (deploy/build-image.py says so when they carry a local CPU wheel of torch).
ARG TORCH_INDEX_URL=""
# Empty: faiss-cpu for cpu, faiss-gpu for cuda.
ARG FAISS_PACKAGE=""
# Extras on top of serving + indexing, e.g. --build-arg EXTRAS=ray for `index build --engine ray`.
# The default is none: training and dev dependencies stay out of the serving image.
ARG EXTRAS=""
ENV INSTALL_EDITABLE=0 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY . .
# The builder's pip settings and CA bundle arrive as build secrets (BuildKit --secret, podman
# --secret): mounted for this one RUN, never in a layer. Without them, pip's defaults.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip_conf \
    --mount=type=secret,id=ca_bundle \
    . deploy/build-env.sh && bash scripts/install.sh /opt/venv "$EXTRAS"
# The image's model: MODEL_DIR (a folder in the build context) or the packaged MiniLM.
ARG MODEL_DIR=deploy/model
COPY ${MODEL_DIR} /opt/semsearch/model
RUN bash deploy/image-model.sh /opt/venv /opt/semsearch/model \
    && cp deploy/healthcheck.py /opt/semsearch/healthcheck.py

# The training extras (matplotlib for training_curves.png): the same script, on top.
FROM builder AS builder-train
# Declared again: buildah gives a stage only the ARGs it declares (BuildKit would inherit them).
ARG VARIANT
ARG TORCH_INDEX_URL=""
ARG FAISS_PACKAGE=""
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip_conf \
    --mount=type=secret,id=ca_bundle \
    . deploy/build-env.sh && bash scripts/install.sh /opt/venv train

# ---- runtime: slim, non-root, settings from the environment ------------------------------------
FROM base AS runtime-base
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    SEMSEARCH_HOST=0.0.0.0 \
    SEMSEARCH_PORT=8000 \
    SEMSEARCH_INDEX_DIR=/data/index
RUN groupadd --system --gid 10001 semsearch \
    && useradd --system --uid 10001 --gid semsearch --create-home --home-dir /home/semsearch \
        --shell /usr/sbin/nologin semsearch \
    && mkdir -p /data \
    && chown semsearch:semsearch /data
WORKDIR /data
EXPOSE 8000
USER 10001:10001

FROM runtime-base AS trainer
COPY --from=builder-train /opt/venv /opt/venv
COPY --from=builder /opt/semsearch /opt/semsearch
HEALTHCHECK NONE
CMD ["semsearch", "train", "bi-encoder", "--help"]

# The default target (last): the search service. The OCI image format has no HEALTHCHECK:
# podman and buildah keep it only with --format docker (deploy/build-image.py passes it).
FROM runtime-base AS runtime
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/semsearch /opt/semsearch
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/opt/venv/bin/python", "/opt/semsearch/healthcheck.py"]
CMD ["semsearch", "serve"]
