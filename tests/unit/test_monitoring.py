"""The monitor's pure parts: column tests, the correction, windows, the live metric."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import DataError
from pipeline.gitops.card import MonitoringSection, load_card
from pipeline.monitoring.drift import categorical_test, column_drift, numeric_test
from pipeline.monitoring.labels import join_labels, live_metric
from pipeline.monitoring.window import Window, parse_time
from tests.utils import REPO

RNG = np.random.default_rng(0)
POLICY = MonitoringSection()


def test_a_shifted_number_drifts_and_an_unshifted_one_does_not() -> None:
    reference = pd.Series(RNG.normal(size=5000))
    assert numeric_test(reference, pd.Series(RNG.normal(size=600)), "ks").p_value > 0.001
    assert numeric_test(reference, pd.Series(RNG.normal(0.5, size=600)), "ks").p_value < 1e-10
    assert numeric_test(reference, pd.Series(RNG.normal(0.5, size=600)),
                        "cramer_von_mises").p_value < 1e-6


def test_a_frequent_new_category_drifts_and_a_stray_one_does_not() -> None:
    reference = pd.Series(RNG.choice(["a", "b", "c"], size=5000))
    same = pd.Series(RNG.choice(["a", "b", "c"], size=600))
    assert categorical_test(reference, same, "chisquare").p_value > 0.001
    stray = pd.concat([same.iloc[:599], pd.Series(["zzz"])], ignore_index=True)
    assert categorical_test(reference, stray, "chisquare").p_value > 0.001
    frequent = pd.concat([same.iloc[:500], pd.Series(["new"] * 100)], ignore_index=True)
    assert categorical_test(reference, frequent, "g_test").p_value < 1e-10
    missing = pd.Series([None] * 100 + list(same.iloc[:500]))
    assert categorical_test(reference, missing, "chisquare").p_value < 1e-10


def test_the_correction_spreads_the_threshold_over_the_columns() -> None:
    columns = {f"x{i}": "numeric" for i in range(10)}
    reference = pd.DataFrame({name: RNG.normal(size=3000) for name in columns})
    window = pd.DataFrame({name: RNG.normal(size=300) for name in columns})
    window["x0"] = window["x0"] + 0.12  # a small shift: about p ~ 0.01 on its own
    drifts = column_drift(reference, window, columns, POLICY)
    x0 = drifts[0]
    assert x0.statistic >= x0.p_value, "corrected p-values are never smaller"
    none = column_drift(reference, window, columns,
                        POLICY.model_copy(update={"correction": "none"}))
    assert [d.statistic for d in none] == [d.p_value for d in none]
    bonferroni = column_drift(reference, window, columns,
                              POLICY.model_copy(update={"correction": "bonferroni"}))
    assert bonferroni[0].statistic == pytest.approx(min(1.0, 10 * bonferroni[0].p_value))


def test_windows_read_iso_times_and_refuse_an_empty_span() -> None:
    assert parse_time("2026-12-01T10:00:00", option="--from") == dt.datetime(
        2026, 12, 1, 10, tzinfo=dt.UTC)
    assert parse_time("2026-12-01T10:00:00+01:00", option="--from").utcoffset() == \
        dt.timedelta(hours=1)
    with pytest.raises(DataError, match="--to: 'yesterday' is not an ISO 8601 time"):
        parse_time("yesterday", option="--to")
    moment = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    with pytest.raises(DataError, match="is not before --to"):
        Window(start=moment, end=moment)


def test_the_live_metric_decays_only_beyond_the_tolerance() -> None:
    card = load_card(REPO / "model_card.yaml")
    records = pd.DataFrame({"request_id": ["r"] * 400, "row": range(400),
                            "prediction": RNG.normal(1000, 50, size=400)})
    truth = records["prediction"] + RNG.normal(0, 100, size=400)
    labels = pd.DataFrame({"request_id": "r", "row": range(400), "price": truth})
    joined = join_labels(labels, records, target="price", id_column=None, where="labels")
    near = live_metric(joined, card, task="regression", gate_value=100.0, gate_source="gate")
    assert near.low <= near.value <= near.high
    assert not near.decayed
    far = live_metric(joined, card, task="regression", gate_value=50.0, gate_source="gate")
    assert far.decayed, "rmse about 100 against a gate's 50: worse by far more than 10%"
    unknown = live_metric(joined, card, task="regression", gate_value=None, gate_source="none")
    assert not unknown.decayed
