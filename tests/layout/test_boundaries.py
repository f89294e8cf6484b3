"""The package boundaries of docs/architecture.md, read from the source by walking imports.

`serving/` is what the image ships, so it must import nothing of `pipeline/`; `modelio/`
(the one way a model is resolved, verified and loaded) ships with it and imports
neither; inside `pipeline`, stages know no GitOps and no commands, and no two
subpackages import each other in a cycle. Of `serving`, the pipeline may import only
`serving.prediction_log` (the one record of a scored row, which batch scoring writes and
the monitor reads).
Each rule names the file and the import that breaks it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils import REPO

SHARED_WITH_SERVING = ("serving.prediction_log",)
# pipeline's parts and whom each may import (besides itself and the standard library).
ALLOWED: dict[str, set[str]] = {
    "pipeline.errors": set(),
    "pipeline.files": {"pipeline.errors"},
    "pipeline.progress": set(),
    "pipeline.settings": {"pipeline.errors"},
    "pipeline.stages": {"pipeline.errors", "pipeline.settings", "pipeline.files",
                        "pipeline.progress"},
    "pipeline.gitops": {"pipeline.errors", "pipeline.settings", "pipeline.stages",
                        "pipeline.files", "pipeline.progress"},
    "pipeline.monitoring": {"pipeline.errors", "pipeline.settings", "pipeline.stages",
                            "pipeline.gitops", "pipeline.files"},
    "pipeline.jobs": {"pipeline.errors", "pipeline.settings", "pipeline.stages",
                      "pipeline.gitops", "pipeline.files", "pipeline.progress",
                      "pipeline.serving_client"},
    "pipeline.api": {"pipeline.errors", "pipeline.settings", "pipeline.stages",
                     "pipeline.gitops", "pipeline.jobs"},
    "pipeline.localstack": {"pipeline.errors", "pipeline.settings"},
    "pipeline.serving_client": {"pipeline.errors", "pipeline.settings"},
    "pipeline.cli": {"pipeline.errors", "pipeline.settings", "pipeline.files",
                     "pipeline.progress", "pipeline.stages",
                     "pipeline.gitops", "pipeline.localstack", "pipeline.serving_client",
                     "pipeline.monitoring", "pipeline.jobs"},
}


def _module_name(path: Path) -> str:
    inside = path.is_relative_to(REPO)
    parts = list((path.relative_to(REPO) if inside else Path(path.name)).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module) of every import in a file, in function bodies too."""
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
            yield node.lineno, module
            for alias in node.names:  # `from pipeline import registry` imports a submodule
                yield node.lineno, f"{module}.{alias.name}"


def part_of(module: str) -> str | None:
    """The `ALLOWED` part a pipeline module belongs to (None outside pipeline)."""
    for part in sorted(ALLOWED, key=len, reverse=True):
        if module == part or module.startswith(part + "."):
            return part
    return "pipeline" if module == "pipeline" else None


def _shared_names(path: Path, line: int) -> bool:
    """`from serving import prediction_log` names the shared module, nothing more."""
    source = path.read_text(encoding="utf-8").splitlines()[line - 1]
    return source.strip() == "from serving import prediction_log"


def _shared(module: str) -> bool:
    return any(module == shared or module.startswith(shared + ".")
               for shared in SHARED_WITH_SERVING)


def python_files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("path", python_files("serving"), ids=lambda p: p.name)
def test_serving_imports_nothing_from_pipeline(path: Path) -> None:
    found = [f"{path.relative_to(REPO)}:{line} imports {module}"
             for line, module in imports_of(path)
             if module == "pipeline" or module.startswith("pipeline.")]
    assert not found, "the serving image ships serving/ alone: " + "; ".join(found)


@pytest.mark.parametrize("path", python_files("modelio"), ids=lambda p: p.name)
def test_modelio_imports_nothing_of_pipeline_or_serving(path: Path) -> None:
    found = [f"{path.relative_to(REPO)}:{line} imports {module}"
             for line, module in imports_of(path)
             if module.split(".")[0] in ("pipeline", "serving")]
    assert not found, "modelio ships in the serving image on its own: " + "; ".join(found)


def test_each_pipeline_part_imports_only_what_it_may() -> None:
    found = []
    for path in python_files("pipeline"):
        here = part_of(_module_name(path))
        if here is None or here == "pipeline":
            continue
        for line, module in imports_of(path):
            if module == "serving" or module.startswith("serving."):
                if not _shared(module) and not (module == "serving" and _shared_names(path, line)):
                    found.append(f"{path.relative_to(REPO)}:{line} imports {module} (serving/)")
                continue
            there = part_of(module)
            if there in (None, here, "pipeline"):
                continue
            if there not in ALLOWED[here]:
                found.append(f"{path.relative_to(REPO)}:{line}: {here} imports {module}")
    assert not found, "; ".join(found)


def test_no_import_cycle_between_pipeline_parts() -> None:
    edges: dict[str, set[str]] = {part: set() for part in ALLOWED}
    for path in python_files("pipeline"):
        here = part_of(_module_name(path))
        if here not in ALLOWED:
            continue
        for _, module in imports_of(path):
            there = part_of(module)
            if there in ALLOWED and there != here:
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
