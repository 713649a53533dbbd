"""``dropvec ask`` and ``dropvec serve`` against a real local OpenAI-compatible server (FakeLLM):
the prompt holds the retrieved passages, the answer is streamed, the sources are the chunks
retrieved, failures are one line, and no key is ever printed or logged."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dropvec.config.settings import Settings
from dropvec.stack import free_port
from tests.integration.conftest import Stack, wait_for
from tests.integration.fake_llm import ANSWER, PIECES, FakeLLM

pytestmark = pytest.mark.integration

QUESTION = "When is the zorblat festival held in Quexton?"
LLM_KEY = "sk-test-never-print-me-41d3"
API_TOKEN = "api-token-never-print-me-77"
K = 2


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    server = FakeLLM()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def indexed(stack: Stack) -> Path:
    """A file no other test has, so that it holds the top chunks for QUESTION."""
    path = stack.root / "ask" / "quexton.md"
    path.parent.mkdir()
    path.write_text(
        "# Quexton\n\nThe zorblat festival is held in Quexton every spring, when the purple melons "
        "ripen. Farmers bring their melons to the market square.\n\n"
        "During the zorblat festival, the mayor of Quexton rings the copper bell at noon.\n\n"
        "Quexton is a small town with a river, two bridges and a library of maps."
    )
    result = stack.dropvec("ingest", str(path), "--wait", "--timeout", "120")
    assert result.returncode == 0, result.stderr
    return path


def with_llm(stack: Stack, llm: FakeLLM, **extra: object) -> Stack:
    return configured(stack, llm_model="fake-chat", llm_base_url=llm.base_url, log_level="DEBUG", **extra)


def configured(stack: Stack, **values: object) -> Stack:
    """The stack's settings with ``values`` (validated, as from the environment)."""
    settings = Settings(**{**stack.settings.model_dump(), **values})  # type: ignore[arg-type]
    return Stack(settings, stack.root, [])


def places(hits: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(h["file"], h["chunk"]) for h in hits]


def retrieved(stack: Stack) -> list[dict[str, Any]]:
    result = stack.dropvec("search", QUESTION, "-k", str(K), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_ask_streams_the_answer_from_the_retrieved_passages_and_lists_them(
    stack: Stack, llm: FakeLLM, indexed: Path
) -> None:
    asking = with_llm(stack, llm, llm_api_key=LLM_KEY)
    hits = retrieved(stack)
    assert all(h["file"] == str(indexed) for h in hits)
    # When a question is asked while the LLM holds back the rest of its answer
    llm.hold()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dropvec", "ask", QUESTION, "-k", str(K)], env=asking.env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    # Then its first words are on the terminal before the answer is complete
    first = "".join(PIECES[:2])
    seen = ""
    while first not in seen:
        char = proc.stdout.read(1)
        assert char, proc.stderr.read() if proc.stderr else ""
        seen += char
    assert proc.poll() is None
    llm.release()
    rest, stderr = proc.communicate(timeout=120)
    output = seen + rest
    assert proc.returncode == 0, stderr
    assert not llm.expired, "the first words came only once the LLM's hold ran out: the answer was buffered"
    assert ANSWER in output
    # and the prompt held every retrieved passage, and the sources listed are those passages
    prompt = llm.prompt()
    assert all(h["text"] in prompt for h in hits)
    sources = output.split("sources", 1)[1]
    assert all(f"{h['file']} #{h['chunk']}" in sources for h in hits)
    assert llm.requests[-1]["authorization"] == f"Bearer {LLM_KEY}"
    # and the key is not printed, nor logged (at DEBUG)
    assert LLM_KEY not in output and LLM_KEY not in stderr


def test_ask_json_gives_the_answer_and_the_sources(stack: Stack, llm: FakeLLM, indexed: Path) -> None:
    result = with_llm(stack, llm).dropvec("ask", QUESTION, "-k", str(K), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["answer"] == ANSWER
    assert places(data["sources"]) == places(retrieved(stack))


def test_an_unreachable_llm_is_one_line_and_a_non_zero_exit(stack: Stack, indexed: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}/v1"
    unreachable = configured(
        stack, llm_model="fake-chat", llm_base_url=down, llm_api_key=LLM_KEY, llm_max_retries=0
    )
    result = unreachable.dropvec("ask", QUESTION)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"error: the LLM at {down} failed (APIConnectionError): Connection error."], (
        result.stderr
    )
    assert "Traceback" not in result.stderr and LLM_KEY not in result.stderr + result.stdout


def test_without_an_llm_ask_says_so_and_shows_the_passages(stack: Stack, indexed: Path) -> None:
    result = stack.dropvec("ask", QUESTION, "-k", str(K))
    assert result.returncode == 0, result.stderr
    assert "no LLM configured" in result.stderr
    assert str(indexed) in result.stdout and "zorblat festival" in result.stdout


class Server:
    """``dropvec serve`` on a free port, its output in a log file."""

    def __init__(self, stack: Stack, log: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = log
        port = self.url.rsplit(":", 1)[1]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dropvec", "serve", "--port", port], env=stack.env,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(self._up, 120, "dropvec serve")

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture(scope="module")
def api(stack: Stack, llm: FakeLLM, indexed: Path) -> Iterator[Server]:
    serving = with_llm(stack, llm, llm_api_key=LLM_KEY, api_token=API_TOKEN)
    server = Server(serving, stack.root / "serve.log")
    yield server
    server.stop()


AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def test_api_search_ask_status_and_metrics_need_the_token(api: Server, stack: Stack) -> None:
    assert httpx.get(f"{api.url}/health").json() == {"status": "ok"}
    # the schema and its page describe the API and hold no data: open, as the docs say
    assert httpx.get(f"{api.url}/openapi.json").status_code == 200
    assert httpx.get(f"{api.url}/docs").status_code == 200
    asked = httpx.post(f"{api.url}/ask", json={"question": QUESTION, "k": K}, timeout=60)
    assert asked.status_code == 401 and "bearer token" in asked.json()["detail"]
    body = {"query": QUESTION, "k": K}
    assert httpx.post(f"{api.url}/search", json=body).status_code == 401
    wrong = httpx.post(f"{api.url}/search", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "bearer token" in wrong.json()["detail"]
    found = httpx.post(f"{api.url}/search", json=body, headers=AUTH, timeout=60)
    assert found.status_code == 200
    assert places(found.json()["hits"]) == places(retrieved(stack))
    assert httpx.get(f"{api.url}/status").status_code == 401
    status = httpx.get(f"{api.url}/status", headers=AUTH, timeout=60)
    assert status.status_code == 200 and status.json()["entities"] > 0
    assert httpx.get(f"{api.url}/metrics").status_code == 401
    metrics = httpx.get(f"{api.url}/metrics", headers=AUTH, timeout=60)
    assert metrics.status_code == 200 and 'dropvec_files_total{outcome="indexed"}' in metrics.text


def test_api_ask_streams_json_lines_with_the_sources_first(api: Server, llm: FakeLLM, stack: Stack) -> None:
    llm.hold()
    lines = []
    with httpx.stream(
        "POST", f"{api.url}/ask", json={"question": QUESTION, "k": K}, headers=AUTH, timeout=120
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(json.loads(line))
            if len(lines) == 3:  # the sources and two pieces, while the LLM holds the rest
                assert not any("done" in item for item in lines)
                llm.release()
    hits = retrieved(stack)
    assert places(lines[0]["sources"]) == places(hits)
    assert "".join(item.get("text", "") for item in lines) == ANSWER
    assert lines[-1] == {"done": True}
    assert not llm.expired, "the first pieces came only once the LLM's hold ran out: the answer was buffered"
    assert all(h["text"] in llm.prompt() for h in hits)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/search", {}),
        ("/search", {"query": ""}),
        ("/search", {"query": "x", "k": 0}),
        ("/search", {"query": "x", "colour": "blue"}),
        ("/ask", {"question": "x" * 5000}),
        ("/ask", "not json"),
    ],
)
def test_api_malformed_requests_get_a_4xx_that_says_what_is_wrong(api: Server, path: str, body: Any) -> None:
    if isinstance(body, str):
        response = httpx.post(
            f"{api.url}{path}", content=body, headers={**AUTH, "Content-Type": "application/json"}
        )
    else:
        response = httpx.post(f"{api.url}{path}", json=body, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"]


def test_api_schema_lists_every_endpoint(api: Server) -> None:
    paths = httpx.get(f"{api.url}/openapi.json").json()["paths"]
    assert {"/search", "/ask", "/status", "/metrics", "/health"} <= set(paths)


def test_api_without_a_token_is_open_and_logs_no_secret(api: Server, stack: Stack, llm: FakeLLM) -> None:
    open_server = Server(with_llm(stack, llm, llm_api_key=LLM_KEY), stack.root / "serve-open.log")
    try:
        found = httpx.post(f"{open_server.url}/search", json={"query": QUESTION}, timeout=60)
        assert found.status_code == 200 and found.json()["hits"]
        asked = httpx.post(f"{open_server.url}/ask", json={"question": QUESTION}, timeout=120)
        assert asked.status_code == 200 and '"done": true' in asked.text
    finally:
        open_server.stop()
    for log in (api.log, open_server.log):
        text = log.read_text()
        assert LLM_KEY not in text and API_TOKEN not in text
