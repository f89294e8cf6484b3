"""In-memory models and stores for the unit tests: the app and core take any model."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelio.identity import ModelIdentity
from modelio.source import Source
from serving.loader import SklearnPredictor
from serving.schema import ColumnSpec, from_columns
from serving.scoring import LoadedModel
from serving.store import ModelStore

COLUMNS = (
    ColumnSpec("carat", "double"),
    ColumnSpec("cut", "string"),
    ColumnSpec("depth", "double", required=False),
    ColumnSpec("count", "long"),
)
ROW: dict[str, Any] = {"carat": 0.5, "cut": "Ideal", "depth": 61.0, "count": 2}


class Linear:
    """Price = 1000 * carat + count: easy to check by hand."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["carat"].to_numpy() * 1000 + frame["count"].to_numpy()


class Exploding:
    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        raise RuntimeError("the model broke")


def loaded(predictor: Any = None, *, version: str = "1", max_rows: int = 5) -> LoadedModel:
    return LoadedModel(
        info=ModelIdentity(name="toy", version=version, run_id=f"run{version}",
                           uri=f"models:/toy/{version}"),
        loaded_at=dt.datetime.now(dt.UTC),
        predictor=predictor or Linear(),
        schema=from_columns(COLUMNS, max_rows=max_rows),
        max_rows=max_rows,
    )


def ready_store(model: LoadedModel) -> ModelStore:
    """A store that has loaded `model` (no thread, no registry)."""
    source = Source(identity=model.info)
    store = ModelStore(resolve=lambda: source, load=lambda _: model, poll_seconds=60)
    assert store.refresh()
    return store


class FakeClock:
    """A monotonic clock that moves only when `advance`d: what the batcher reads for ages
    and deadlines, so a test says "the predict has now run 0.6 s" instead of sleeping 0.6 s
    and hoping the scoring thread was scheduled in time."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleepy(Linear):
    """Takes `seconds` per predict call, like a heavy model."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        time.sleep(self.seconds)
        return super().predict(frame)


class Hanging(Linear):
    """Hangs on any frame holding a row with count 13, until `release` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if (frame["count"] == 13).any():
            self.release.wait(60)
        return super().predict(frame)


class Fatal(BaseException):
    """Not an Exception: what kills a thread (as a C extension's abort would)."""


class Killing(Linear):
    """Kills the scoring thread on a row with count 66."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if (frame["count"] == 66).any():
            raise Fatal
        return super().predict(frame)


def ridge_pipeline(*, carat_spread: float) -> SklearnPredictor:
    """Scaler + one-hot (unknown categories ignored), then ridge, as the demo's pipeline;
    carat's scale is `carat_spread`."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"carat": 0.5 + carat_spread * rng.standard_normal(200),
                          "cut": rng.choice(["Ideal", "Good"], 200),
                          "depth": 61 + rng.standard_normal(200),
                          "count": rng.integers(0, 10, 200)})
    target = 1e6 * (frame["carat"] - 0.5) / carat_spread + frame["count"]
    encode = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    pipeline = Pipeline([
        ("prepare", ColumnTransformer([("num", StandardScaler(), ["carat", "depth", "count"]),
                                       ("cat", encode, ["cut"])])),
        ("ridge", Ridge()),
    ]).fit(frame, target)
    return SklearnPredictor(pipeline)
