"""Prometheus metrics (prometheus-client), one registry per app so that apps never share state.

Every label value comes from a bounded set, so no client can grow the series without limit: the
route TEMPLATE (``/documents/{doc_id}``, or ``unmatched``), never the raw path; the method if it
is a standard one, else ``other``; the status code if it is one the service answers with (the
error table's), else its class (``5xx``).
"""

from __future__ import annotations

import asyncio
import re
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.micro_batcher import BatchStats

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CONTENT_TYPE = CONTENT_TYPE_LATEST
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
# 499: the client went away before its answer (nginx's code; see service.disconnect).
STATUSES = frozenset({200, 204, 304, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 499, 500, 503, 507})


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


def status_label(status: int) -> str:
    return str(status) if status in STATUSES else f"{status // 100}xx"


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "semsearch_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "semsearch_request_duration_seconds",
            "HTTP request latency, server side",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "semsearch_queue_wait_seconds",
            "Time a request waited for its model call",
            ["model"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "semsearch_batch_size", "Inputs per model call", ["model"], buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_requests = Histogram(
            "semsearch_batch_requests",
            "Requests sharing one model call",
            ["model"],
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.model_seconds = Histogram(
            "semsearch_model_call_seconds", "Model call time", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.documents = Gauge("semsearch_index_documents", "Live documents in the served index", registry=r)
        self.generation = Gauge("semsearch_index_generation", "Served index generation", registry=r)
        self.reloads = Counter("semsearch_reloads", "Index reloads", ["result"], registry=r)
        self.writes = Counter("semsearch_document_writes", "Documents written online", ["op"], registry=r)
        self.encoder = Gauge(
            "semsearch_encoder_info",
            "The query encoder in use (value 1): device, precision, and its measured 1 - mean cosine to fp32",
            ["device", "precision", "drift_vs_fp32", "threads"],
            registry=r,
        )

    def set_encoder(self, device: str, precision: str, drift: float | None, threads: int) -> None:
        self.encoder.clear()
        shown = "n/a" if drift is None else f"{drift:.2e}"
        self.encoder.labels(device, precision, shown, str(threads)).set(1)

    def observe_batch(self, model: str, stats: BatchStats) -> None:
        self.batch_size.labels(model).observe(stats.size)
        self.batch_requests.labels(model).observe(stats.requests)
        self.model_seconds.labels(model).observe(stats.run_s)
        wait = self.queue_wait.labels(model)
        for seconds in stats.queue_wait_s:
            wait.observe(seconds)

    def set_index(self, documents: int, generation: int) -> None:
        self.documents.set(documents)
        self.generation.set(generation)

    def render(self) -> bytes:
        return generate_latest(self.registry)


_CONVERTER = re.compile(r"\{(\w+):\w+\}")


def route_template(app: ASGIApp, scope: Scope) -> str:
    """The matched route's path template. Routing sets ``scope["route"]``; a request answered
    before routing (401, 413) is matched here, without running anything."""
    route = scope.get("route")
    if route is None:
        for candidate in getattr(getattr(app, "router", None), "routes", []):
            match, child = candidate.matches(scope)
            if match == Match.FULL:
                route = child.get("route", candidate)
                break
    template = str(getattr(route, "path", None) or "unmatched")
    return _CONVERTER.sub(r"{\1}", template)  # "/documents/{doc_id:path}" -> "/documents/{doc_id}"


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics, root: ASGIApp) -> None:
        self.app = app
        self.metrics = metrics
        self.root = root  # the FastAPI app, whose routes name the template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            status = 499
            raise
        finally:
            route = route_template(self.root, scope)
            labels = (method_label(scope["method"]), route, status_label(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
