"""The search engine the routes call: encoder + index, with bounds. No FastAPI in here.

Model calls run on one dedicated worker thread: that keeps them off the event loop, and
serialises them, which on a few cores is faster than running forward passes side by side.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from core.defaults import default_model_dir
from core.encoder import Encoded, Encoder
from core.errors import InvalidInputError, PayloadTooLargeError
from core.index.folder import Hit, IndexFolder
from service.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_K = 10


@dataclass
class SearchResult:
    hits: list[Hit]
    truncated: bool
    took_ms: float


def choose_model_dir(settings: Settings, index: IndexFolder) -> Path:
    if settings.model_dir is not None:
        return settings.model_dir
    recorded = index.manifest.model_dir
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    return default_model_dir()


class SearchEngine:
    def __init__(self, encoder: Encoder, index: IndexFolder, settings: Settings) -> None:
        index.manifest.check_model(encoder.fingerprint, encoder.dim, index.path)
        self.encoder = encoder
        self.index = index
        self.settings = settings
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")

    @classmethod
    def load(cls, settings: Settings) -> SearchEngine:
        if settings.index_dir is None:
            raise InvalidInputError("no index configured: pass --index DIR or set SEMSEARCH_INDEX_DIR")
        index = IndexFolder.open(settings.index_dir)
        try:
            encoder = Encoder.load(choose_model_dir(settings, index), settings.device)
            return cls(encoder, index, settings)
        except Exception:
            index.close()
            raise

    def close(self) -> None:
        self._model_thread.shutdown(wait=False, cancel_futures=True)
        self.index.close()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, fn, *args)

    # ------------------------------------------------------------ bounds
    def check_texts(self, texts: Sequence[str], what: str = "texts") -> None:
        s = self.settings
        if len(texts) > s.max_texts_per_request:
            raise PayloadTooLargeError(
                f"{len(texts)} {what} in one request; the limit is {s.max_texts_per_request}"
            )
        for i, text in enumerate(texts):
            if len(text) > s.max_text_chars:
                raise PayloadTooLargeError(
                    f"{what}[{i}] has {len(text)} characters; the limit is {s.max_text_chars}"
                )

    def check_k(self, k: int) -> None:
        if not 1 <= k <= self.settings.max_k:
            raise InvalidInputError(f"k must be between 1 and {self.settings.max_k}, got {k}")

    # ------------------------------------------------------------ operations
    def embed(self, texts: Sequence[str]) -> Encoded:
        self.check_texts(texts)
        return self.encoder.encode_detailed(texts, batch_size=self.settings.encode_batch_size)

    def search(self, query: str, k: int | None = None, params: dict[str, int] | None = None) -> SearchResult:
        started = time.perf_counter()
        k = min(DEFAULT_K, self.settings.max_k) if k is None else k
        self.check_k(k)
        self.check_texts([query], "query")
        encoded = self.encoder.encode_detailed([query])
        hits = self.index.search(encoded.embeddings, k, params)[0]
        took = (time.perf_counter() - started) * 1000
        return SearchResult(hits, bool(encoded.truncated[0]), took)
