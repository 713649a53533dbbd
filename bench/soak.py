"""The soak: a real watched folder under random adds, edits, renames, moves, deletes and copies for
some minutes, with a worker killed with SIGKILL and Redis and Milvus restarted at random moments;
then, once the folder is quiet, the time until ``dropvec check`` finds nothing, and whether the
stored chunks are exactly the folder's, each once.

    .venv/bin/python -m bench.soak [MINUTES] [--seed N] [--workers N] [--json]

Starts its own Valkey, Milvus (embedded) and workers on free ports, and ``dropvec watch`` as a
process, under a temporary folder. Reports operations done, faults injected, the RSS of every
process over the run (first, peak and last sample, per minute), the time from a quiet folder to
a clean check, and what the final comparison found. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from dropvec.check import check
from dropvec.config.errors import DropvecError, InputFileError
from dropvec.config.ids import doc_id_for, ids_digest
from dropvec.config.settings import Settings
from dropvec.ledger.state import StateStore
from dropvec.producer.enqueue import Producer
from dropvec.producer.files import expand
from dropvec.stack import Service, free_port, start_milvus, start_redis, start_workers
from dropvec.status import live_workers
from dropvec.workers.store import DOC_ID, GENERATION, ID, count_rows, iter_rows

#: Kinds of operation on the folder, and how often each is drawn.
OPERATIONS = {"add": 4, "edit": 3, "rename": 2, "move": 1, "delete": 2, "copy": 1}
FAULTS = ("kill a worker", "restart Redis", "restart Milvus")
SUBFOLDERS = ("a", "b", "c/d")
#: The folder holds at most this many files (adds give way to deletes beyond it).
MAX_FILES = 40
#: A task of a killed worker comes back this soon.
LEASE_SECONDS = 10


@dataclass
class Result:
    seconds: float
    operations: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    files: int = 0
    chunks: int = 0
    quiet_to_clean_seconds: float | None = None
    findings: dict[str, int] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    #: What the watch's periodic checks repaired, as it logged it (one line per repair).
    repairs: list[str] = field(default_factory=list)
    #: Process name -> MB at each sample (one sample every ``rss_every`` seconds).
    rss_mb: dict[str, list[float]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return self.quiet_to_clean_seconds is not None and not self.mismatches


def text(rng: random.Random) -> str:
    """A few paragraphs no other file has (so that each file's chunks are its own)."""
    token = uuid.UUID(int=rng.getrandbits(128)).hex
    return "\n\n".join(
        f"Paragraph {i} of note {token}. " + "It says something about the soak. " * rng.randint(3, 20)
        for i in range(rng.randint(1, 6))
    )


class Folder:
    """The watched folder and the random operations on it."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root, self.rng = root, rng
        for sub in SUBFOLDERS:
            (root / sub).mkdir(parents=True, exist_ok=True)

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def new_path(self, suffix: str = ".md") -> Path:
        return (
            self.root
            / self.rng.choice(SUBFOLDERS)
            / f"{uuid.UUID(int=self.rng.getrandbits(128)).hex[:8]}{suffix}"
        )

    def operate(self) -> str:
        files = self.files()
        kind = self.rng.choices(list(OPERATIONS), weights=list(OPERATIONS.values()))[0]
        if not files or (kind != "delete" and len(files) >= MAX_FILES and kind in ("add", "copy")):
            kind = "add" if not files else "delete"
        path = self.rng.choice(files) if files else None
        if kind == "add":
            _write(self.new_path(self.rng.choice([".md", ".txt"])), text(self.rng))
        elif kind == "edit" and path:
            _write(path, text(self.rng))
        elif kind == "rename" and path:
            path.rename(path.with_name(f"{uuid.UUID(int=self.rng.getrandbits(128)).hex[:8]}{path.suffix}"))
        elif kind == "move" and path:
            target = self.new_path(path.suffix)
            path.rename(target)
        elif kind == "delete" and path:
            path.unlink()
        elif kind == "copy" and path:
            shutil.copy(path, self.new_path(path.suffix))
        return kind


def _write(path: Path, content: str) -> None:
    """As an editor saves: a temporary file renamed over the old one."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(content)
    temp.replace(path)


class Stack:
    """Redis, Milvus, workers and ``dropvec watch``, each of which may be killed and restarted."""

    def __init__(self, settings: Settings, folder: Path, workers: int) -> None:
        self.settings, self.folder, self.logs = settings, folder, settings.data_dir / "logs"
        self.redis = self._started(start_redis(settings, settings.data_dir))
        self.milvus = self._started(start_milvus(settings, settings.data_dir))
        self.workers = start_workers(settings, workers, self.logs)
        self.next_worker = workers
        deadline = time.monotonic() + 300
        while len(live_workers(settings)) < workers and time.monotonic() < deadline:
            time.sleep(1)
        self.watch_log = self.logs / "watch.log"
        with self.watch_log.open("ab") as out:
            self.watch = subprocess.Popen(
                [sys.executable, "-m", "dropvec", "watch", str(folder)],
                env={**os.environ, **settings.to_env()}, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        while b"watching" not in self.watch_log.read_bytes():
            if self.watch.poll() is not None:
                raise RuntimeError(self.watch_log.read_text())
            time.sleep(0.5)

    @staticmethod
    def _started(service: Service | None) -> Service:
        if service is None:
            raise RuntimeError("a server already answers on a port that was just free")
        return service

    def fault(self, kind: str, rng: random.Random) -> None:
        if kind == "kill a worker":
            victim = rng.choice(self.workers)
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            self.workers.remove(victim)
            self.workers += start_workers(self.settings, 1, self.logs, first=self.next_worker)
            self.next_worker += 1
        elif kind == "restart Redis":
            self.redis.stop()
            self.redis = self._started(start_redis(self.settings, self.settings.data_dir))
        else:
            self.milvus.stop()
            time.sleep(rng.uniform(0, 5))
            self.milvus = self._started(start_milvus(self.settings, self.settings.data_dir))

    def processes(self) -> dict[str, psutil.Process]:
        named = {"redis": self.redis.proc, "milvus": self.milvus.proc, "watch": self.watch}
        named |= {s.name: s.proc for s in self.workers}
        found = {}
        for name, proc in named.items():
            try:
                found[name] = psutil.Process(proc.pid)
            except psutil.NoSuchProcess:
                continue
        return found

    def stop(self) -> None:
        self.watch.send_signal(signal.SIGINT)
        try:
            self.watch.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.watch.kill()
        for service in [*self.workers, self.milvus, self.redis]:
            if service.proc.poll() is None:
                service.stop()


def rss_mb(proc: psutil.Process) -> float:
    """The resident memory of a process and its children (Milvus's server runs as a child)."""
    try:
        family = [proc, *proc.children(recursive=True)]
        return round(sum(p.memory_info().rss for p in family) / 2**20, 1)
    except psutil.Error:
        return 0.0


def verify(settings: Settings, folder: Path) -> list[str]:
    """Where the stored chunks are not exactly the folder's, each once: for every file, its chunk
    ids at the ledger's version, made afresh from its content, against the ids stored of it."""
    producer = Producer.from_settings(settings)
    state = StateStore.from_settings(settings)
    stored: dict[str, Counter[tuple[int, str]]] = {}
    rows = 0
    for page in iter_rows(settings, [ID, DOC_ID, GENERATION]):
        for row in page:
            stored.setdefault(row[DOC_ID], Counter())[(int(row[GENERATION]), row[ID])] += 1
            rows += 1
    problems = []
    if (total := count_rows(settings)) != rows:
        problems.append(f"{total - rows} row(s) stored twice")
    for path in expand([folder], settings.ignore):
        doc = doc_id_for(str(path))
        record = state.record(doc)
        mine = stored.pop(doc, Counter())
        try:
            version = producer.version_of(path, record.generation if record else 0)
        except InputFileError as exc:
            problems += [f"{path}: {exc.reason}"] if mine else []
            continue
        ids = {i for (_, i) in mine}
        generations = {g for (g, _) in mine}
        if (
            record is None
            or generations != {record.generation}
            or len(ids) != version.chunks
            or ids_digest(ids) != version.ids
        ):
            problems.append(f"{path}: stored {len(ids)} row(s) of versions {sorted(generations)}, "
                            f"the file makes {version.chunks} chunk(s)")  # fmt: skip
    problems += [f"{sum(c.values())} row(s) of doc {doc}, no file of the folder" for doc, c in stored.items()]
    return problems


def soak(root: Path, seconds: float, *, seed: int = 7, workers: int = 2, rss_every: float = 5.0,
         fault_every: tuple[float, float] = (40, 90), clean_within: float = 600) -> Result:  # fmt: skip
    """Run the soak under ``root`` for ``seconds`` of operations; the figures."""
    rng = random.Random(seed)
    port = free_port()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=f"redis://127.0.0.1:{free_port()}/0", milvus_uri=f"http://127.0.0.1:{port}",
        collection="dropvec_soak", data_dir=root / "data", inbox=root / "inbox", log_level="INFO",
        task_lease_seconds=LEASE_SECONDS, check_interval=30, settle_seconds=0.3,
    )  # fmt: skip
    settings.prepare_environment(quiet=True)
    (root / "inbox").mkdir(parents=True, exist_ok=True)
    folder = Folder(root / "inbox", rng)
    result = Result(seconds)
    stack = Stack(settings, settings.inbox.absolute(), workers)
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(rss_every):
            for name, proc in stack.processes().items():
                result.rss_mb.setdefault(name, []).append(rss_mb(proc))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        end = time.monotonic() + seconds
        next_fault = time.monotonic() + rng.uniform(*fault_every)
        first_fault = rng.randrange(len(FAULTS))
        while time.monotonic() < end:
            kind = folder.operate()
            result.operations[kind] = result.operations.get(kind, 0) + 1
            if time.monotonic() >= next_fault:
                kind = FAULTS[(first_fault + sum(result.faults.values())) % len(FAULTS)]  # (each in turn)
                stack.fault(kind, rng)
                result.faults[kind] = result.faults.get(kind, 0) + 1
                next_fault = time.monotonic() + rng.uniform(*fault_every)
            time.sleep(rng.uniform(0.1, 1.5))
        quiet = time.monotonic()
        while time.monotonic() - quiet < clean_within:
            try:
                report = check(settings, settings.inbox)
                result.findings = {f: n for f, n in report.counts().items() if n}
                if report.clean:
                    result.quiet_to_clean_seconds = round(time.monotonic() - quiet, 1)
                    break
            except DropvecError as exc:
                result.findings = {f"error: {exc}": 1}
            time.sleep(5)
        result.mismatches = verify(settings, settings.inbox)
        result.files = len(folder.files())
        result.chunks = count_rows(settings)
    finally:
        sampling.set()
        stack.stop()
    log = stack.watch_log.read_text(errors="replace").splitlines()
    result.repairs = [
        line.split("WARNING dropvec.sync: ", 1)[-1] for line in log if "dropvec.sync: repair" in line
    ]
    return result


def rss_table(result: Result) -> list[str]:
    lines = [f"{'process':12} {'first MB':>9} {'peak MB':>9} {'last MB':>9} {'samples':>8}"]
    for name, mb in sorted(result.rss_mb.items()):
        lines.append(f"{name:12} {mb[0]:9.1f} {max(mb):9.1f} {mb[-1]:9.1f} {len(mb):8d}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("minutes", nargs="?", type=float, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dropvec-soak-") as tmp:
        result = soak(Path(tmp), args.minutes * 60, seed=args.seed, workers=args.workers, rss_every=15)
    if args.json:
        return print(json.dumps({**asdict(result), "clean": result.clean}, indent=2))
    ops = sum(result.operations.values())
    print(f"soak of {args.minutes:g} min: {ops} operations ({dict(result.operations)}), "
          f"{sum(result.faults.values())} faults ({dict(result.faults)})")  # fmt: skip
    print(f"end: {result.files} files, {result.chunks} chunks stored; quiet to clean check: "
          f"{result.quiet_to_clean_seconds} s; findings {result.findings or 'none'}")  # fmt: skip
    print("stored chunks are exactly the folder's" if not result.mismatches else "\n".join(result.mismatches))
    print("\n".join(f"the watch: {line}" for line in result.repairs) or "the watch repaired nothing")
    print("\n".join(rss_table(result)))


if __name__ == "__main__":
    main()
