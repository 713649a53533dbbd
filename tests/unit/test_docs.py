"""The documentation that is made from the code is up to date, and the README stays short."""

from __future__ import annotations

from pathlib import Path

from dropvec.config.reference import markdown
from dropvec.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_configuration_reference_is_made_from_the_settings_as_they_are() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == markdown(), "out of date: python -m dropvec.config.reference > docs/configuration.md"
    assert all(f"`DROPVEC_{name.upper()}`" in page for name in Settings.model_fields)


def test_every_setting_says_what_it_is_for() -> None:
    assert not [name for name, field in Settings.model_fields.items() if not field.description]


def test_the_readme_is_read_in_five_minutes_and_links_to_the_rest() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for page in ("architecture", "usage", "operations", "benchmarks", "configuration"):
        assert f"docs/{page}.md" in readme and (ROOT / "docs" / f"{page}.md").is_file(), page
