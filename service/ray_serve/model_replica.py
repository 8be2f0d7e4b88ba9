"""The model deployment: a Ray Serve replica holding the encoder (and the cross-encoder, when the
service has one), each behind the service's own micro-batcher, so the requests of every ingress
replica that reach this replica share forward passes. Its replica count, autoscaling and
``num_gpus`` are its own (service.settings: ``ray_encoder_*``).

It is loaded as the single-process service loads its models: the index's recorded model
(core.embedding.load_for_index), the index's precision policy measured on the index's own
documents (service.engine.prepare_precision), and the model check against the index's manifest.
"""

from __future__ import annotations

import asyncio
import logging
import os

import numpy as np

from core import model_thread
from core.cross_encoder import CrossEncoder
from core.device import configure_threads
from core.embedding import drift_vs_fp32, load_for_index
from core.encoder import Encoded
from core.index.doc_store import DOCS_FILE, DocStore
from core.index.manifest import Manifest
from core.index.sharded_folder import check_same_model
from core.index.sharding import serving_paths
from service.engine import encoder_batcher, prepare_precision
from service.metrics import Metrics
from service.model_facts import EncoderFacts, ModelFacts, ScorerFacts
from service.reranker import Pair, Reranker
from service.settings import Settings

log = logging.getLogger(__name__)


class ModelReplica:
    async def __init__(self, settings: Settings) -> None:  # type: ignore[misc]  # Serve awaits it
        self.settings = settings
        self.metrics = Metrics()  # this replica's batch statistics (its logs; /metrics is the ingress's)
        asyncio.get_running_loop().set_default_executor(model_thread.worker_pool())
        await asyncio.to_thread(model_thread.call, self._load)

    def _load(self) -> None:
        s = self.settings
        assert s.index_dir is not None
        threads = configure_threads(s.threads)
        # Manifests and a sample of documents only: this replica never loads a shard's vectors
        # (on a cluster the whole index would not fit it; that is what the shards are for).
        paths = serving_paths(s.index_dir)
        manifests = [Manifest.read(path) for path in paths]
        check_same_model(list(zip(paths, manifests, strict=True)))
        encoder = load_for_index(manifests[0], s.index_dir, s.model_dir, s.device)  # the model check
        largest = max(range(len(paths)), key=lambda i: manifests[i].count)
        store = DocStore(paths[largest] / DOCS_FILE, readonly=True)
        try:
            quality = prepare_precision(encoder, s, manifests[0], store, self.metrics)
        finally:
            store.close()
        cross = CrossEncoder.load(s.reranker_dir, s.device) if s.reranker_dir else None
        if cross is not None:
            cross.to_precision(s.reranker_precision)
        self.encoder = encoder
        self.batcher = encoder_batcher(encoder, s, self.metrics)
        self.reranker = Reranker(cross, s, self.metrics) if cross is not None else None
        self._facts = ModelFacts(
            EncoderFacts.of(encoder),
            quality,
            drift_vs_fp32(encoder, quality),
            threads,
            None
            if self.reranker is None
            else ScorerFacts(self.reranker.labels, self.reranker.positive, self.reranker.weight),
        )
        log.info(
            "model replica: %s on %s at %s, %d threads",
            encoder.source,
            encoder.device,
            encoder.precision,
            threads,
        )

    def facts(self) -> ModelFacts:
        return self._facts

    async def encode(self, texts: list[str]) -> Encoded:
        return await self.batcher.submit(texts)

    async def rerank_probabilities(self, pairs: list[Pair]) -> np.ndarray:
        if self.reranker is None:
            raise RuntimeError("no cross-encoder in this deployment")  # the ingress checks first
        return await self.reranker.probabilities(pairs)

    def pid(self) -> int:
        return os.getpid()

    def __del__(self) -> None:
        batcher = getattr(self, "batcher", None)
        if batcher is not None:
            batcher.close()
        if getattr(self, "reranker", None) is not None:
            self.reranker.close()  # type: ignore[union-attr]
