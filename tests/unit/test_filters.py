"""Search filters as Milvus expressions: what they admit, and that nothing a user types can break out
of them (a backslash in a LIKE pattern stops Milvus Lite's server; a quote would end the string)."""

from __future__ import annotations

import re
from datetime import date

import pytest

from dropvec.search import Filters


def test_no_filter_is_no_expression() -> None:
    assert Filters().expression() == ""


def test_a_folder_or_file_means_it_and_what_is_under_it() -> None:
    assert (
        Filters(path="/in/docs").expression() == '(file_path like "/in/docs" or file_path like "/in/docs/%")'
    )
    assert Filters(path="/in/docs/").expression() == Filters(path="/in/docs").expression()


def test_a_glob_becomes_a_like_pattern_and_a_relative_path_is_taken_from_here() -> None:
    assert Filters(path="*/2024/*.md").expression() == 'file_path like "%/2024/%.md"'
    assert Filters(path="/in/report-?.pdf").expression() == 'file_path like "/in/report-_.pdf"'
    assert Filters(path="docs").expression().startswith('(file_path like "/')


@pytest.mark.parametrize("hostile", ['/in/a"b', "/in/a\\b", "/in/a\x00b", "/in/a%b", "/in/a'b", "/in/a\nb"])
def test_quotes_backslashes_and_control_characters_never_reach_milvus(hostile: str) -> None:
    expression = Filters(path=hostile).expression()
    inside = re.findall(r'"([^"]*)"', expression)
    assert inside and all(part.startswith("/in/a_b") for part in inside), expression
    assert "\\" not in expression and "\x00" not in expression and "\n" not in expression


def test_types_are_plain_extensions_and_dates_are_whole_days() -> None:
    filters = Filters(types=(".PDF", "md", '"; drop', ""), since=date(2025, 1, 1), until=date(2025, 1, 31))
    assert filters.expression() == (
        'file_type in ["drop", "md", "pdf"] and modified >= 1735689600 and modified < 1738368000'
    )
