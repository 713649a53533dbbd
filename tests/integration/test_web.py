"""The web page and the API behind it.

API: uploads and deletes whose paths would leave the inbox (``..``, absolute, NUL, a symlinked
subfolder), an over-size upload and a missing token are each refused with their 4xx, and nothing
is written. Browser: the real page in Debian's Chromium (driven by Playwright through its
executable path), against a real ``dropvec up`` and a local OpenAI-protocol server: upload by the
picker, watch the file reach "indexed", find it, ask and see the streamed answer, see a failed
file's reason and retry it, delete a file and see it gone from search."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from dropvec.config.ids import doc_id_for
from dropvec.ledger.state import StateStore
from dropvec.stack import free_port
from tests.integration.conftest import Stack, wait_for
from tests.integration.fake_llm import ANSWER, FakeLLM
from tests.integration.test_up import start_up, stop_up

pytestmark = pytest.mark.integration

TOKEN = "web-t0ken-for-tests"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[TestClient]:
    from dropvec.api import create_api
    from dropvec.workers.embed import load_embedder

    update = {"api_token": SecretStr(TOKEN), "inbox": stack.root / "web-inbox", "max_file_bytes": 4096}
    settings = stack.settings.model_copy(update=update)
    settings.inbox.mkdir(exist_ok=True)
    (stack.root / "web-outside").mkdir(exist_ok=True)
    (settings.inbox / "linked").symlink_to(stack.root / "web-outside", target_is_directory=True)
    with TestClient(create_api(settings, load_embedder(settings), watched=True)) as c:
        c.headers["Authorization"] = f"Bearer {TOKEN}"
        c.inbox = settings.inbox  # type: ignore[attr-defined]
        yield c


def multipart(name: str, folder: str) -> tuple[bytes, str]:
    """A multipart form with one file called ``name`` and a ``folder`` field, byte for byte."""
    boundary = "dropvec-test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="folder"\r\n\r\n{folder}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: text/plain\r\n\r\nsea otters\r\n--{boundary}--\r\n"
    )
    return body.encode(), f"multipart/form-data; boundary={boundary}"


def written(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    "name, folder",
    [("../x.txt", ""), ("/etc/x.txt", ""), ("a/../../x.txt", ""), ("x\x00.txt", ""), ("x.txt", "linked"),
     ("x.txt", "../up"), ("x.txt", "/tmp"), ("linked/x.txt", ""), (".hidden.txt", ""), ("x.txt", "a\x00b")],
)  # fmt: skip
def test_an_upload_outside_the_inbox_is_refused_and_nothing_is_written(
    client: TestClient, stack: Stack, name: str, folder: str
) -> None:
    before = written(stack.root)
    body, content_type = multipart(name, folder)  # (raw bytes: a client library would escape a NUL)
    response = client.post("/files", content=body, headers={"Content-Type": content_type})
    assert response.status_code in (400, 422), (name, folder, response.text)
    assert written(stack.root) == before


def test_an_upload_lands_whole_in_the_inbox_and_an_oversize_one_not_at_all(client: TestClient) -> None:
    inbox: Path = client.inbox
    ok = client.post("/files", files=[("file", ("a/b.txt", b"sea otters")), ("file", ("c.md", b"# C"))],
                     data={"folder": "notes"})  # fmt: skip
    assert ok.status_code == 201 and ok.json()["files"] == ["notes/a/b.txt", "notes/c.md"], ok.text
    assert (inbox / "notes" / "a" / "b.txt").read_bytes() == b"sea otters"
    before = written(inbox)
    big = client.post("/files", files={"file": ("big.txt", b"x" * 5000)})
    assert big.status_code == 413 and "DROPVEC_MAX_FILE_BYTES" in big.text
    assert written(inbox) == before  # (no temporary file left either)
    # a request larger than ten files of the limit is refused before its body is read
    huge = client.post(
        "/files", content=b"x" * 50_000, headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert huge.status_code == 413 and written(inbox) == before


@pytest.mark.parametrize(
    "path", ["../x.txt", "%2e%2e/x.txt", "a/../../x.txt", "linked/secret.txt", "x%00.txt"]
)
def test_a_delete_outside_the_inbox_is_refused(client: TestClient, stack: Stack, path: str) -> None:
    (stack.root / "x.txt").write_text("keep me")
    (stack.root / "web-outside" / "secret.txt").write_text("keep me too")
    response = client.delete(f"/files/{path}")
    assert response.status_code in (400, 404), (path, response.text)
    assert (stack.root / "x.txt").exists() and (stack.root / "web-outside" / "secret.txt").exists()


GUARDED = [("get", "/files"), ("post", "/files/retry"), ("delete", "/files/x.txt"), ("get", "/events"),
           ("get", "/status"), ("post", "/search"), ("post", "/ask")]  # fmt: skip


def test_every_endpoint_but_health_and_the_page_needs_the_token(client: TestClient) -> None:
    bare = {"Authorization": ""}
    for method, path in GUARDED:
        response = getattr(client, method)(path, headers=bare)
        assert response.status_code == 401, (method, path, response.status_code)
    refused = client.post("/files", files={"file": ("t.txt", b"x")}, headers=bare)
    assert refused.status_code == 401 and not (client.inbox / "t.txt").exists()
    for path in ("/health", "/", "/static/app.js", "/static/app.css"):
        response = client.get(path, headers=bare)
        assert response.status_code == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "<script" not in client.get("/").text.split('<script src="/static/app.js" defer></script>')[0]
    schema = client.get("/openapi.json").json()
    assert {"/files", "/files/{path}", "/files/retry", "/events"} <= set(schema["paths"])


@pytest.fixture()
def llm() -> Iterator[FakeLLM]:
    server = FakeLLM()
    yield server
    server.stop()


def test_the_page_uploads_indexes_searches_asks_retries_and_deletes(tmp_path: Path, llm: FakeLLM) -> None:
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    env = {
        **os.environ,
        "DROPVEC_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "DROPVEC_MILVUS_URI": f"http://127.0.0.1:{free_port()}",
        "DROPVEC_SETTLE_SECONDS": "0.3", "DROPVEC_SERVE_PORT": str(port), "DROPVEC_API_TOKEN": TOKEN,
        "DROPVEC_LLM_MODEL": "fake-chat", "DROPVEC_LLM_BASE_URL": llm.base_url,
    }  # fmt: skip
    log = tmp_path / "up.log"
    proc = start_up(tmp_path, env, log)
    note = tmp_path / "quexton.md"
    note.write_text("# Quexton\n\nThe zorblat festival is held in Quexton every spring, when the purple "
                    "melons ripen.\n")  # fmt: skip
    broken = tmp_path / "report.pdf"
    broken.write_bytes(b"%PDF-1.4\nnot really a pdf")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    try:
        assert f"web page and API: http://127.0.0.1:{port}/" in log.read_text()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "console",
                lambda m: errors.append(m.text) if m.type == "error" and "401" not in m.text else None,
            )
            began = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/")
            loaded = time.perf_counter() - began
            # The page asks for the token once
            expect(page.locator("#token-form")).to_be_visible()
            page.fill("#token", TOKEN)
            page.click("#token-form button")
            expect(page.locator("#totals")).to_contain_text("indexed", timeout=30_000)
            # Upload by the picker; the file reaches "indexed"
            page.set_input_files("#pick-files", [str(note), str(broken), str(empty)])
            row = page.locator('tr[data-path="quexton.md"]')
            expect(row.locator(".state")).to_have_text("indexed", timeout=180_000)
            # A failed file shows its reason
            failed = page.locator('tr[data-path="report.pdf"]')
            expect(failed.locator(".state")).to_contain_text("cannot read pdf", timeout=60_000)
            # Search finds it, with the query's words marked
            page.fill("#query", "When is the zorblat festival?")
            page.click("#search-button")
            expect(page.locator("#results li").first).to_contain_text("purple melons", timeout=30_000)
            expect(page.locator("#results li mark").first).to_be_visible()
            # Ask: the answer streams in from the local LLM, with its sources
            page.click("#ask-button")
            expect(page.locator("#answer-text")).to_have_text(ANSWER, timeout=60_000)
            expect(page.locator("#answer")).to_have_attribute("data-done", "true")
            expect(page.locator("#results li").first).to_contain_text("quexton.md")
            # Retry: the failed file is read again (still broken: it fails again, a new attempt)
            state = StateStore.from_url(env["DROPVEC_REDIS_URL"])
            inbox = tmp_path / "inbox"
            first_try = state.get_file(doc_id_for(str(inbox / "report.pdf")))["updated_at"]
            page.click("#retry")
            expect(page.locator("#upload-status")).to_contain_text("1 failed file(s) queued again")
            wait_for(lambda: state.get_file(doc_id_for(str(inbox / "report.pdf")))["updated_at"] != first_try,
                     60, "the retry")  # fmt: skip
            expect(failed.locator(".state")).to_contain_text("cannot read pdf")
            expect(page.locator('tr[data-path="empty.txt"] .state')).to_contain_text("no text")
            screenshot = os.environ.get("DROPVEC_SCREENSHOT")
            if screenshot:
                page.screenshot(path=screenshot, full_page=True)
            # On a phone's width the page fits: nothing wider than the screen
            page.set_viewport_size({"width": 390, "height": 844})
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            if screenshot:
                page.screenshot(path=screenshot.replace(".png", "-phone.png"), full_page=True)
            page.set_viewport_size({"width": 1200, "height": 900})
            # Delete: the file leaves the inbox and the index
            row.get_by_role("button", name="Delete quexton.md").click()
            expect(row).to_have_count(0, timeout=60_000)
            assert not (inbox / "quexton.md").exists()
            page.click("#search-button")
            expect(page.locator("#results")).not_to_contain_text("purple melons", timeout=30_000)
            assert not errors, errors
            browser.close()
        print(f"page loaded in {loaded * 1000:.0f} ms")
    finally:
        stop_up(proc)
