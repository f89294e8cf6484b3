"""The scoring core on its own: frames to rows (the warm-up's path), outputs by method."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from serving import scoring
from tests.serving.helpers import ROW, Linear, loaded


class Voting(Linear):
    """A toy classifier: class 1 when carat is over 0.5; counts its calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls.append("predict")
        return (frame["carat"].to_numpy() > 0.5).astype(np.int64)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls.append("predict_proba")
        high = (frame["carat"].to_numpy() > 0.5).astype(np.float64)
        return np.column_stack([1 - high, high])


def test_a_frame_is_validated_as_a_request_is_without_json() -> None:
    model = loaded(max_rows=10)
    frame = pd.DataFrame({"carat": [0.5, 1.0], "cut": ["Ideal", "Good"],
                          "depth": [61.0, np.nan], "count": np.array([2, 5], dtype=np.int64)})
    rows = scoring.rows_of_frame(model, frame)
    assert scoring.score(model, rows).predictions.tolist() == [502.0, 1005.0]
    missing_required = frame.assign(carat=[0.5, np.nan])
    with pytest.raises(scoring.InputError, match=r"^\[1\]\.carat"):
        scoring.rows_of_frame(model, missing_required)


def test_outputs_by_method_and_a_batch_members_share() -> None:
    voting = Voting()
    model = dataclasses.replace(loaded(voting, max_rows=10), classes=(0, 1))
    rows = scoring.rows_of_records(model, [{**ROW, "carat": c} for c in (0.2, 0.9, 0.7)])
    labels = scoring.score(model, rows)
    assert (labels.predictions.tolist(), labels.probabilities) == ([0, 1, 1], None)
    proba = scoring.score(model, rows, scoring.PROBABILITIES)
    assert proba.predictions is None
    assert proba.probabilities.tolist() == [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    both = scoring.score(model, rows, scoring.LABELS_AND_PROBABILITIES)
    assert both.predictions.tolist() == [0, 1, 1]
    share = both.rows(1, 3)
    assert (share.predictions.tolist(), share.probabilities.tolist()) == (
        [1, 1], [[0.0, 1.0], [0.0, 1.0]])
    # A predictor the core knows nothing about: its two methods, once each.
    assert voting.calls == ["predict", "predict_proba", "predict", "predict_proba"]


def test_a_regressor_has_no_probabilities_to_give() -> None:
    with pytest.raises(scoring.InputError, match="regressor"):
        scoring.check_method(loaded(), scoring.LABELS_AND_PROBABILITIES, ("query", "p"))
    scoring.check_method(loaded(), scoring.PREDICT, ("query", "p"))
