"""What a loaded model is to the server: its identity, its predictor, its request schema.

The loader (`serving.loader`) builds a `LoadedModel`; the store swaps it in as one
reference; the scoring core and the protocol routers only read it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

import pandas as pd

from modelio.identity import ModelIdentity
from serving.schema import ColumnBatch, FeatureSchema

Inputs: TypeAlias = pd.DataFrame | ColumnBatch
"""Rows as a predictor takes them: a frame, or column arrays where it `takes_columns`."""


class Predictor(Protocol):
    """A runtime's model: `predict` (labels or values) and `predict_proba` (a classifier's).

    A predictor whose class sets `takes_columns = True` is handed a `ColumnBatch`
    instead of a pandas frame.
    """

    def predict(self, frame: Inputs) -> Any: ...

    def predict_proba(self, frame: Inputs) -> Any: ...


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score: swapped in as one reference, never changed afterwards."""

    info: ModelIdentity
    loaded_at: dt.datetime
    predictor: Predictor
    schema: FeatureSchema | None
    max_rows: int
    example: list[dict[str, Any]] | None = None  # from the input example, for OpenAPI
    runtime: str = "sklearn"
    """`onnx` (the verified compiled twin) or `sklearn` (the skops model)."""
    twin: str | None = None
    """Why the twin does not serve (no twin, turned off, refused), or None when it does."""
    classes: tuple[Any, ...] | None = None
    """A classifier's labels, in the order of its probability columns; None: a regressor."""
    params: Any = None
    """The signature's `ParamSchema` (MLflow), or None: `params` sent are ignored."""
    pending: Callable[[], LoadedModel] | None = field(default=None, compare=False, repr=False)
    """Served from its twin before its sklearn model was loaded: what is left to do (load
    and check the sklearn model, `serving.loader`), returning the model to serve from
    then on. None: nothing is left."""
