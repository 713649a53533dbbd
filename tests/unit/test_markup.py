"""Markdown and HTML cut into sections under their headings, with the heading path and title."""

from __future__ import annotations

import pytest

from dropvec.producer.markup import html_sections, markdown_sections

MARKDOWN = """---
title: Notes
---
Before any heading: List<T> and <a@b.example>.

# Otters

They live in rivers.

And by the sea.

## Food
Urchins, crabs.
```
# a comment in code, not a heading
```

### Tools

Stones.

Dens
----

Holts.
"""


def test_markdown_sections_follow_the_headings_and_keep_the_text_as_written() -> None:
    sections = markdown_sections(MARKDOWN)
    paths = [s.metadata.get("header_path") for s in sections]
    assert paths == [None, "/Otters/", "/Otters/Food/", "/Otters/Food/Tools/", "/Otters/Dens/"]
    assert {s.metadata["title"] for s in sections} == {"Otters"}
    assert "List<T> and <a@b.example>" in sections[0].text and sections[0].text.startswith("---")
    assert sections[1].text == "Otters\n\nThey live in rivers.\n\nAnd by the sea."  # (paragraphs kept)
    assert "# a comment in code, not a heading" in sections[2].text
    assert sections[4].text == "Dens\n\nHolts."  # an underlined heading: its text, not the line


def test_markdown_without_headings_is_one_section() -> None:
    assert [s.text for s in markdown_sections("one\r\n\r\ntwo\n")] == ["one\n\ntwo"]
    assert markdown_sections("") == []


def test_markdown_headings_in_quotes_are_quoted_text_and_in_list_items_headings() -> None:
    text = "> # Quoted\n> text\n\n- # Ünïcödé item\n\n  under it\n\n1. one\n   Two lines\n   ===\n   body\n"
    sections = markdown_sections(text)
    paths = [s.metadata.get("header_path") for s in sections]
    assert paths == [None, "/Ünïcödé item/", "/one\n   Two lines/"]
    assert sections[0].text == "> # Quoted\n> text"
    assert sections[1].text == "Ünïcödé item\n\n  under it"


def test_an_underlined_heading_right_before_the_next_heading_keeps_its_own_lines() -> None:
    # (cmark reports such a heading's last line one line late: the next heading's)
    sections = markdown_sections("Setext\n===\nunder\n## Next ##\nmore\n")
    assert [(s.text, s.metadata["header_path"]) for s in sections] == [
        ("Setext\n\nunder", "/Setext/"),
        ("Next\n\nmore", "/Setext/Next/"),
    ]


def test_a_heading_with_nothing_under_it_and_no_subsections_is_kept() -> None:
    assert [s.text for s in markdown_sections("# Only a title")] == ["Only a title"]
    assert [s.text for s in markdown_sections("text\n\n## Last\n")] == ["text", "Last"]
    assert [s.text for s in markdown_sections("# A\n## B\nunder B\n")] == ["B\n\nunder B"]  # A: in the path
    assert [s.text for s in html_sections("<p>text</p><h2>Last</h2>")] == ["text", "Last"]


HTML = """<!doctype html><html><head><title> Otter   guide </title><style>p{}</style></head>
<body><nav>Home</nav><p>Before   the
heading, <b>bold</b>.</p><!-- a comment -->
<h1>Otters <i>everywhere</i></h1><p>Rivers.</p><div>Sea<br>shore</div><script>alert(1)</script>
<h2>Food/drink</h2><ul><li>urchins</li><li>crabs</li></ul><pre>def eat():
    return "crab"</pre>
<h3>Nothing under it</h3><h2>Dens</h2>Holts.</body></html>"""


def test_html_sections_follow_the_headings_without_scripts_or_styles() -> None:
    sections = html_sections(HTML)
    assert [s.metadata.get("header_path") for s in sections] == [
        None,
        "/Otters everywhere/",
        "/Otters everywhere/Food∕drink/",
        "/Otters everywhere/Food∕drink/Nothing under it/",
        "/Otters everywhere/Dens/",
    ]  # (a heading with nothing under it and no subsections: its own section)
    assert {s.metadata["title"] for s in sections} == {"Otter guide"}
    assert sections[0].text == "Home\n\nBefore the heading, bold."
    assert sections[1].text == "Otters everywhere\n\nRivers.\n\nSea\nshore"
    assert 'def eat():\n    return "crab"' in sections[2].text  # (preformatted text as written)
    assert sections[3].text == "Nothing under it"
    assert all("alert" not in s.text and "comment" not in s.text for s in sections)


@pytest.mark.timeout(120)  # (a hang guard: a quadratic walk takes hours here; not a benchmark)
def test_deeply_nested_html_is_read_without_recursion() -> None:
    assert [s.text for s in html_sections("<div>" * 50_000 + "deep" + "</div>" * 50_000)] == ["deep"]
