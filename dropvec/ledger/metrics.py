"""Prometheus metrics, served when ``DROPVEC_METRICS_PORT`` is set.

Two endpoints, so that nothing is counted twice however many workers run:

- **the pipeline's totals**, served by the producer (``dropvec watch``, ``dropvec up``) and by
  ``dropvec serve`` at ``/metrics``. They are read from Redis at each scrape: the counters that the
  producer and every worker add to (``StateStore.count``), which ``dropvec status`` prints too, and
  the queue's depth.
- **a worker's own**, served by each ``dropvec worker``: the seconds of each embedding and write
  batch as histograms, its tasks and chunks by outcome, and its process's memory and CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dropvec.config.errors import ConfigError
from dropvec.config.settings import Settings
from dropvec.ledger.state import StateStore

log = logging.getLogger(__name__)

FILE_OUTCOMES = ("queued", "unchanged", "skipped", "failed", "removed", "indexed")
CHUNK_OUTCOMES = ("queued", "embedded", "reused", "failed")
#: Seconds per batch: from a short write to a long embedding batch on a slow CPU.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)


WORK = {
    "embed_seconds": "Seconds the workers spent embedding",
    "write_seconds": "Seconds the workers' write batches took (they overlap)",
    "task_retries": "Tasks retried after a service error",
    "task_failures": "Tasks that gave up: their file is failed",
}


def totals(state: StateStore) -> dict[str, Any]:
    """The pipeline's running totals, as both ``dropvec status`` and the metrics endpoint show them."""
    counters = state.counters.totals()
    return {
        "files": {o: int(counters.get(f"files:{o}", 0)) for o in FILE_OUTCOMES},
        "chunks": {o: int(counters.get(f"chunks:{o}", 0)) for o in CHUNK_OUTCOMES},
        **{name: round(counters.get(name, 0), 3) for name in WORK},
    }


class PipelineCollector(Collector):
    """The pipeline's totals and the queue's depth, read from Redis at each scrape."""

    def __init__(self, state: StateStore) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        now = totals(self.state)
        files = CounterMetricFamily(
            "dropvec_files", "Files by outcome: queued by the producer, indexed or failed in the end",
            labels=["outcome"],
        )  # fmt: skip
        for outcome, n in now["files"].items():
            files.add_metric([outcome], n)
        chunks = CounterMetricFamily("dropvec_chunks", "Chunks by outcome", labels=["outcome"])
        for outcome, n in now["chunks"].items():
            chunks.add_metric([outcome], n)
        yield files
        yield chunks
        for name, doc in WORK.items():
            yield CounterMetricFamily(f"dropvec_{name}", doc, value=now[name])
        depth = self.state.queue_depth()
        yield GaugeMetricFamily("dropvec_queue_depth", "Tasks waiting in the queue", value=depth)
        check = self.state.last_check()
        if check is not None:
            findings = GaugeMetricFamily(
                "dropvec_check_findings", "Files whose index disagrees with the folder, at the last check, "
                "by finding (dropvec check)", labels=["finding"],
            )  # fmt: skip
            for finding, n in check["findings"].items():
                findings.add_metric([finding], n)
            yield findings
            yield GaugeMetricFamily(
                "dropvec_check_timestamp_seconds", "When the last check ran", value=check["at"]
            )  # fmt: skip


def pipeline_registry(settings: Settings) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(PipelineCollector(StateStore.from_settings(settings)))
    ProcessCollector(registry=registry)
    return registry


class WorkerMetrics:
    """One worker process's own metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.embed_seconds = Histogram(
            "dropvec_worker_embed_seconds", "Seconds per embedding batch", buckets=BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.write_seconds = Histogram(
            "dropvec_worker_write_seconds", "Seconds per write batch (async_add)", buckets=BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.chunks = Counter(
            "dropvec_worker_chunks", "Chunks this worker wrote, by outcome", ["outcome"],
            registry=self.registry,
        )  # fmt: skip
        self.tasks = Counter(
            "dropvec_worker_tasks", "Tasks this worker ran, by outcome", ["outcome"],
            registry=self.registry,
        )  # fmt: skip
        for outcome in ("embedded", "reused"):
            self.chunks.labels(outcome)
        for outcome in ("done", "dropped", "retried", "failed"):
            self.tasks.labels(outcome)


def serve(settings: Settings, registry: CollectorRegistry, what: str) -> None:
    """Serve ``registry`` on the configured port (nothing if it is 0)."""
    if not settings.metrics_port:
        return
    try:
        start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} "
            f"(DROPVEC_METRICS_PORT): {exc.strerror or exc}"
        ) from exc
    log.info("%s metrics on http://%s:%d/metrics", what, settings.metrics_host, settings.metrics_port)
