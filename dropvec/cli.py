"""The ``dropvec`` command: each command parses, calls one service, and renders (``render``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dropvec import render
from dropvec.config.errors import DropvecError, ServiceUnavailable, one_line
from dropvec.config.polling import stopping_on_signals
from dropvec.config.settings import Settings

if TYPE_CHECKING:
    from dropvec.api import Background

app = typer.Typer(help="Drop files in a folder; find their chunks in Milvus.", no_args_is_help=True)
#: The exit code of a command stopped by SIGINT or SIGTERM before its work was done.
STOPPED = 130

Wait = Annotated[bool, typer.Option(help="Show progress; exit once every chunk is written")]
Timeout = Annotated[float, typer.Option(help="With --wait: give up after this many seconds (0: never)")]
TopK = Annotated[int | None, typer.Option("-k", "--top-k", help="How many chunks (DROPVEC_TOP_K)")]
_HELP = "Worker processes (default: one per core, up to 4; 0: none)"
Workers = Annotated[int | None, typer.Option("-w", "--workers", envvar="DROPVEC_WORKERS", help=_HELP)]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="Also the log lines and progress bars")]
Mode = Annotated[str | None, typer.Option(help="hybrid, dense or sparse (DROPVEC_SEARCH_MODE)")]
Under = Annotated[
    str, typer.Option("--path", help="Only files whose path matches this glob, or under this folder")
]
Types = Annotated[
    list[str] | None, typer.Option("--type", help="Only files of this type (pdf, md...); repeatable")
]
Day = Annotated[
    datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Files modified on or after/before a day")
]
Context = Annotated[int, typer.Option(help="Also this many neighbouring chunks each side of a hit")]


def command(fn: Callable[..., int | None]) -> Callable[..., None]:
    """Command ``fn`` (result: exit code); a DropvecError ends it in one line, exit 3 (service down) or 2."""

    @app.command()
    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            code = fn(*args, **kwargs)
        except DropvecError as exc:
            render.err.print(f"[red]error:[/red] {exc}", highlight=False)
            code = 3 if isinstance(exc, ServiceUnavailable) else 2
        if code:
            raise typer.Exit(code)

    return run


def _settings(*, quiet: bool = False, inbox: Path | None = None) -> Settings:
    """The settings, logging set up; ``quiet``: no INFO lines nor libraries' progress bars."""
    from dropvec.logs import configure_logging

    settings = Settings()
    settings.prepare_environment(quiet=quiet)
    configure_logging(settings, quiet=quiet)
    return settings.model_copy(update={"inbox": (inbox or settings.inbox).absolute()})


@command
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest")],
    wait: Wait = False,
    force: Annotated[bool, typer.Option(help="Re-ingest files even if unchanged")] = False,
    timeout: Timeout = 0,
) -> int:
    """Queue new and changed files, skip unchanged ones, remove indexed ones gone (exit 1: a file failed)."""
    return _ingest(_settings(), paths, force=force, wait=wait, timeout=timeout)


@command
def retry_failed(wait: Wait = False, timeout: Timeout = 0) -> int:
    """Ingest again every file whose last attempt failed, once the cause is fixed (exit 1: one failed)."""
    from dropvec.sync import failed_paths

    settings = _settings()
    paths = failed_paths(settings)
    render.out.print(f"{len(paths)} failed file(s) to retry", highlight=False)
    return _ingest(settings, paths, force=True, wait=wait, timeout=timeout) if paths else 0


def _ingest(settings: Settings, targets: list[Path], *, force: bool, wait: bool, timeout: float) -> int:
    """Reconcile ``targets``; the exit code: 1 if any file failed, STOPPED if asked to stop."""
    from dropvec.sync import ingest

    stop = threading.Event()
    with stopping_on_signals(stop):
        done = ingest(settings, targets, stop, force=force, wait=wait, timeout=timeout, view=render)
    render.ingested(done)
    return STOPPED if done.stopped else 1 if done.failed else 0


@command
def search(
    question: Annotated[str, typer.Argument(help="What to look for")],
    k: TopK = None,
    mode: Mode = None,
    path: Under = "",
    types: Types = None,
    since: Day = None,
    until: Day = None,
    context: Context = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array: score, file, chunk, text")] = False,
    verbose: Verbose = False,
) -> None:
    """The top-k chunks for a question, with score, file and snippet."""
    from dropvec.search import Query
    from dropvec.search import search as run_search

    settings = _settings(quiet=not verbose)
    query = Query.of(
        settings, k, mode, path=path, types=types or (), since=since, until=until, context=context
    )
    render.hits(run_search(settings, question, query=query), as_json)


@command
def ask(
    question: Annotated[str, typer.Argument(help="The question")],
    k: TopK = None,
    mode: Mode = None,
    path: Under = "",
    types: Types = None,
    since: Day = None,
    until: Day = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: answer and sources")] = False,
    verbose: Verbose = False,
) -> None:
    """Answer from the folder with the configured LLM (DROPVEC_LLM_*): streamed, then its sources."""
    from dropvec import answer
    from dropvec.search import Query

    settings = _settings(quiet=not verbose)
    query = Query.of(settings, k, mode, path=path, types=types or (), since=since, until=until)
    asyncio.run(
        render.answer(question, answer.ask(settings, question, query, answer.load_llm(settings)), as_json)
    )


@command
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (DROPVEC_SERVE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (DROPVEC_SERVE_PORT)")] = None,
    watched: Annotated[
        bool,
        typer.Option(help="A `watch` elsewhere keeps the inbox in sync: leave uploads and deletes to it"),
    ] = False,
) -> None:
    """The web page and the HTTP API alone (up serves them too); schema at /openapi.json."""
    from dropvec.api import serve

    settings = _settings()
    serve(settings, host or settings.serve_host, port or settings.serve_port, watched=watched)


@command
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    files: Annotated[bool, typer.Option("--files", help="Also the state of every file")] = False,
    verbose: Verbose = False,
) -> None:
    """Files by state, chunks stored, queue depth, live workers, throughput, latest failures."""
    from dropvec.status import collect_status

    render.status(collect_status(_settings(quiet=not verbose), files=files), as_json)


@command
def check(
    folder: Annotated[Path | None, typer.Argument(help="Folder to check (default: DROPVEC_INBOX)")] = None,
    repair: Annotated[
        bool, typer.Option(help="Make the index match the folder, with the least work")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> int:
    """Compare the folder, the ledger and Milvus, file by file (exit 0: they agree; 1: they do not;
    2: a service is down); --repair: make them agree, then check again."""
    from dropvec.check import check as run_check

    settings = _settings(quiet=as_json, inbox=folder)
    stop = threading.Event()
    try:
        # (--repair: the set of stored embed hashes is made afresh from the rows too)
        report = run_check(settings, settings.inbox, rebuild_hashes=repair)
        if not (repair and as_json):
            render.checked(report, as_json=as_json)
        if repair:
            from dropvec.repair import Repaired
            from dropvec.repair import repair as run_repair
            from dropvec.status import live_workers

            done = Repaired(after=report)
            if not report.clean:
                with stopping_on_signals(stop), render.waiting(live_workers(settings)) as update:
                    done = run_repair(settings, report, stop, folder=settings.inbox, on_progress=update)
            render.repaired(done, as_json=as_json, told=report.clean)
            report = done.after or report
    except ServiceUnavailable as exc:
        render.err.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    return STOPPED if stop.is_set() else 0 if report.clean else 1


@command
def migrate() -> None:
    """Give a collection of an older dropvec the fields of hybrid search and filters (no embedding)."""
    from dropvec.workers.runtime import migrate as run

    copied = run(settings := _settings())
    print(f"migrated {copied} chunks into {settings.collection!r}" if copied else "the collection is current")


@command
def worker(
    name: Annotated[str, typer.Option(envvar="DROPVEC_WORKER_NAME", help="Worker name (default: host)")] = "",
) -> int:
    """One worker process: loads the model once, then embeds and writes tasks from the queue."""
    settings = _settings()  # (before the model's libraries are imported: it sets their environment)
    from dropvec.workers import tasks

    return tasks.run(settings, name)


@command
def up(
    workers: Workers = None,
    inbox: Annotated[Path | None, typer.Option(help="Folder to watch (default: DROPVEC_INBOX)")] = None,
) -> None:
    """The whole local stack: Redis, Milvus, workers, and a watched inbox. Ctrl-C stops it all."""
    from dropvec.stack import describe, running
    from dropvec.sync import make_inbox

    settings, stop = _settings(inbox=inbox), threading.Event()
    make_inbox(settings.inbox)  # (before anything starts: it is a folder when the URL is printed)
    try:
        with running(settings, workers, stop, on_stopping=lambda: render.out.print("stopping…")):
            web = _web(settings)
            try:
                _watch(settings, stop, describe(settings, workers) + " Ctrl-C to stop.")
            finally:
                if web is not None:
                    web.stop()
    finally:
        render.out.print("stopped.")


def _web(settings: Settings) -> Background | None:
    """The page and the API of ``up``, started; None when DROPVEC_SERVE_PORT is 0 or the port is taken."""
    if not settings.serve_port:
        return None
    from dropvec.api import Background

    web = Background(settings)
    url = f"http://{settings.serve_host}:{settings.serve_port}/"
    if web.start():
        render.out.print(f"web page and API: {url}", highlight=False)
        return web
    render.err.print(f"[red]error:[/red] no web page: cannot listen on {url} (set DROPVEC_SERVE_PORT)")
    return None


@command
def watch(
    folder: Annotated[Path | None, typer.Argument(help="Folder to watch (default: DROPVEC_INBOX)")] = None,
) -> None:
    """The producer alone: reconcile a folder, then keep it in sync until Ctrl-C (workers elsewhere)."""
    from dropvec.sync import make_inbox

    settings, stop = _settings(inbox=folder), threading.Event()
    make_inbox(settings.inbox)
    with stopping_on_signals(stop), suppress(KeyboardInterrupt):
        _watch(settings, stop, f"watching {settings.inbox}. Ctrl-C to stop.")


def _watch(settings: Settings, stop: threading.Event, ready: str) -> None:
    """The inbox kept in sync until ``stop``; ``ready`` printed after the first reconciliation."""
    from dropvec.sync import keep_in_sync

    keep_in_sync(
        settings, stop,
        on_report=lambda report: render.outcomes(report, watching=True),
        on_error=lambda exc: render.err.print(f"[red]error:[/red] {one_line(exc)} (trying again shortly)"),
        on_ready=lambda: render.out.print(ready, highlight=False),
        on_reindex=lambda report: _follow(settings, report.run_id, stop),
    )  # fmt: skip


def _follow(settings: Settings, run_id: str, stop: threading.Event) -> None:
    """A run followed to its end (or ``stop``) with the progress bar."""
    from dropvec.repair import STALL_SECONDS
    from dropvec.status import follow_run, live_workers

    with render.waiting(live_workers(settings)) as update:
        follow_run(settings, run_id, timeout=None, stop=stop, on_progress=update, stall=STALL_SECONDS)


main = app
