"""Retrieval over the collection: dense (the model's vectors), sparse (BM25 over the text: the
query's terms weighed by their IDF in the collection, ``dropvec.config.bm25``) or hybrid (both,
fused by Milvus's ranker), with filters applied inside Milvus.

The collection stays one that llama-index's own ``MilvusVectorStore`` reads: the tutorial's query
code works on it unchanged (dense). dropvec's own searches ask Milvus directly, for what that
store does not expose: each leg of a hybrid search its own candidate depth, and filters by path,
type and date on indexed fields.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Literal

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import NodeWithScore, QueryBundle

from dropvec.config import bm25
from dropvec.config.errors import ConfigError
from dropvec.config.messages import LOCATION_KEYS
from dropvec.config.settings import Settings
from dropvec.ledger.state import StateStore
from dropvec.workers.embed import load_embedder
from dropvec.workers.rerank import load_reranker, rerank
from dropvec.workers.store import Retrieval, has_text_search, milvus_errors, neighbours, read_store, retrieve

Mode = Literal["dense", "sparse", "hybrid"]


@dataclass(frozen=True)
class Hit:
    score: float
    file: str
    chunk: int
    text: str
    page: str = ""
    section: str = ""
    #: The document's title (an HTML <title>, a Markdown file's first top heading), if it has one.
    title: str = ""
    #: Where in its file the chunk is, as its reader tells: slide, sheet, chapter, subject, ...
    location: dict[str, str | int] = field(default_factory=dict)
    #: The hit with its neighbouring chunks (``--context N``), in file order; "" if not asked.
    context: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def where(self) -> str:
        """File, chunk, page and section, in one line."""
        place = f"{self.file} #{self.chunk}" + (f" p.{self.page}" if self.page else "")
        place += "".join(f" {k} {v}" for k, v in self.location.items())
        return place + (f" § {self.section}" if self.section else "")

    @classmethod
    def of(cls, result: NodeWithScore, context: str = "") -> Hit:
        meta = result.node.metadata
        return cls(
            score=float(result.score or 0.0),
            file=str(meta.get("file_path", "")),
            chunk=int(meta.get("chunk_index", -1)),
            text=result.node.get_content(),
            page=str(meta.get("page_label", "")),
            section=str(meta.get("header_path", "")).strip("/"),
            title=str(meta.get("title", "")),
            location={k: v for k in LOCATION_KEYS if isinstance(v := meta.get(k), str | int) and v != ""},
            context=context,
        )


@dataclass(frozen=True)
class Filters:
    """Which chunks a search may return; empty: all. Applied by Milvus, before the top k.

    ``path``: a glob on the file's absolute path (``*`` any characters, ``/`` included; ``?`` one);
    a path that is a folder, or ends with ``/``, means everything under it. ``types``: extensions
    (``pdf``, ``.md``). ``since``/``until``: the file's modification date, inclusive.
    """

    path: str = ""
    types: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None

    def expression(self) -> str:
        """The filter as a Milvus boolean expression ("" for none)."""
        parts = []
        if self.path:
            parts.append(_like(self.path))
        types = sorted({re.sub(r"[^a-z0-9]", "", t.lower()) for t in self.types} - {""})
        if types:
            parts.append(f"file_type in [{', '.join(_quoted(t) for t in types)}]")
        if self.since:
            parts.append(f"modified >= {_epoch(self.since)}")
        if self.until:
            parts.append(f"modified < {_epoch(self.until) + 86_400}")
        return " and ".join(parts)


def _like(path: str) -> str:
    """``path`` (a glob, a file or a folder) as a LIKE condition on absolute paths: a relative
    one is taken from the current folder; one without wildcards means that file or what is under it.

    No escapes are sent: a backslash in a LIKE pattern stops Milvus Lite's server. A character
    LIKE would read as special (``%``, ``_``), a quote, a backslash or a control character is sent as ``_``
    (any one character), so a filter may admit a path that differs there, and no other.
    """
    if not path.startswith(("*", "/")):
        path = str(Path(path).absolute()) + ("/" if path.endswith("/") else "")
    pattern = re.sub(r"[\\\"'%_\x00-\x1f\x7f]", "_", path).replace("*", "%").replace("?", "_")
    if any(c in path for c in "*?"):
        return f'file_path like "{pattern}"'
    pattern = pattern.rstrip("/")
    return f'(file_path like "{pattern}" or file_path like "{pattern}/%")'


def _quoted(text: str) -> str:
    return f'"{text}"'  # (callers pass only [a-z0-9])


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())


@dataclass(frozen=True)
class Query:
    """How to search: how many chunks, which way, which chunks, and how many neighbours with each."""

    k: int
    mode: Mode = "hybrid"
    filters: Filters = field(default_factory=Filters)
    context: int = 0

    @classmethod
    def of(
        cls,
        settings: Settings,
        k: int | None = None,
        mode: str | None = None,
        *,
        path: str = "",
        types: Sequence[str] = (),
        since: date | None = None,
        until: date | None = None,
        context: int = 0,
    ) -> Query:
        """A query from a command's or a request's options; the settings' defaults for the rest."""
        if mode not in (None, "dense", "sparse", "hybrid"):
            raise ConfigError(f"the search mode (--mode) is hybrid, dense or sparse, not {mode!r}")
        days = [d.date() if isinstance(d, datetime) else d for d in (since, until)]
        filters = Filters(path=path, types=tuple(types), since=days[0], until=days[1])
        return cls(k or settings.top_k, mode or settings.search_mode, filters, context)  # type: ignore[arg-type]


_ledgers: dict[str, StateStore] = {}


def query_terms(settings: Settings, question: str) -> dict[int, float]:
    """BM25's query side of ``question``: its terms, each weighed by its IDF in the collection
    (the statistics the workers keep in the ledger)."""
    if settings.redis_url not in _ledgers:  # (one client a process, as for Milvus)
        _ledgers[settings.redis_url] = StateStore.from_settings(settings)
    counts = bm25.terms(question)
    docs, df = _ledgers[settings.redis_url].terms.document_frequencies(settings.collection, counts)
    return bm25.query_vector(counts, docs, df)


class Retriever(BaseRetriever):
    """The top-k chunks of the collection for a question, as llama-index's query engines take
    them (``ask``). The async path runs the same retrieval in a thread (the client is a
    synchronous one)."""

    def __init__(self, settings: Settings, query: Query, embedder: BaseEmbedding) -> None:
        super().__init__()
        self.settings, self.query, self.embedder = settings, query, embedder
        read_store(settings)  # ConfigError now if nothing was indexed yet
        self.mode = query.mode
        if self.mode != "dense" and not has_text_search(settings):
            if self.mode == "sparse":
                raise ConfigError(
                    f"collection {settings.collection!r} has no BM25 field: made by an older dropvec "
                    "(run `dropvec migrate`) or on a Milvus before 2.4"
                )
            self.mode = "dense"  # (the collection of an older dropvec, or a Milvus before 2.5)
        if settings.rerank_model:
            load_reranker(settings)  # ConfigError now if the model cannot be loaded
        #: Seconds the last retrieval spent embedding the question, in Milvus, and reranking.
        self.embed_seconds = self.search_seconds = self.rerank_seconds = 0.0

    @milvus_errors
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        began = time.perf_counter()
        vector = terms = None
        if self.mode != "sparse":
            vector = self.embedder.get_query_embedding(query_bundle.query_str)
        if self.mode != "dense":
            terms = query_terms(self.settings, query_bundle.query_str)
        searched = time.perf_counter()
        k = max(self.query.k, self.settings.rerank_depth) if self.settings.rerank_model else self.query.k
        found = retrieve(
            self.settings,
            Retrieval(
                mode=self.mode, vector=vector, terms=terms, k=k,
                expression=self.query.filters.expression(),
            ),
        )  # fmt: skip
        reranked = time.perf_counter()
        if self.settings.rerank_model:
            found = rerank(self.settings, query_bundle.query_str, found, self.query.k)
        self.embed_seconds, self.search_seconds = searched - began, reranked - searched
        self.rerank_seconds = time.perf_counter() - reranked
        return found

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)

    def hits(self, question: str) -> list[Hit]:
        found = self.retrieve(question)
        if not self.query.context:
            return [Hit.of(n) for n in found]
        return [Hit.of(n, neighbours(self.settings, n.node, self.query.context)) for n in found]


def search(
    settings: Settings,
    question: str,
    k: int | None = None,
    embedder: BaseEmbedding | None = None,
    query: Query | None = None,
) -> list[Hit]:
    """The top chunks for ``question`` (``query``, default: DROPVEC_TOP_K of DROPVEC_SEARCH_MODE;
    or ``k`` of them); ``embedder``: the configured model's, loaded here if not given."""
    embedder = embedder or load_embedder(settings)
    return Retriever(settings, query or Query.of(settings, k), embedder).hits(question)
