"""Milvus Lite's gRPC server, as ``milvus-lite server`` runs it, with a keepalive policy that
accepts pymilvus's pings.

pymilvus pings its channel every 10 s; gRPC servers by default answer more than two pings in five
minutes with GOAWAY "too_many_pings", which breaks a worker's long-lived connection. SIGTERM is
turned into the graceful shutdown that Milvus Lite performs on Ctrl-C (drain, then close the DB).

    python -m dropvec.lite_server --data-dir DIR --host HOST --port PORT
"""

from __future__ import annotations

import argparse
import signal
from typing import Any

import grpc

KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    from milvus_lite.adapter.grpc import server as lite

    plain_server = grpc.server

    def server_with_keepalive(*a: Any, options: list[tuple[str, Any]] | None = None, **kw: Any) -> Any:
        return plain_server(*a, options=[*(options or []), *KEEPALIVE_OPTIONS], **kw)

    lite.grpc.server = server_with_keepalive  # type: ignore[assignment]

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    lite.run_server(args.data_dir, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
