"""Answers from the indexed folder: the chunks of ``dropvec search``, handed to the configured LLM
through llama-index's async query engine, the answer streamed, with the sources it was given."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.response.schema import AsyncStreamingResponse
from llama_index.core.llms import LLM
from llama_index.core.query_engine import RetrieverQueryEngine

from dropvec.config.errors import LLMUnavailable
from dropvec.config.settings import Settings
from dropvec.search import Hit, Query, Retriever, search
from dropvec.workers.embed import load_embedder

#: Said when no LLM is configured, in place of an answer.
NO_LLM = (
    "no LLM configured (set DROPVEC_LLM_MODEL, with DROPVEC_LLM_BASE_URL for a local server "
    "and DROPVEC_LLM_API_KEY): showing the passages retrieved instead"
)


def llm_endpoint(settings: Settings) -> str:
    """The OpenAI-compatible endpoint the LLM is asked at: the configured one, else OpenAI's."""
    return settings.llm_base_url or "https://api.openai.com/v1"


def load_llm(settings: Settings) -> LLM | None:
    """The configured chat model behind an OpenAI-compatible endpoint; None if none is set."""
    if not settings.llm_model:
        return None
    from llama_index.llms.openai_like import OpenAILike

    return OpenAILike(
        model=settings.llm_model,
        api_base=llm_endpoint(settings),
        api_key=settings.llm_api_key.get_secret_value() or "unset",
        is_chat_model=True,
        context_window=settings.llm_context_window,
        timeout=settings.llm_timeout,
        max_retries=settings.llm_max_retries,
    )


@dataclass
class Answer:
    sources: list[Hit]
    #: The answer's text as the LLM writes it, piece by piece; None when no LLM is configured.
    stream: AsyncIterator[str] | None
    #: Said in place of an answer (NO_LLM), if anything.
    notice: str = ""


async def ask(
    settings: Settings,
    question: str,
    query: Query | None,
    llm: LLM | None,
    embedder: BaseEmbedding | None = None,
) -> Answer:
    """Retrieve the chunks ``query`` finds (default: DROPVEC_TOP_K of DROPVEC_SEARCH_MODE) and start
    the LLM's answer from them (``aquery``); with no LLM, the chunks alone, and the notice that
    says so. ``embedder``: the configured model's, loaded here if not given."""
    model = embedder if embedder is not None else await asyncio.to_thread(load_embedder, settings)
    query = query or Query.of(settings)
    if llm is None:
        return Answer(await asyncio.to_thread(search, settings, question, None, model, query), None, NO_LLM)
    retriever = Retriever(settings, query, model)
    engine = RetrieverQueryEngine.from_args(retriever, llm=llm, streaming=True)
    try:
        response = await engine.aquery(question)
    except Exception as exc:
        raise _llm_error(settings, exc) from exc
    assert isinstance(response, AsyncStreamingResponse)
    return Answer([Hit.of(n) for n in response.source_nodes], _pieces(settings, response))


async def _pieces(settings: Settings, response: AsyncStreamingResponse) -> AsyncIterator[str]:
    try:
        async for piece in response.async_response_gen():
            yield piece
    except Exception as exc:
        raise _llm_error(settings, exc) from exc


def _llm_error(settings: Settings, exc: Exception) -> Exception:
    """An OpenAI client error as one line naming the endpoint (never the key); others unchanged."""
    import openai

    if not isinstance(exc, openai.OpenAIError):
        return exc
    message = " ".join(str(exc).split())[:300]
    return LLMUnavailable(f"the LLM at {llm_endpoint(settings)} failed ({type(exc).__name__}): {message}")
