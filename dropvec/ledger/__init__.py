"""The Redis ledger (file and run state, stored embed hashes, counters) and the Prometheus metrics
made from it: the one place that talks to Redis for state."""
