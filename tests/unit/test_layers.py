"""The import contract: layers that only import downward, no cycles between modules or between
the packages of one level, one installed name (``dropvec``), and no test or benchmark reaching
for another package's private names.

Every import counts, also those inside functions (a lazy import is still a dependency). The
graph is read from the source with ``ast``: nothing is imported to check it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Where each part of the ``dropvec`` namespace lives in the checkout.
SOURCES = {"dropvec": "dropvec", "dropvec.config": "config", "dropvec.producer": "producer",
           "dropvec.workers": "workers"}  # fmt: skip

#: Top to bottom. A module may import modules of its own layer and of the layers below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("entry points", ("dropvec.__main__", "dropvec.cli", "dropvec.render", "dropvec.api",
                      "dropvec.api_schema", "dropvec.stack", "dropvec.logs", "dropvec.workers.tasks")),
    ("services", ("dropvec.sync", "dropvec.check", "dropvec.repair", "dropvec.status", "dropvec.search",
                  "dropvec.answer", "dropvec.uploads",
                  "dropvec.producer.enqueue", "dropvec.producer.pack", "dropvec.workers.runtime")),
    ("adapters", ("dropvec.ledger", "dropvec.workers.app", "dropvec.workers.store", "dropvec.workers.embed",
                  "dropvec.workers.rerank", "dropvec.workers.encoder", "dropvec.workers.loop",
                  "dropvec.workers.sparse", "dropvec.producer.watch", "dropvec.producer.files",
                  "dropvec.producer.read", "dropvec.producer.formats", "dropvec.producer.decode")),
    ("core", ("dropvec.config", "dropvec.producer.chunk", "dropvec.producer.markup",
              "dropvec.producer.tokens")),
]  # fmt: skip


def modules() -> dict[str, Path]:
    """Every module of the namespace and its file (package ``__init__``s included)."""
    found: dict[str, Path] = {}
    for package, folder in SOURCES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if package == "dropvec" and parts and parts[0] in ("config", "producer", "workers"):
                continue  # the links to the other folders
            found[".".join([package, *parts])] = path
    return found


def imported(path: Path, module: str) -> Iterator[str]:
    """The dotted names ``path`` imports, relative imports resolved."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + int(is_package)]
                base = ".".join([*anchor, base] if base else anchor)
            yield from (f"{base}.{alias.name}" for alias in node.names)  # (a name in it, or a module)


def graph() -> dict[str, set[str]]:
    """Module -> the modules of the namespace it imports."""
    known = modules()
    edges: dict[str, set[str]] = {}
    for module, path in known.items():
        targets = set()
        for name in imported(path, module):
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(f"{name}."):  # (a parent package)
                targets.add(name)
        edges[module] = targets
    return edges


def layer_of(module: str) -> int:
    for depth, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(f"{p}.") for p in prefixes):
            return depth
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_module_imports_only_its_own_layer_and_those_below() -> None:
    edges = graph()
    upward = [
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
        for m, targets in edges.items()
        if m not in SOURCES  # a package's __init__ may name what it holds
        for t in targets
        if layer_of(t) < layer_of(m)
    ]
    assert not upward, "\n".join(upward)


def test_no_cycle_between_modules() -> None:
    assert not cycles(graph())


def test_no_cycle_between_the_packages_of_one_level() -> None:
    edges = graph()
    packages = {m.rpartition(".")[0] for m in edges} | set(SOURCES)
    for package in sorted(p for p in packages if p):

        def child(module: str, package: str = package) -> str | None:
            if not module.startswith(f"{package}."):
                return None
            return f"{package}.{module[len(package) + 1 :].split('.')[0]}"

        siblings: dict[str, set[str]] = {}
        for module, targets in edges.items():
            source = child(module)
            if source is None:
                continue
            siblings.setdefault(source, set()).update(
                c for t in targets if (c := child(t)) is not None and c != source
            )
        assert not cycles(siblings), f"in {package}: {cycles(siblings)}"


def test_nothing_imports_the_folders_by_their_own_names() -> None:
    # config, producer and workers are installed inside dropvec only: an import by the bare name
    # works in a checkout and nowhere else
    bare = []
    for path in sorted(ROOT.glob("[!.]*/**/*.py")):
        if ".venv" in path.parts or path.is_relative_to(ROOT / "dropvec"):
            continue
        for name in imported(path, "x"):
            if name.split(".")[0] in ("config", "producer", "workers"):
                bare.append(f"{path.relative_to(ROOT)}: {name}")
    assert not bare, "\n".join(sorted(set(bare)))


def test_tests_and_benchmarks_use_only_public_names_of_the_packages() -> None:
    private = []
    for path in sorted([*(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dropvec"):
                private += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                            if a.name.startswith("_")]  # fmt: skip
    assert not private, "\n".join(private)


def test_the_contract_sees_the_imports_it_is_about() -> None:
    # (a check that finds no edge would pass on anything)
    edges = graph()
    assert "dropvec.ledger.state" in edges["dropvec.producer.enqueue"]
    assert "dropvec.config.settings" in edges["dropvec.workers.app"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("dropvec.config.settings") == len(LAYERS) - 1


def test_outside_the_checkout_only_dropvec_is_importable(tmp_path: Path) -> None:
    code = (
        "import importlib.util as u\n"
        "print([n for n in ('config', 'producer', 'workers') if u.find_spec(n)])\n"
        "import dropvec.config.settings, dropvec.producer.chunk, dropvec.workers.app\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout, out.stderr)
