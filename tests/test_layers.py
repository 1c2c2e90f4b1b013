"""The layer contract of pyproject.toml ([tool.importlinter]), checked on the import graph of the source.

Every import counts, also those inside functions and under ``if TYPE_CHECKING``: the graph is read
with ``ast`` from the files, not from what happens to be imported at run time. Module names come from
the package-dir mapping of pyproject.toml (``export/`` is ``elsr.export``), which is why this test
checks the contracts itself: import-linter walks the installed ``elsr`` folder and, in an editable
install, does not see ``elsr.export`` and ``elsr.benchmarks``.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
ROOT = "elsr"
FACADE = ROOT  # elsr/__init__.py, the public API: it may import any layer, and nothing may import it


def source_modules() -> dict[str, Path]:
    """Module name -> file, for every .py file of every package folder in pyproject's package-dir."""
    modules = {}
    for package, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            name = ".".join((package, *parts))
            modules[name.removesuffix(".__init__")] = path
    return modules


MODULES = source_modules()


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module of a (possibly relative) ``from ... import``."""
    if not node.level:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")[: len(module.split(".")) - node.level + is_package]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str) -> set[str]:
    """Every module name ``module`` imports, anywhere in the file (a ``from`` import of a submodule counts as
    an import of that submodule)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node)
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target)
    return found


GRAPH = {module: {name for name in imports_of(module) if name in MODULES} for module in MODULES}
EXTERNAL = {module: {name for name in imports_of(module) if name not in MODULES} for module in MODULES}


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def wildcard(pattern: str) -> re.Pattern:
    """import-linter's module wildcards: ``*`` is one name, ``**`` one or more."""
    parts = [r"[^.]+(\.[^.]+)*" if p == "**" else "[^.]+" if p == "*" else re.escape(p) for p in pattern.split(".")]
    return re.compile(r"\.".join(parts) + r"$")


def ignored(contract: dict) -> list[tuple[re.Pattern, re.Pattern]]:
    pairs = [rule.split("->") for rule in contract.get("ignore_imports", [])]
    return [(wildcard(a.strip()), wildcard(b.strip())) for a, b in pairs]


def contracts(kind: str) -> list[dict]:
    found = [c for c in PYPROJECT["tool"]["importlinter"]["contracts"] if c["type"] == kind]
    assert found, f"pyproject.toml has no {kind} contract"
    return found


def layer_of(module: str, layers: list[list[str]], container: str) -> int | None:
    """Index of the layer (0 = top) holding ``module``, or None."""
    for index, siblings in enumerate(layers):
        if any(within(module, f"{container}.{name}") for name in siblings):
            return index
    return None


def parse_layers(contract: dict) -> list[tuple[list[str], bool]]:
    """Each layer's sibling names and whether the siblings are independent (``|``) or not (``:``)."""
    parsed = []
    for layer in contract["layers"]:
        independent = "|" in layer
        parsed.append(([name.strip() for name in re.split(r"[|:]", layer)], independent))
    return parsed


def layer_violations(contract: dict) -> list[str]:
    layers = parse_layers(contract)
    names = [siblings for siblings, _ in layers]
    skip = ignored(contract)
    problems = []
    for container in contract["containers"]:
        for module, targets in GRAPH.items():
            own = layer_of(module, names, container)
            if own is None:
                if contract.get("exhaustive") and module not in (container, FACADE):
                    problems.append(f"{module} is in no layer")
                continue
            for target in targets:
                other = layer_of(target, names, container)
                if other is None or any(a.match(module) and b.match(target) for a, b in skip):
                    continue
                upward = other < own
                same_layer_sibling = other == own and layers[own][1] and not any(
                    within(module, f"{container}.{n}") and within(target, f"{container}.{n}") for n in names[own])
                if upward or same_layer_sibling:
                    why = "a higher layer" if upward else "an independent sibling"
                    problems.append(f"{module} imports {target} ({why})")
    return problems


def test_every_layer_imports_only_downward():
    problems = [p for contract in contracts("layers") for p in layer_violations(contract)]
    assert not problems, "\n".join(problems)


def test_forbidden_imports():
    problems = []
    for contract in contracts("forbidden"):
        for module, targets in GRAPH.items():
            if not any(within(module, source) for source in contract["source_modules"]):
                continue
            problems += [f"{module} imports {target}" for target in targets
                         if any(within(target, f) for f in contract["forbidden_modules"])]
    assert not problems, "\n".join(problems)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module (or a module importing itself)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle():
    cycles = strongly_connected(GRAPH)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_nothing_imports_the_public_api_module():
    importers = [module for module, targets in GRAPH.items() if FACADE in targets]
    assert not importers, f"{importers} import the package {FACADE} itself; import the submodule instead"


def _imported_names(tree: ast.AST) -> list[str]:
    """The absolute module names a file's import statements name."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.append(node.module)
    return names


def test_no_old_top_level_names():
    """``export`` and ``benchmarks`` are installed as elsr.export and elsr.benchmarks only: no source or test
    file imports them by their folder names."""
    old = {folder for package, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items() if package != folder}
    files = [*MODULES.values(), *(REPO / "tests").rglob("*.py"), *REPO.glob("*.py")]
    found = [f"{path.relative_to(REPO)} imports {name}" for path in files
             for name in _imported_names(ast.parse(path.read_text(encoding="utf-8"))) if name.split(".")[0] in old]
    assert not found, "\n".join(found)


def test_argparse_lives_in_the_command_line_layer():
    users = [m for m, names in EXTERNAL.items() if "argparse" in names and not within(m, "elsr.cli")]
    assert not users, f"argparse outside elsr.cli: {users}"


def test_the_checker_sees_what_it_must():
    """The checks above would fail on a bad graph: a cycle, an upward import and a function-level import."""
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    contract = {"containers": ["elsr"], "layers": ["top", "low_a | low_b"], "exhaustive": False}
    global GRAPH
    saved = GRAPH
    try:
        GRAPH = {"elsr.low_a.x": {"elsr.top.y", "elsr.low_b.z"}, "elsr.top.y": {"elsr.low_a.x"}}
        assert sorted(layer_violations(contract)) == [
            "elsr.low_a.x imports elsr.low_b.z (an independent sibling)",
            "elsr.low_a.x imports elsr.top.y (a higher layer)"]
    finally:
        GRAPH = saved
    assert "elsr.export.exporter" in imports_of("elsr.cli.export")
    assert "elsr.cli.bench" in GRAPH["elsr.cli.main"]  # imported inside a function


@pytest.mark.parametrize("module", ["elsr.runtime.loaders", "elsr.export.formats", "elsr.benchmarks.bench"])
def test_module_names_follow_the_package_dir_mapping(module):
    assert module in MODULES and GRAPH[module]
