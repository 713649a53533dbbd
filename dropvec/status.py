"""The status report: files by state, chunks stored, queue depth, live workers, throughput, totals.

A service: what ``dropvec status`` prints and ``GET /status`` returns, from the ledger, the
counters, the queue and Milvus.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from dropvec.config.errors import MilvusUnavailable, RedisUnavailable
from dropvec.config.polling import poll
from dropvec.config.records import FileRecord, FileStatus
from dropvec.config.settings import Settings, redact_url

if TYPE_CHECKING:
    from dropvec.ledger.state import RunProgress

#: How following a run ended.
Ended = Literal["finished", "timed out", "stopped"]


def live_workers(settings: Settings) -> list[str]:
    """The node names of the workers whose heartbeat is current (``dropvec.workers.tasks.run``)."""
    from dropvec.ledger.state import StateStore

    return StateStore.from_settings(settings).live_workers()


def collect_status(settings: Settings, *, files: bool = False) -> dict[str, Any]:
    """The report; ``files``: with every file's state (``file_states``)."""
    from dropvec.ledger.metrics import totals as running_totals
    from dropvec.ledger.state import StateStore
    from dropvec.workers.store import count_entities

    state = StateStore.from_settings(settings)
    try:
        state.ping()
    except RedisUnavailable as exc:
        raise RedisUnavailable(f"Redis at {redact_url(settings.redis_url)} is unreachable: {exc}") from exc
    try:
        entities = count_entities(settings)
    except MilvusUnavailable as exc:
        raise MilvusUnavailable(f"Milvus at {settings.milvus_uri} is unreachable: {exc}") from exc
    workers = state.live_workers()
    records = [file_view(f) for f in state.records()]
    totals = {str(s): 0 for s in FileStatus}
    for record in records:
        totals[record["status"]] = totals.get(record["status"], 0) + 1
    info: dict[str, Any] = {
        "redis_url": redact_url(settings.redis_url),
        "milvus_uri": settings.milvus_uri,
        "collection": settings.collection,
        "embed_model": settings.embed_model,
        "entities": entities,
        "queue_depth": state.queue_depth(),  # type: ignore[arg-type]
        "workers": len(workers),
        "worker_names": workers,
        "files": totals,
        "chunks_embedded": sum(f["chunks_embedded"] for f in records),
        "chunks_reused": sum(f["chunks_reused"] for f in records),
        "chunks_per_second": state.rate(),
        "totals": running_totals(state),
        "latest_failures": state.latest_failures(10),
        "check": state.last_check(),
    }
    if files:
        info["file_states"] = records
    return info


def summary(info: dict[str, Any]) -> list[tuple[str, str]]:
    """The report (``collect_status``) as ``dropvec status`` prints it: a label and a line each."""
    f, rate, t = info["files"], info["chunks_per_second"], info["totals"]
    return [
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
        ("check", checked(info.get("check"))),
    ]  # fmt: skip


def checked(check: dict[str, Any] | None) -> str:
    """The last check of the index, in one line."""
    if check is None:
        return "never run (dropvec check)"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(check["at"]))
    kind = "full" if check["full"] else "quick"
    if check["clean"]:
        return f"in sync at {when} ({kind})"
    found = ", ".join(f"{n} {f}" for f, n in check["findings"].items() if n)
    return f"{found} at {when} ({kind}): dropvec check --repair"


def file_view(r: FileRecord) -> dict[str, Any]:
    """A file's state as ``status --json --files`` shows it."""
    return {
        "path": r.path,
        "status": str(r.status or ""),
        "reason": r.reason,
        "chunks": r.chunks_total,
        "chunks_embedded": r.chunks_embedded,
        "chunks_reused": r.chunks_reused,
        "queued_at": r.queued_at,
        "indexed_at": r.indexed_at,
        "updated_at": r.updated_at,
    }


def follow_run(
    settings: Settings,
    run_id: str,
    *,
    timeout: float | None,
    stop: threading.Event,
    on_progress: Callable[[RunProgress], None],
    stall: float | None = None,
) -> tuple[RunProgress, Ended]:
    """Poll a run's progress (``on_progress`` each time) until its every file is done,
    ``timeout`` passes or ``stop`` is set; the last progress, and which of the three it was.
    ``stall``: also give up (as "timed out") once the progress has not moved for that long."""
    from dropvec.ledger.state import StateStore

    state = StateStore.from_settings(settings)
    last = [state.progress(run_id)]
    moved = [time.monotonic()]

    def finished() -> bool:
        now = state.progress(run_id)
        if now != last[0]:
            moved[0] = time.monotonic()
        last[0] = now
        on_progress(now)
        return now.finished or (stall is not None and time.monotonic() - moved[0] > stall)

    if poll(finished, timeout=timeout, interval=0.25, stop=stop) and last[0].finished:
        return last[0], "finished"
    return last[0], "stopped" if stop.is_set() else "timed out"
