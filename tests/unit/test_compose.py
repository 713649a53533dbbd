"""The Docker deployment, checked as files: docker-compose.yml and the Dockerfile. No Docker needed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dropvec.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

APP_SERVICES = ("producer", "worker")
#: Services that need no healthcheck: nothing waits on the app containers, Flower or Prometheus.
NO_HEALTHCHECK_NEEDED = {"producer", "worker", "flower", "prometheus"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whether written as a mapping or as ``NAME=value`` items."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {name: "" if value is None else str(value) for name, value in env.items()}


def volume_paths(service: dict[str, Any]) -> list[str]:
    """Source and target of every volume of a service (short ``src:dst[:mode]`` or long syntax)."""
    paths = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            paths += volume.split(":")[:2]
        else:
            paths += [str(volume.get("source", "")), str(volume.get("target", ""))]
    return paths


def healthy_dependencies(service: dict[str, Any]) -> set[str]:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):  # the short form waits for nothing but the start
        return set()
    return {name for name, spec in depends.items() if (spec or {}).get("condition") == "service_healthy"}


def test_all_services_of_the_deployment_exist(services: dict[str, dict[str, Any]]) -> None:
    assert {"redis", "etcd", "minio", "milvus", "producer", "worker"} <= services.keys()


def test_every_backing_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    missing = [
        name
        for name, service in services.items()
        if name not in NO_HEALTHCHECK_NEEDED and not (service.get("healthcheck") or {}).get("test")
    ]
    assert missing == []


@pytest.mark.parametrize("name", APP_SERVICES)
def test_producer_and_worker_wait_for_healthy_redis_and_milvus(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    assert {"redis", "milvus"} <= healthy_dependencies(services[name])


def test_milvus_waits_for_healthy_etcd_and_minio(services: dict[str, dict[str, Any]]) -> None:
    assert {"etcd", "minio"} <= healthy_dependencies(services["milvus"])


def test_worker_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports")


def test_worker_does_not_mount_the_inbox(services: dict[str, dict[str, Any]]) -> None:
    assert not [path for path in volume_paths(services["worker"]) if "inbox" in path]


def test_producer_watches_the_mounted_inbox_and_starts_nothing_else(
    services: dict[str, dict[str, Any]],
) -> None:
    producer = services["producer"]
    inbox = environment_of(producer)["DROPVEC_INBOX"]
    assert inbox in volume_paths(producer)
    command = producer["command"]
    assert command == ["dropvec", "watch"]


def test_every_image_is_pinned_to_a_tag(services: dict[str, dict[str, Any]]) -> None:
    unpinned = []
    for name, service in services.items():
        image = service.get("image")
        if image is None:
            assert "build" in service, f"{name} has neither image nor build"
            continue
        if "@sha256:" in image:
            continue
        last = image.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last else ""
        if tag in ("", "latest"):
            unpinned.append(f"{name}: {image}")
    assert unpinned == []


def test_redis_persists_with_an_append_only_file(services: dict[str, dict[str, Any]]) -> None:
    command = services["redis"]["command"]
    words = command.split() if isinstance(command, str) else [str(word) for word in command]
    assert "--appendonly" in words
    assert words[words.index("--appendonly") + 1] == "yes"


def test_every_dropvec_variable_is_a_settings_field(services: dict[str, dict[str, Any]]) -> None:
    used = {
        (service_name, name)
        for service_name, service in services.items()
        for name in environment_of(service)
        if name.startswith("DROPVEC_")
    }
    assert used, "no DROPVEC_ variable found at all"
    unknown = sorted(
        f"{service_name}: {name}"
        for service_name, name in used
        if name.removeprefix("DROPVEC_").lower() not in Settings.model_fields
    )
    assert unknown == []


def test_dockerfile_keeps_hugging_face_offline() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = re.sub(r"\\\n", " ", text)  # join continued lines into one instruction each
    env_lines = [line for line in instructions.splitlines() if line.strip().upper().startswith("ENV ")]
    assert any(re.search(r"(^|\s)HF_HUB_OFFLINE=1(\s|$)", line) for line in env_lines)
