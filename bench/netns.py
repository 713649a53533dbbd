"""Several hosts on one machine: network namespaces on a private bridge (Linux, root).

Each host is a network namespace with one veth into a bridge; this machine's own namespace is on
the bridge too (at ``.254``), as an operator's box would be, so that a test can check the result.
Addresses come from 198.18.0.0/15, the range set aside for network benchmarks (RFC 2544), and
nothing routes beyond the bridge. Processes share the file system, as they would share a built
image, but are handed only network addresses.

    with Network("dv") as net:
        cluster = Cluster(net, root)            # hosts "services" (198.18.0.1) and "producer"
        cluster.start_services()
        cluster.add_worker("worker-1", threads=1)
        cluster.dropvec("ingest", folder, "--wait")
        cluster.stop()
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from dropvec.config.errors import ServiceUnavailable
from dropvec.stack import wait_until

PREFIX = "198.18.0"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Network:
    _made = itertools.count()

    def __init__(self, tag: str = "dv") -> None:
        #: Interface names are at most 15 characters: a short tag, unique to this network.
        self.tag = f"{tag}{os.getpid() % 10000}{next(self._made) % 100}"
        self.bridge = f"{self.tag}br"
        self.hosts: dict[str, str] = {}

    def __enter__(self) -> Network:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{PREFIX}.254/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def namespace(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def _veth(self, index: int) -> str:
        """The bridge's end of host number ``index``'s veth pair."""
        return f"{self.tag}h{index}"

    def add_host(self, host: str) -> str:
        """A new namespace on the bridge; its address."""
        address = f"{PREFIX}.{len(self.hosts) + 1}"
        ns, outside, inside = self.namespace(host), self._veth(len(self.hosts)), "eth0"
        _ip("netns", "add", ns)
        self.hosts[host] = address
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns)
        _ip("link", "set", outside, "master", self.bridge, "up")
        for args in (
            ("addr", "add", f"{address}/24", "dev", inside),
            ("link", "set", inside, "up"),
            ("link", "set", "lo", "up"),
        ):
            _ip("-n", ns, *args)
        return address

    def popen(self, host: str, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``args`` on ``host`` (the process is the command itself: signals reach it)."""
        return subprocess.Popen(["ip", "netns", "exec", self.namespace(host), *args], **kwargs)

    def run(self, host: str, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.namespace(host), *args], text=True, **kwargs)

    def close(self) -> None:
        """Remove the veths, the namespaces and the bridge (a namespace's own clean-up is
        asynchronous: its veth is deleted here, at once)."""
        for i, host in enumerate(self.hosts):
            subprocess.run(["ip", "link", "delete", self._veth(i)], capture_output=True)
            subprocess.run(["ip", "netns", "delete", self.namespace(host)], capture_output=True)
        self.hosts.clear()
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True)


def dropvec(*args: str) -> list[str]:
    return [sys.executable, "-m", "dropvec", *args]


class Cluster:
    """dropvec across the hosts of a network: Redis and Milvus (``dropvec up --workers 0``) on a
    host "services", ``dropvec`` commands on a host "producer", and workers on hosts of their own.
    Every process gets this environment without its DROPVEC_ settings, plus the services' addresses.
    """

    def __init__(self, net: Network, root: Path, password: str = "s3cret") -> None:
        self.net, self.root = net, root
        self.services = net.add_host("services")
        net.add_host("producer")
        self.redis_url = f"redis://:{password}@{self.services}:6379/0"
        self.milvus_uri = f"http://{self.services}:19530"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("DROPVEC_")}
        self.env = {**clean, "DROPVEC_REDIS_URL": self.redis_url, "DROPVEC_MILVUS_URI": self.milvus_uri}
        self.procs: list[subprocess.Popen[bytes]] = []

    def _start(self, host: str, args: list[str], env: dict[str, str]) -> Path:
        home = self.root / host
        home.mkdir(parents=True, exist_ok=True)
        log = home / f"{host}.log"
        with log.open("ab") as out:
            self.procs.append(
                self.net.popen(host, args, env=env, cwd=home, stdout=out, stderr=subprocess.STDOUT)
            )
        return log

    def start_services(self, timeout: float = 180) -> None:
        data = self.root / "services" / "data"
        env = {**self.env, "DROPVEC_DATA_DIR": str(data)}
        log = self._start("services", dropvec("up", "--workers", "0", "--inbox", str(data / "inbox")), env)
        try:
            wait_until(lambda: b"dropvec is up" in log.read_bytes(), timeout, "the services", self.procs[-1])
        except ServiceUnavailable as exc:
            raise RuntimeError(f"{exc}: {log.read_text()[-2000:]}") from exc

    def add_worker(self, host: str, threads: int, metrics_port: int = 0) -> str:
        """A worker on a new host, told only where Redis and Milvus are; the host's address."""
        address = self.net.add_host(host)
        env = {**self.env, "DROPVEC_TORCH_THREADS": str(threads)}
        if metrics_port:
            env.update(DROPVEC_METRICS_PORT=str(metrics_port), DROPVEC_METRICS_HOST="0.0.0.0")
        self._start(host, dropvec("worker", "--name", host), env)
        return address

    def dropvec(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """A ``dropvec`` command run on the producer's host."""
        return self.net.run("producer", dropvec(*args), env=self.env, capture_output=True, timeout=timeout)

    def wait_for_workers(self, count: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while True:
            status = self.dropvec("status", "--json")
            if status.returncode == 0 and json.loads(status.stdout)["workers"] == count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} workers did not come up: {status.stdout}{status.stderr}")
            time.sleep(1)

    def stop(self) -> None:
        """SIGTERM to every process, workers first; what does not end in 90 s is killed."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()
