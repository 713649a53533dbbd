"""What the commands print: outcomes, progress, hits, answers, the status report. Rendering only."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dropvec.config.records import UNCHANGED, FileStatus, Outcome
from dropvec.status import summary

if TYPE_CHECKING:
    from dropvec.answer import Answer
    from dropvec.check import Report
    from dropvec.ledger.state import RunProgress
    from dropvec.producer.enqueue import IngestReport
    from dropvec.repair import Repaired
    from dropvec.search import Hit
    from dropvec.sync import Ingested

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def outcomes(report: IngestReport, *, watching: bool = False) -> None:
    """One line per skipped or failed file, then totals. ``watching``: also files queued or removed,
    but no unchanged ones (a restart would list every file), nor totals of unchanged files only."""
    for o in report.outcomes:
        reason = f": {o.reason}" if o.reason else ""
        if o.status in (Outcome.QUEUED, Outcome.REMOVED) and watching:
            detail = f" ({o.chunks} chunks)" if o.status == Outcome.QUEUED else ""
            out.print(f"{o.status} {o.path}{detail}{reason}", highlight=False)
        elif o.status in (Outcome.SKIPPED, Outcome.FAILED) and not (watching and o.reason == UNCHANGED):
            colour = "yellow" if o.status == Outcome.SKIPPED else "red"
            err.print(f"[{colour}]{o.status}[/{colour}] {o.path}{reason}", highlight=False)
    if not (watching and report.unchanged == len(report.outcomes)):
        out.print(report.summary(), highlight=False)


@contextmanager
def waiting(live_workers: list[str]) -> Iterator[Callable[[RunProgress], None]]:
    """A bar of chunks written on stderr (warned first if no worker is live); yields what moves it."""
    if not live_workers:
        err.print("[yellow]no worker is running yet: tasks wait in the queue until one starts[/yellow]")
    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"))
    with Progress(*columns, TimeElapsedColumn(), console=err, transient=False) as bar:
        job = bar.add_task("chunks", total=None)
        yield lambda p: bar.update(job, total=p.chunks_total, completed=p.chunks_done)


def ingested(done: Ingested) -> None:
    """How a pass, and waiting for its run, ended; when the run finished, its failures and totals."""
    p, not_read = done.progress, done.report.not_read
    if not_read:
        err.print(f"[yellow]stopped:[/yellow] {not_read} file(s) not read; run the command again to go on")
    elif p and done.ended != "finished":
        written = f"{p.chunks_done}/{p.chunks_total} chunks written"
        end = "[yellow]stopped waiting[/yellow]" if done.stopped else "[red]timed out[/red]"
        err.print(f"{end} with {written}" + ("; the workers go on with the rest" if done.stopped else ""))
    elif p:
        for problem in (problem for problem in p.problems if problem["status"] == FileStatus.FAILED):
            err.print(f"[red]failed[/red] {problem['path']}: {problem['reason']}", highlight=False)
        out.print(f"indexed {p.files_done} file(s), {p.chunks_done} chunk(s); failed {p.files_failed}")


async def answer(question: str, asked: Awaitable[Answer], as_json: bool) -> None:
    """An answer as it streams in, then its sources (``as_json``: one object); with no LLM, its notice."""
    found = await asked
    if found.stream is None:
        err.print(f"[yellow]{found.notice}[/yellow]", highlight=False)
        return hits(found.sources, as_json)
    if as_json:
        text, sources = "".join([piece async for piece in found.stream]), [h.as_dict() for h in found.sources]
        return print(
            json.dumps({"question": question, "answer": text, "sources": sources}, ensure_ascii=False)
        )
    async for piece in found.stream:
        sys.stdout.write(piece)
        sys.stdout.flush()
    out.print("\n\n[bold]sources[/bold]")
    for rank, h in enumerate(found.sources, 1):
        out.print(f"{rank}. {h.score:.3f} {h.where}", highlight=False)


def hits(found: list[Hit], as_json: bool = False) -> None:
    if as_json:
        return print(json.dumps([h.as_dict() for h in found], ensure_ascii=False, indent=2))
    for rank, h in enumerate(found, 1):
        snippet = " ".join(h.text.split())[:240]
        out.print(f"[bold]{rank}. {h.score:.3f}[/bold] {h.where}\n   {snippet}", highlight=False)


def status(info: dict[str, Any], as_json: bool = False) -> None:
    if as_json:
        return print(json.dumps(info, indent=2))
    for key, value in summary(info):
        out.print(f"{key:11} {value}", highlight=False)
    for failure in info["latest_failures"]:
        err.print(f"[red]failed[/red] {failure['path']}: {failure['reason']}", highlight=False)
    for record in info.get("file_states", []):
        detail = record["reason"] or f"{record['chunks']} chunks"
        out.print(f"{record['status']:9} {record['path']}: {detail}", highlight=False)


def checked(report: Report, *, as_json: bool = False) -> None:
    """A check's findings, one line each, then its counts."""
    if as_json:
        return print(json.dumps(report.as_json(), indent=2, ensure_ascii=False))
    for p in report.problems:
        err.print(f"[yellow]{p.finding}[/yellow] {p.path or '(collection)'}: {p.detail}", highlight=False)
    if report.clean:
        out.print(f"in sync: {report.files} file(s) in the folder, {report.records} in the ledger, "
                  f"{report.rows} chunk(s) stored", highlight=False)  # fmt: skip
    else:
        found = ", ".join(f"{n} {f}" for f, n in report.counts().items() if n)
        out.print(f"not in sync: {found} (dropvec check --repair fixes them)", highlight=False)


def repaired(done: Repaired, *, as_json: bool = False, told: bool = False) -> None:
    """What a repair did, and the check after it (``told``: nothing to repair, and that was shown)."""
    did = {"adopted": done.adopted, "requeued": done.requeued, "removed": done.removed,
           "rows_deleted": done.rows_deleted, "chunks_embedded": done.embedded,
           "chunks_reused": done.reused}  # fmt: skip
    if as_json:
        after = done.after.as_json() if done.after else None
        return print(json.dumps({"repaired": did, "after": after}, indent=2, ensure_ascii=False))
    if told:
        return None
    out.print(
        f"repaired: {done.requeued} file(s) indexed again ({done.embedded} chunk(s) embedded, "
        f"{done.reused} reused), {done.adopted} adopted, {done.removed} removed, "
        f"{done.rows_deleted} orphan row(s) deleted", highlight=False,
    )  # fmt: skip
    if done.after is not None:
        checked(done.after)
