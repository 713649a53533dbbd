"""What the commands print: outcomes, hits, the status report. Rendering only; no logic."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dropvec.config.records import UNCHANGED

if TYPE_CHECKING:
    from dropvec.producer.enqueue import IngestReport

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def outcomes(report: IngestReport, *, watching: bool = False) -> None:
    """One line per skipped or failed file, then totals.

    ``watching``: also one line per file queued or removed, none for files skipped as unchanged
    (a restart would list every file), and no totals line for a batch of unchanged files only.
    """
    for o in report.outcomes:
        if o.reason == UNCHANGED and watching:
            continue
        if o.status in ("queued", "removed"):
            if watching:
                detail = f" ({o.chunks} chunks)" if o.status == "queued" else ""
                reason = f": {o.reason}" if o.reason else ""
                out.print(f"{o.status} {o.path}{detail}{reason}", highlight=False)
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


@contextmanager
def progress_bar() -> Iterator[Callable[[Any], None]]:
    """A bar of chunks written, on stderr; the block gets the function that moves it."""
    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"))
    with Progress(*columns, TimeElapsedColumn(), console=err, transient=False) as bar:
        job = bar.add_task("chunks", total=None)
        yield lambda p: bar.update(job, total=p.chunks_total, completed=p.chunks_done)


def run_problems(p: Any) -> None:
    """A finished run: its failed files, then its totals."""
    for problem in p.problems:
        if problem["status"] == "failed":
            err.print(f"[red]failed[/red] {problem['path']}: {problem['reason']}", highlight=False)
    out.print(
        f"indexed {p.files_done} file(s), {p.chunks_done} chunk(s); failed {p.files_failed}", highlight=False
    )


async def answer(question: str, found: Any, as_json: bool) -> None:
    """An answer as it streams in, then its sources; or, ``as_json``, one object once complete."""
    if as_json:
        text = "".join([piece async for piece in found.stream])
        sources = [h.as_dict() for h in found.sources]
        print(json.dumps({"question": question, "answer": text, "sources": sources}, ensure_ascii=False))
        return
    async for piece in found.stream:
        sys.stdout.write(piece)
        sys.stdout.flush()
    out.print("\n\n[bold]sources[/bold]")
    for rank, h in enumerate(found.sources, 1):
        out.print(f"{rank}. {h.score:.3f} {where(h)}", highlight=False)


def hits(found: list[Any], as_json: bool = False) -> None:
    if as_json:
        print(json.dumps([h.as_dict() for h in found], ensure_ascii=False, indent=2))
        return
    for rank, h in enumerate(found, 1):
        snippet = " ".join(h.text.split())[:240]
        out.print(f"[bold]{rank}. {h.score:.3f}[/bold] {where(h)}\n   {snippet}", highlight=False)


def where(hit: Any) -> str:
    return f"{hit.file} #{hit.chunk}" + (f" p.{hit.page}" if hit.page else "")


def status(info: dict[str, Any], as_json: bool = False) -> None:
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
