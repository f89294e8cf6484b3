"""The package boundaries of docs/architecture.md, read from the doc and enforced on the code.

The table between `<!-- packages: begin -->` and `<!-- packages: end -->` in
docs/architecture.md says, for each package, what it may import of ours: `modelio`
(models as data) and `serving` (what the image ships) import nothing of `pipeline`;
inside `pipeline`, stages know no GitOps and no commands; and no two parts import each
other in a cycle. Every import of every file is walked (in function bodies too), and
each rule names the file and the import that breaks it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from tests.utils import REPO

DOC = REPO / "docs" / "architecture.md"
PACKAGES = ("modelio", "serving", "pipeline")


@cache
def allowed() -> dict[str, frozenset[str]]:
    """package -> what it may import of ours, from the doc's table."""
    text = DOC.read_text(encoding="utf-8")
    table = text.split("<!-- packages: begin -->", 1)[1].split("<!-- packages: end -->", 1)[0]
    rules: dict[str, frozenset[str]] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        rules[cells[0].strip("`")] = frozenset(re.findall(r"`([\w.]+)`", cells[2]))
    return rules


def _module_name(path: Path) -> str:
    inside = path.is_relative_to(REPO)
    parts = list((path.relative_to(REPO) if inside else Path(path.name)).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module) of every import in a file, in function bodies too; `from X
    import Y` counts as importing `X.Y` (Y may be a submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def _matches(module: str, name: str) -> bool:
    return module == name or module.startswith(name + ".")


def part_of(module: str) -> str | None:
    """The table's package a module belongs to (None: not ours, or the `pipeline` root)."""
    found = [name for name in allowed() if _matches(module, name)]
    return max(found, key=len) if found else None


def python_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def test_the_table_names_every_package_and_only_packages_that_exist() -> None:
    named = set(allowed())
    assert {"modelio", "serving", "pipeline.stages", "pipeline.gitops", "pipeline.cli"} <= named
    for name in named:
        path = REPO / name.replace(".", "/")
        assert path.is_dir() or path.with_suffix(".py").is_file(), name
    for path in python_files():
        module = _module_name(path)
        if module != "pipeline":
            assert part_of(module) is not None, f"{module} belongs to no package of the table"


def test_each_package_imports_only_what_the_table_allows() -> None:
    found = []
    for path in python_files():
        here = part_of(_module_name(path))
        if here is None:
            continue
        for line, module in imports_of(path):
            if module.split(".")[0] not in PACKAGES or module == "pipeline":
                continue
            there = part_of(module)
            if there in (None, here) or module.startswith("pipeline.__"):
                continue
            if not any(_matches(module, name) for name in allowed()[here]):
                found.append(f"{path.relative_to(REPO)}:{line}: {here} imports {module}")
    assert not found, "; ".join(found)


def test_no_import_cycle_between_packages() -> None:
    edges: dict[str, set[str]] = {part: set() for part in allowed()}
    for path in python_files():
        here = part_of(_module_name(path))
        if here is None:
            continue
        for _, module in imports_of(path):
            there = part_of(module)
            if there is not None and there != here:
                edges[here].add(there)

    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt}))
                   for nxt in edges[start])

    cycles = [part for part in edges if reaches(part, part)]
    assert not cycles, f"import cycles through {', '.join(cycles)}"


def test_the_walker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The rule can fail: a stray import, even inside a function, is found."""
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("def f():\n    from pipeline.gitops import card\n    return card\n")
    assert (2, "pipeline.gitops.card") in list(imports_of(sneaky))
    assert part_of("pipeline.gitops.card") == "pipeline.gitops"
    assert "pipeline.gitops" not in allowed()["serving"]


@pytest.mark.parametrize("package", ["serving", "modelio"])
def test_what_the_image_ships_imports_nothing_of_pipeline(package: str) -> None:
    found = [f"{path.relative_to(REPO)}:{line} imports {module}"
             for path in sorted((REPO / package).rglob("*.py"))
             for line, module in imports_of(path) if _matches(module, "pipeline")]
    assert not found, "the serving image ships serving/ and modelio/ alone: " + "; ".join(found)
