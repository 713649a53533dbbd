"""The soak, short: three minutes of random operations on a watched folder while a worker is
killed and Redis and Milvus are restarted; then `check` is clean and Milvus holds exactly the
folder's chunks, each once (``bench.soak`` runs it for as long as asked, with its figures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import FAULTS, rss_table, soak

pytestmark = pytest.mark.integration


def test_three_minutes_of_edits_and_faults_end_with_a_clean_check(tmp_path: Path) -> None:
    result = soak(tmp_path, 180, seed=11, fault_every=(25, 40), clean_within=300)
    print(f"\nsoak: {result.operations}, faults {result.faults}, quiet to clean "
          f"{result.quiet_to_clean_seconds} s\n" + "\n".join(rss_table(result)))  # fmt: skip
    assert set(result.faults) == set(FAULTS), result.faults
    assert sum(result.operations.values()) > 100
    assert result.quiet_to_clean_seconds is not None, f"check never clean: {result.findings}"
    assert result.mismatches == []
    assert result.files > 0 and result.chunks > 0
