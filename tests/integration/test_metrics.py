"""The Prometheus endpoints, scraped over HTTP: the pipeline's totals from ``dropvec watch``, a
worker's own from ``dropvec worker``. Every metric is there from the start, and each one moves when
its event happens; ``dropvec status`` shows the same totals."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families
from pymilvus import MilvusClient

from dropvec.config.messages import EMBED_TASK
from dropvec.config.settings import QUEUE, Settings
from dropvec.stack import free_port, is_free
from tests.corpus import SEED
from tests.integration.conftest import Stack, local_settings, running_stack, wait_for
from tests.integration.sync_check import Watcher, unique_text, wait_settled

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

PIPELINE = [
    *(f'dropvec_files_total{{outcome="{o}"}}' for o in ("queued", "skipped", "failed", "indexed")),
    *(f'dropvec_chunks_total{{outcome="{o}"}}' for o in ("queued", "embedded")),
    "dropvec_embed_seconds_total",
    "dropvec_write_seconds_total",
]
WORKER = [
    "dropvec_worker_embed_seconds_count",
    "dropvec_worker_write_seconds_count",
    'dropvec_worker_chunks_total{outcome="embedded"}',
    'dropvec_worker_tasks_total{outcome="done"}',
]


def metrics_port(settings: Settings) -> int:
    """A free port with the next one free too (the worker's), neither of them Redis's or Milvus's."""
    taken = {settings.redis_host_port[1], (settings.milvus_host_port or ("", 0))[1]}
    while True:
        port = free_port()
        if port < 65535 and {port, port + 1}.isdisjoint(taken) and is_free(port + 1):
            return port


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis, Milvus, one worker and small tasks (so that the queue has a depth to show); logs
    in JSON."""
    root = tmp_path_factory.mktemp("metrics")
    settings = local_settings(root, chunks_per_task=4, log_format="json")
    settings = settings.model_copy(update={"metrics_port": metrics_port(settings)})
    with running_stack(settings, root, 1) as running:
        yield running


@contextmanager
def watching(own: Stack, name: str) -> Iterator[Path]:
    """A new folder under ``dropvec watch``, whose process serves the pipeline's metrics."""
    folder = own.root / name
    folder.mkdir()
    watcher = Watcher(own, folder)
    watcher.start()
    try:
        yield folder
    finally:
        watcher.stop()


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, metric: str) -> float:
    """``name`` or ``name{label="value"}``; the sum over the labels not named."""
    name, _, rest = metric.partition("{")
    wanted = {tuple(kv.split("=")) for kv in rest.rstrip("}").split(",") if kv}
    wanted = {(k, v.strip('"')) for k, v in wanted}
    found = [v for (n, labels), v in samples.items() if n == name and wanted <= set(labels)]
    assert found, f"{metric} is not served"
    return sum(found)


def moved(before: Samples, after: Samples, metrics: list[str]) -> list[str]:
    """Those of ``metrics`` that did not grow."""
    return [m for m in metrics if not value(after, m) > value(before, m)]


def test_every_metric_is_served_and_moves(own: Stack) -> None:
    port = own.settings.metrics_port
    with watching(own, "watched") as folder:
        # Given both endpoints, before any file
        before, worker_before = scrape(port), scrape(port + 1)
        for metric in [*PIPELINE, "dropvec_task_retries_total", "dropvec_task_failures_total"]:
            value(before, metric)
        assert value(before, "dropvec_queue_depth") == 0
        assert value(worker_before, "process_resident_memory_bytes") > 100e6
        # When an essay, a broken PDF and an unsupported file are dropped in
        depths: list[float] = []
        sampling = threading.Event()

        def sample_depth() -> None:
            while not sampling.is_set():
                depths.append(value(scrape(port), "dropvec_queue_depth"))
                sampling.wait(0.1)

        sampler = threading.Thread(target=sample_depth)
        sampler.start()
        try:
            shutil.copy(SEED / "paul_graham_essay.txt", folder / "essay.txt")
            (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a PDF at all")
            (folder / "notes.xyz").write_text("not a type dropvec reads")
            wait_settled(own, folder)
            wait_for(lambda: not moved(before, scrape(port), PIPELINE), 60, "every total to move")
        finally:
            sampling.set()
            sampler.join()
        after, worker_after = scrape(port), scrape(port + 1)
        # Then every total moved, and the queue filled and drained
        assert not moved(before, after, PIPELINE)
        assert not moved(worker_before, worker_after, WORKER)
        assert max(depths) > 0 and value(after, "dropvec_queue_depth") == 0, depths
        # And `dropvec status` shows the same totals
        totals = json.loads(own.dropvec("status", "--json").stdout)["totals"]
        assert totals["files"]["indexed"] == value(after, 'dropvec_files_total{outcome="indexed"}')
        assert totals["chunks"]["embedded"] == value(after, 'dropvec_chunks_total{outcome="embedded"}')
        assert totals["embed_seconds"] == pytest.approx(value(after, "dropvec_embed_seconds_total"))


def test_a_workers_logs_are_json_lines_when_asked(own: Stack) -> None:
    folder = own.root / "logged"
    folder.mkdir()
    (folder / "note.md").write_text(unique_text())
    ingest = own.dropvec("ingest", str(folder), "--wait")
    assert ingest.returncode == 0, ingest.stderr
    lines = (own.root / "logs" / "worker-0.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert any(r["logger"] == "celery.app.trace" and "succeeded" in r["message"] for r in records)


def test_failures_and_retries_are_counted(own: Stack) -> None:
    port = own.settings.metrics_port
    with watching(own, "after-drop") as folder:
        before, worker_before = scrape(port), scrape(port + 1)
        # When a task that no worker can decode is queued
        Celery(broker=own.settings.redis_url).send_task(EMBED_TASK, args=[{"not": "a task"}], queue=QUEUE)
        # Then it counts as a failed task
        failures, failed = "dropvec_task_failures_total", 'dropvec_worker_tasks_total{outcome="failed"}'
        wait_for(lambda: value(scrape(port), failures) > value(before, failures), 60, "the failure counted")
        assert value(scrape(port + 1), failed) > value(worker_before, failed)
        # When the collection is dropped under the worker, and a file comes in
        client = MilvusClient(**own.settings.milvus_connection)
        client.drop_collection(own.settings.collection)
        client.close()
        (folder / "note.md").write_text(unique_text())
        # Then its task is retried, and counted so
        retries, retried = "dropvec_task_retries_total", 'dropvec_worker_tasks_total{outcome="retried"}'
        wait_for(lambda: value(scrape(port), retries) > value(before, retries), 60, "a retry counted")
        assert value(scrape(port + 1), retried) > value(worker_before, retried)
