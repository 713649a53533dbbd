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
        None, "/Otters everywhere/", "/Otters everywhere/Food∕drink/", "/Otters everywhere/Dens/",
    ]  # fmt: skip
    assert {s.metadata["title"] for s in sections} == {"Otter guide"}
    assert sections[0].text == "Home\n\nBefore the heading, bold."
    assert sections[1].text == "Otters everywhere\n\nRivers.\n\nSea\nshore"
    assert 'def eat():\n    return "crab"' in sections[2].text  # (preformatted text as written)
    assert all("alert" not in s.text and "comment" not in s.text for s in sections)


@pytest.mark.timeout(120)  # (a hang guard: a quadratic walk takes hours here; not a benchmark)
def test_deeply_nested_html_is_read_without_recursion() -> None:
    assert [s.text for s in html_sections("<div>" * 50_000 + "deep" + "</div>" * 50_000)] == ["deep"]
