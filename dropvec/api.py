"""``dropvec serve``: search, answers and status over HTTP, for programs (FastAPI).

``POST /ask`` streams newline-delimited JSON: first ``{"sources": [...]}``, then one
``{"text": "..."}`` per piece of the answer, then ``{"done": true}`` (or ``{"error": "..."}`` if the
LLM fails part-way; with no LLM configured, ``{"notice": "..."}`` after the sources).
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at run
# time, and the auth dependency's refers to a name local to create_api.
import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from dropvec.answer import ask, load_llm
from dropvec.config.errors import DropvecError, LLMUnavailable
from dropvec.config.settings import Settings
from dropvec.ledger.metrics import pipeline_registry
from dropvec.search import Query, search

MAX_QUESTION_CHARS = 4000


class Retrieval(BaseModel):
    """How to retrieve: how many chunks, which way, and which files they may come from."""

    model_config = ConfigDict(extra="forbid")

    k: int | None = Field(None, ge=1, le=100, description="How many chunks (default: DROPVEC_TOP_K)")
    mode: Literal["hybrid", "dense", "sparse"] | None = Field(
        None, description="Default: DROPVEC_SEARCH_MODE"
    )
    path: str = Field("", max_length=4096, description="Only files whose path matches this glob, or under it")
    types: list[Annotated[str, Field(max_length=32)]] = Field(
        [], max_length=32, description="Only files of these types (pdf, md...)"
    )
    since: date | None = Field(None, description="Only files modified on or after this day")
    until: date | None = Field(None, description="Only files modified on or before this day")

    def query(self, settings: Settings, context: int = 0) -> Query:
        return Query.of(
            settings, self.k, self.mode, path=self.path, types=self.types, since=self.since,
            until=self.until, context=context,
        )  # fmt: skip


class SearchRequest(Retrieval):
    query_text: str = Field(
        alias="query", min_length=1, max_length=MAX_QUESTION_CHARS, description="What to look for"
    )
    context: int = Field(0, ge=0, le=10, description="Neighbouring chunks to return each side of a hit")


class AskRequest(Retrieval):
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)


class HitOut(BaseModel):
    score: float
    file: str
    chunk: int
    text: str
    page: str = ""
    section: str = ""
    title: str = ""
    location: dict[str, str | int] = {}
    context: str = ""


class SearchResponse(BaseModel):
    hits: list[HitOut]


def create_api(settings: Settings, embedder: Any = None) -> FastAPI:
    """The app; the embedding model is loaded once at start-up (or ``embedder`` is used)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from dropvec.workers.embed import load_embedder

        app.state.embedder = embedder or await asyncio.to_thread(load_embedder, settings)
        app.state.llm = load_llm(settings)
        yield

    registry = pipeline_registry(settings)
    api = FastAPI(
        title="dropvec",
        summary="Search and answers over an indexed folder",
        lifespan=lifespan,
        description=__doc__,
    )
    bearer = HTTPBearer(auto_error=False, description="DROPVEC_API_TOKEN, when it is set")
    token = settings.api_token.get_secret_value()

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if token and not (credentials and secrets.compare_digest(credentials.credentials, token)):
            raise HTTPException(
                401, "a valid bearer token is required: Authorization: Bearer <DROPVEC_API_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip

    @api.exception_handler(DropvecError)
    async def dropvec_error(request: Request, exc: DropvecError) -> JSONResponse:
        status = 502 if isinstance(exc, LLMUnavailable) else 503
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @api.get("/health")
    def health() -> dict[str, str]:
        """Whether the server is up (no authentication)."""
        return {"status": "ok"}

    @api.post("/search", dependencies=[Depends(authorized)])
    def search_chunks(body: SearchRequest, request: Request) -> SearchResponse:
        """The top-k chunks for a query, as `dropvec search` finds them."""
        query = body.query(settings, body.context)
        hits = search(settings, body.query_text, None, request.app.state.embedder, query)
        return SearchResponse(hits=[HitOut(**h.as_dict()) for h in hits])  # type: ignore[arg-type]

    @api.post("/ask", dependencies=[Depends(authorized)], response_class=StreamingResponse)
    async def ask_question(body: AskRequest, request: Request) -> StreamingResponse:
        """An answer from the configured LLM over the top-k chunks, streamed as JSON lines."""
        state = request.app.state
        answer = await ask(settings, body.question, body.query(settings), state.llm, state.embedder)

        async def lines() -> AsyncIterator[str]:
            yield _line({"sources": [h.as_dict() for h in answer.sources]})
            if answer.stream is None:
                yield _line({"notice": answer.notice})
                yield _line({"done": True})
                return
            try:
                async for piece in answer.stream:
                    yield _line({"text": piece})
            except LLMUnavailable as exc:
                yield _line({"error": str(exc)})
                return
            yield _line({"done": True})

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @api.get("/status", dependencies=[Depends(authorized)])
    def status() -> dict[str, Any]:
        """What `dropvec status --json` shows: files by state, chunks, queue, workers, failures."""
        from dropvec.status import collect_status

        return collect_status(settings)

    @api.get("/metrics", dependencies=[Depends(authorized)], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """The pipeline's totals in Prometheus's text format (what `dropvec status` counts)."""
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return api


def serve(settings: Settings, host: str, port: int) -> None:
    """The API on ``host:port`` until Ctrl-C (uvicorn)."""
    import uvicorn

    uvicorn.run(create_api(settings), host=host, port=port, log_level=settings.log_level.lower())


def _line(item: dict[str, Any]) -> str:
    return json.dumps(item, ensure_ascii=False) + "\n"
