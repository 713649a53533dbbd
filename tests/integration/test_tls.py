"""TLS to Redis (rediss://) and to Milvus (https://): a worker, the producer and search all go through
TLS endpoints, with the servers' certificates checked against the CA named in the settings, and
log in to Redis as an ACL user with the least rights that README's Operations section names.

The servers here speak plain TCP, so the test puts a TLS-terminating relay in front of each (as
stunnel or a cloud load balancer would); what is tested is dropvec's side of TLS."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trustme

from dropvec.config.settings import Settings
from dropvec.stack import free_port, start_workers
from dropvec.status import live_workers
from tests.integration.conftest import Stack, wait_for
from tests.integration.sync_check import unique_text

pytestmark = pytest.mark.integration

#: README, Operations: the Redis ACL user dropvec needs (its keys, Celery's, kombu's; no admin).
ACL_USER = "dropvec"
ACL_RULES = "on >acl-secret ~dropvec* ~_kombu.* ~unacked* ~*.pidbox* &* +@all -@admin -@dangerous"


class TlsRelay(threading.Thread):
    """Accepts TLS on a free port and relays the plain bytes to ``target``; counts handshakes."""

    def __init__(self, target: tuple[str, int], context: ssl.SSLContext) -> None:
        super().__init__(daemon=True)
        self.target, self.context = target, context
        self.port = free_port()
        self.handshakes = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.start()
        self.ready.wait(10)

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._relay, "127.0.0.1", self.port, ssl=self.context)
        )
        self.ready.set()
        self.loop.run_forever()
        server.close()
        connections = asyncio.all_tasks(self.loop)
        for task in connections:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*connections, return_exceptions=True))
        self.loop.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.join(10)


@pytest.fixture(scope="module")
def tls(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, list[TlsRelay]]]:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    context.set_alpn_protocols(["h2"])  # gRPC (Milvus) insists on HTTP/2 being agreed
    s = stack.settings
    redis.Redis.from_url(s.redis_url).execute_command("ACL", "SETUSER", ACL_USER, *ACL_RULES.split())
    relays = [TlsRelay(s.redis_host_port, context), TlsRelay(s.milvus_host_port or ("", 0), context)]
    settings = s.model_copy(
        update={
            "redis_url": f"rediss://{ACL_USER}:acl-secret@127.0.0.1:{relays[0].port}/0",
            "redis_tls_ca_file": folder / "ca.pem",
            "milvus_uri": f"https://127.0.0.1:{relays[1].port}",
            "milvus_tls_ca_file": folder / "ca.pem",
            "milvus_tls_server_name": "localhost",
        }
    )
    workers = start_workers(settings, 1, stack.root / "logs", first=50)
    try:
        wait_for(lambda: live_workers(settings), 180, "a worker over TLS")
        yield settings, relays
    finally:
        for worker in workers:
            worker.stop()
        for relay in relays:
            relay.stop()


def test_a_file_is_indexed_and_found_over_tls_to_redis_and_milvus(
    stack: Stack, tls: tuple[Settings, list[TlsRelay]]
) -> None:
    settings, relays = tls
    over_tls = Stack(settings, stack.root, [])
    path = stack.root / "tls" / "note.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_text(unique_text(1) + " The secret word is marmalade.")
    # When a file is ingested and searched with TLS endpoints
    ingested = over_tls.dropvec("ingest", str(path), "--wait", "--timeout", "120")
    found = over_tls.dropvec("search", "marmalade", "-k", "1", "--json")
    # Then it is indexed and found, and every client went through the TLS relays
    assert ingested.returncode == 0, ingested.stderr
    assert "indexed 1 file(s)" in ingested.stdout
    assert found.returncode == 0 and "marmalade" in found.stdout, found.stderr
    assert relays[0].handshakes >= 3 and relays[1].handshakes >= 2, [r.handshakes for r in relays]


def test_a_server_certificate_not_signed_by_the_configured_ca_is_refused(
    stack: Stack, tls: tuple[Settings, list[TlsRelay]], tmp_path: Path
) -> None:
    settings, _ = tls
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    untrusting = Stack(settings.model_copy(update={"redis_tls_ca_file": other}), stack.root, [])
    result = untrusting.dropvec("status")
    assert result.returncode != 0
    assert "certificate verify failed" in result.stderr and "Traceback" not in result.stderr, result.stderr
