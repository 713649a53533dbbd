"""Per-file and per-run state in Redis, shared by producer, workers and the CLI.

Keys (all under ``config.settings.KEY_PREFIX``):

    {p}:file:{doc_id}          hash   path, status, reason, sha256, model, chunks_total,
                                      chunks_done, task_count (0 until the last task is sent),
                                      run_id, updated_at
    {p}:files                  set    every doc_id ever seen
    {p}:done:{run_id}:{doc_id} set    task indices already counted (makes redelivery idempotent)
    {p}:run:{run_id}           hash   files, chunks_total, chunks_done, files_done, files_failed,
                                      files_skipped
    {p}:run:{run_id}:problems  list   JSON {path, status, reason} per skipped or failed file

Counting a finished task is one Lua script, so a task that is delivered twice is counted once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import redis

from config.settings import KEY_PREFIX

Status = Literal["queued", "indexing", "indexed", "skipped", "failed"]
#: How long run bookkeeping outlives its last update.
RUN_TTL_SECONDS = 7 * 24 * 3600

# A file is indexed once every one of its tasks is counted and its task count is known (the
# producer sets it after the last task is sent: tasks leave while the file is still being split).
_MAYBE_INDEXED = """
local tasks = tonumber(redis.call('HGET', KEYS[2], 'task_count') or '0')
if tasks > 0 and redis.call('SCARD', KEYS[1]) >= tasks
   and redis.call('HGET', KEYS[2], 'status') ~= 'indexed' then
  redis.call('HSET', KEYS[2], 'status', 'indexed', 'updated_at', ARGV[1], 'reason', '')
  redis.call('HINCRBY', KEYS[3], 'files_done', 1)
end
"""

# KEYS: done set, file hash, run hash. ARGV: now, run_id, task_index, chunks, ttl
_TASK_DONE = (
    """
if redis.call('SADD', KEYS[1], ARGV[3]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('HINCRBY', KEYS[3], 'chunks_done', ARGV[4])
if redis.call('HGET', KEYS[2], 'run_id') ~= ARGV[2] then return 1 end
redis.call('HINCRBY', KEYS[2], 'chunks_done', ARGV[4])
if redis.call('HGET', KEYS[2], 'status') == 'queued' then
  redis.call('HSET', KEYS[2], 'status', 'indexing', 'updated_at', ARGV[1])
end
"""
    + _MAYBE_INDEXED
    + "return 1"
)

# KEYS: done set, file hash, run hash. ARGV: now, tasks, chunks
_FILE_ENQUEUED = (
    """
redis.call('HINCRBY', KEYS[3], 'chunks_total', ARGV[3])
redis.call('HSET', KEYS[2], 'task_count', ARGV[2], 'chunks_total', ARGV[3])
"""
    + _MAYBE_INDEXED
)


@dataclass(frozen=True)
class RunProgress:
    files: int
    chunks_total: int
    chunks_done: int
    files_done: int
    files_failed: int
    files_skipped: int
    problems: list[dict[str, str]]

    @property
    def finished(self) -> bool:
        return self.files_done + self.files_failed + self.files_skipped >= self.files


class StateStore:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._task_done = client.register_script(_TASK_DONE)
        self._file_enqueued = client.register_script(_FILE_ENQUEUED)

    @classmethod
    def from_url(cls, url: str) -> StateStore:
        return cls(redis.Redis.from_url(url, decode_responses=True, socket_timeout=30))

    # keys
    @staticmethod
    def file_key(doc_id: str) -> str:
        return f"{KEY_PREFIX}:file:{doc_id}"

    @staticmethod
    def run_key(run_id: str) -> str:
        return f"{KEY_PREFIX}:run:{run_id}"

    # files
    def get_file(self, doc_id: str) -> dict[str, str]:
        return dict(self.r.hgetall(self.file_key(doc_id)))  # type: ignore[arg-type]

    def set_file(self, doc_id: str, **fields: Any) -> None:
        fields["updated_at"] = f"{time.time():.3f}"
        pipe = self.r.pipeline()
        pipe.hset(self.file_key(doc_id), mapping={k: str(v) for k, v in fields.items()})
        pipe.sadd(f"{KEY_PREFIX}:files", doc_id)
        pipe.execute()

    # runs
    def start_run(self, run_id: str) -> None:
        key = self.run_key(run_id)
        pipe = self.r.pipeline()
        pipe.hset(key, mapping={"started_at": f"{time.time():.3f}"})
        pipe.expire(key, RUN_TTL_SECONDS)
        pipe.execute()

    def _file_keys(self, run_id: str, doc_id: str) -> list[str]:
        return [f"{KEY_PREFIX}:done:{run_id}:{doc_id}", self.file_key(doc_id), self.run_key(run_id)]

    def file_started(self, run_id: str, doc_id: str, *, path: str, sha256: str, model: str) -> None:
        """A file's first task is about to be sent; its task count is not known yet."""
        pipe = self.r.pipeline()
        pipe.delete(f"{KEY_PREFIX}:done:{run_id}:{doc_id}")
        pipe.hset(
            self.file_key(doc_id),
            mapping={
                "path": path,
                "status": "queued",
                "reason": "",
                "sha256": sha256,
                "model": model,
                "chunks_total": 0,
                "chunks_done": 0,
                "task_count": 0,
                "run_id": run_id,
                "updated_at": f"{time.time():.3f}",
            },
        )
        pipe.sadd(f"{KEY_PREFIX}:files", doc_id)
        pipe.hincrby(self.run_key(run_id), "files", 1)
        pipe.execute()

    def file_enqueued(self, run_id: str, doc_id: str, *, chunks: int, tasks: int) -> None:
        """Every task of the file is sent: record how many, and mark it indexed if all are done."""
        self._file_enqueued(keys=self._file_keys(run_id, doc_id), args=[f"{time.time():.3f}", tasks, chunks])

    def file_ended_early(
        self,
        run_id: str,
        doc_id: str,
        *,
        path: str,
        status: Status,
        reason: str,
        started: bool = False,
        keep_file_state: bool = False,
    ) -> None:
        """A file skipped or failed in the producer (``started``: after some of its tasks were sent).

        ``keep_file_state``: only the run counts it (a file skipped as unchanged stays indexed).
        """
        if not keep_file_state:
            self.set_file(doc_id, path=path, status=status, reason=reason, run_id=run_id)
        self._count_problem(run_id, path, status, reason, new_file=not started)

    def task_done(self, run_id: str, doc_id: str, task_index: int, chunks: int) -> bool:
        """Count a written task once, however often it is delivered. True if counted now."""
        args: list[str | int] = [f"{time.time():.3f}", run_id, task_index, chunks, RUN_TTL_SECONDS]
        return bool(self._task_done(keys=self._file_keys(run_id, doc_id), args=args))

    def task_failed(self, run_id: str, doc_id: str, path: str, reason: str) -> None:
        """A task gave up: its file is failed (counted once per file and run)."""
        key = self.file_key(doc_id)
        if self.r.hget(key, "status") == "failed" and self.r.hget(key, "run_id") == run_id:
            return
        self.set_file(doc_id, status="failed", reason=reason)
        self._count_problem(run_id, path, "failed", reason, new_file=False)

    def _count_problem(self, run_id: str, path: str, status: Status, reason: str, *, new_file: bool) -> None:
        key = self.run_key(run_id)
        pipe = self.r.pipeline()
        if new_file:
            pipe.hincrby(key, "files", 1)
        pipe.hincrby(key, "files_failed" if status == "failed" else "files_skipped", 1)
        pipe.rpush(f"{key}:problems", json.dumps({"path": path, "status": status, "reason": reason}))
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
        )
