"""Check the labelled retrieval question set: every answer is a passage of its file as dropvec reads it.

    .venv/bin/python -m bench.check_retrieval [--questions bench/retrieval.json]

``bench/retrieval.json`` is a list of questions on the seed and public corpora, each
``{"corpus", "path", "kind", "question", "answer"}``. Each file is read with ``read_sections`` (once),
its sections joined by blank lines; whitespace runs are collapsed to one space in both the text and the
answer, and the answer must occur in the text. Also checked: the corpus is ``seed`` or ``public``, the
kind is ``paraphrase``, ``keyword`` or ``fact``, the answer is 40 to 250 characters, the question is
not empty and not asked twice. Prints one line per problem and a summary by corpus and kind; exits 1
if there is any problem.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

from bench.core import SEED

QUESTIONS = Path(__file__).with_name("retrieval.json")
CORPORA = {"seed": SEED, "public": SEED.parent / "public"}
KINDS = ("paraphrase", "keyword", "fact")
FIELDS = ("corpus", "path", "kind", "question", "answer")
MIN_ANSWER, MAX_ANSWER = 40, 250


def collapse(text: str) -> str:
    """Every run of whitespace as one space, ends stripped."""
    return re.sub(r"\s+", " ", text).strip()


@cache
def file_text(path: Path) -> str:
    """The text dropvec reads from ``path``, whitespace collapsed."""
    from dropvec.producer.read import read_sections

    return collapse("\n\n".join(s.text for s in read_sections(path)))


def field_problems(item: Any) -> list[str]:
    """What is wrong with one item's fields (empty if nothing)."""
    if not isinstance(item, dict):
        return ["not an object"]
    problems = [f"missing or non-string field {f!r}" for f in FIELDS if not isinstance(item.get(f), str)]
    if problems:
        return problems
    problems += [f"unknown field {f!r}" for f in item if f not in FIELDS]
    if item["corpus"] not in CORPORA:
        problems.append(f"corpus {item['corpus']!r} is not one of {sorted(CORPORA)}")
    if item["kind"] not in KINDS:
        problems.append(f"kind {item['kind']!r} is not one of {list(KINDS)}")
    if not item["question"].strip():
        problems.append("empty question")
    length = len(collapse(item["answer"]))
    if not MIN_ANSWER <= length <= MAX_ANSWER:
        problems.append(f"answer is {length} characters, not {MIN_ANSWER} to {MAX_ANSWER}")
    return problems


def answer_problems(item: dict[str, str]) -> list[str]:
    """Whether the item's file can be read and holds its answer."""
    path = CORPORA[item["corpus"]] / item["path"]
    if not path.is_file():
        return [f"no such file {path}"]
    try:
        text = file_text(path)
    except Exception as e:  # noqa: BLE001 - any failure to read is reported as a problem
        return [f"cannot read {path}: {e}"]
    if collapse(item["answer"]) not in text:
        return [f"answer not in {item['corpus']}/{item['path']}: {item['answer'][:60]!r}"]
    return []


def check(items: list[Any]) -> list[str]:
    """One line per problem over all items, each line prefixed with the item's index."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        found = field_problems(item)
        if not found:
            found = answer_problems(item)
            key = collapse(item["question"]).lower()
            if key in seen:
                found.append(f"duplicate question (also #{seen[key]}): {item['question']!r}")
            seen.setdefault(key, i)
        problems += [f"#{i}: {p}" for p in found]
    return problems


def summary(items: list[Any]) -> list[str]:
    """Counts by corpus and kind, and the number of distinct files."""
    valid = [i for i in items if isinstance(i, dict)]
    pairs = Counter((i.get("corpus"), i.get("kind")) for i in valid)
    lines = []
    for corpus in CORPORA:
        counts = ", ".join(f"{kind} {pairs[(corpus, kind)]}" for kind in KINDS)
        total = sum(pairs[(corpus, kind)] for kind in KINDS)
        lines.append(f"{corpus}: {total} ({counts})")
    kinds = Counter(i.get("kind") for i in valid)
    lines.append("kinds: " + ", ".join(f"{kind} {kinds[kind]}" for kind in KINDS))
    files = {(i.get("corpus"), i.get("path")) for i in valid}
    lines.append(f"{len(items)} questions on {len(files)} distinct files")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=QUESTIONS, help="the question set (JSON list)")
    args = parser.parse_args(argv)
    items = json.loads(args.questions.read_text(encoding="utf-8"))
    if not isinstance(items, list):
        print(f"{args.questions}: not a JSON list")
        return 1
    problems = check(items)
    for line in problems + summary(items):
        print(line)
    print(f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
