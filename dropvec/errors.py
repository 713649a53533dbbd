"""dropvec's exceptions.

DropvecError
├── InputFileError        a file the user gave us cannot be indexed (their problem; one line)
│   ├── SkippedFile       nothing to do: unsupported type, no text, unchanged
│   └── UnreadableFile    the file is broken: corrupt, undecodable, unreadable
├── ServiceUnavailable    Redis or Milvus cannot be reached (ours; retried)
└── ConfigError           a setting is invalid or contradicts the store
"""

from __future__ import annotations


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
    """Redis or Milvus is unreachable or timing out."""


class ConfigError(DropvecError):
    """A setting is invalid, or the existing collection does not match the model."""


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis, the broker or Milvus failing (ours, retried), not a fault of a file."""
    import redis
    from kombu.exceptions import OperationalError

    if isinstance(exc, (ServiceUnavailable, redis.RedisError, OperationalError, ConnectionError)):
        return True
    return type(exc).__module__.startswith("pymilvus")
