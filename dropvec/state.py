"""Per-file and per-run state in Redis, shared by producer, workers and the CLI.

Keys (all under ``config.settings.KEY_PREFIX``):

    {p}:file:{doc_id}          hash   path, status, reason, sha256, chunks_total, chunks_done,
                                      task_count, run_id, updated_at
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

_TASK_DONE = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('HINCRBY', KEYS[3], 'chunks_done', ARGV[2])
if redis.call('HGET', KEYS[2], 'run_id') ~= ARGV[5] then return 1 end
redis.call('HINCRBY', KEYS[2], 'chunks_done', ARGV[2])
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[2], 'status', 'indexed', 'updated_at', ARGV[4], 'reason', '')
  redis.call('HINCRBY', KEYS[3], 'files_done', 1)
else
  redis.call('HSET', KEYS[2], 'status', 'indexing', 'updated_at', ARGV[4])
end
return 1
"""


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

    def all_files(self) -> list[dict[str, str]]:
        ids = sorted(self.r.smembers(f"{KEY_PREFIX}:files"))  # type: ignore[arg-type]
        pipe = self.r.pipeline()
        for doc_id in ids:
            pipe.hgetall(self.file_key(doc_id))
        return [{"doc_id": d, **h} for d, h in zip(ids, pipe.execute(), strict=True) if h]

    # runs
    def start_run(self, run_id: str) -> None:
        key = self.run_key(run_id)
        pipe = self.r.pipeline()
        pipe.hset(key, mapping={"started_at": f"{time.time():.3f}"})
        pipe.expire(key, RUN_TTL_SECONDS)
        pipe.execute()

    def file_queued(
        self, run_id: str, doc_id: str, *, path: str, sha256: str, chunks: int, tasks: int, model: str
    ) -> None:
        """Record a file about to be enqueued; must happen before its tasks are sent."""
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
                "chunks_total": chunks,
                "chunks_done": 0,
                "task_count": tasks,
                "run_id": run_id,
                "updated_at": f"{time.time():.3f}",
            },
        )
        pipe.sadd(f"{KEY_PREFIX}:files", doc_id)
        pipe.hincrby(self.run_key(run_id), "files", 1)
        pipe.hincrby(self.run_key(run_id), "chunks_total", chunks)
        pipe.execute()

    def file_ended_early(self, run_id: str, doc_id: str, *, path: str, status: Status, reason: str) -> None:
        """A file that never reached the queue: skipped or failed in the producer."""
        self.set_file(doc_id, path=path, status=status, reason=reason, run_id=run_id)
        self._count_problem(run_id, path, status, reason, new_file=True)

    def task_done(self, run_id: str, doc_id: str, task_index: int, chunks: int, task_count: int) -> bool:
        """Count a written task once, however often it is delivered. True if counted now."""
        done_key = f"{KEY_PREFIX}:done:{run_id}:{doc_id}"
        args = [task_index, chunks, task_count, f"{time.time():.3f}", run_id, RUN_TTL_SECONDS]
        keys = [done_key, self.file_key(doc_id), self.run_key(run_id)]
        return bool(self._task_done(keys=keys, args=args))

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
