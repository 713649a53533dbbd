"""dropvec's exceptions: the only ones raised above the adapters.

DropvecError
├── InputFileError            a file the user gave us cannot be indexed (their problem; one line)
│   ├── SkippedFile           nothing to do: unsupported type, no text, unchanged
│   └── UnreadableFile        the file is broken: corrupt, undecodable, unreadable
├── ServiceUnavailable        a service cannot be reached, timed out or failed (ours; retried)
│   ├── RedisUnavailable      the ledger's Redis, or the task queue's broker
│   ├── MilvusUnavailable     the vector store
│   └── LLMUnavailable        the LLM endpoint `ask` uses
└── ConfigError               a setting is invalid or contradicts the store

Each adapter turns its library's exceptions into these, once, at its boundary (the ledger in
``dropvec.ledger``, the queue in ``dropvec.workers.app``, Milvus in ``dropvec.workers.store``, the
LLM in ``dropvec.answer``). Celery retries exactly ``ServiceUnavailable``; the CLI and the API
catch only ``DropvecError``; ``one_line`` makes the one-line message of any of them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class DropvecError(Exception):
    """Base of every error dropvec raises on purpose."""


class InputFileError(DropvecError):
    """A file cannot be indexed; ``reason`` is one line meant for the user."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(reason.split()) or "unknown error"
        super().__init__(f"{self.path}: {self.reason}")


class SkippedFile(InputFileError):
    """Nothing to index in this file; not an error of the file itself."""


class UnreadableFile(InputFileError):
    """The file is broken or cannot be parsed."""


class ServiceUnavailable(DropvecError):
    """A service dropvec needs cannot be reached, timed out, or failed; or could not be started."""


class RedisUnavailable(ServiceUnavailable):
    """Redis (the ledger, or the queue's broker)."""


class MilvusUnavailable(ServiceUnavailable):
    """Milvus."""


class LLMUnavailable(ServiceUnavailable):
    """The LLM endpoint failed: unreachable, refused the key, or answered with an error."""


class ConfigError(DropvecError):
    """A setting is invalid, or the existing collection does not match the model."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``exc`` as one line for the user: its type and its message, whitespace folded, cut at ``limit``."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:limit]}"


def mapping(
    foreign: tuple[type[BaseException], ...], ours: type[ServiceUnavailable], service: str
) -> Callable[[F], F]:
    """A decorator for an adapter's functions (plain, async or generators): ``foreign`` errors
    leave them as ``ours``, with the service named and the cause chained."""

    def translate(exc: BaseException) -> ServiceUnavailable:
        return ours(f"{service}: {one_line(exc)}")

    def decorate(fn: F) -> F:
        if inspect.isasyncgenfunction(fn):
            raise TypeError("async generators are not mapped")
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def coroutine(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await fn(*args, **kwargs)
                except foreign as exc:
                    raise translate(exc) from exc

            return coroutine  # type: ignore[return-value]
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def generator(*args: Any, **kwargs: Any) -> Any:
                try:
                    yield from fn(*args, **kwargs)
                except foreign as exc:
                    raise translate(exc) from exc

            return generator  # type: ignore[return-value]

        @functools.wraps(fn)
        def plain(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except foreign as exc:
                raise translate(exc) from exc

        return plain  # type: ignore[return-value]

    return decorate


def mapped_methods(decorator: Callable[[F], F]) -> Callable[[type], type]:
    """A class decorator: ``decorator`` on every public method the class defines."""

    def decorate(cls: type) -> type:
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and inspect.isfunction(member):
                setattr(cls, name, decorator(member))  # type: ignore[arg-type]
        return cls

    return decorate
