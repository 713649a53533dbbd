"""A real stack for the integration tests: Valkey, Milvus standalone and two worker processes,
started by the suite on free ports under a temporary folder, and stopped at the end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from dropvec.config.settings import Settings
from dropvec.stack import Service, free_port, start_milvus, start_redis, start_workers
from dropvec.status import live_workers

WORKERS = 2


def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.5) -> object:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Stack:
    settings: Settings
    root: Path
    services: list[Service]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **self.settings.to_env()}

    def dropvec(
        self, *args: str, timeout: float = 900, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``dropvec`` command as a user would, against this stack (``env``: added)."""
        return subprocess.run(
            [sys.executable, "-m", "dropvec", *args],
            env={**self.env, **(env or {})},
            cwd=cwd or self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def local_settings(root: Path, **overrides: object) -> Settings:
    """Settings pointing at free local ports and folders under ``root``; no .env is read."""
    values: dict[str, object] = {
        "redis_url": f"redis://127.0.0.1:{free_port()}/0",
        "milvus_uri": f"http://127.0.0.1:{free_port()}",
        "collection": "dropvec_test",
        "data_dir": root / "data",
        "inbox": root / "inbox",
        "log_level": "INFO",
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextmanager
def running_stack(settings: Settings, root: Path, workers: int) -> Iterator[Stack]:
    """Redis, Milvus and ``workers`` worker processes of their own, all stopped at the end (the
    stack's service list may be changed meanwhile: what it holds then is what is stopped)."""
    services: list[Service] = []
    try:
        for start in (start_redis, start_milvus):
            service = start(settings, settings.data_dir)
            assert service is not None, "a server already answers on a port that was just free"
            services.append(service)
        services += start_workers(settings, workers, root / "logs")
        wait_for(lambda: len(live_workers(settings)) == workers, 180, f"{workers} workers to come up")
        yield Stack(settings, root, services)
    finally:
        for service in reversed(services):
            if service.proc.poll() is None:
                service.stop()
        for service in services:
            assert service.proc.poll() is not None, f"{service.name} still running"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    with running_stack(local_settings(root), root, WORKERS) as running:
        yield running
