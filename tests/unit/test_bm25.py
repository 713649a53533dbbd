"""dropvec's BM25: the terms of a text, the two sides of its sparse vectors, and the collection's
statistics in the ledger (on fakeredis). That the scores are Milvus's own BM25's is checked
against the real Milvus in tests/integration/test_search.py."""

from __future__ import annotations

import math
import threading
import time

from dropvec.config import bm25
from dropvec.config.bm25 import TermCounts, counted
from tests.fakes import memory_ledger

DOCS = [
    "The otter floats on its back and cracks a shell on its chest.",
    "Otters are playful; an otter's den is called a holt.",
    "Kestrels hover over fields, hunting voles.",
    "Running water: the river runs past the holt, and the otters run with it.",
]


def test_terms_are_stems_of_words_without_case_stop_words_or_overlong_runs() -> None:
    assert bm25.terms("Running RUNS run") == bm25.terms("run run run")
    assert len(bm25.terms("run run run")) == 1
    assert bm25.terms("the and of it") == {}
    assert bm25.terms("x" * 41) == {} and len(bm25.terms("x" * 40)) == 1
    assert bm25.terms("Zürich café") == bm25.terms("zürich CAFÉ") != {}
    # (cut where Milvus's standard tokenizer cuts: at anything but a letter or digit)
    assert bm25.terms("flipper_length_mm x86-64") == bm25.terms("flipper length mm x86 64")


def okapi(query: str, doc: int, k1: float = 1.2, b: float = 0.75) -> float:
    """BM25 as textbooks write it, over DOCS."""
    docs = [bm25.terms(d) for d in DOCS]
    avgdl = sum(sum(d.values()) for d in docs) / len(docs)
    mine, score = docs[doc], 0.0
    for term in bm25.terms(query):
        df = sum(1 for d in docs if term in d)
        tf = mine.get(term, 0)
        idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * sum(mine.values()) / avgdl))
    return score


def test_the_inner_product_of_a_query_and_a_document_is_okapi_bm25() -> None:
    stats = counted(DOCS)
    vectors = [bm25.document_vector(bm25.terms(d), stats.mean_length()) for d in DOCS]
    for query in ("otter holt", "running otters", "kestrel", "the unknown word"):
        q = bm25.query_vector(bm25.terms(query), stats.docs, stats.df)
        for i, doc in enumerate(vectors):
            assert math.isclose(sum(w * doc.get(k, 0) for k, w in q.items()), okapi(query, i), abs_tol=1e-9)


def test_the_ledger_counts_documents_and_their_terms_as_rows_come_and_go() -> None:
    ledger = memory_ledger()
    terms = ledger.terms
    first, second = counted(DOCS[:2]), counted(DOCS[2:])
    # (none kept, as after Redis lost them: a change alone would make partial ones look whole)
    assert not terms.apply("c", first) and not terms.has_stats("c")
    terms.reset("c")  # (the collection is created)
    assert terms.apply("c", first) and terms.apply("c", second)
    both = counted(DOCS)
    docs, df = terms.document_frequencies("c", both.df)
    assert (docs, df, terms.totals("c")[1]) == (4, dict(both.df), both.tokens)
    assert terms.avgdl("c") == both.tokens / 4
    # removing the first two leaves exactly the last two; terms no document holds are gone
    terms.apply("c", first.negated())
    docs, df = terms.document_frequencies("c", both.df)
    assert (docs, df) == (2, dict(second.df))
    assert ledger.r.hlen(terms.key("c")) == len(second.df)
    assert terms.document_frequencies("other", both.df) == (0, {})


def test_statistics_counted_afresh_replace_the_kept_ones_and_one_filler_at_a_time() -> None:
    terms = memory_ledger().terms
    assert terms.claim_fill("c") and not terms.claim_fill("c")  # (another worker is counting)
    assert terms.replace("c", counted(DOCS[:1]), only_if_missing=True)
    assert not terms.claim_fill("c")  # (they exist now)
    assert terms.document_frequencies("c", bm25.terms(DOCS[1]))[0] == 1
    # a fill leaves statistics that appeared while it counted; check's count replaces them
    assert not terms.replace("c", counted(DOCS), only_if_missing=True)
    assert terms.totals("c")[0] == 1 and not terms.r.exists(terms.key("c") + ":building")
    assert terms.replace("c", TermCounts())
    assert terms.totals("c") == (0, 0) and terms.avgdl("c") == 0.0 and not terms.r.exists(terms.key("c"))
    terms.forget("c")
    assert terms.claim_fill("c")


def test_the_rows_of_a_file_are_removed_by_one_caller_at_a_time() -> None:
    # (two that read the same rows before either deleted them would both take them off the counts)
    terms, order = memory_ledger().terms, []

    def second() -> None:
        with terms.removing("c", "doc"):
            order.append("second")

    waiting = threading.Thread(target=second)
    with terms.removing("c", "doc"):
        waiting.start()
        with terms.removing("c", "another doc"):  # (other files' removals do not wait)
            time.sleep(0.2)
            order.append("first")
    waiting.join(5)
    assert order == ["first", "second"]
