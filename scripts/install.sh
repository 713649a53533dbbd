#!/usr/bin/env bash
# Install dropvec into ./.venv (created if missing). Idempotent: a second run is quick.
#   TORCH_SPEC   the torch to install first (default: torch==2.13.0, the CPU build this project is
#                tested with); set e.g. TORCH_SPEC=torch to let pip choose a CUDA build.
#   EXTRAS       pip extras, e.g. EXTRAS=test
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
# torch first, so that sentence-transformers does not pull a multi-GB CUDA build on a CPU machine
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" install "${TORCH_SPEC:-torch==2.13.0}"
target="."
[ -n "${EXTRAS:-}" ] && target=".[${EXTRAS}]"
"${pip[@]}" install -e "$target"
