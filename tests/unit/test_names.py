"""What the watcher and the producer leave alone, and what a stored vector is keyed by."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropvec.config.messages import embed_hash
from dropvec.config.settings import Settings
from dropvec.producer.files import expand, is_ignored


@pytest.mark.parametrize(
    "name",
    ["~$report.docx", ".~lock.notes.odt#", "movie.part", "x.tmp", "a.crdownload", ".a.swp", "a~", ".env"],
)
def test_temporary_lock_and_hidden_files_are_ignored(name: str) -> None:
    assert is_ignored(Path(name))


@pytest.mark.parametrize("name", ["report.docx", "notes.md", "part.txt", "tmp.csv", "~home.txt"])
def test_ordinary_files_are_not(name: str) -> None:
    assert not is_ignored(Path(name))


def test_a_folder_is_expanded_without_ignored_files_or_hidden_folders(tmp_path: Path) -> None:
    for rel in ("a.md", "sub/b.txt", "sub/~$b.docx", ".git/c.md", "sub/.cache/d.md", "e.part"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert [p.relative_to(tmp_path).as_posix() for p in expand([tmp_path])] == ["a.md", "sub/b.txt"]
    own = [p.relative_to(tmp_path).as_posix() for p in expand([tmp_path], ignore=("*.md",))]
    assert own == ["e.part", "sub/b.txt", "sub/~$b.docx"]


def test_ignore_patterns_are_configurable_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROPVEC_IGNORE", '["*.log", "draft-*"]')
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.ignore == ("*.log", "draft-*")
    assert Settings(**{}).to_env()["DROPVEC_IGNORE"] == '["*.log", "draft-*"]'


def test_a_vector_is_keyed_by_model_and_exact_text() -> None:
    assert embed_hash("model-a", "text") == embed_hash("model-a", "text")
    assert embed_hash("model-a", "text") != embed_hash("model-b", "text")
    assert embed_hash("model-a", "text") != embed_hash("model-a", "text ")
