"""The one card factory: the repository's card under a model name of its own.

Tests share one tracking server per backend, so each needs its own registered model;
the card is copied as text, so its comments stay (as `mlops propose` keeps them).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path

from tests.utils import REPO

REPO_MODEL_NAME = "diamond-price"


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def write_card(directory: Path, name: str, *, replace: Mapping[str, str] | None = None) -> Path:
    """`directory/model_card.yaml`: the repository's card naming model `name`.

    `replace` swaps other snippets of the card's text (e.g. a floor) the same way.
    """
    text = (REPO / "model_card.yaml").read_text().replace(
        f"name: {REPO_MODEL_NAME}", f"name: {name}")
    for old, new in (replace or {}).items():
        if old not in text:
            raise ValueError(f"the repository's card has no {old!r} to replace")
        text = text.replace(old, new)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model_card.yaml"
    path.write_text(text)
    return path
