"""The API under fuzzing: schemathesis reads the app's own OpenAPI schema (what ``dropvec serve``
publishes at ``/openapi.json``), makes valid and invalid requests from it (boundary values, NUL
bytes, huge numbers, wrong types) and sends them to the real app in-process, backed by the real
stack: Valkey, Milvus, the bundled model, something indexed.

Every response must be one the schema documents (status code, media type, body; the event stream's
first event), none a 5xx, and nothing may log an error or a traceback. Hypothesis is derandomized
and does not shrink, so the run is the same each time and a failure comes back on the next run as
it was. Then, explicitly: every guarded operation refuses a missing or wrong token with its
documented 401, and each line of ``/ask``'s stream is the one documented."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from pydantic import SecretStr

from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

TOKEN = "fuzz-t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: Generated examples per operation, on top of schemathesis's boundary cases (about 15 s in all).
EXAMPLES = 100
#: What schemathesis is told beyond the schema.
CONFIG = {
    # the token for the schema's security scheme: schemathesis sends it, and leaves it out or spoils
    # it where it tests that a request without it is refused
    "auth": {"openapi": {"HTTPBearer": {"bearer": TOKEN}}},
    "operations": [
        {
            # A path from a request is also checked against the inbox as it is (links, files in the
            # way, names the watcher ignores, the size limit): a request the schema allows may still
            # be refused, with the documented 400 or 413.
            "include-name": "DELETE /files/{path}",
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404"]}},
        },
        {
            "include-name": "POST /files",
            "checks": {
                "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "413"]},
                # (a form's values are text whatever type schemathesis meant to spoil them with: a
                # "number" for a folder arrives as a folder name, a "null" file as a file)
                "negative_data_rejection": {"enabled": False},
            },
        },
        # (a 405 at /files/retry names DELETE too, rightly: DELETE /files/{path} takes "retry")
        {"include-name": "POST /files/retry", "checks": {"allow_header_conformance": {"enabled": False}}},
        # (the event stream never ends: it is read up to its first event)
        {"include-name": "GET /events", "max-stream-events": 1},
    ],
}


@pytest.fixture(scope="module")
def fuzzed_app(stack: Stack) -> FastAPI:
    """The app as ``serve`` builds it, with a token, a small upload limit and an inbox of its own,
    over a collection where something is indexed (so that a search finds hits, not a 503)."""
    from dropvec.api import create_api
    from dropvec.workers.embed import load_embedder

    notes = stack.root / "fuzz-notes"
    notes.mkdir(exist_ok=True)
    (notes / "otters.md").write_text("# Otters\n\nSea otters crack shellfish on stones.\n")
    result = stack.dropvec("ingest", str(notes), "--wait")
    assert result.returncode == 0, result.stderr
    update = {"api_token": SecretStr(TOKEN), "inbox": stack.root / "fuzz-inbox", "max_file_bytes": 4096}
    settings = stack.settings.model_copy(update=update)
    settings.inbox.mkdir(exist_ok=True)
    return create_api(settings, load_embedder(settings), watched=True)


def published_schema() -> Any:
    """The schema as the app serves it; built at import (pytest makes one test per operation from
    it), by an app of default settings: the schema does not depend on them. Each request goes to
    the stack's app (``app=``), which must publish the same schema."""
    from dropvec.api import create_api
    from dropvec.config.settings import Settings

    app = create_api(Settings(_env_file=None), embedder=object())  # type: ignore[call-arg]
    config = schemathesis.Config.from_dict(CONFIG)
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


schema = published_schema()


@pytest.fixture()
def errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.WARNING)
    yield caplog


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_response_is_documented_and_none_is_a_server_error(
    case: Any, fuzzed_app: FastAPI, errors_logged: pytest.LogCaptureFixture
) -> None:
    # When any request the schema allows (or nearly allows) is sent, with the token or without it
    case.call_and_validate(app=fuzzed_app)
    # Then (checked by call_and_validate: no 5xx, a documented status, media type and body, the token
    # enforced) and nothing was logged as an error, with or without a traceback
    bad = [r for r in errors_logged.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]
    assert "Traceback" not in errors_logged.text


@pytest.fixture(scope="module")
def client(fuzzed_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(fuzzed_app) as c:
        yield c


def test_every_guarded_operation_refuses_a_missing_or_wrong_token_with_a_documented_401(
    client: TestClient,
) -> None:
    openapi = client.get("/openapi.json").json()
    assert openapi == schema.raw_schema  # (the schema fuzzed is the one this app serves)
    guarded = [(m, p) for p, ops in openapi["paths"].items() for m, op in ops.items() if op.get("security")]
    assert len(guarded) == 9 and ("get", "/health") not in guarded
    for method, path in guarded:
        assert "401" in openapi["paths"][path][method]["responses"], (method, path)
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
            response = client.request(method, path.replace("{path}", "x.txt"), headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert set(response.json()) == {"detail"} and response.headers["www-authenticate"] == "Bearer"


def test_each_line_of_an_answer_is_the_documented_one(client: TestClient) -> None:
    from dropvec.api_schema import AskLine

    openapi = client.get("/openapi.json").json()
    documented = openapi["paths"]["/ask"]["post"]["responses"]["200"]["content"]["application/x-ndjson"]
    assert documented["itemSchema"]["title"] == "AskLine"
    response = client.post("/ask", json={"question": "What do otters crack?"}, headers=AUTH)
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    lines = [AskLine.model_validate_json(line) for line in response.text.splitlines()]
    assert all(len(line.model_fields_set) == 1 for line in lines), response.text
    assert lines[0].sources and lines[-1].done, response.text
