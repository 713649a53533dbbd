"""Per-file and per-run state in Redis, shared by producer, workers and the CLI.

Keys (all under ``config.settings.KEY_PREFIX``):

    {p}:file:{doc_id}          hash   path, status, reason, sha256, model, generation, chunks_total,
                                      chunks_done, chunks_embedded, chunks_reused, task_count (0 until
                                      the last task is sent), ids (the digest of the
                                      version's chunk ids), run_id, replaces, queued_at,
                                      indexed_at, updated_at
    {p}:paths                  zset   the path of every file with a record (prefix queries)
    {p}:generation             int    the last file version handed out (one sequence for all files)
    {p}:done:{generation}      set    task indices already counted (makes redelivery idempotent)
    {p}:run:{run_id}           hash   files, chunks_total, chunks_done, chunks_embedded,
                                      chunks_reused, files_done, files_failed, files_skipped
    {p}:run:{run_id}:problems  list   JSON {path, status, reason} per skipped or failed file
    {p}:failures               list   JSON {path, reason, at}: the latest failures, newest first
    {p}:rate:{minute}          hash   chunks embedded and reused in that minute
    {p}:counters               hash   totals since the state was created, by the producer and the
                                      workers: files:{outcome}, chunks:{outcome}, embed_seconds,
                                      write_seconds, task_retries, task_failures (what ``dropvec
                                      status`` and the Prometheus endpoint show)
    {p}:worker:{node}          string a live worker's heartbeat (expires when it stops beating)
    {p}:check                  string JSON: the last check of the index against the folder
                                      (``dropvec.check``): when, and its counts by finding

A file version (``generation``) is what the workers write: chunks carry it, and a task whose
version is no longer the file's current one is dropped. Counting a finished task is one Lua
script, so a task that is delivered twice is counted once.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import redis

from dropvec.config.ids import doc_id_for
from dropvec.config.messages import EMBED_FILES_TASK, EMBED_TASK, REMOVE_TASK
from dropvec.config.records import LIVE, FileRecord, FileStatus, Replaced, TaskCount
from dropvec.config.settings import KEY_PREFIX, QUEUE, Settings
from dropvec.ledger import redis_boundary
from dropvec.ledger.counters import Counters
from dropvec.ledger.hashes import StoredHashes
from dropvec.ledger.scripts import FILE_ENQUEUED, RAISE_GENERATION, TASK_DONE
from dropvec.ledger.terms import TermStats

#: What :meth:`StateStore.task_done` returns when the task made its file indexed.
FILE_INDEXED = TaskCount.FILE_INDEXED
#: How long run bookkeeping outlives its last update.
RUN_TTL_SECONDS = 7 * 24 * 3600
#: How many failures ``dropvec status`` can show.
FAILURES_KEPT = 100
#: Throughput is counted per minute and kept this long.
RATE_TTL_SECONDS = 3600


@dataclass(frozen=True)
class FileStart:
    """A file version whose first task is about to be sent (``StateStore.files_started``)."""

    doc_id: str
    path: str
    sha256: str
    model: str
    generation: int
    replaces: tuple[Replaced, ...] = ()


@dataclass(frozen=True)
class TaskDone:
    """A written task, to be counted (``StateStore.tasks_done``)."""

    run_id: str
    doc_id: str
    generation: int
    task_index: int
    chunks: int
    embedded: int
    reused: int


@dataclass(frozen=True)
class RunProgress:
    files: int
    chunks_total: int
    chunks_done: int
    files_done: int
    files_failed: int
    files_skipped: int
    problems: list[dict[str, str]]
    chunks_embedded: int = 0
    chunks_reused: int = 0

    @property
    def finished(self) -> bool:
        return self.files_done + self.files_failed + self.files_skipped >= self.files


#: kombu's Redis transport keeps messages taken by a worker and not yet acknowledged in this hash.
UNACKED = "unacked"


@dataclass
class TasksAlive:
    """What the tasks in the queue (or held by workers) are for."""

    #: (doc id, generation) of the file versions an embed task is for.
    versions: set[tuple[str, int]] = field(default_factory=set)
    #: doc id: the highest generation below which a removal task will remove its rows.
    removals: dict[str, int] = field(default_factory=dict)

    def merged(self, other: TasksAlive) -> TasksAlive:
        """The work either of two looks at the queue saw."""
        removals = dict(self.removals)
        for doc, below in other.removals.items():
            removals[doc] = max(below, removals.get(doc, 0))
        return TasksAlive(self.versions | other.versions, removals)

    def add(self, name: str, args: list[Any]) -> None:
        body = args[0]
        if name == EMBED_TASK:
            self.versions.add((body["doc_id"], int(body["generation"])))
        elif name == EMBED_FILES_TASK:
            self.versions.update((p["doc_id"], int(p["generation"])) for p in body["parts"])
        elif name == REMOVE_TASK:
            doc, below = body["doc_id"], int(body["below_generation"])
            self.removals[doc] = max(below, self.removals.get(doc, 0))


def _task_of(message: dict[str, Any]) -> tuple[str, list[Any]]:
    """A kombu message's task name and arguments (Celery's protocol 2, JSON body)."""
    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args, _kwargs, _embed = json.loads(body)
    return str(message["headers"]["task"]), list(args)


def _now() -> str:
    return f"{time.time():.3f}"


@redis_boundary
class StateStore:
    """The ledger. Every method raises RedisUnavailable, never a redis-py error."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        #: The embed hashes written to each collection, its BM25 statistics, and the running
        #: totals: each its own.
        self.hashes = StoredHashes(client)
        self.terms = TermStats(client)
        self.counters = Counters(client)
        self._task_done = client.register_script(TASK_DONE)
        self._file_enqueued = client.register_script(FILE_ENQUEUED)
        self._raise_generation = client.register_script(RAISE_GENERATION)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> StateStore:
        """``options``: more redis-py connection options (TLS: ``Settings.redis_tls``)."""
        return cls(redis.Redis.from_url(url, decode_responses=True, socket_timeout=30, **options))

    @classmethod
    def from_settings(cls, settings: Settings) -> StateStore:
        return cls.from_url(settings.redis_url, **settings.redis_tls)

    # keys
    @staticmethod
    def file_key(doc_id: str) -> str:
        return f"{KEY_PREFIX}:file:{doc_id}"

    @staticmethod
    def run_key(run_id: str) -> str:
        return f"{KEY_PREFIX}:run:{run_id}"

    PATHS = f"{KEY_PREFIX}:paths"
    FAILURES = f"{KEY_PREFIX}:failures"

    @staticmethod
    def _rate_key(minute: int) -> str:
        return f"{KEY_PREFIX}:rate:{minute}"

    def _file_keys(self, run_id: str, doc_id: str, generation: int) -> list[str]:
        return [f"{KEY_PREFIX}:done:{generation}", self.file_key(doc_id), self.run_key(run_id)]

    # files
    def get_file(self, doc_id: str) -> dict[str, str]:
        """The file's hash as stored (for tools and tests; the layers above use :meth:`record`)."""
        return dict(self.r.hgetall(self.file_key(doc_id)))  # type: ignore[arg-type]

    def record(self, doc_id: str) -> FileRecord | None:
        """The file's record, or None if it has none."""
        fields = self.get_file(doc_id)
        return FileRecord.of(fields) if fields else None

    def next_generation(self) -> int:
        """A file version number never handed out before, to any file."""
        return int(self.r.incr(f"{KEY_PREFIX}:generation"))  # type: ignore[arg-type]

    def has_ledger(self) -> bool:
        """Whether this Redis holds dropvec's state (a file version was ever handed out): False
        for a new or flushed Redis."""
        return bool(self.r.exists(f"{KEY_PREFIX}:generation"))

    def raise_generation(self, in_use: int) -> None:
        """Generation ``in_use`` is stored (a ledger rebuilt from the store): never hand it out again."""
        self._raise_generation(keys=[f"{KEY_PREFIX}:generation"], args=[in_use])

    def adopt(
        self, doc_id: str, *, path: str, sha256: str, model: str, generation: int, chunks: int, ids: str
    ) -> None:
        """Record a file version found whole in the store (a ledger rebuilt): indexed, nothing
        to send. With ``sha256`` "" the file counts as changed, and its next pass replaces it."""
        now = _now()
        fields: dict[str, str | int] = {
            "path": path, "status": str(FileStatus.INDEXED), "reason": "", "sha256": sha256, "model": model,
            "generation": generation, "chunks_total": chunks, "chunks_done": chunks, "chunks_embedded": 0,
            "chunks_reused": 0, "task_count": 1, "ids": ids, "run_id": "", "replaces": "[]",
            "queued_at": now, "indexed_at": now, "updated_at": now,
        }  # fmt: skip
        pipe = self.r.pipeline()
        pipe.delete(self.file_key(doc_id))
        pipe.hset(self.file_key(doc_id), mapping={k: str(v) for k, v in fields.items()})
        pipe.zadd(self.PATHS, {path: 0})
        pipe.execute()
        self.raise_generation(generation)

    def is_current(self, doc_id: str, generation: int) -> bool:
        """Whether ``generation`` is the file's version to keep in the store."""
        return self.current([(doc_id, generation)])[0]

    def current(self, versions: Sequence[tuple[str, int]]) -> list[bool]:
        """``is_current`` for several (doc id, generation), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for doc_id, _ in versions:
            pipe.hmget(self.file_key(doc_id), ["generation", "status"])
        return [
            current == str(generation) and status in LIVE
            for (_, generation), (current, status) in zip(versions, pipe.execute(), strict=True)
        ]

    def replaced_by(self, doc_id: str) -> list[Replaced]:
        raw = self.r.hget(self.file_key(doc_id), "replaces")
        return [Replaced(d, int(g)) for d, g in json.loads(raw or "[]")]  # type: ignore[arg-type]

    def forget_file(self, doc_id: str, path: str) -> None:
        """The file is gone from the folder: drop its record (its chunks are removed separately)."""
        pipe = self.r.pipeline()
        pipe.delete(self.file_key(doc_id))
        pipe.zrem(self.PATHS, path)
        pipe.execute()

    def paths_under(self, root: str) -> list[str]:
        """Paths with a record that are ``root`` itself or inside the folder ``root``."""
        root = root.rstrip("/")
        inside = self.r.zrangebylex(self.PATHS, f"[{root}/", f"({root}0")  # "0" follows "/"
        exact = [root] if self.r.zscore(self.PATHS, root) is not None else []
        return exact + list(inside)  # type: ignore[arg-type]

    def records(self) -> Iterator[FileRecord]:
        """Every file record, in path order."""
        return (FileRecord.of(fields) for fields in self.iter_files())

    def iter_files(self, batch: int = 500) -> Iterator[dict[str, str]]:
        """Every file's hash as stored, in path order."""
        paths: list[str] = self.r.zrange(self.PATHS, 0, -1)  # type: ignore[assignment]
        for start in range(0, len(paths), batch):
            pipe = self.r.pipeline()
            for path in paths[start : start + batch]:
                pipe.hgetall(self.file_key(doc_id_for(path)))
            for record in pipe.execute():
                if record:
                    yield record

    def failed_paths(self) -> list[str]:
        """The paths of the files whose last attempt failed."""
        return [r.path for r in self.records() if r.status == FileStatus.FAILED]

    def file_started(
        self,
        run_id: str,
        doc_id: str,
        *,
        path: str,
        sha256: str,
        model: str,
        generation: int,
        replaces: Sequence[Replaced] = (),
    ) -> None:
        """A new version's first task is about to be sent; its task count is not known yet."""
        self.files_started(run_id, [FileStart(doc_id, path, sha256, model, generation, tuple(replaces))])

    def files_started(self, run_id: str, starts: Sequence[FileStart]) -> None:
        """``file_started`` for several files, in one round trip."""
        now = _now()
        pipe = self.r.pipeline()
        for f in starts:
            pipe.hset(
                self.file_key(f.doc_id),
                mapping={
                    "path": f.path, "status": str(FileStatus.QUEUED), "reason": "", "sha256": f.sha256,
                    "model": f.model, "generation": f.generation, "chunks_total": 0, "chunks_done": 0,
                    "chunks_embedded": 0, "chunks_reused": 0, "task_count": 0, "run_id": run_id,
                    "replaces": json.dumps([[r.doc_id, r.below_generation] for r in f.replaces]),
                    "queued_at": now, "indexed_at": "", "updated_at": now,
                },
            )  # fmt: skip
            pipe.zadd(self.PATHS, {f.path: 0})
        pipe.hincrby(self.run_key(run_id), "files", len(starts))
        pipe.execute()

    def file_enqueued(
        self, run_id: str, doc_id: str, *, generation: int, chunks: int, tasks: int, ids: str = ""
    ) -> bool:
        """Every task of the version is sent (``ids``: the digest of its chunk ids). True if that
        made the file indexed (all were done)."""
        return self.files_enqueued(run_id, [(doc_id, generation, chunks, tasks, ids)])[0]

    def files_enqueued(self, run_id: str, sent: Sequence[tuple[str, int, int, int, str]]) -> list[bool]:
        """``file_enqueued`` for several files (doc id, generation, chunks, tasks, ids digest), in
        one round trip; for each, whether it is now indexed."""
        pipe = self.r.pipeline()
        for doc_id, generation, chunks, tasks, ids in sent:
            keys = self._file_keys(run_id, doc_id, generation)
            self._file_enqueued(keys=keys, args=[_now(), generation, tasks, chunks, ids], client=pipe)
        indexed = [int(r) == 2 for r in pipe.execute()]
        if any(indexed):
            self.counters.count({"files:indexed": sum(indexed)})
        return indexed

    def file_ended_early(
        self,
        run_id: str,
        doc_id: str,
        *,
        path: str,
        status: FileStatus,
        reason: str,
        sha256: str = "",
        model: str = "",
        generation: int = 0,
        started: bool = False,
        keep_file_state: bool = False,
        listed: bool = True,
    ) -> None:
        """A file skipped or failed in the producer (``started``: after some of its tasks were sent).

        ``keep_file_state``: only the run counts it (a file skipped as unchanged stays indexed; a
        path that does not exist gets no record). ``listed``: named among the run's problems.
        """
        if not keep_file_state:
            fields: dict[str, Any] = {"path": path, "status": str(status), "reason": reason, "run_id": run_id}
            if sha256:
                fields.update(sha256=sha256, model=model, generation=generation)
            self._set_file(doc_id, **fields)
            if status == FileStatus.FAILED:
                self._record_failure(path, reason)
        self._count_problem(run_id, path, status, reason, new_file=not started, listed=listed)

    def task_done(
        self,
        run_id: str,
        doc_id: str,
        generation: int,
        task_index: int,
        *,
        chunks: int,
        embedded: int,
        reused: int,
    ) -> TaskCount:
        """Count a written task once, however often it is delivered.

        Returns 0 if it was not counted (a repeat, or a replaced version), 1 if counted, 2 if
        counted and the file is now indexed.
        """
        return self.tasks_done([TaskDone(run_id, doc_id, generation, task_index, chunks, embedded, reused)])[
            0
        ]

    def tasks_done(self, done: Sequence[TaskDone]) -> list[TaskCount]:
        """``task_done`` for several tasks, in one round trip."""
        rate = self._rate_key(int(time.time() // 60))
        pipe = self.r.pipeline()
        for t in done:
            keys = [*self._file_keys(t.run_id, t.doc_id, t.generation), rate]
            args: list[str | int] = [
                _now(), t.generation, t.task_index, t.chunks, t.embedded, t.reused, RUN_TTL_SECONDS,
                RATE_TTL_SECONDS,
            ]  # fmt: skip
            self._task_done(keys=keys, args=args, client=pipe)
        outcomes = [TaskCount(int(r)) for r in pipe.execute()]
        if indexed := sum(1 for o in outcomes if o == FILE_INDEXED):
            self.counters.count({"files:indexed": indexed})
        return outcomes

    def task_failed(self, run_id: str, doc_id: str, generation: int, path: str, reason: str) -> bool:
        """A task gave up: its file version is failed. True if this call failed it (once per version)."""
        key = self.file_key(doc_id)
        current, status = self.r.hmget(key, ["generation", "status"])  # type: ignore[misc]
        if current != str(generation) or status not in LIVE:
            return False
        self._set_file(doc_id, status=str(FileStatus.FAILED), reason=reason)
        self._record_failure(path, reason)
        self._count_problem(run_id, path, FileStatus.FAILED, reason, new_file=False)
        return True

    def _set_file(self, doc_id: str, **fields: Any) -> None:
        fields["updated_at"] = _now()
        pipe = self.r.pipeline()
        pipe.hset(self.file_key(doc_id), mapping={k: str(v) for k, v in fields.items()})
        if "path" in fields:
            pipe.zadd(self.PATHS, {fields["path"]: 0})
        pipe.execute()

    def _record_failure(self, path: str, reason: str) -> None:
        pipe = self.r.pipeline()
        pipe.lpush(self.FAILURES, json.dumps({"path": path, "reason": reason, "at": _now()}))
        pipe.ltrim(self.FAILURES, 0, FAILURES_KEPT - 1)
        pipe.execute()

    # vectors stored, by embed hash: a negative cache in front of Milvus's look-ups
    # runs
    def start_run(self, run_id: str) -> None:
        key = self.run_key(run_id)
        pipe = self.r.pipeline()
        pipe.hset(key, mapping={"started_at": _now()})
        pipe.expire(key, RUN_TTL_SECONDS)
        pipe.execute()

    def _count_problem(
        self, run_id: str, path: str, status: FileStatus, reason: str, *, new_file: bool, listed: bool = True
    ) -> None:
        """Count a skipped or failed file in its run; ``listed``: also name it in the run's problems."""
        key = self.run_key(run_id)
        pipe = self.r.pipeline()
        if new_file:
            pipe.hincrby(key, "files", 1)
        pipe.hincrby(key, "files_failed" if status == FileStatus.FAILED else "files_skipped", 1)
        if listed:
            pipe.rpush(f"{key}:problems", json.dumps({"path": path, "status": str(status), "reason": reason}))
            pipe.expire(f"{key}:problems", RUN_TTL_SECONDS)
        pipe.execute()

    def progress(self, run_id: str) -> RunProgress:
        key = self.run_key(run_id)
        h = self.r.hgetall(key)
        problems = [json.loads(p) for p in self.r.lrange(f"{key}:problems", 0, -1)]  # type: ignore[union-attr]
        g = lambda name: int(h.get(name, 0))  # noqa: E731
        return RunProgress(
            files=g("files"),
            chunks_total=g("chunks_total"),
            chunks_done=g("chunks_done"),
            files_done=g("files_done"),
            files_failed=g("files_failed"),
            files_skipped=g("files_skipped"),
            problems=problems,
            chunks_embedded=g("chunks_embedded"),
            chunks_reused=g("chunks_reused"),
        )

    # the queue (its depth, for back-pressure and status; the queue itself is Celery's)
    def queue_depth(self) -> int:
        return int(self.r.llen(QUEUE))  # type: ignore[arg-type]

    def ping(self) -> bool:
        return bool(self.r.ping())

    def tasks_alive(self) -> TasksAlive:
        """The file versions and removals that a task waiting in the queue, or taken by a worker
        and not yet acknowledged, is for: work that is on its way (the check's "stuck" is a file
        version with none). Scans the queue, so it costs a read of every message in it (at most
        ``max_queue_depth``, and those workers hold)."""
        alive = TasksAlive()
        raw = [str(m) for m in self.r.lrange(QUEUE, 0, -1)]  # type: ignore[union-attr]
        for held in self.r.hvals(UNACKED):  # type: ignore[union-attr]
            with suppress(ValueError, TypeError, IndexError):
                raw.append(json.dumps(json.loads(held)[0]))
        for message in raw:
            with suppress(ValueError, TypeError, KeyError, IndexError, AttributeError):
                alive.add(*_task_of(json.loads(message)))
        return alive

    # the last check
    CHECK = f"{KEY_PREFIX}:check"

    def save_check(self, summary: dict[str, Any]) -> None:
        self.r.set(self.CHECK, json.dumps(summary))

    def last_check(self) -> dict[str, Any] | None:
        raw = self.r.get(self.CHECK)
        return json.loads(raw) if raw else None  # type: ignore[arg-type]

    # workers
    def worker_beat(self, node: str, ttl: int) -> None:
        """Worker ``node`` is alive, for the next ``ttl`` seconds."""
        self.r.set(f"{KEY_PREFIX}:worker:{node}", _now(), ex=ttl)

    def worker_gone(self, node: str) -> None:
        self.r.delete(f"{KEY_PREFIX}:worker:{node}")

    def live_workers(self) -> list[str]:
        """The nodes whose heartbeat has not expired."""
        prefix = f"{KEY_PREFIX}:worker:"
        return sorted(str(k)[len(prefix) :] for k in self.r.scan_iter(match=f"{prefix}*", count=1000))

    # overview
    def latest_failures(self, n: int = 10) -> list[dict[str, str]]:
        return [json.loads(f) for f in self.r.lrange(self.FAILURES, 0, n - 1)]  # type: ignore[union-attr]

    def rate(self, minutes: int = 1) -> dict[str, float]:
        """Chunks embedded and reused per second over the last ``minutes`` and the current one."""
        now = time.time()
        this_minute = int(now // 60)
        pipe = self.r.pipeline()
        for m in range(this_minute - minutes, this_minute + 1):
            pipe.hgetall(self._rate_key(m))
        buckets = pipe.execute()
        seconds = minutes * 60 + now % 60
        return {
            kind: round(sum(int(b.get(kind, 0)) for b in buckets) / seconds, 2)
            for kind in ("embedded", "reused")
        }
