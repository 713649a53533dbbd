"""Every file type people drop, through every way into the producer: files of each type, made by
their own libraries, and a hostile file of each type, in the inbox when ``dropvec up`` starts (its
first reconciliation) and dropped while it watches; the same hostile files through ``ingest``.
Each sentence is then found by search, with the metadata that says where it is; each hostile
file ends with its reason, and the rest of the folder is indexed all the same."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dropvec.config.ids import doc_id_for
from dropvec.config.settings import Settings
from dropvec.ledger.state import StateStore
from dropvec.stack import free_port
from tests import formats
from tests.integration.conftest import Stack, wait_for
from tests.integration.test_up import start_up, stop_up

pytestmark = pytest.mark.integration

#: Where a hit's metadata lands in ``search --json``: its reader's key, and the hit's field.
FIELDS = {"page_label": "page", "header_path": "section", "title": "title"}


def settled(state: StateStore, folder: Path, names: list[str]) -> bool:
    done = ("indexed", "skipped", "failed")
    return all(state.get_file(doc_id_for(str(folder / n))).get("status") in done for n in names)


def check_states(state: StateStore, folder: Path, expected: dict[str, tuple[str, str]]) -> None:
    for name, (status, reason) in expected.items():
        record = state.get_file(doc_id_for(str(folder / name)))
        assert record.get("status") == status, (name, record)
        assert reason in record.get("reason", "") and "\n" not in record.get("reason", ""), (name, record)


def check_found(settings: Settings, folder: Path, samples: list[formats.Sample]) -> None:
    """Each sample's sentence is in a top-5 hit of its own file, with the sample's metadata."""
    from dropvec.search import Query, search
    from dropvec.workers.embed import load_embedder

    model = load_embedder(settings)
    for sample in samples:
        path = str(folder / sample.name)
        hits = search(settings, sample.sentence, embedder=model, query=Query.of(settings, 5, path=path))
        found = [h for h in hits if sample.sentence in " ".join(h.text.split())]
        assert found, (sample, [h.text[:120] for h in hits])
        fields = {**found[0].location, "page": found[0].page, "section": found[0].section,
                  "title": found[0].title}  # fmt: skip
        for key, value in sample.metadata.items():
            if key == "ocr":
                continue
            want = str(value).strip("/") if key == "header_path" else value
            assert fields.get(FIELDS.get(key, key)) == want, (sample, key, fields)


def test_every_type_is_found_with_its_metadata_at_start_and_while_watching(tmp_path: Path) -> None:
    # Given an inbox that holds a file of every type and a hostile file of each, before up starts
    inbox = tmp_path / "inbox"
    first = formats.every_type(inbox / "first")
    first_hostile = formats.hostile(inbox / "first-hostile")
    env = {
        **os.environ,
        "DROPVEC_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "DROPVEC_MILVUS_URI": f"http://127.0.0.1:{free_port()}",
        "DROPVEC_SETTLE_SECONDS": "0.3",
    }
    settings = Settings(
        _env_file=None, redis_url=env["DROPVEC_REDIS_URL"], milvus_uri=env["DROPVEC_MILVUS_URI"]
    )
    log = tmp_path / "up.log"
    # When dropvec up starts on it (its first reconciliation)
    proc = start_up(tmp_path, env, log)
    try:
        state = StateStore.from_url(env["DROPVEC_REDIS_URL"])
        names = [s.name for s in first]
        wait_for(lambda: settled(state, inbox / "first", names) and settled(
            state, inbox / "first-hostile", list(first_hostile)), 600, "the first files")  # fmt: skip
        # Then every file of every type is indexed, each hostile one ends with its reason
        check_states(state, inbox / "first", {n: ("indexed", "") for n in names})
        check_states(state, inbox / "first-hostile", first_hostile)
        # When the same kinds of file are dropped while it watches (and scans too)
        later = formats.every_type(inbox / "later") + formats.scans(inbox / "later")
        later_hostile = formats.hostile(inbox / "later-hostile")
        wait_for(lambda: settled(state, inbox / "later", [s.name for s in later]) and settled(
            state, inbox / "later-hostile", list(later_hostile)), 600, "the files dropped later")  # fmt: skip
        # Then they end the same way, and up is still up, with no traceback in its log
        check_states(state, inbox / "later", {s.name: ("indexed", "") for s in later})
        check_states(state, inbox / "later-hostile", later_hostile)
        assert proc.poll() is None and "Traceback" not in log.read_text(errors="replace")
        assert "attachment 'huge.bin' left out: 50 MB" in log.read_text(errors="replace")
        # And each sentence is found by search, with where it is
        check_found(settings, inbox / "first", first)
        check_found(settings, inbox / "later", later)
        shown = subprocess.run(
            [sys.executable, "-m", "dropvec", "search", "where do puffins dig their burrows", "--path",
             str(inbox / "later" / "deck.pptx"), "-k", "1"], env=env, cwd=tmp_path, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip
        assert shown.returncode == 0 and "slide 1" in shown.stdout, (shown.stdout, shown.stderr)
    finally:
        stop_up(proc)


def test_ingest_ends_each_hostile_file_with_its_reason_and_reads_the_rest(stack: Stack) -> None:
    # Given a folder of hostile files of every new type, beside a good file of each
    folder = stack.root / "formats-ingest"
    expected = formats.hostile(folder)
    good = formats.every_type(folder / "good")
    # When it is ingested
    result = stack.dropvec("ingest", str(folder), "--wait", "--timeout", "600")
    # Then the command reports the failures, every file has its state, and the good ones are found
    assert result.returncode == 1, result.stderr
    state = StateStore.from_url(stack.settings.redis_url)
    check_states(state, folder, expected)
    check_states(state, folder / "good", {s.name: ("indexed", "") for s in good})
    check_found(stack.settings, folder / "good", good)
