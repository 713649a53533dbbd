"""The ``dropvec`` command: each command parses, calls one service, and renders (``render``).

Every option can also be set with the environment variable it names; everything else comes from
the ``DROPVEC_*`` settings (see ``dropvec.config.settings``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from dropvec import render
from dropvec.config.errors import DropvecError, ServiceUnavailable, one_line
from dropvec.config.polling import stopping_on_signals
from dropvec.config.settings import Settings, redact_url
from dropvec.render import err, out

app = typer.Typer(help="Drop files in a folder; find their chunks in Milvus.", no_args_is_help=True)
T = TypeVar("T")
#: The exit code of a command stopped by SIGINT or SIGTERM before its work was done.
STOPPED = 130

Wait = Annotated[bool, typer.Option(help="Show progress; exit once every chunk is written")]
Timeout = Annotated[float, typer.Option(help="With --wait: give up after this many seconds (0: never)")]
TopK = Annotated[int | None, typer.Option("-k", "--top-k", help="How many chunks (DROPVEC_TOP_K)")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="Also the log lines and progress bars")]


def _settings(*, quiet: bool = False) -> Settings:
    """The settings, with logging set up. ``quiet``: a command whose output is its result only
    (no log lines under WARNING, no libraries' progress bars)."""
    from dropvec.logs import configure_logging

    settings = Settings()
    settings.prepare_environment(quiet=quiet)
    configure_logging(settings, quiet=quiet)
    return settings


def _run(fn: Callable[[], T]) -> T:
    """Run a command body; dropvec's errors end it with one line, exit code 3 for a service down."""
    try:
        return fn()
    except DropvecError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(3 if isinstance(exc, ServiceUnavailable) else 2) from None


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest")],
    wait: Wait = False,
    force: Annotated[bool, typer.Option(help="Re-ingest files even if unchanged")] = False,
    timeout: Timeout = 0,
) -> None:
    """Bring files or folders in line with the index: new and changed files are queued, unchanged
    ones skipped, indexed files no longer there removed. Exit code 1 if any file failed."""
    settings = _settings()
    raise typer.Exit(_run(lambda: _ingest(settings, lambda: paths, force=force, wait=wait, timeout=timeout)))


@app.command("retry-failed")
def retry_failed(wait: Wait = False, timeout: Timeout = 0) -> None:
    """Ingest again every file whose last attempt failed (after the cause is fixed). Exit code 1
    if any fails again."""
    settings = _settings()

    def failed_paths() -> list[Path]:
        from dropvec.ledger.state import StateStore

        paths = [Path(p) for p in StateStore.from_settings(settings).failed_paths()]
        out.print(f"{len(paths)} failed file(s) to retry", highlight=False)
        return paths

    raise typer.Exit(_run(lambda: _ingest(settings, failed_paths, force=True, wait=wait, timeout=timeout)))


def _ingest(
    settings: Settings, paths: Callable[[], list[Path]], *, force: bool, wait: bool, timeout: float
) -> int:
    """Reconcile ``paths()``; the exit code: 1 if any file failed, STOPPED if asked to stop."""
    from dropvec.producer.enqueue import Producer

    targets = paths()
    if not targets:
        return 0
    stop = threading.Event()
    with stopping_on_signals(stop):
        report = Producer.from_settings(settings, stop).ingest(targets, force=force)
        render.outcomes(report)
        if report.not_read:
            not_read = f"{report.not_read} file(s) not read; run the command again to go on"
            err.print(f"[yellow]stopped:[/yellow] {not_read}")
            return STOPPED
        failed = report.count("failed")
        if wait and report.count("queued"):
            failed = _wait_for_run(settings, report.run_id, timeout, stop)
            if stop.is_set():
                return STOPPED
    return 1 if failed else 0


def _wait_for_run(settings: Settings, run_id: str, timeout: float, stop: threading.Event) -> int:
    """Show the run's progress until its every chunk is written, ``timeout`` or ``stop``; the
    number of files that failed (1 on a time-out)."""
    from dropvec.status import follow_run, live_workers

    if not live_workers(settings):
        err.print("[yellow]no worker is running yet: tasks wait in the queue until one starts[/yellow]")
    with render.progress_bar() as update:
        p, ended = follow_run(settings, run_id, timeout=timeout or None, stop=stop, on_progress=update)
    written = f"{p.chunks_done}/{p.chunks_total} chunks written"
    if ended == "stopped":
        err.print(f"[yellow]stopped waiting[/yellow] with {written}; the workers go on with the rest")
        return 0
    if ended == "timed out":
        err.print(f"[red]timed out[/red] with {written}")
        return 1
    render.run_problems(p)
    return int(p.files_failed)


@app.command()
def search(
    question: Annotated[str, typer.Argument(help="What to look for")],
    k: TopK = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array: score, file, chunk, text")] = False,
    verbose: Verbose = False,
) -> None:
    """The top-k chunks for a question, with score, file and snippet."""
    settings = _settings(quiet=not verbose)

    def body() -> None:
        from dropvec.search import search as run_search
        from dropvec.workers.embed import load_embedder

        render.hits(run_search(settings, question, k or settings.top_k, load_embedder(settings)), as_json)

    _run(body)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question")],
    k: TopK = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: answer and sources")] = False,
    verbose: Verbose = False,
) -> None:
    """Answer a question from the indexed folder with the configured LLM (DROPVEC_LLM_*): the
    answer is streamed, then the sources it was given (file, chunk, score)."""
    settings = _settings(quiet=not verbose)

    def body() -> None:
        from dropvec.answer import NO_LLM, load_llm
        from dropvec.search import search as run_search
        from dropvec.workers.embed import load_embedder

        embedder, llm, top = load_embedder(settings), load_llm(settings), k or settings.top_k
        if llm is None:
            err.print(f"[yellow]{NO_LLM}[/yellow]", highlight=False)
            render.hits(run_search(settings, question, top, embedder), as_json)
            return
        asyncio.run(_answer(settings, question, top, embedder, llm, as_json))

    _run(body)


async def _answer(settings: Settings, question: str, k: int, embedder: Any, llm: Any, as_json: bool) -> None:
    from dropvec.answer import ask as run_ask

    await render.answer(question, await run_ask(settings, question, k, embedder, llm), as_json)


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(envvar="DROPVEC_SERVE_HOST", help="Address to listen on")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="DROPVEC_SERVE_PORT", help="Port to listen on")] = 8000,
) -> None:
    """HTTP API for programs: POST /search, POST /ask (streamed), GET /status, GET /health.
    OpenAPI schema at /openapi.json, docs at /docs. Bearer-token auth when DROPVEC_API_TOKEN is set."""
    settings = _settings()

    def body() -> None:
        import uvicorn

        from dropvec.api import create_api

        uvicorn.run(create_api(settings), host=host, port=port, log_level=settings.log_level.lower())

    _run(body)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    files: Annotated[bool, typer.Option("--files", help="Also the state of every file")] = False,
    verbose: Verbose = False,
) -> None:
    """Files by state, chunks stored, queue depth, live workers, throughput, latest failures."""
    settings = _settings(quiet=not verbose)
    from dropvec.status import collect_status

    info = _run(lambda: collect_status(settings, files=files))
    render.status(info, as_json)


@app.command()
def worker(
    name: Annotated[str, typer.Option(envvar="DROPVEC_WORKER_NAME", help="Worker name (default: host)")] = "",
) -> None:
    """One worker process: loads the model once, then embeds and writes tasks from the queue."""
    settings = _settings()  # (before the model's libraries are imported: it sets their environment)
    from dropvec.workers import tasks

    code = _run(lambda: tasks.run(settings, name))
    if code:
        raise typer.Exit(code)


@app.command()
def up(
    workers: Annotated[
        int, typer.Option("--workers", "-w", envvar="DROPVEC_WORKERS", help="Worker processes")
    ] = 1,
    inbox: Annotated[Path | None, typer.Option(help="Folder to watch (default: DROPVEC_INBOX)")] = None,
) -> None:
    """The whole local stack: Redis, Milvus, workers, and a watched inbox. Ctrl-C stops it all."""
    settings = _settings()
    settings = settings.model_copy(update={"inbox": (inbox or settings.inbox).absolute()})
    logs = settings.data_dir.absolute() / "logs"
    ready = (
        f"dropvec is up: {workers} worker(s), Redis {redact_url(settings.redis_url)}, "
        f"Milvus {settings.milvus_uri}, collection {settings.collection!r}.\n"
        f"Drop files into {settings.inbox} (logs in {logs}). Ctrl-C to stop."
    )
    _run(lambda: _up(settings, workers, ready))


def _up(settings: Settings, workers: int, ready: str) -> None:
    from dropvec.stack import local_stack

    stop = threading.Event()
    try:
        # While starting, Ctrl-C or SIGTERM interrupts at once; once up, they end the watch.
        with suppress(KeyboardInterrupt), stopping_on_signals(stop, at_once=True):
            with local_stack(settings, workers, on_stopping=lambda: out.print("stopping…")):
                with stopping_on_signals(stop):
                    _watch(settings, stop, ready)
    finally:
        out.print("stopped.")


@app.command("watch")
def watch_command(
    folder: Annotated[Path | None, typer.Argument(help="Folder to watch (default: DROPVEC_INBOX)")] = None,
) -> None:
    """The producer alone: reconcile a folder with the index, then keep it in sync until Ctrl-C.

    Workers and services run elsewhere (``dropvec worker``, or ``dropvec up`` for everything).
    """
    settings = _settings()
    settings = settings.model_copy(update={"inbox": (folder or settings.inbox).absolute()})
    stop = threading.Event()
    with stopping_on_signals(stop), suppress(KeyboardInterrupt):
        _run(lambda: _watch(settings, stop, f"watching {settings.inbox}. Ctrl-C to stop."))


def _watch(settings: Settings, stop: threading.Event, ready: str) -> None:
    """The inbox kept in sync until ``stop``; ``ready`` printed after the first reconciliation."""
    from dropvec.producer.enqueue import Producer
    from dropvec.sync import keep_in_sync

    producer = Producer.from_settings(settings, stop)
    settings.inbox.mkdir(parents=True, exist_ok=True)
    keep_in_sync(
        settings, producer, stop,
        on_report=lambda report: render.outcomes(report, watching=True),
        on_error=lambda exc: err.print(f"[red]error:[/red] {one_line(exc)} (trying again shortly)"),
        on_ready=lambda: out.print(ready, highlight=False),
    )  # fmt: skip


def main() -> None:
    app()


if __name__ == "__main__":
    main()
