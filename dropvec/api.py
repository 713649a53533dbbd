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

Every refusal and failure is ``{"detail": "..."}``, and ``/openapi.json`` names each status a
route answers (``dropvec.api_schema``).
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at run
# time, and the auth dependency's refers to a name local to create_api.
import asyncio
import json
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from dropvec.answer import ask, load_llm
from dropvec.api_schema import (
    ASK_LINE,
    BAD_PATH,
    EVENT,
    UPLOAD_FILES,
    AskRequest,
    Deleted,
    EventStreamResponse,
    FilesResponse,
    FileState,
    HitOut,
    NDJSONResponse,
    Retried,
    SearchRequest,
    SearchResponse,
    Uploaded,
    errors,
    streamed,
)
from dropvec.config.errors import DropvecError, LLMUnavailable
from dropvec.config.settings import Settings
from dropvec.ledger.metrics import pipeline_registry
from dropvec.search import search
from dropvec.uploads import BadPath, TooLarge, inbox_path, save_upload

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
#: The methods a 405's Allow may name.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
#: Seconds between two looks at the ledger for the event stream.
EVENT_POLL_SECONDS = 1.0


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

    #: Every route but ``/health`` and the page's: the token, when one is set.
    guarded = APIRouter(dependencies=[Depends(authorized)], responses=errors(401))

    @api.exception_handler(DropvecError)
    async def dropvec_error(request: Request, exc: DropvecError) -> JSONResponse:
        status = 502 if isinstance(exc, LLMUnavailable) else 503
        return JSONResponse({"detail": str(exc)}, status_code=status)

    def allowed(path: str) -> list[str]:
        """The methods some route takes at ``path`` (the static files' say theirs themselves)."""
        probe = {"type": "http", "path": path, "root_path": "", "path_params": {}}
        routes = [r for r in api.routes if not isinstance(r, Mount)]
        return [m for m in METHODS if any(r.matches({**probe, "method": m})[0] is Match.FULL for r in routes)]

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405 and "Allow" in (exc.headers or {}):
            # (Starlette's Allow names the methods of the first route on the path, not all of them)
            exc = StarletteHTTPException(
                405, exc.detail, {"Allow": ", ".join(allowed(request.scope["path"]))}
            )
        return await http_exception_handler(request, exc)

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

    @contextmanager
    def refusing() -> Iterator[None]:
        """A path or an upload that may not be used as its 4xx."""
        try:
            yield
        except BadPath as exc:
            raise HTTPException(400, str(exc)) from None
        except TooLarge as exc:
            raise HTTPException(413, str(exc)) from None

    @guarded.get("/files", responses=errors(503))
    def list_files() -> FilesResponse:
        """Every file's state (the records of `status --json --files`), each with its path."""
        return FilesResponse(files=_file_states(settings))

    @guarded.post("/files", status_code=201, responses=errors(400, 411, 413, 503, why={400: BAD_PATH}))
    def upload(
        file: Annotated[list[UploadFile], File(min_length=1, description="One or more files")],
        folder: Annotated[str, Form(max_length=1024, description="A subfolder of the inbox")] = "",
    ) -> Uploaded:
        """Files into the inbox (in ``folder``, made if need be), each written whole under a
        temporary name and renamed. A name may hold subfolders (``a/b.txt``, from a folder drop)."""
        with refusing():
            if folder:
                inbox_path(settings, folder, folder=True)
            names = [f.filename or "" for f in file]
            for name in names:  # (all checked before any is written)
                inbox_path(settings, "/".join(p for p in (folder.strip("/"), name) if p))
            written = [save_upload(settings, folder, n, f.file) for n, f in zip(names, file, strict=True)]
        sync_later(written)
        inbox = settings.inbox.resolve()
        return Uploaded(files=[str(p.relative_to(inbox)) for p in written])

    @guarded.delete("/files/{path:path}", responses=errors(400, 404, 503, why={400: BAD_PATH}))
    def delete(path: str) -> Deleted:
        """A file out of the inbox, and so out of the index (path relative to the inbox)."""
        with refusing():
            target = inbox_path(settings, path)
        if not target.is_file():
            raise HTTPException(404, "no such file in the inbox")
        target.unlink()
        sync_later([target])
        return Deleted(deleted=path)

    @guarded.post("/files/retry", responses=errors(503))
    def retry() -> Retried:
        """Every file whose last attempt failed, queued again (as `dropvec retry-failed`)."""
        from dropvec.sync import failed_paths

        paths = failed_paths(settings)
        ingest_later(paths, force=True)
        return Retried(retried=len(paths))

    @guarded.get(
        "/events", response_class=EventStreamResponse,
        responses=streamed("text/event-stream", EVENT, "Server-sent events, until the client leaves"),
    )  # fmt: skip
    async def events(request: Request) -> StreamingResponse:
        """Server-sent events: ``files`` (the states that changed; all of them first) and
        ``status`` (totals, queue, workers, throughput), as they change."""
        from dropvec.status import collect_status

        async def stream() -> AsyncIterator[str]:
            seen: dict[str, str] = {}
            last_status = ""
            while not await request.is_disconnected():
                try:
                    states = await asyncio.to_thread(_file_states, settings)
                except DropvecError:  # (Redis away: the status event below says so; files as they were)
                    states = None
                if states is not None:
                    changed = [f for f in states if seen.get(f.path) != f.model_dump_json()]
                    gone = sorted(set(seen) - {f.path for f in states})
                    seen = {f.path: f.model_dump_json() for f in states}
                    if changed or gone:
                        yield _event("files", {"files": [f.model_dump() for f in changed], "gone": gone})
                try:
                    info = await asyncio.to_thread(collect_status, settings)
                    summary = json.dumps({k: info[k] for k in STATUS_KEYS}, sort_keys=True)
                except DropvecError as exc:
                    summary = json.dumps({"error": str(exc)})
                if summary != last_status:
                    last_status = summary
                    yield f"event: status\ndata: {summary}\n\n"
                await asyncio.sleep(EVENT_POLL_SECONDS)

        return EventStreamResponse(stream(), headers={"Cache-Control": "no-store"})

    @guarded.post("/search", responses=errors(400, 503))
    def search_chunks(body: SearchRequest, request: Request) -> SearchResponse:
        """The top-k chunks for a query, as `dropvec search` finds them."""
        query = body.query(settings, body.context)
        hits = search(settings, body.query_text, None, request.app.state.embedder, query)
        return SearchResponse(hits=[HitOut(**h.as_dict()) for h in hits])  # type: ignore[arg-type]

    @guarded.post(
        "/ask", response_class=NDJSONResponse,
        responses={**streamed("application/x-ndjson", ASK_LINE, "JSON lines, as they come"),
                   **errors(400, 502, 503)},
    )  # fmt: skip
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

        return NDJSONResponse(lines())

    @guarded.get("/status", responses=errors(503))
    def status() -> dict[str, Any]:
        """What `dropvec status --json` shows: files by state, chunks, queue, workers, failures."""
        from dropvec.status import collect_status

        return collect_status(settings)

    @guarded.get("/metrics", response_class=PlainTextResponse, responses=errors(503))
    def metrics() -> PlainTextResponse:
        """The pipeline's totals in Prometheus's text format (what `dropvec status` counts)."""
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    api.include_router(guarded)
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
