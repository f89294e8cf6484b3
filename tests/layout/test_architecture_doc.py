"""docs/architecture.md says what the code is: every module is named, every path exists.

The module list (between `<!-- modules: begin -->` and `<!-- modules: end -->`) names
each module of `modelio/`, `serving/` and `pipeline/` with its job, no more and no less;
every repository path the document names in backticks exists; every make target it
lists is one the Makefile defines, and every target of the Makefile is named.
"""

from __future__ import annotations

import re
import subprocess

from tests.utils import REPO

DOC = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
PACKAGES = ("modelio", "serving", "pipeline")


def listed_modules() -> list[str]:
    block = DOC.split("<!-- modules: begin -->", 1)[1].split("<!-- modules: end -->", 1)[0]
    return re.findall(r"^- `([\w/]+\.py)`:", block, flags=re.MULTILINE)


def test_the_module_list_names_every_module_once_and_nothing_else() -> None:
    listed = listed_modules()
    assert len(listed) == len(set(listed)), "a module is listed twice"
    actual = {p.relative_to(REPO).as_posix() for package in PACKAGES
              for p in (REPO / package).rglob("*.py")}
    assert sorted(set(listed) - actual) == [], "listed but not in the code"
    assert sorted(actual - set(listed)) == [], "in the code but not in docs/architecture.md"


PATH = re.compile(r"`((?:\.github|benchmarks|dags|docs|examples|infra|modelio|notebooks|"
                  r"pipeline|scripts|serving|tests)/[\w./-]*)`")


def test_every_path_the_document_names_exists() -> None:
    named = sorted(set(PATH.findall(DOC)))
    assert len(named) > 20
    missing = [path for path in named if not (REPO / path.rstrip("/")).exists()]
    assert missing == []


def test_every_make_target_the_document_lists_exists() -> None:
    section = DOC.split("### Make targets beyond the list above", 1)[1].split("\n\n", 1)[0]
    targets = set(re.findall(r"`([a-z][a-z0-9-]+)`", section)) - {"make"}
    assert len(targets) > 20
    done = subprocess.run(["make", "-qp", "-f", "Makefile"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    defined = set(re.findall(r"^([A-Za-z0-9_.\-]+):", done.stdout, flags=re.MULTILINE))
    assert sorted(targets - defined) == []
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    phony = set(re.findall(r"^\.PHONY: ([\w-]+)", makefile, flags=re.MULTILINE))
    unnamed = sorted(t for t in phony if f"`{t}`" not in DOC and f"make {t}" not in DOC)
    assert unnamed == [], "make targets docs/architecture.md does not name"
