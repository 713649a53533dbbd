"""The performance harness: dropvec against the LlamaIndex pipelines users would otherwise pick,
on the same corpus, model and Milvus, in one run.

    .venv/bin/python -m bench.perf [--corpus DIR] [--repeat N] [--json] [--skip quality,store,big]
        [--systems ceiling,st-int8,dropvec,...] [--every N] [--peer-batch 1,32] [--chart docs/perf.svg]

Rows (corpus seconds, chunks/s, ratio to the best peer, ratio to the ceiling, peak RSS):
- ceiling: the default backend's own encode of dropvec's chunks (``get_text_embedding_batch``),
  laid out as ``up`` lays out its workers (on 2 cores: 2 processes of 1 thread, each encoding
  every other batch; the rows' "/ceiling" is against it); ``ceiling-1``: the same in one process
  with every core's threads, as the peers run;
- the sentence-transformers int8 recipe's encode of the same chunks (``export_dynamic_quantized_
  onnx_model(model, "avx512_vnni")`` loaded by ``HuggingFaceEmbedding(backend="onnx")``);
- dropvec end to end (``ingest`` to the last chunk written) with the default ``up`` layout and
  with 1 worker process;
- LlamaIndex ``IngestionPipeline.arun`` (``SentenceSplitter`` + ``HuggingFaceEmbedding``, into
  ``MilvusVectorStore``) on torch and on that int8 recipe (the strongest configuration a skilled
  user would run), and the tutorial's ``VectorStoreIndex.from_documents(use_async=True)`` on
  torch, all with the same chunk size as dropvec. Each peer runs once for each ``--peer-batch``
  size, chunks a model call (default: 1 and dropvec's batch, 32): sentence-transformers pads a
  batch to its longest text, and which of the two is a peer's fastest depends on the CPU and on
  the chunks (docs/benchmarks.md). The strongest peer is the one of least corpus seconds: the
  "/best peer" column is against it, and a line under each dropvec row gives its share of that
  peer's time.
The peers are given the documents as dropvec reads them (both 10-Ks are encrypted, and one is
damaged: llama-index's own PDF reader gets no text from them); their reading time is measured
and reported beside their pipeline time, and counted in their corpus seconds, as dropvec's is.
Each system runs in a process of its own, whose peak RSS over its life is read from the kernel
(VmHWM) as it ends; dropvec's row gives one worker process's peak (the higher of the two), its
model's loading included. ``--systems``
picks rows (default: all); ``--chart FILE`` draws chunks/s per system and the ceiling
(matplotlib, the ``bench`` extra).

The ceiling and dropvec rows are measured ``--repeat`` times (default 3), in turns, and each gives
its median run (all runs are listed): a shared machine's speed drifts by some 5% from one minute
to the next, as much as the gap between dropvec and its ceiling. The peers, at half the speed,
run once.

Then, unless skipped: the quality gate (``bench.quality``, every backend on the labelled
questions), the write path and search latency (``bench.store``), and the producer's peak RSS on a
``--big-mb`` text file (``bench.burst``'s big-file part). Starts its own Valkey and Milvus under a
temporary folder. Prints figures; asserts nothing. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.core import (
    SEED,
    chunk_texts,
    drop_collection,
    encode_seconds,
    end_to_end,
    high_water_mb,
    private_settings,
    start_services,
)

PEERS = {
    "pipeline": "llamaindex IngestionPipeline.arun (torch)",
    "pipeline-int8": "llamaindex IngestionPipeline.arun (ST int8 ONNX recipe)",
    "tutorial": "llamaindex VectorStoreIndex.from_documents(use_async) (torch)",
}
SYSTEMS = ("ceiling", "ceiling-1", "st-int8", "dropvec", "dropvec-1", *PEERS)


def in_own_process(role: str, settings: Any, files: list[Path], peer_batch: int) -> dict[str, Any]:
    """Run ``role`` (a peer, or the recipe's encode) in a new process; its JSON row with its peak RSS."""
    cmd = [sys.executable, "-m", "bench.perf", "--role", role, "--peer-batch", str(peer_batch)]
    cmd += ["--files", *map(str, files)]
    proc = subprocess.Popen(cmd, env={**os.environ, **settings.to_env()}, stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{role} failed with exit code {proc.returncode}")
    row = json.loads(out.strip().splitlines()[-1])
    return {**row, "peak_rss_mb": round(row["peak_rss_mb"])}


def documents(files: list[Path]) -> list[Any]:
    from llama_index.core import Document

    from dropvec.producer.read import read_sections

    return [
        Document(text=s.text, metadata={"file_name": f.name, **s.metadata})
        for f in files
        for s in read_sections(f)
    ]


def ceiling_in_layout(settings: Any, files: list[Path], processes: int) -> dict[str, Any]:
    """The ceiling laid out as ``up`` lays out its workers: ``processes`` processes of
    ``threads_per_process(processes)`` threads, batch i of the chunks to process i mod n (as tasks
    spread over workers). Each loads its model and chunks, then all start together; the seconds
    run from the first start to the last end. Peak RSS: the highest process's."""
    env = {**os.environ, **settings.to_env()}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.perf", "--role", "ceiling", "--share", f"{i}/{processes}"]
            + ["--files", *map(str, files)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(processes)
    ]
    for proc in procs:  # each says when its model is loaded and warm
        assert proc.stdout is not None and proc.stdin is not None
        while (line := proc.stdout.readline()) and line.strip() != "ready":
            pass
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outs = [proc.communicate()[0] for proc in procs]
    if any(proc.returncode for proc in procs):
        raise SystemExit(f"the ceiling failed: exit codes {[proc.returncode for proc in procs]}")
    shares = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    threads = settings.threads_per_process(processes)
    layout = (
        f"{processes} process{'es' if processes > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}"
    )
    return {
        "system": f"ceiling: {settings.resolved_backend()} encode, {layout}",
        "key": "ceiling" if processes == settings.worker_processes() else "ceiling-1",
        "chunks": sum(s["chunks"] for s in shares),
        "seconds": max(s["end"] for s in shares) - min(s["start"] for s in shares),
        "peak_rss_mb": round(max(s["peak_rss_mb"] for s in shares)),
        "embed_cpu_s": round(sum(s["cpu_s"] for s in shares), 2),
    }


def role_ceiling(settings: Any, files: list[Path], share: str) -> dict[str, Any]:
    """Share ``i/n`` of the ceiling: every n-th batch of dropvec's chunks from the i-th, encoded
    in the worker's batches, once the parent says go (see ``ceiling_in_layout``)."""
    from dropvec.workers.embed import load_embedder

    i, n = map(int, share.split("/"))
    texts, batch = chunk_texts(settings, files), settings.batch_size()
    mine = [t for first in range(i * batch, len(texts), n * batch) for t in texts[first : first + batch]]
    model = load_embedder(settings.model_copy(update={"torch_threads": settings.threads_per_process(n)}))
    model.get_text_embedding_batch(mine[:64])
    print("ready", flush=True)
    sys.stdin.readline()
    start, cpu = time.time(), time.process_time()
    model.get_text_embedding_batch(mine)
    return {"chunks": len(mine), "start": start, "end": time.time(), "cpu_s": time.process_time() - cpu}


def st_int8(settings: Any, batch: int) -> Any:
    """``HuggingFaceEmbedding`` on sentence-transformers' own int8 recipe for this CPU, exported
    (untimed) into a folder of its own: what the sentence-transformers efficiency guide has a
    LlamaIndex user run."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    from dropvec.workers.embed import quantization_recipe

    recipe = quantization_recipe()
    folder = Path(tempfile.mkdtemp(prefix="dropvec-bench-st-int8-"))
    atexit.register(shutil.rmtree, folder, True)  # (the role's process ends after its row)
    model = SentenceTransformer(settings.embed_model_path, backend="onnx", device="cpu")
    model.save_pretrained(str(folder))
    export_dynamic_quantized_onnx_model(model, recipe, str(folder))
    # (named by its weights' type: model_qint8_avx512_vnni.onnx, but model_quint8_avx2.onnx)
    exported = next((folder / "onnx").glob(f"model_*_{recipe}.onnx"))
    return HuggingFaceEmbedding(
        model_name=str(folder), backend="onnx", device="cpu", embed_batch_size=batch,
        model_kwargs={"file_name": f"onnx/{exported.name}"},
    )  # fmt: skip


def role_st_int8(settings: Any, files: list[Path], batch: int) -> dict[str, Any]:
    texts = chunk_texts(settings, files)
    seconds = encode_seconds(st_int8(settings, batch), texts)
    system = f"sentence-transformers int8 recipe encode, batch {batch}"
    return {"system": system, "chunks": len(texts), "seconds": seconds}


def role_peer(settings: Any, files: list[Path], role: str, batch: int) -> dict[str, Any]:
    from llama_index.core import Settings as LlamaSettings
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.milvus import MilvusVectorStore

    where = ""
    if role == "pipeline-int8":
        embed = st_int8(settings, batch)
    else:  # on a GPU in fp16, as a skilled user would run it (and as dropvec's workers do)
        from dropvec.workers.embed import torch_gpu_options

        device = settings.resolved_device()
        gpu: dict[str, Any] = {"model_kwargs": torch_gpu_options()} if device.startswith("cuda") else {}
        where = f", fp16 on {device}" if gpu else ""
        embed = HuggingFaceEmbedding(
            model_name=settings.embed_model_path, device=device, embed_batch_size=batch, **gpu
        )
    began = time.perf_counter()
    docs = documents(files)
    read_seconds = time.perf_counter() - began
    store = MilvusVectorStore(
        uri=settings.milvus_uri,
        collection_name="bench_peer",
        dim=384,
        overwrite=True,
        similarity_metric="COSINE",
    )
    splitter = SentenceSplitter(chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap)
    start = time.perf_counter()
    if role == "tutorial":
        LlamaSettings.embed_model, LlamaSettings.node_parser = embed, splitter
        storage = StorageContext.from_defaults(vector_store=store)
        VectorStoreIndex.from_documents(docs, storage_context=storage, use_async=True)
        seconds = time.perf_counter() - start
        # the index keeps no node list when the store holds the text: count what it stored
        count = store.client.query("bench_peer", output_fields=["count(*)"], consistency_level="Strong")
        chunks = int(count[0]["count(*)"])
    else:
        pipeline = IngestionPipeline(transformations=[splitter, embed], vector_store=store)
        chunks = len(asyncio.run(pipeline.arun(documents=docs)))
        seconds = time.perf_counter() - start
    store.client.drop_collection("bench_peer")
    return {
        "system": f"{PEERS[role]}, batch {batch}{where}", "chunks": chunks, "seconds": read_seconds + seconds,
        "pipeline_seconds": seconds, "read_seconds": read_seconds,
    }  # fmt: skip


def dropvec_end_to_end(
    settings: Any, files: list[Path], workers: int, root: Path, label: str = ""
) -> dict[str, Any]:
    """``ingest`` into a new collection (nothing reused from the run before) with ``workers`` warm
    worker processes."""
    drop_collection(settings)
    run = end_to_end(settings, files, workers, root, first=10 * workers)
    noun = "process" if workers == 1 else "processes"
    return {
        "system": f"dropvec end to end, {workers} worker {noun}" + (f" ({label})" if label else ""),
        "chunks": run.chunks,
        "seconds": run.seconds,
        "peak_rss_mb": round(run.peak_mb),  # one worker process's
        "embed_cpu_s": round(run.workers_cpu_s, 2),  # (its workers')
        "producer_cpu_s": round(run.producer_cpu_s, 2),
        "producer_peak_rss_mb": round(high_water_mb()),  # (this process: the producer and the harness)
    }


def throughput(
    settings: Any,
    files: list[Path],
    root: Path,
    repeat: int = 1,
    systems: tuple[str, ...] = SYSTEMS,
    peer_batches: tuple[int, ...] = (),
) -> list[dict[str, Any]]:
    default = settings.worker_processes()
    measured: list[Callable[[], dict[str, Any]]] = []
    if "ceiling" in systems:
        measured.append(partial(ceiling_in_layout, settings, files, default))
    if "ceiling-1" in systems and default != 1:
        measured.append(partial(ceiling_in_layout, settings, files, 1))
    if "dropvec" in systems:
        measured.append(
            partial(dropvec_end_to_end, settings, files, default, root, label="default `up` layout")
        )
    if "dropvec-1" in systems and default != 1:
        measured.append(partial(dropvec_end_to_end, settings, files, 1, root))
    runs: list[list[dict[str, Any]]] = [[] for _ in measured]
    for _ in range(repeat):  # in turns: a slow spell of the machine falls on every row alike
        for system, done in zip(measured, runs, strict=True):
            done.append(system())
    rows = [median_run(done) for done in runs]
    batches = dict.fromkeys(peer_batches or (1, settings.batch_size()))  # (each size once)
    for role in (r for r in ("st-int8", *PEERS) if r in systems):
        for batch in batches:
            try:
                rows.append(in_own_process(role, settings, files, batch))
            except SystemExit as exc:  # a peer that fails loses its row, not the rows measured before it
                print(exc, file=sys.stderr)
    return compare(rows)


def compare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with their chunks/s and their ratios to the strongest peer and to the ceiling."""
    for row in rows:
        row["chunks_per_s"] = row["chunks"] / row["seconds"]
    peers = [r for r in rows if r["system"].startswith(tuple(PEERS.values()))]
    # the strongest by corpus seconds: each splitter makes its own number of chunks
    best = min(peers, key=lambda r: r["seconds"]) if peers else None
    ceiling = next((r["chunks_per_s"] for r in rows if r.get("key") == "ceiling"), None)
    for row in rows:
        row["ratio_to_best_peer"] = row["chunks_per_s"] / best["chunks_per_s"] if best else None
        row["ratio_to_ceiling"] = row["chunks_per_s"] / ceiling if ceiling else None
        if best and row["system"].startswith("dropvec"):
            row["best_peer"] = best["system"]
            row["time_to_best_peer"] = row["seconds"] / best["seconds"]
    # the same round's ceiling run, measured beside it: the machine's drift from one round to the
    # next falls on both
    rounds = next((r["runs_chunks_per_s"] for r in rows if r.get("key") == "ceiling"), [])
    for row in rows:
        if row.get("key") != "ceiling" and len(row.get("runs_chunks_per_s", [])) == len(rounds) > 1:
            runs = zip(row["runs_chunks_per_s"], rounds, strict=True)
            row["rounds_ratio_to_ceiling"] = [x / c for x, c in runs]
    return rows


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median time, with every run's chunks/s and the highest peak RSS of them all."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["runs_chunks_per_s"] = [round(r["chunks"] / r["seconds"], 1) for r in runs]
    if all("embed_cpu_s" in r for r in runs):  # (what the run cost its embedding processes)
        row["runs_cpu_ms_per_chunk"] = [round(1000 * r["embed_cpu_s"] / r["chunks"], 2) for r in runs]
        row["median_cpu_ms_per_chunk"] = round(statistics.median(row["runs_cpu_ms_per_chunk"]), 2)
    row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return row


def batch_sizes(text: str) -> tuple[int, ...]:
    """``--peer-batch``'s sizes: "1,32" is (1, 32)."""
    try:
        sizes = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"not a list of batch sizes: {text!r}")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=SEED, help="a folder (default: the seed corpus)")
    parser.add_argument("--skip", default="", help="comma-separated: quality, store, big")
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the ceiling and dropvec rows")
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    parser.add_argument("--every", type=int, default=1, help="take every Nth file of the corpus (a sample)")
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {', '.join(SYSTEMS)}"
    )
    parser.add_argument(
        "--peer-batch",
        type=batch_sizes,
        default=(),
        help="comma-separated chunks per model call, each peer run at each (default: 1 and dropvec's)",
    )
    parser.add_argument("--chart", type=Path, help="draw chunks/s per system into this SVG or PNG file")
    parser.add_argument("--role", choices=["ceiling", "st-int8", *PEERS], help=argparse.SUPPRESS)
    parser.add_argument("--files", nargs="*", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--share", default="0/1", help=argparse.SUPPRESS)
    args = parser.parse_args()

    from dropvec.config.settings import Settings

    if args.role:  # one system, in a process of its own (see in_own_process)
        settings = Settings()
        settings.prepare_environment()
        if args.role == "ceiling":
            row = role_ceiling(settings, args.files, args.share)
        elif args.role == "st-int8":
            row = role_st_int8(settings, args.files, args.peer_batch[0])
        else:
            row = role_peer(settings, args.files, args.role, args.peer_batch[0])
        print(json.dumps({**row, "peak_rss_mb": high_water_mb()}))  # (its own, before it ends)
        return

    if args.chart:
        import matplotlib  # noqa: F401 - missing, say so now, not after an hour of runs

    skip = set(filter(None, args.skip.split(",")))
    files = sorted(p.absolute() for p in args.corpus.rglob("*") if p.is_file() and not p.name.startswith("."))
    files = files[:: max(1, args.every)]
    root = Path(tempfile.mkdtemp(prefix="dropvec-bench-perf-"))
    settings, _ = private_settings(root, own_milvus=True)
    services = start_services(settings)
    try:
        systems = tuple(filter(None, args.systems.split(",")))
        rows = throughput(settings, files, root, max(1, args.repeat), systems, args.peer_batch)
    finally:
        for s in reversed(services):
            s.stop()
    labelled = [f for f in files if f.parent == SEED]  # the questions are on the seed corpus
    if "quality" not in skip and labelled:
        from bench.quality import run

        rows += run(settings, labelled)
    extra = [("store", ["bench.store", "--json"]), ("big", ["bench.burst", "--files", "0", "--json"])]
    for name, cmd in extra:
        if name not in skip:
            more = ["--big-mb", str(args.big_mb)] if name == "big" else []
            out = subprocess.run(
                [sys.executable, "-m", *cmd, *more], capture_output=True, text=True, check=True
            )
            rows += [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if args.json:
        for row in rows:
            print(json.dumps(row), flush=True)
    else:
        print_rows(settings, files, rows)
    if args.chart:  # (after the rows: a missing plotting library loses no figures)
        chart(rows, f"{args.corpus.name} ({len(files)} files)", args.chart)


def print_rows(settings: Any, files: list[Path], rows: list[dict[str, Any]]) -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores ({cpu}), Python {sys.version.split()[0]}")
    names = ", ".join(f.name for f in files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    print(f"corpus: {len(files)} files ({names}); chunk size {settings.chunk_size} tokens")
    head = f"{'chunks':>6} {'s':>7} {'chunks/s':>8} {'/best peer':>10} {'/ceiling':>8} {'RSS MB':>7}"
    print(f"\n{'system':66} {head}")

    def ratio(x: float | None, fmt: str, unit: str = "") -> str:
        return format(x, fmt) + unit if x is not None else "-".rjust(len(format(1.0, fmt)) + len(unit))

    for r in rows:
        if "chunks_per_s" in r and "seconds" in r:  # (a quality row has chunks/s too: below)
            print(
                f"{r['system']:66} {r['chunks']:6d} {r['seconds']:7.1f} {r['chunks_per_s']:8.1f} "
                f"{ratio(r['ratio_to_best_peer'], '9.2f', 'x')} {ratio(r['ratio_to_ceiling'], '7.0%')} "
                f"{r['peak_rss_mb']:7d}"
            )
    for r in rows:
        if len(r.get("runs_chunks_per_s", [])) > 1:
            print(f"  {r['system']}: median of {', '.join(map(str, r['runs_chunks_per_s']))} chunks/s")
        if "rounds_ratio_to_ceiling" in r:
            each = r["rounds_ratio_to_ceiling"]
            print(f"    against its round's ceiling run: {', '.join(f'{x:.0%}' for x in each)} "
                  f"(median {statistics.median(each):.0%})")  # fmt: skip
        if "runs_cpu_ms_per_chunk" in r:
            each = r["runs_cpu_ms_per_chunk"]
            producer = (
                f"; the producer's process {r['producer_cpu_s']:.1f} s" if "producer_cpu_s" in r else ""
            )
            print(f"    CPU of its embedding processes: {', '.join(map(str, each))} ms a chunk "
                  f"(median {r['median_cpu_ms_per_chunk']}){producer}")  # fmt: skip
        if "time_to_best_peer" in r:
            print(f"    {r['time_to_best_peer']:.2f} of the strongest peer's corpus time ({r['best_peer']})")
        if "read_seconds" in r:
            print(
                f"  {r['system']}: reading {r['read_seconds']:.1f} s + pipeline {r['pipeline_seconds']:.1f} s"
            )
    quality = [r for r in rows if "recall_at_5" in r]
    if quality:
        print()
        from bench.quality import print_rows as print_quality

        print_quality(quality)
    for r in rows:
        if "vectors_per_s" in r:
            print(f"{r['system']:66} {r['vectors_per_s']:9.0f} vectors/s")
        elif "p50_ms" in r:
            print(f"{r['system']:66} p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms")
        elif "max_queue_depth" in r:
            print(f"{r['system']}: {r['seconds']} s, peak RSS MB {r['peak_rss_mb']}; {r['summary']}")


def chart(rows: list[dict[str, Any]], corpus: str, path: Path) -> None:
    """Chunks/s per system as horizontal bars, the ceiling as a line (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in rows if "seconds" in r and "chunks_per_s" in r]  # (not the quality rows)
    bars = [r for r in timed if r.get("key") != "ceiling"]
    ceiling = next((r for r in rows if r.get("key") == "ceiling"), None)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(bars) + 1.6))
    colours = ["#2b6cb0" if r["system"].startswith("dropvec") else "#a0aec0" for r in bars]
    ax.barh([r["system"] for r in bars], [r["chunks_per_s"] for r in bars], color=colours)
    for i, r in enumerate(bars):
        ax.text(
            r["chunks_per_s"], i, f" {r['chunks_per_s']:.0f}/s, {r['seconds']:.0f} s", va="center", fontsize=8
        )
    if ceiling:
        label = f"{ceiling['system']}: {ceiling['chunks_per_s']:.0f}/s"
        ax.axvline(ceiling["chunks_per_s"], color="#c53030", linestyle="--", linewidth=1, label=label)
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0, 1.3 * max([r["chunks_per_s"] for r in bars] + [ceiling["chunks_per_s"] if ceiling else 0]))
    ax.invert_yaxis()
    ax.set_xlabel("chunks per second (pipelines: end to end, reading included)")
    ax.set_title(f"{corpus}: {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


if __name__ == "__main__":
    main()
