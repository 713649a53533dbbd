"""The shared corpora beside the repository (``../shared/corpus``), as CI provides them."""

from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
SEED = CORPUS / "seed"
PUBLIC = CORPUS / "public"
