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
# OCR of scans and images needs Tesseract, a system package: installed here where this script may
# (root, or password-less sudo, with apt-get); else one line says how. dropvec runs without it.
if ! command -v tesseract >/dev/null 2>&1; then
  sudo=()
  [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && sudo=(sudo -n); }
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ ${#sudo[@]} -gt 0 ]; }; then
    "${sudo[@]}" apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" \
      apt-get install -y -qq tesseract-ocr tesseract-ocr-eng >/dev/null \
      || echo "dropvec: could not install Tesseract; for OCR: apt-get install tesseract-ocr tesseract-ocr-eng" >&2
  else
    echo "dropvec: OCR of scans and images is off until Tesseract is installed" \
      "(apt-get install tesseract-ocr tesseract-ocr-eng, or brew install tesseract)" >&2
  fi
fi
