"""Small, hand-made datasets so unit tests run in milliseconds and show each rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.stages.datasets import Column, DatasetSpec


@pytest.fixture
def tiny_spec() -> DatasetSpec:
    return DatasetSpec(
        name="tiny",
        task="regression",
        target=Column(name="y", kind="numeric", min=0),
        features=(
            Column(name="size", kind="numeric", min=0, min_exclusive=True, max=100),
            Column(name="grade", kind="categorical", categories=("a", "b", "c")),
        ),
    )


@pytest.fixture
def tiny_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    size = rng.uniform(1, 99, n).round(3)
    grade = rng.choice(["a", "b", "c"], n)
    y = 3 * size + np.where(grade == "a", 10.0, 0.0) + rng.normal(0, 1, n)
    return pd.DataFrame({"size": size, "grade": grade, "y": y.round(3)})
