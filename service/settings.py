"""Service settings: every field is also an environment variable ``SEMSEARCH_<NAME>``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MAX_K = 1000  # hard ceiling for k, documented in the README and OpenAPI


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEMSEARCH_", extra="ignore")

    index_dir: Path | None = None
    model_dir: Path | None = None  # default: the index's recorded model, else the packaged MiniLM
    device: str = "auto"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: str = "info"

    # Request bounds. Every request is bounded in bytes, items and characters.
    max_k: int = Field(MAX_K, ge=1, le=MAX_K)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_texts_per_request: int = Field(256, ge=1)
    max_text_chars: int = Field(20_000, ge=1)
    encode_batch_size: int = Field(32, ge=1)
