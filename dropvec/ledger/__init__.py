"""The Redis ledger (file and run state, stored embed hashes, counters) and the Prometheus metrics
made from it: the one place that talks to Redis for state."""

import redis

from dropvec.config.errors import RedisUnavailable, mapped_methods, mapping

#: The ledger's boundary, on each of its classes: no redis-py error leaves them.
redis_boundary = mapped_methods(mapping((redis.RedisError,), RedisUnavailable, "Redis"))
