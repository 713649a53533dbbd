#!/usr/bin/env bash
# Install dropvec with its test tools (if needed), then lint and run the whole test suite.
# The integration tests start their own Redis, Milvus and worker processes on free ports; the OCR
# tests need Tesseract and the browser tests Chromium, both installed here where this script may.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test scripts/install.sh
# The browser tests drive Debian's Chromium (never a downloaded browser)
. scripts/system-packages.sh
command -v chromium >/dev/null 2>&1 || system_packages "the browser tests" chromium || true
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
