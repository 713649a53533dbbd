"""Markdown and HTML as sections under their headings: each section's text, its heading path
(``header_path``: ``/Title/Section/Subsection/``) and the document's title travel with every chunk.

Pure functions of a document's decoded text. Markdown is parsed by cmark-gfm, CommonMark's C
reference parser (``cmarkgfm``: a ``#`` inside a code block is no heading, underlined headings
are), for where its headings are; its text is kept as written, so
paragraph breaks, code and ``<angle brackets>`` survive. HTML is parsed by BeautifulSoup; scripts,
styles and other non-text elements are dropped, block elements end paragraphs, and whitespace
collapses as a browser collapses it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from dropvec.producer.chunk import Section

if TYPE_CHECKING:
    from bs4 import PageElement, Tag

#: YAML front matter at the very top of a Markdown file (kept as text, not read as a heading).
FRONT_MATTER = re.compile(r"\A---[ \t]*\n.*?\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)


#: Sections are packed with their neighbours into runs of at most this many characters (about
#: two 256-token chunks of prose), each run under its first section's heading path. Cut at every
#: heading, a folder of short sections made chunks too small to rank: bench.retrieval found the
#: answer to 64% of paraphrased questions so, 67% with runs of 2,400 characters (docs/benchmarks.md).
PACKED_CHARS = 2400


def packed(sections: list[Section]) -> list[Section]:
    """``sections`` with each short one joined to the short run before it (``Section.joined``)."""
    out: list[Section] = []
    run = PACKED_CHARS + 1  # (the first section starts a run)
    for section in sections:
        size = len(section.text)
        if run + size <= PACKED_CHARS:
            out.append(Section(section.text, section.metadata, joined=True))
            run += size
        else:
            out.append(section)
            run = size
    return out


class Headings:
    """The open headings above the current point of a document, by level."""

    def __init__(self) -> None:
        self.open: list[tuple[int, str]] = []

    def enter(self, level: int, text: str) -> None:
        self.open = [(lv, t) for lv, t in self.open if lv < level] + [(level, text)]

    def metadata(self, title: str) -> dict[str, str | int | float]:
        meta: dict[str, str | int | float] = {"title": title} if title else {}
        if self.open:
            meta["header_path"] = "/" + "".join(t.replace("/", "∕") + "/" for _, t in self.open)
        return meta


#: In cmark's HTML with source positions: a block quote opening or closing, or a heading with its
#: first line and column and its last line (cmark reports an underlined heading's last line
#: one line late or more, so its underline is looked for: ``UNDERLINE``).
MARKS = re.compile(r'<(/?)blockquote[\s>]|<h([1-6]) data-sourcepos="(\d+):(\d+)-(\d+):\d+">')
UNDERLINE = re.compile(r"[ \t]*(?:=+|-+)[ \t]*")


def _headings(lines: list[str], skip: int) -> list[tuple[int, int, int, str]]:
    """The headings of ``lines[skip:]`` outside block quotes (those are quoted text, not the
    document's; headings in list items count): level, first line, the line after the last (in
    ``lines``), and the heading's text as written (inline markup kept, ``#`` marks and underline
    left out)."""
    from cmarkgfm import markdown_to_html
    from cmarkgfm.cmark import Options

    found, quoted = [], 0
    rendered = markdown_to_html("\n".join(lines[skip:]), options=Options.CMARK_OPT_SOURCEPOS)
    for m in MARKS.finditer(rendered):
        if m.group(2) is None:
            quoted += -1 if m.group(1) else 1
            continue
        if quoted:
            continue
        first, column, last = int(m.group(3)) - 1 + skip, int(m.group(4)) - 1, int(m.group(5)) - 1 + skip
        start = lines[first].encode()[column:].decode(errors="replace")  # (byte columns)
        if last == first:  # #-marked: its opening #s, then its text, then any closing #s
            rest = start.lstrip("#")
            end = len(rest.rstrip(" \t"))
            closing = len(rest[:end].rstrip("#"))
            if closing > 0 and rest[closing - 1] in " \t":
                end = closing
            found.append((int(m.group(2)), first, first + 1, rest[:end].strip()))
            continue
        under = next((i for i in range(first + 1, len(lines)) if UNDERLINE.fullmatch(lines[i])), first + 1)
        text = "\n".join([start, *lines[first + 1 : under]]).strip()
        found.append((int(m.group(2)), first, under + 1, text))
    return found


def markdown_sections(text: str) -> list[Section]:
    """A Markdown document as one section before its first heading and one per heading."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    front = FRONT_MATTER.match(text)
    skip = front.group().count("\n") if front else 0
    lines = text.split("\n")
    heads = _headings(lines, skip)
    title = next((h[3] for h in heads if h[0] == 1), "")
    headings = Headings()
    first_heading = heads[0][1] if heads else len(lines)
    preamble = "\n".join(lines[:first_heading]).strip("\n")
    sections = [Section(preamble, headings.metadata(title))] if preamble.strip() else []
    for j, (level, _, last, heading) in enumerate(heads):
        end = heads[j + 1][1] if j + 1 < len(heads) else len(lines)
        headings.enter(level, heading)
        body = "\n".join(lines[last:end]).strip("\n")
        if body.strip():
            sections.append(Section(f"{heading}\n\n{body}", headings.metadata(title)))
        elif heading and not (j + 1 < len(heads) and heads[j + 1][0] > level):
            # (one with nothing under it lives on in its subsections' paths; without any, alone)
            sections.append(Section(heading, headings.metadata(title)))
    return packed(sections)


#: Elements that hold no reading text.
DROPPED = ("script", "style", "noscript", "template", "head", "title", "svg", "canvas", "iframe", "object")
#: Elements after which a paragraph ends.
BLOCKS = (
    "address", "article", "aside", "blockquote", "dd", "details", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "header", "hr", "li", "main", "nav", "ol", "p", "pre",
    "section", "summary", "table", "tr", "ul", "caption",
)  # fmt: skip
HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
#: Marks a heading in the flattened text (a private-use character, removed from the input first).
MARK = "\ue000"


def html_sections(text: str) -> list[Section]:
    """An HTML document as one section before its first heading and one per heading."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text.replace(MARK, ""), "html.parser")
    title = " ".join(soup.title.get_text(" ").split()) if soup.title else ""
    return packed(list(_split_at_marks(_flatten(soup.body or soup), title)))


def _flatten(root: Tag) -> str:
    """The reading text of ``root``, its headings marked; one walk, no recursion and no changes to
    the tree (either is quadratic or worse on a hostile document nested thousands deep)."""
    from bs4 import NavigableString, Tag

    out: list[str] = []
    stack: list[PageElement | None] = [root]  # None: a block element ends here
    while stack:
        node = stack.pop()
        if node is None:
            out.append("\n\n")
        elif isinstance(node, NavigableString):
            if type(node) is NavigableString:  # (not a comment, doctype, CDATA or instruction)
                words = re.sub(r"\s+", " ", node)
                if not out or out[-1].endswith("\n"):
                    words = words.lstrip(" ")  # (a line starts: no space before its text)
                if words:
                    out.append(words)
        elif isinstance(node, Tag) and node.name not in DROPPED:
            if node.name == "br":
                out.append("\n")
            elif node.name in HEADINGS:
                words = " ".join(node.get_text(" ").split())
                out.append(f"\n\n{MARK}{node.name[1]}{MARK}{words}{MARK}\n\n")
            elif node.name == "pre":
                out.append(f"\n\n{node.get_text()}\n\n")  # as written
            else:
                if node.name in BLOCKS:
                    stack.append(None)
                stack.extend(reversed(node.contents))
    return "".join(out)


def _split_at_marks(flat: str, title: str) -> Iterator[Section]:
    headings = Headings()
    pieces = flat.split(MARK)
    # pieces: text, level, heading, text, level, heading, text, ...
    for i in range(0, len(pieces), 3):
        if i:
            headings.enter(int(pieces[i - 2]), pieces[i - 1])
        part = _paragraphs(pieces[i])
        heading = pieces[i - 1] if i else ""
        # (a heading with nothing under it lives on in its subsections' paths; without any, alone)
        subsections = i + 1 < len(pieces) and i and int(pieces[i + 1]) > int(pieces[i - 2])
        if part or (heading and not subsections):
            yield Section("\n\n".join(p for p in (heading, part) if p), headings.metadata(title))


def _paragraphs(text: str) -> str:
    """``text`` with trailing spaces trimmed and runs of blank lines made one."""
    lines = [line.rstrip(" \t") for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
