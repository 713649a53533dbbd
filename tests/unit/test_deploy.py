"""The deployment examples, checked as files: Prometheus's scrape config for docker-compose, the
systemd units and the Kubernetes manifest. Every DROPVEC_ variable they set is a settings field,
and their metrics ports are the ones the processes serve on."""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

import pytest
import yaml

from dropvec.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def unknown_settings(names: set[str]) -> list[str]:
    return sorted(n for n in names if n.startswith("DROPVEC_") and n[8:].lower() not in Settings.model_fields)


def test_prometheus_scrapes_the_producer_and_every_worker_on_the_compose_metrics_port() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    port = int(compose["x-dropvec-env"]["DROPVEC_METRICS_PORT"])
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["dropvec-pipeline"]["static_configs"][0]["targets"] == [f"producer:{port}"]
    workers = jobs["dropvec-workers"]["dns_sd_configs"][0]
    assert workers["names"] == ["worker"] and workers["port"] == port
    mount = compose["services"]["prometheus"]["volumes"][0]
    assert mount.split(":")[0] == "./deploy/prometheus.yml"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def test_systemd_units_run_dropvec_with_known_settings() -> None:
    env_file = (DEPLOY / "systemd" / "dropvec.env").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in env_file if line and not line.startswith("#")}
    assert "DROPVEC_METRICS_PORT" not in names, "it would override each unit's own port"
    worker, watch = unit("dropvec-worker@.service"), unit("dropvec-watch.service")
    assert worker["Service"]["ExecStart"].split()[1:3] == ["worker", "--name"]
    assert watch["Service"]["ExecStart"].split()[1] == "watch"
    for service in (worker, watch):
        assert service["Service"]["KillSignal"] == "SIGTERM"
        names.add(service["Service"]["Environment"].split("=", 1)[0])
    assert unknown_settings(names) == []


@pytest.fixture(scope="module")
def manifest() -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "dropvec.yaml").read_text()))
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def test_kubernetes_workers_and_producer_read_known_settings_and_expose_their_metrics(
    manifest: dict[str, dict[str, Any]],
) -> None:
    config = manifest["ConfigMap/dropvec"]["data"]
    assert unknown_settings(set(config)) == []
    for name, command in (("worker", ["dropvec", "worker"]), ("producer", ["dropvec", "watch"])):
        pod = manifest[f"Deployment/dropvec-{name}"]["spec"]["template"]
        container = pod["spec"]["containers"][0]
        assert container["command"][:2] == command
        assert {"configMapRef": {"name": "dropvec"}} in container["envFrom"]
        assert container["ports"][0]["containerPort"] == int(config["DROPVEC_METRICS_PORT"])
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == config["DROPVEC_METRICS_PORT"]
    worker = manifest["Deployment/dropvec-worker"]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] >= 60, "time to finish the task in hand"
