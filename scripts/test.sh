#!/usr/bin/env bash
# Install dropvec with its test tools (if needed), then lint and run the whole test suite.
# The integration tests start their own Redis, Milvus and worker processes on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test scripts/install.sh
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
