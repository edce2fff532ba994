"""No package of the repository imports itself in a circle.

Every import counts — at module level, inside a function, or under `if TYPE_CHECKING:` —
because a cycle hidden behind a lazy or type-only import still ties the modules together
(issue 17). The graph is built from the source with `ast`, nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = sorted(
    path.parent
    for pattern in (
        "libs/*/ecowatt_*/__init__.py",
        "services/*/ecowatt_*/__init__.py",
        "simulator/ecowatt_*/__init__.py",
        "standalone/ecowatt_*/__init__.py",
    )
    for path in ROOT.glob(pattern)
)


def _modules(package_dir: Path) -> dict[str, Path]:
    """Dotted module name → file, for every module of one package."""
    found: dict[str, Path] = {}
    for path in package_dir.rglob("*.py"):
        relative = path.relative_to(package_dir.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that module `name` imports, anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            for alias in node.names:
                submodule = f"{stem}.{alias.name}"
                targets.add(submodule if submodule in known else stem)
    resolved: set[str] = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def import_cycles(package_dir: Path) -> list[list[str]]:
    """Every import cycle inside one package."""
    known = _modules(package_dir)
    graph = {name: _imports(name, path, known) for name, path in known.items()}
    return _cycles(graph)


def test_packages_are_found() -> None:
    names = {path.name for path in PACKAGE_DIRS}
    assert {"ecowatt_kernel", "ecowatt_hj212", "ecowatt_simulator", "ecowatt_validation"} <= names


def test_the_checker_sees_a_cycle_behind_type_checking(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import B\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
    )
    (package / "c.py").write_text("def f():\n    from . import d\n")
    (package / "d.py").write_text("from .c import f\n")
    assert import_cycles(package) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]


@pytest.mark.parametrize("package_dir", PACKAGE_DIRS, ids=lambda path: path.name)
def test_no_import_cycle(package_dir: Path) -> None:
    assert import_cycles(package_dir) == []
