"""Workers on other hosts: Redis and Milvus on one network namespace, the producer on a second,
workers on a third and a fourth (``bench.netns``: veth pairs on a private bridge). The workers are
given only the Redis and Milvus addresses: the files stay on the producer's host, and the chunks
travel in the tasks. The index must come out complete and exact."""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from bench.netns import Cluster, Network
from tests.corpus import PUBLIC, SEED
from tests.integration.conftest import Stack, local_settings
from tests.integration.sync_check import expected, stored, unique_text

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="making network namespaces takes root (CI runs as root)"),
]

METRICS_PORT = 9464
TASKS_DONE = 'dropvec_worker_tasks_total{outcome="done"}'


def tasks_done(address: str) -> float:
    with urllib.request.urlopen(f"http://{address}:{METRICS_PORT}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return float(next(line for line in lines if line.startswith(TASKS_DONE)).split()[-1])


def test_workers_on_two_other_hosts_index_a_folder_exactly(tmp_path: Path) -> None:
    folder = tmp_path / "producer" / "docs"
    folder.mkdir(parents=True)
    shutil.copy(SEED / "paul_graham_essay.txt", folder)
    for sample in ("docx/mammoth-js/tables.docx", "md/tldr-pages/2to3.md", "md/tldr-pages/adb-forward.md"):
        shutil.copy(PUBLIC / sample, folder)
    for i in range(12):
        (folder / f"note-{i}.md").write_text(unique_text(4))
    with Network("dvmh") as net:
        cluster = Cluster(net, tmp_path)
        cluster.env["DROPVEC_CHUNKS_PER_TASK"] = "32"  # (tasks enough for both workers to share)
        try:
            # Given Redis and Milvus on their own host, and a worker on each of two more
            cluster.start_services()
            workers = [
                cluster.add_worker(f"worker-{i}", threads=1, metrics_port=METRICS_PORT) for i in (1, 2)
            ]
            cluster.wait_for_workers(2)
            # When the producer, on its own host, ingests the folder
            ingest = cluster.dropvec("ingest", str(folder), "--wait", "--timeout", "600")
            assert ingest.returncode == 0, ingest.stderr[-3000:]
            # Then every chunk is in Milvus exactly once
            settings = local_settings(tmp_path, redis_url=cluster.redis_url, milvus_uri=cluster.milvus_uri)
            stack = Stack(settings.model_copy(update={"collection": "dropvec"}), tmp_path, [])
            want = expected(stack, folder)
            assert len(want) > 100
            assert stored(stack, folder) == want
            # And both workers did part of it
            assert all(tasks_done(address) > 0 for address in workers)
        finally:
            cluster.stop()
