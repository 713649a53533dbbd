#!/usr/bin/env bash
# Install dropvec (if needed) and start the whole local stack: `dropvec up`, arguments passed on.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/dropvec up "$@"
