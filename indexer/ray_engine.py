"""``--engine ray``: embedding on a Ray cluster (or local Ray) with Ray Data.

The driver keeps what must be sequential and exact: reading and validating the corpus, line
numbers, duplicate ids, shards, checkpoints and resume (the same code as the local engine).
Each chunk of the corpus becomes a Ray dataset whose ``map_batches`` runs on an actor pool,
one model per actor (one per GPU on a GPU cluster), and the vectors come back to the driver.
Without ``--chunk-size``, Ray's chunks hold 50,000 documents (indexer.build.CHUNK_SIZES), so
that actor start-up is amortised. Install with ``pip install 'semsearch[ray]'``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from core.errors import InvalidInputError

log = logging.getLogger(__name__)


class _EmbedActor:
    """One model per actor; called by ``map_batches`` with numpy batches."""

    def __init__(self, model_dir: str, device: str, precision: str, batch_size: int, threads: int) -> None:
        import torch

        from core.encoder import Encoder

        torch.set_num_threads(threads)
        self.encoder = Encoder.load(model_dir, device)
        self.encoder.to_precision(precision)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.encoder.encode([str(t) for t in batch["text"]], self.batch_size)
        return {"pos": batch["pos"], "vector": vectors}


class RayEmbedder:
    def __init__(
        self,
        model_dir: str,
        dim: int,
        device: str = "auto",
        precision: str = "fp32",
        batch_size: int = 64,
        address: str | None = None,
        actors: int = 2,
        cpus_per_actor: int = 1,
    ) -> None:
        try:
            import ray
        except ImportError as exc:
            raise InvalidInputError("--engine ray needs Ray: pip install 'semsearch[ray]'") from exc
        self.ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = actors * cpus_per_actor
            ray.init(**kwargs)
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        self.model_dir, self.dim, self.device, self.precision = model_dir, dim, device, precision
        self.batch_size, self.actors, self.cpus_per_actor = batch_size, actors, cpus_per_actor
        log.info(
            "Ray engine: %d actor(s), %d CPU each, cluster %s", actors, cpus_per_actor, address or "local"
        )

    def __call__(self, texts: list[str]) -> np.ndarray:
        # Longest first, as the local encoder does: batches pad to similar lengths.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        items = [{"pos": i, "text": texts[i]} for i in order]
        gpus = 1 if self.device == "cuda" else 0
        ds = self.ray.data.from_items(items).map_batches(
            _EmbedActor,
            batch_size=self.batch_size * 4,
            batch_format="numpy",
            concurrency=self.actors,
            num_cpus=self.cpus_per_actor,
            num_gpus=gpus,
            fn_constructor_kwargs={
                "model_dir": self.model_dir,
                "device": self.device,
                "precision": self.precision,
                "batch_size": self.batch_size,
                "threads": self.cpus_per_actor,
            },
        )
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            out[np.asarray(batch["pos"], dtype=np.int64)] = np.asarray(batch["vector"], dtype=np.float32)
        return out

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
