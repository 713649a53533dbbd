"""The web page and the HTTP API (FastAPI), served by ``dropvec up`` and ``dropvec serve``.

The page (``/``, ``/static/...``) drops files into the inbox, shows each file's state as it
changes, searches and asks. Behind it: ``/files`` (upload, list, delete, retry), ``/events`` (a
stream of state changes), ``/search``, ``/ask``, ``/status``, ``/health``. Every endpoint but
``/health`` and the page's own assets needs the bearer token (``DROPVEC_API_TOKEN``) when one is
set; no cookies are used, so no request can be forged from another site. Every response carries
a content security policy without inline script, and no-sniff.

``POST /ask`` streams newline-delimited JSON: first ``{"sources": [...]}``, then one
``{"text": "..."}`` per piece of the answer, then ``{"done": true}`` (or ``{"error": "..."}`` if the
LLM fails part-way; with no LLM configured, ``{"notice": "..."}`` after the sources).
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at run
# time, and the auth dependency's refers to a name local to create_api.
import asyncio
import json
import secrets
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from dropvec.answer import ask, load_llm
from dropvec.config.errors import DropvecError, LLMUnavailable
from dropvec.config.settings import Settings
from dropvec.ledger.metrics import pipeline_registry
from dropvec.search import Query, search
from dropvec.uploads import BadPath, TooLarge, inbox_path, save_upload

MAX_QUESTION_CHARS = 4000
#: The page's HTML, script and style, served by dropvec itself (nothing from the network).
WEB = Path(__file__).resolve().parent / "web"
#: Headers of every response: scripts and styles from this origin only, no framing, no sniffing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: One upload request holds at most this many files' worth of bytes (each file: DROPVEC_MAX_FILE_BYTES).
UPLOAD_FILES = 10
#: Seconds between two looks at the ledger for the event stream.
EVENT_POLL_SECONDS = 1.0


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


class FileState(BaseModel):
    """A file's state, as ``status --json --files`` gives it, with its path in the inbox."""

    path: str
    relative: str = Field(description="The path relative to the inbox ('' when outside it)")
    status: str
    reason: str = ""
    chunks: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    queued_at: float | None = None
    indexed_at: float | None = None
    updated_at: float | None = None


class FilesResponse(BaseModel):
    files: list[FileState]


class Uploaded(BaseModel):
    files: list[str] = Field(description="The paths written, relative to the inbox")


class Deleted(BaseModel):
    deleted: str


class Retried(BaseModel):
    retried: int = Field(description="Failed files queued again")


def create_api(settings: Settings, embedder: Any = None, *, watched: bool = False) -> FastAPI:
    """The app; the embedding model is loaded once at start-up (or ``embedder`` is used).
    ``watched``: a watcher keeps the inbox in sync (``up``), so uploads and deletes are left to
    it; else (``serve`` alone) each is ingested here."""

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

    @api.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Any:
        if request.method == "POST" and request.url.path == "/files":
            # (refused before the body is read: the form parser would spool all of it to disk)
            length = request.headers.get("content-length", "")
            limit = UPLOAD_FILES * settings.max_file_bytes
            if not length.isdigit():
                response: Any = JSONResponse({"detail": "an upload needs a Content-Length"}, status_code=411)
            elif int(length) > limit:
                detail = (
                    f"over the {limit / 2**20:.0f} MB of one upload ({UPLOAD_FILES} x DROPVEC_MAX_FILE_BYTES)"
                )
                response = JSONResponse({"detail": detail}, status_code=413)
            else:
                response = await call_next(request)
        else:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @api.get("/health")
    def health() -> dict[str, str]:
        """Whether the server is up (no authentication)."""
        return {"status": "ok"}

    @api.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The web page (no authentication: it asks for the token itself)."""
        return FileResponse(WEB / "index.html", media_type="text/html")

    api.mount("/static", StaticFiles(directory=WEB / "static"), name="static")

    def ingest_later(paths: list[Path], *, force: bool = False) -> None:
        """Bring ``paths`` in line with the disk, in the background."""
        from dropvec.producer.enqueue import Producer

        if paths:
            run = lambda: Producer.from_settings(settings).ingest(paths, force=force)  # noqa: E731
            threading.Thread(target=run, daemon=True).start()

    def sync_later(paths: list[Path]) -> None:
        """``ingest_later``, where no watcher does it."""
        if not watched:
            ingest_later(paths)

    def refused(exc: Exception) -> HTTPException:
        return HTTPException(413 if isinstance(exc, TooLarge) else 400, str(exc))

    @api.get("/files", dependencies=[Depends(authorized)])
    def list_files() -> FilesResponse:
        """Every file's state (the records of `status --json --files`), each with its path."""
        return FilesResponse(files=_file_states(settings))

    @api.post("/files", status_code=201, dependencies=[Depends(authorized)])
    def upload(
        file: Annotated[list[UploadFile], File(description="One or more files")],
        folder: Annotated[str, Form(max_length=1024, description="A subfolder of the inbox")] = "",
    ) -> Uploaded:
        """Files into the inbox (in ``folder``, made if need be), each written whole under a
        temporary name and renamed. A name may hold subfolders (``a/b.txt``, from a folder drop)."""
        try:
            if folder:
                inbox_path(settings, folder, folder=True)
            names = [f.filename or "" for f in file]
            for name in names:  # (all checked before any is written)
                inbox_path(settings, "/".join(p for p in (folder.strip("/"), name) if p))
            written = [save_upload(settings, folder, n, f.file) for n, f in zip(names, file, strict=True)]
        except (BadPath, TooLarge) as exc:
            raise refused(exc) from None
        sync_later(written)
        inbox = settings.inbox.resolve()
        return Uploaded(files=[str(p.relative_to(inbox)) for p in written])

    @api.delete("/files/{path:path}", dependencies=[Depends(authorized)])
    def delete(path: str) -> Deleted:
        """A file out of the inbox, and so out of the index (path relative to the inbox)."""
        try:
            target = inbox_path(settings, path)
        except BadPath as exc:
            raise refused(exc) from None
        if not target.is_file():
            raise HTTPException(404, "no such file in the inbox")
        target.unlink()
        sync_later([target])
        return Deleted(deleted=path)

    @api.post("/files/retry", dependencies=[Depends(authorized)])
    def retry() -> Retried:
        """Every file whose last attempt failed, queued again (as `dropvec retry-failed`)."""
        from dropvec.sync import failed_paths

        paths = failed_paths(settings)
        ingest_later(paths, force=True)
        return Retried(retried=len(paths))

    @api.get("/events", dependencies=[Depends(authorized)], response_class=StreamingResponse)
    async def events(request: Request) -> StreamingResponse:
        """Server-sent events: ``files`` (the states that changed; all of them first) and
        ``status`` (totals, queue, workers, throughput), as they change."""
        from dropvec.status import collect_status

        async def stream() -> AsyncIterator[str]:
            seen: dict[str, str] = {}
            last_status = ""
            while not await request.is_disconnected():
                states = await asyncio.to_thread(_file_states, settings)
                changed = [f for f in states if seen.get(f.path) != f.model_dump_json()]
                gone = sorted(set(seen) - {f.path for f in states})
                seen = {f.path: f.model_dump_json() for f in states}
                if changed or gone:
                    files = [f.model_dump() for f in changed]
                    yield _event("files", {"files": files, "gone": gone})
                try:
                    info = await asyncio.to_thread(collect_status, settings)
                    summary = json.dumps({k: info[k] for k in STATUS_KEYS}, sort_keys=True)
                except DropvecError as exc:
                    summary = json.dumps({"error": str(exc)})
                if summary != last_status:
                    last_status = summary
                    yield f"event: status\ndata: {summary}\n\n"
                await asyncio.sleep(EVENT_POLL_SECONDS)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

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


def serve(settings: Settings, host: str, port: int, *, watched: bool = False) -> None:
    """The page and the API on ``host:port`` until Ctrl-C (uvicorn)."""
    import uvicorn

    app = create_api(settings, watched=watched)
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower())


class Background:
    """The page and the API in a thread of ``dropvec up`` (uvicorn), until ``stop()``."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        config = uvicorn.Config(
            create_api(settings, watched=True), host=settings.serve_host, port=settings.serve_port,
            log_level="warning", lifespan="on",
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="dropvec-web", daemon=True)

    def start(self, timeout: float = 120) -> bool:
        """Start; whether it listens (False: the port is taken, say; the log says why)."""
        self.thread.start()
        for _ in range(int(timeout * 10)):
            if self.server.started or not self.thread.is_alive():
                break
            threading.Event().wait(0.1)
        return bool(self.server.started)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


#: What the event stream's ``status`` events hold.
STATUS_KEYS = (
    "files",
    "entities",
    "queue_depth",
    "workers",
    "chunks_per_second",
    "chunks_embedded",
    "chunks_reused",
)


def _file_states(settings: Settings) -> list[FileState]:
    from dropvec.ledger.state import StateStore
    from dropvec.status import file_view

    inbox = settings.inbox.resolve()
    states = []
    for record in StateStore.from_settings(settings).records():
        view = file_view(record)
        path = Path(view["path"])
        relative = str(path.relative_to(inbox)) if path.is_relative_to(inbox) else ""
        states.append(FileState(**view, relative=relative))
    return sorted(states, key=lambda f: f.path)


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _line(item: dict[str, Any]) -> str:
    return json.dumps(item, ensure_ascii=False) + "\n"
