"""The embedding model, loaded once per process."""

from __future__ import annotations

import logging

from llama_index.embeddings.huggingface import HuggingFaceEmbedding

from config.settings import Settings

log = logging.getLogger(__name__)


def load_embedder(settings: Settings) -> HuggingFaceEmbedding:
    """Load the configured model, with the torch thread count of one worker process."""
    import torch

    threads = settings.threads_per_process()
    torch.set_num_threads(threads)
    settings.prepare_environment()
    device = settings.resolved_device()
    model = HuggingFaceEmbedding(
        model_name=settings.embed_model_path,
        device=device,
        embed_batch_size=settings.embed_batch_size,
        normalize=True,
    )
    log.info("loaded %s on %s with %d threads", settings.embed_model_path, device, threads)
    return model


def embedding_dim(model: HuggingFaceEmbedding) -> int:
    """The model's output dimension, asked of the model itself."""
    dim = model._model.get_sentence_embedding_dimension()
    return int(dim) if dim else len(model.get_text_embedding("dimension probe"))
