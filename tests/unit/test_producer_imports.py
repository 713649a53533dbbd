"""The producer counts tokens with ``tokenizers`` alone: torch and transformers would add about
400 MB to a process that never runs the model."""

from __future__ import annotations

import subprocess
import sys


def test_producer_measures_the_window_without_torch_or_transformers() -> None:
    code = (
        "import sys\n"
        "from dropvec.config.settings import Settings\n"
        "from dropvec.producer.enqueue import Producer\n"
        "from dropvec.producer.tokens import load_window\n"
        "window = load_window(Settings().embed_model_path)\n"
        "assert window.budget == 254, window.budget\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr
