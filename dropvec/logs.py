"""Logging for every dropvec process: plain text lines, or one JSON object a line
(``DROPVEC_LOG_FORMAT=json``) for log shippers."""

from __future__ import annotations

import logging

from dropvec.config.settings import Settings


def configure_logging(settings: Settings, *, quiet: bool = False) -> None:
    """``quiet``: no INFO lines (for commands whose output is their result); a DEBUG level set on
    purpose still logs everything."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = logging.getLevelName(settings.log_level.upper())
    if quiet and level == logging.INFO:
        level = logging.WARNING
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)  # a library's warning is a log line like any other
