"""Every YAML example in the docs that claims to be (part of) a card or a dataset schema
is one the code accepts: a renamed or removed key (`holdout_fraction`) fails here.

A block claims to be a card when its top-level keys are the card's sections (`model`,
`promotion`, `data`, `card`, `monitoring`), a schema when it has `name`, `task` and
`target`. A card fragment is laid over the repository's card (its placeholders, `...`
and `<...>`, keep the card's value; a placeholder key such as `<metric>` stands for the
map's shape), and the result must validate: so every key it names must exist, with a
value of the right kind.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from pipeline.gitops.card import ModelCard
from pipeline.stages.datasets.schema_file import SchemaEntry
from tests.utils import REPO

DOCS = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]
BLOCK = re.compile(r"^```ya?ml[^\n]*\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)
CARD_SECTIONS = set(ModelCard.model_fields)
SCHEMA_KEYS = {"name", "task", "target"}


def yaml_blocks() -> list[tuple[str, Any]]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            where = f"{path.relative_to(REPO)}:{text[:match.start()].count(chr(10)) + 1}"
            found.append((where, yaml.safe_load(match.group(1))))
    return found


def _claims(kind: str) -> list[tuple[str, Any]]:
    blocks = [(where, value) for where, value in yaml_blocks() if isinstance(value, dict)]
    if kind == "card":
        return [(w, v) for w, v in blocks if set(v) <= CARD_SECTIONS]
    return [(w, v) for w, v in blocks if set(v) >= SCHEMA_KEYS]


def _is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and (value.strip() == "..." or
                                       re.fullmatch(r"<[^<>]+>", value.strip()) is not None)


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_is_placeholder(k) or _has_placeholder(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_placeholder(v) for v in value)
    return _is_placeholder(value)


def _laid_over(base: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in fragment.items():
        if _is_placeholder(key):
            continue  # `{<metric>: <bound>}`: the shape of a map, not a key of it
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _laid_over(merged[key], value)
        elif key not in merged and _has_placeholder(value):
            continue  # an optional section shown by its shape: not a value to check
        elif _is_placeholder(value):
            merged.setdefault(key, value)
        else:
            merged[key] = value
    return merged


def test_the_docs_show_cards_and_schemas() -> None:
    assert len(_claims("card")) >= 4
    assert len(_claims("schema")) >= 1


@pytest.mark.parametrize(("where", "block"), _claims("card"))
def test_every_card_example_validates(where: str, block: dict[str, Any]) -> None:
    base = yaml.safe_load((REPO / "model_card.yaml").read_text())
    try:
        ModelCard.model_validate(_laid_over(base, block))
    except ValidationError as err:
        pytest.fail(f"{where}: not a card the code accepts: {err}")


@pytest.mark.parametrize(("where", "block"), _claims("schema"))
def test_every_schema_example_validates(where: str, block: dict[str, Any]) -> None:
    try:
        SchemaEntry.model_validate(block)
    except ValidationError as err:
        pytest.fail(f"{where}: not a schema the code accepts: {err}")


def test_a_stale_key_in_an_example_fails(tmp_path: Path) -> None:
    """What the check above would say of docs/data.md's former example."""
    base = yaml.safe_load((REPO / "model_card.yaml").read_text())
    with pytest.raises(ValidationError, match="holdout_fraction"):
        ModelCard.model_validate(_laid_over(base, {"data": {"holdout_fraction": 0.2}}))
