"""The configuration reference (docs/configuration.md), made from the settings object itself, so
that it cannot drift from it: ``python -m dropvec.config.reference > docs/configuration.md``.

A unit test fails when the file is out of date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from dropvec.config.settings import MAX_AUTO_WORKERS, Settings

HEADER = """# Configuration

One typed settings object (`config/settings.py`), read from `DROPVEC_*` environment variables and
from a `.env` file in the working directory. `dropvec up` passes its settings on to the workers it
starts; every command-line option can also be set by the variable its `--help` names.

This page is made from the settings object (`python -m dropvec.config.reference`); a test fails
when it is out of date.

| variable | default | meaning |
|---|---|---|
"""


FOOTER = f"""
Options of single commands, also read from the environment: `DROPVEC_WORKERS` (`up --workers`,
default: one per core, at most {MAX_AUTO_WORKERS}), `DROPVEC_WORKER_NAME` (`worker --name`,
default: the host's name).
"""


#: Defaults that depend on the machine, as the page shows them.
MACHINE_DEFAULTS = {"cache_dir": "`$XDG_CACHE_HOME/dropvec`, else `~/.cache/dropvec`"}


def _shown(value: Any) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None or value == "":
        return "empty" if value == "" else "none"
    if isinstance(value, Path):
        home = str(Path.home())
        text = str(value)
        return f"`~{text[len(home) :]}`" if text.startswith(home + "/") else f"`{text}`"
    if isinstance(value, (tuple, list)):
        return f"`{json.dumps(list(value))}`"
    return f"`{value}`"


def markdown() -> str:
    """The whole page."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = MACHINE_DEFAULTS.get(name) or _shown(field.get_default(call_default_factory=True))
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `DROPVEC_{name.upper()}` | {default} | {meaning} |")
    return HEADER + "\n".join(rows) + "\n" + FOOTER


if __name__ == "__main__":
    print(markdown(), end="")
