"""Service settings: every field is also an environment variable ``SEMSEARCH_<NAME>``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.fusion_names import DEFAULT_FEEDBACK_DOCS, DEFAULT_SEARCH_MODE, MAX_FEEDBACK_DOCS, SEARCH_MODES
from core.index.doc_rules import DEFAULT_MAX_DEPTH, MAX_DEPTH_CEILING
from core.precision_names import (
    CROSS_ENCODER_PRECISIONS,
    DEFAULT_MAX_DRIFT,
    SERVE_PRECISIONS,
    precision_pattern,
)

MAX_K = 1000  # hard ceiling for k, documented in the README and OpenAPI
MAX_RERANK_K = 1000


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]


def read_keys(inline: str, file: Path | None) -> list[str]:
    """Keys from a comma-separated list plus a file (one per line, ``#`` comments)."""
    keys = _split(inline)
    if file is not None:
        lines = file.read_text(encoding="utf-8").splitlines()
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return keys


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEMSEARCH_", extra="ignore", populate_by_name=True)

    index_dir: Path | None = None
    model_dir: Path | None = None  # default: the index's recorded model, else the packaged MiniLM
    reranker_dir: Path | None = None  # a cross-encoder folder (semsearch train cross-encoder)
    device: str = "auto"
    # "index": embed queries as the index's documents were embedded (its manifest says how).
    precision: str = Field("index", pattern=precision_pattern(SERVE_PRECISIONS))
    # Largest 1 - mean cosine between query vectors at the serving precision and at the index's
    # (measured at start-up on the index's own documents); past it the service refuses to start.
    max_precision_drift: float = Field(DEFAULT_MAX_DRIFT, ge=0.0, le=1.0)
    # auto: bf16 where the hardware computes it natively (rerank scores move by ~1e-2), else fp32.
    reranker_precision: str = Field("auto", pattern=precision_pattern(CROSS_ENCODER_PRECISIONS))
    # The cross-encoder's share when its score is fused with the retrieval score to order reranked
    # hits (core.cross_encoder.fuse_scores); unset: the weight stored in the reranker's folder.
    rerank_weight: float | None = Field(None, ge=0.0, le=1.0)
    threads: int = Field(0, ge=0)  # torch intra-op threads; 0: the CPUs available (cgroup-aware)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: str = "info"

    # Request bounds. Every request is bounded in bytes, items and characters, and so is its
    # answer (hits and bytes) and its model work (texts, cross-encoder pairs).
    max_k: int = Field(MAX_K, ge=1, le=MAX_K)
    max_hits_per_request: int = Field(10_000, ge=1, description="queries x k in one search request")
    max_response_bytes: int = Field(
        32_000_000, ge=1024, description="hit texts + metadata JSON in one search answer"
    )
    max_rerank_pairs: int = Field(
        100,
        ge=1,
        le=MAX_RERANK_K,
        description="cross-encoder pairs per request (rerank_k, /rerank, /classify)",
    )
    max_concurrent_requests: int = Field(
        512, ge=1, description="HTTP requests in progress at once (health probes aside); past it: 429"
    )
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_texts_per_request: int = Field(256, ge=1)
    max_text_chars: int = Field(20_000, ge=1)
    max_metadata_bytes: int = Field(16_384, ge=2)
    max_metadata_depth: int = Field(DEFAULT_MAX_DEPTH, ge=1, le=MAX_DEPTH_CEILING)

    # Dynamic micro-batching of model calls.
    micro_batching: bool = True
    batch_max_size: int = Field(64, ge=1, description="inputs per model call")
    batch_max_tokens: int = Field(
        16_384, ge=16, description="estimated tokens per model call (one call runs several forward passes)"
    )
    batch_max_wait_ms: float = Field(2.0, ge=0, le=1000)
    queue_max: int = Field(1024, ge=1, description="requests waiting for the model; past it: 429")
    queue_max_inputs: int = Field(
        2048, ge=1, description="texts or pairs waiting for the model, summed over requests; past it: 429"
    )
    queue_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="longest wait for a model call; past it: 503 with Retry-After"
    )
    encode_batch_size: int = Field(64, ge=1, description="forward-pass rows inside one model call")
    # The same knob as `index build --max-batch-tokens`, under the same name. 512, not the
    # encoder's CPU default (8,192 in bf16, sized for long documents): a micro-batch of short
    # queries cut at 512 padded tokens ran 432 queries/s against 326 at 2,048 (BENCHMARKS.md,
    # encode_batching.py). SEMSEARCH_ENCODE_MAX_TOKENS, its old name, is still read.
    max_batch_tokens: int = Field(
        512,
        ge=16,
        validation_alias=AliasChoices("SEMSEARCH_MAX_BATCH_TOKENS", "SEMSEARCH_ENCODE_MAX_TOKENS"),
        description="forward-pass padded tokens inside one model call",
    )

    # What a search request that does not say gets (core.fusion_names; BENCHMARKS.md measures
    # both the quality and the cost). `eval retrieval` with no mode flag evaluates the same.
    search_mode: str = Field(
        DEFAULT_SEARCH_MODE,
        pattern="^(" + "|".join(SEARCH_MODES) + ")$",
        description="a request's search when it does not send hybrid",
    )
    search_feedback: int = Field(
        DEFAULT_FEEDBACK_DOCS,
        ge=0,
        le=MAX_FEEDBACK_DOCS,
        description="hybrid search's pseudo-relevance feedback documents when a request does not say; 0: off",
    )

    # Updates and reload.
    read_only: bool = False
    # After a write, BM25 is rebuilt for the new generation in the background; a hybrid search
    # waits this long for it, then searches the newest BM25 built (near-real-time). 100k MEDLINE
    # abstracts take 8.5 s to index on 2 cores, a few thousand documents under 100 ms.
    bm25_refresh_wait_ms: float = Field(
        100.0, ge=0, le=60_000, description="longest wait of a hybrid search for its generation's BM25"
    )
    reload_interval_s: float = Field(5.0, ge=0, description="poll manifest.json; 0 disables")
    # Below `docker stop`'s and `podman stop`'s default grace (10 s) and compose's
    # stop_grace_period (30 s), so the engine's close still runs before the runtime's SIGKILL.
    shutdown_timeout_s: int = Field(
        8, ge=1, le=3600, description="on SIGTERM: longest wait for requests in flight, then they are cut"
    )
    write_busy_timeout_s: float = Field(10.0, ge=0)
    # Compaction (core.index.compaction): folds the write log's deltas into a new base.
    compact_delta_ratio: float = Field(0.1, gt=0, description="deltas past this share of the base")
    compact_deleted_ratio: float = Field(0.2, gt=0, description="deleted ids past this share of the base")
    compact_min_vectors: int = Field(2_000, ge=1, description="never for fewer deltas/deletes than this")

    # Serving on Ray Serve (`semsearch serve --engine ray`, service.ray_serve): the ingress runs
    # this app, the model deployment the encoder (and cross-encoder), one searcher deployment
    # per shard its folder. Each has its own replica count and per-replica resources.
    engine: str = Field("local", pattern="^(local|ray)$")
    ray_address: str | None = Field(None, description="a Ray cluster to join; unset: start a local Ray")
    ray_ingress_replicas: int = Field(1, ge=1)
    ray_encoder_replicas: int = Field(1, ge=1, description="model replicas (the minimum, with autoscaling)")
    ray_encoder_max_replicas: int = Field(
        0, ge=0, description="above ray_encoder_replicas: autoscale up to this many; 0: a fixed count"
    )
    ray_encoder_gpus: float = Field(
        0.0, ge=0, description="num_gpus per model replica (a fraction shares one)"
    )
    ray_encoder_cpus: float = Field(1.0, gt=0)
    ray_searcher_replicas: int = Field(1, ge=1, description="replicas of every shard's searcher")
    ray_searcher_cpus: float = Field(0.25, gt=0)
    ray_ingress_cpus: float = Field(0.25, gt=0)
    fanout_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="longest wait for one shard's answer; past it: 503 with Retry-After"
    )
    fanout_retries: int = Field(
        1, ge=0, le=10, description="a read whose replica died is sent again to another this many times"
    )

    # Auth: comma-separated keys and/or a file of keys (one per line).
    api_keys: str = ""
    api_keys_file: Path | None = None
    read_only_api_keys: str = ""
    read_only_api_keys_file: Path | None = None

    # CORS: off unless origins are listed (comma-separated; "*" for any).
    cors_origins: str = ""

    def keys(self) -> tuple[list[str], list[str]]:
        return (
            read_keys(self.api_keys, self.api_keys_file),
            read_keys(self.read_only_api_keys, self.read_only_api_keys_file),
        )

    def batcher_bounds(self) -> dict[str, Any]:
        """The micro-batching settings as :class:`service.micro_batcher.MicroBatcher` takes them
        (every model a service runs is batched by the same bounds)."""
        return {
            "max_batch": self.batch_max_size,
            "max_tokens": self.batch_max_tokens,
            "max_wait_s": self.batch_max_wait_ms / 1000,
            "max_queue": self.queue_max,
            "max_queue_inputs": self.queue_max_inputs,
            "timeout_s": self.queue_timeout_s,
            "enabled": self.micro_batching,
        }

    def cors_origin_list(self) -> list[str]:
        return _split(self.cors_origins)
