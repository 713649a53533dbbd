"""The HTTP API's schema: what its requests and responses hold, and which errors each route
documents (``/openapi.json``; the suite fuzzes the API against it). Every refusal and failure is
``{"detail": "..."}`` (a 422's detail: pydantic's list of errors)."""

# No `from __future__ import annotations`: FastAPI and pydantic read these annotations at run time.
import re
from datetime import date
from typing import Annotated, Any, Literal

from fastapi.responses import StreamingResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from dropvec.config.settings import Settings
from dropvec.search import Query

MAX_QUESTION_CHARS = 4000
#: One upload request holds at most this many files' worth of bytes (each file: DROPVEC_MAX_FILE_BYTES).
UPLOAD_FILES = 10


def _integer(value: object) -> object:
    if isinstance(value, (bool, str)):  # (pydantic alone takes true as 1 and "5" as 5)
        raise ValueError("an integer is a JSON number")
    return value


def _day(value: object) -> object:
    if not (isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value)):
        raise ValueError("a day is written YYYY-MM-DD")  # (pydantic alone takes 0 or "0" as 1970-01-01)
    return value


#: An integer as the schema has it: a JSON number, not a boolean or a string of digits.
JSON_INTEGER = BeforeValidator(_integer)
#: A day as the schema has it (JSON Schema's full-date): no Unix time, no time of day.
JSON_DAY = BeforeValidator(_day)


class Retrieval(BaseModel):
    """How to retrieve: how many chunks, which way, and which files they may come from."""

    model_config = ConfigDict(extra="forbid")

    k: Annotated[int, Field(ge=1, le=100), JSON_INTEGER] | None = Field(
        None, description="How many chunks (default: DROPVEC_TOP_K)"
    )
    mode: Literal["hybrid", "dense", "sparse"] | None = Field(
        None, description="Default: DROPVEC_SEARCH_MODE"
    )
    path: str = Field("", max_length=4096, description="Only files whose path matches this glob, or under it")
    types: list[Annotated[str, Field(max_length=32)]] = Field(
        [], max_length=32, description="Only files of these types (pdf, md...)"
    )
    since: Annotated[date, JSON_DAY] | None = Field(
        None, description="Only files modified on or after this day"
    )
    until: Annotated[date, JSON_DAY] | None = Field(
        None, description="Only files modified on or before this day"
    )

    def query(self, settings: Settings, context: int = 0) -> Query:
        return Query.of(
            settings, self.k, self.mode, path=self.path, types=self.types, since=self.since,
            until=self.until, context=context,
        )  # fmt: skip


class SearchRequest(Retrieval):
    query_text: str = Field(
        alias="query", min_length=1, max_length=MAX_QUESTION_CHARS, description="What to look for"
    )
    context: Annotated[int, JSON_INTEGER] = Field(
        0, ge=0, le=10, description="Neighbouring chunks to return each side of a hit"
    )


class AskRequest(Retrieval):
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)


class HitOut(BaseModel):
    score: float
    file: str
    chunk: int
    text: str
    page: str = ""
    section: str = ""
    title: str = ""
    location: dict[str, str | int] = {}
    context: str = ""


class SearchResponse(BaseModel):
    hits: list[HitOut]


class FileState(BaseModel):
    """A file's state, as ``status --json --files`` gives it, with its path in the inbox."""

    path: str
    relative: str = Field(description="The path relative to the inbox ('' when outside it)")
    status: str
    reason: str = ""
    chunks: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    queued_at: float | None = None
    indexed_at: float | None = None
    updated_at: float | None = None


class FilesResponse(BaseModel):
    files: list[FileState]


class Uploaded(BaseModel):
    files: list[str] = Field(description="The paths written, relative to the inbox")


class Deleted(BaseModel):
    deleted: str


class Retried(BaseModel):
    retried: int = Field(description="Failed files queued again")


class ErrorOut(BaseModel):
    """A refusal or a failure, in one line: the body of every 4xx and 5xx but a 422."""

    detail: str


class AskLine(BaseModel):
    """One line of ``POST /ask``'s stream: each holds exactly one of these."""

    model_config = ConfigDict(extra="forbid")

    sources: list[HitOut] | None = None
    text: str | None = None
    notice: str | None = None
    done: bool | None = None
    error: str | None = None


class NDJSONResponse(StreamingResponse):
    media_type = "application/x-ndjson"


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"


#: What each error status means, wherever a route answers it.
ERRORS = {
    400: "A body that cannot be parsed (not JSON, not UTF-8, a broken form)",
    401: "No valid bearer token (DROPVEC_API_TOKEN)",
    404: "No such file in the inbox",
    411: "An upload without a Content-Length",
    413: f"A file over DROPVEC_MAX_FILE_BYTES, or an upload over {UPLOAD_FILES} times it",
    502: "The LLM failed",
    503: "A service cannot be reached (Valkey or Redis, Milvus), or the store does not fit the settings "
    "(nothing indexed yet, say)",
}


#: A 400 where a path from the request is checked (uploads.inbox_path).
BAD_PATH = (
    "A path that may not be used: outside the inbox, hidden or temporary, through a link or a file, "
    "with a control character, too long; or a body that cannot be parsed"
)


def errors(*codes: int, why: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """The responses ``codes`` for a route's ``responses=``: an ``ErrorOut`` in JSON each (given
    here, not as a model, so that a streaming route's media type does not take it over); ``why``:
    descriptions other than ERRORS'."""
    body = {"application/json": {"schema": ErrorOut.model_json_schema()}}
    documented: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        documented[code] = {"description": {**ERRORS, **(why or {})}[code], "content": body}
        if code == 401:
            bearer = {"description": "Bearer", "schema": {"type": "string", "enum": ["Bearer"]}}
            documented[code]["headers"] = {"WWW-Authenticate": bearer}
    return documented


def _ask_line() -> dict[str, Any]:
    schema = AskLine.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)  # (HitOut is among the components: the search response holds it)
    return schema


ASK_LINE = _ask_line()


def streamed(media_type: str, line: dict[str, Any], description: str) -> dict[int | str, dict[str, Any]]:
    """A streaming route's 200: ``media_type``, each item of which is ``line``."""
    return {200: {"description": description, "content": {media_type: {"itemSchema": line}}}}


#: Each line of an event stream (``event:`` ``files`` or ``status``; ``data:`` one JSON object).
EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["files", "status"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}
