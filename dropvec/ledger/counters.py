"""The running totals since the ledger was made (``{p}:counters``): files and chunks by outcome,
embed and write seconds, task retries and failures, counted by the producer and the workers;
what ``dropvec status`` and the Prometheus endpoint show."""

from __future__ import annotations

import redis

from dropvec.config.settings import KEY_PREFIX
from dropvec.ledger import redis_boundary


@redis_boundary
class Counters:
    KEY = f"{KEY_PREFIX}:counters"

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def count(self, increments: dict[str, float]) -> None:
        """Add to the running totals (``files:queued``, ``embed_seconds``, ...); zeros are left out."""
        pipe = self.r.pipeline(transaction=False)
        for name, value in increments.items():
            if not value:
                continue
            if isinstance(value, int):
                pipe.hincrby(self.KEY, name, value)
            else:
                pipe.hincrbyfloat(self.KEY, name, value)
        if len(pipe):
            pipe.execute()

    def totals(self) -> dict[str, float]:
        counters: dict[str, str] = self.r.hgetall(self.KEY)  # type: ignore[assignment]
        return {k: float(v) for k, v in counters.items()}
