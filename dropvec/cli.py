"""The ``dropvec`` command. Every option can also be set with the environment variable it names;
everything else comes from the ``DROPVEC_*`` settings (see ``config.settings``)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from config.settings import QUEUE, Settings, redact_url
from dropvec.errors import DropvecError, is_outage

app = typer.Typer(help="Drop files in a folder; find their chunks in Milvus.", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")
log = logging.getLogger(__name__)


def _settings() -> Settings:
    settings = Settings()
    settings.prepare_environment()
    _configure_logging(settings)
    return settings


def _configure_logging(settings: Settings) -> None:
    """Plain text lines, or one JSON object a line (``DROPVEC_LOG_FORMAT=json``) for log shippers."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
    logging.captureWarnings(True)  # a library's warning is a log line like any other


def _run(fn: Callable[[], T]) -> T:
    """Run a command body; dropvec's own errors and service outages end it with one line."""
    try:
        return fn()
    except DropvecError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    except Exception as exc:
        if not is_outage(exc):
            raise
        message = " ".join(str(exc).split())[:300]
        err.print(f"[red]service unavailable:[/red] {type(exc).__name__}: {message}", highlight=False)
        raise typer.Exit(3) from None


def _producer(settings: Settings, stop: threading.Event | None = None) -> Any:
    from dropvec.state import StateStore
    from producer.enqueue import Producer
    from workers.app import create_app

    return Producer(settings, create_app(settings), StateStore.from_settings(settings), stop)


#: The exit code of a command stopped by SIGINT or SIGTERM before its work was done.
STOPPED = 130


def _stop_handler(stop: threading.Event) -> Callable[[int, Any], None]:
    """A signal handler: the first SIGINT or SIGTERM sets ``stop`` (the work in hand is finished
    first, or a wait given up); a second one interrupts at once."""

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    return handler


@contextmanager
def _stopping_on_signals(stop: threading.Event) -> Iterator[None]:
    previous = {s: signal.signal(s, _stop_handler(stop)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_outcomes(report: Any, *, watching: bool = False) -> None:
    """One line per skipped or failed file, then totals.

    ``watching``: also one line per file queued or removed, none for files skipped as unchanged
    (a restart would list every file), and no totals line for a batch of unchanged files only.
    """
    from producer.enqueue import UNCHANGED

    for o in report.outcomes:
        if o.reason == UNCHANGED and watching:
            continue
        if o.status in ("queued", "removed"):
            if watching:
                detail = f" ({o.chunks} chunks)" if o.status == "queued" else ""
                out.print(
                    f"{o.status} {o.path}{detail}" + (f": {o.reason}" if o.reason else ""), highlight=False
                )
            continue
        colour = "yellow" if o.status == "skipped" else "red"
        err.print(f"[{colour}]{o.status}[/{colour}] {o.path}: {o.reason}", highlight=False)
    if watching and report.unchanged == len(report.outcomes):
        return
    out.print(
        f"queued {report.count('queued')} file(s), {report.chunks} chunk(s); "
        f"removed {report.count('removed')}; skipped {report.count('skipped')} "
        f"({report.unchanged} unchanged), failed {report.count('failed')}",
        highlight=False,
    )


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest")],
    wait: Annotated[bool, typer.Option(help="Show progress; exit once every chunk is written")] = False,
    force: Annotated[bool, typer.Option(help="Re-ingest files even if unchanged")] = False,
    timeout: Annotated[
        float, typer.Option(help="With --wait: give up after this many seconds (0: never)")
    ] = 0,
) -> None:
    """Bring files or folders in line with the index: new and changed files are queued, unchanged
    ones skipped, indexed files no longer there removed. Exit code 1 if any file failed."""
    settings = _settings()
    raise typer.Exit(_run(lambda: _ingest(settings, lambda: paths, force=force, wait=wait, timeout=timeout)))


@app.command("retry-failed")
def retry_failed(
    wait: Annotated[bool, typer.Option(help="Show progress; exit once every chunk is written")] = False,
    timeout: Annotated[
        float, typer.Option(help="With --wait: give up after this many seconds (0: never)")
    ] = 0,
) -> None:
    """Ingest again every file whose last attempt failed (after the cause is fixed). Exit code 1
    if any fails again."""
    settings = _settings()

    def failed_paths() -> list[Path]:
        from dropvec.state import StateStore

        records = StateStore.from_settings(settings).iter_files()
        paths = [Path(r["path"]) for r in records if r.get("status") == "failed"]
        out.print(f"{len(paths)} failed file(s) to retry", highlight=False)
        return paths

    raise typer.Exit(_run(lambda: _ingest(settings, failed_paths, force=True, wait=wait, timeout=timeout)))


def _ingest(
    settings: Settings, paths: Callable[[], list[Path]], *, force: bool, wait: bool, timeout: float
) -> int:
    """Reconcile ``paths()``; the exit code: 1 if any file failed."""
    targets = paths()
    if not targets:
        return 0
    stop = threading.Event()
    with _stopping_on_signals(stop):
        report = _producer(settings, stop).ingest(targets, force=force)
        _print_outcomes(report)
        if report.not_read:
            err.print(
                f"[yellow]stopped:[/yellow] {report.not_read} file(s) not read; "
                "run the command again to go on"
            )
            return STOPPED
        failed = report.count("failed")
        if wait and report.count("queued"):
            failed = _wait_for_run(settings, report.run_id, timeout, stop)
            if stop.is_set():
                return STOPPED
    return 1 if failed else 0


def _wait_for_run(settings: Settings, run_id: str, timeout: float, stop: threading.Event) -> int:
    """Show the run's progress until its every chunk is written, ``timeout`` or ``stop``."""
    from dropvec.state import StateStore

    state = StateStore.from_settings(settings)
    if not _live_workers(settings):
        err.print("[yellow]no worker is running yet: tasks wait in the queue until one starts[/yellow]")
    deadline = time.monotonic() + timeout if timeout else float("inf")
    columns = (
        TextColumn("embedding"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        job = bar.add_task("chunks", total=None)
        while True:
            p = state.progress(run_id)
            bar.update(job, total=p.chunks_total, completed=p.chunks_done)
            if p.finished:
                break
            if time.monotonic() > deadline:
                err.print(f"[red]timed out[/red] with {p.chunks_done}/{p.chunks_total} chunks written")
                return 1
            if stop.wait(0.25):
                err.print(
                    f"[yellow]stopped waiting[/yellow] with {p.chunks_done}/{p.chunks_total} chunks written; "
                    "the workers go on with the rest"
                )
                return 0
    for problem in p.problems:
        if problem["status"] == "failed":
            err.print(f"[red]failed[/red] {problem['path']}: {problem['reason']}", highlight=False)
    out.print(
        f"indexed {p.files_done} file(s), {p.chunks_done} chunk(s); failed {p.files_failed}", highlight=False
    )
    return p.files_failed


@app.command()
def search(
    question: Annotated[str, typer.Argument(help="What to look for")],
    k: Annotated[int | None, typer.Option("-k", "--top-k", help="How many chunks (DROPVEC_TOP_K)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array: score, file, chunk, text")] = False,
) -> None:
    """The top-k chunks for a question, with score, file and snippet."""
    settings = _settings()

    def body() -> None:
        from dropvec.search import search as run_search
        from workers.embed import load_embedder

        _print_hits(run_search(settings, question, k or settings.top_k, load_embedder(settings)), as_json)

    _run(body)


def _print_hits(hits: list[Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps([h.as_dict() for h in hits], ensure_ascii=False, indent=2))
        return
    for rank, h in enumerate(hits, 1):
        snippet = " ".join(h.text.split())[:240]
        out.print(f"[bold]{rank}. {h.score:.3f}[/bold] {_where(h)}\n   {snippet}", highlight=False)


def _where(hit: Any) -> str:
    return f"{hit.file} #{hit.chunk}" + (f" p.{hit.page}" if hit.page else "")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question")],
    k: Annotated[
        int | None, typer.Option("-k", "--top-k", help="Chunks given to the LLM (DROPVEC_TOP_K)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: answer and sources")] = False,
) -> None:
    """Answer a question from the indexed folder with the configured LLM (DROPVEC_LLM_*): the
    answer is streamed, then the sources it was given (file, chunk, score)."""
    settings = _settings()

    def body() -> None:
        from dropvec.answer import NO_LLM, load_llm
        from dropvec.search import search as run_search
        from workers.embed import load_embedder

        embedder, llm, top = load_embedder(settings), load_llm(settings), k or settings.top_k
        if llm is None:
            err.print(f"[yellow]{NO_LLM}[/yellow]", highlight=False)
            _print_hits(run_search(settings, question, top, embedder), as_json)
            return
        asyncio.run(_answer(settings, question, top, embedder, llm, as_json))

    _run(body)


async def _answer(settings: Settings, question: str, k: int, embedder: Any, llm: Any, as_json: bool) -> None:
    from dropvec.answer import ask as run_ask

    answer = await run_ask(settings, question, k, embedder, llm)
    if as_json:
        text = "".join([piece async for piece in answer.stream])
        sources = [h.as_dict() for h in answer.sources]
        print(json.dumps({"question": question, "answer": text, "sources": sources}, ensure_ascii=False))
        return
    async for piece in answer.stream:
        sys.stdout.write(piece)
        sys.stdout.flush()
    out.print("\n\n[bold]sources[/bold]")
    for rank, h in enumerate(answer.sources, 1):
        out.print(f"{rank}. {h.score:.3f} {_where(h)}", highlight=False)


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


def _live_workers(settings: Settings) -> list[str]:
    from workers.app import create_app

    replies = create_app(settings).control.ping(timeout=1.0) or []
    return sorted(name for reply in replies for name in reply)


def collect_status(settings: Settings, *, files: bool = False) -> dict[str, Any]:
    import redis

    from dropvec.metrics import totals as running_totals
    from dropvec.state import StateStore
    from workers.store import count_entities

    r = redis.Redis.from_url(settings.redis_url, socket_timeout=5, **settings.redis_tls)
    try:
        r.ping()
    except redis.RedisError as exc:
        raise DropvecError(f"Redis at {redact_url(settings.redis_url)} is unreachable: {exc}") from exc
    try:
        entities = count_entities(settings)
    except Exception as exc:  # noqa: BLE001 - any client failure means the same thing to the user
        raise DropvecError(f"Milvus at {settings.milvus_uri} is unreachable: {exc}") from exc
    workers = _live_workers(settings)
    state = StateStore.from_settings(settings)
    records = [_file_view(f) for f in state.iter_files()]
    totals = {s: 0 for s in ("queued", "indexing", "indexed", "skipped", "failed")}
    for record in records:
        totals[record["status"]] = totals.get(record["status"], 0) + 1
    info: dict[str, Any] = {
        "redis_url": redact_url(settings.redis_url),
        "milvus_uri": settings.milvus_uri,
        "collection": settings.collection,
        "embed_model": settings.embed_model,
        "entities": entities,
        "queue_depth": int(r.llen(QUEUE)),
        "workers": len(workers),
        "worker_names": workers,
        "files": totals,
        "chunks_embedded": sum(f["chunks_embedded"] for f in records),
        "chunks_reused": sum(f["chunks_reused"] for f in records),
        "chunks_per_second": state.rate(),
        "totals": running_totals(state),
        "latest_failures": state.latest_failures(10),
    }
    if files:
        info["file_states"] = records
    return info


def _file_view(record: dict[str, str]) -> dict[str, Any]:
    """A file's state as ``status --json --files`` shows it."""
    number = lambda key: int(record.get(key) or 0)  # noqa: E731
    when = lambda key: float(record[key]) if record.get(key) else None  # noqa: E731
    return {
        "path": record.get("path", ""),
        "status": record.get("status", ""),
        "reason": record.get("reason", ""),
        "chunks": number("chunks_total"),
        "chunks_embedded": number("chunks_embedded"),
        "chunks_reused": number("chunks_reused"),
        "queued_at": when("queued_at"),
        "indexed_at": when("indexed_at"),
        "updated_at": when("updated_at"),
    }


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    files: Annotated[bool, typer.Option("--files", help="Also the state of every file")] = False,
) -> None:
    """Files by state, chunks stored, queue depth, live workers, throughput, latest failures."""
    settings = _settings()
    info = _run(lambda: collect_status(settings, files=files))
    if as_json:
        print(json.dumps(info, indent=2))
        return
    f, rate, t = info["files"], info["chunks_per_second"], info["totals"]
    lines = [
        ("services", f"Redis {info['redis_url']}, Milvus {info['milvus_uri']} ({info['collection']!r})"),
        ("model", info["embed_model"]),
        ("files", ", ".join(f"{n} {s}" for s, n in f.items())),
        ("chunks", f"{info['entities']} stored; {info['chunks_embedded']} embedded, "
                   f"{info['chunks_reused']} reused"),
        ("queue", f"{info['queue_depth']} task(s) waiting; {info['workers']} worker(s) live"),
        ("throughput", f"{rate['embedded']} embedded/s, {rate['reused']} reused/s (last minute)"),
        ("totals", "files " + ", ".join(f"{n} {o}" for o, n in t["files"].items())),
        ("", "chunks " + ", ".join(f"{n} {o}" for o, n in t["chunks"].items())),
        ("", f"embedding {t['embed_seconds']:.1f} s, writing {t['write_seconds']:.1f} s; "
             f"{t['task_retries']:.0f} task retries, {t['task_failures']:.0f} task failures"),
    ]  # fmt: skip
    for key, value in lines:
        out.print(f"{key:11} {value}", highlight=False)
    for failure in info["latest_failures"]:
        err.print(f"[red]failed[/red] {failure['path']}: {failure['reason']}", highlight=False)
    for record in info.get("file_states", []):
        detail = record["reason"] or f"{record['chunks']} chunks"
        out.print(f"{record['status']:9} {record['path']}: {detail}", highlight=False)


@app.command()
def worker(
    name: Annotated[str, typer.Option(envvar="DROPVEC_WORKER_NAME", help="Worker name (default: host)")] = "",
) -> None:
    """One worker process: loads the model once, then embeds and writes tasks from the queue."""
    settings = _settings()

    def body() -> None:
        from dropvec.metrics import serve
        from workers.app import run_worker
        from workers.runtime import get_runtime
        from workers.tasks import app as celery_app

        runtime = get_runtime(settings)  # load the model and open the store before taking any task
        serve(settings, runtime.metrics.registry, "worker")
        code = run_worker(
            celery_app, hostname=f"{name}@%h" if name else None, loglevel=settings.log_level,
            quiet=settings.log_format == "json",
        )  # fmt: skip
        if code:
            raise typer.Exit(code)

    _run(body)


@app.command()
def up(
    workers: Annotated[
        int, typer.Option("--workers", "-w", envvar="DROPVEC_WORKERS", help="Worker processes")
    ] = 1,
    inbox: Annotated[Path | None, typer.Option(help="Folder to watch (default: DROPVEC_INBOX)")] = None,
) -> None:
    """The whole local stack: Redis, Milvus, workers, and a watched inbox. Ctrl-C stops it all."""
    settings = _settings()
    if inbox is not None:
        settings = settings.model_copy(update={"inbox": inbox})
    _run(lambda: _up(settings, workers))


@app.command("watch")
def watch_command(
    folder: Annotated[Path | None, typer.Argument(help="Folder to watch (default: DROPVEC_INBOX)")] = None,
) -> None:
    """The producer alone: reconcile a folder with the index, then keep it in sync until Ctrl-C.

    Workers and services run elsewhere (``dropvec worker``, or ``dropvec up`` for everything).
    """
    settings = _settings()
    inbox = (folder or settings.inbox).absolute()
    settings = settings.model_copy(update={"inbox": inbox})  # the folder watched is this run's inbox
    stop = threading.Event()
    with _stopping_on_signals(stop), suppress(KeyboardInterrupt):
        producer = _run(lambda: _producer(settings, stop))
        inbox.mkdir(parents=True, exist_ok=True)
        _watch(settings, producer, inbox, stop, ready=f"watching {inbox}. Ctrl-C to stop.")


def _watch(settings: Settings, producer: Any, inbox: Path, stop: threading.Event, ready: str) -> None:
    """Reconcile ``inbox`` once the watch is in place, then pass every settled change to the
    producer until ``stop``; ``ready`` is printed after the reconciliation. The pipeline's metrics
    are served meanwhile, if a port is set."""
    from dropvec.metrics import pipeline_registry, serve
    from producer.watch import watch_folder

    _run(lambda: serve(settings, pipeline_registry(settings), "pipeline"))

    def sync(paths: list[Path], deleted: list[Path]) -> bool:
        try:
            _print_outcomes(producer.ingest(paths, deleted=deleted), watching=True)
        except Exception as exc:
            # a service down, or a fault of ours: said in one line, and the watch goes on
            if not (isinstance(exc, DropvecError) or is_outage(exc)):
                log.debug(
                    "unexpected error in a pass over %d path(s)", len(paths) + len(deleted), exc_info=True
                )
            message = " ".join(str(exc).split())[:300]
            err.print(f"[red]error:[/red] {type(exc).__name__}: {message} (trying again shortly)")
            return False
        return True

    def reconcile() -> bool:
        reconciled = sync([inbox], [])
        out.print(ready, highlight=False)
        return reconciled

    watch_folder(inbox, sync, stop, settings.settle_seconds, settings.ignore, on_ready=reconcile)


def _up(settings: Settings, worker_count: int) -> None:
    from dropvec.stack import start_milvus, start_redis, start_workers

    data_dir = settings.data_dir.absolute()
    inbox = settings.inbox.absolute()
    stop = threading.Event()

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    # While starting, Ctrl-C or SIGTERM interrupts at once; once up, they end the watch loop.
    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    services = []
    try:
        for start in (start_redis, start_milvus):
            service = start(settings, data_dir)
            if service is not None:
                services.append(service)
        services += start_workers(settings, worker_count, data_dir / "logs")
        for sig in previous:
            signal.signal(sig, _stop_handler(stop))
        producer = _producer(settings, stop)
        inbox.mkdir(parents=True, exist_ok=True)
        ready = (
            f"dropvec is up: {worker_count} worker(s), Redis {redact_url(settings.redis_url)}, "
            f"Milvus {settings.milvus_uri}, collection {settings.collection!r}.\n"
            f"Drop files into {inbox} (logs in {data_dir / 'logs'}). Ctrl-C to stop."
        )
        _watch(settings, producer, inbox, stop, ready)
    except KeyboardInterrupt:
        pass
    finally:
        out.print("stopping…")
        for service in reversed(services):
            service.stop(timeout=60 if service.name.startswith("worker") else 20)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        out.print("stopped.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
