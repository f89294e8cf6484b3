"""The gate simulation harness at a small size: finite rates, and the inflation it shows.

Selecting the best of k candidates on the very rows the gate scores (a true difference
of zero for every candidate) must promote far more often than one candidate does:
that is the winner's curse the three sets exist to avoid.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmarks.gate_simulation import run
from benchmarks.gate_simulation.simulation import Resampled, smallest_effect, wilson
from benchmarks.gate_simulation.slices import (
    SlicedPool,
    SliceSetting,
    candidate_errors,
    worst_ratio,
)
from benchmarks.gate_simulation.slices import run as run_slices
from pipeline.gitops.card import PromotionPolicy, SliceSection


def _parse(lines: list[str]) -> dict[tuple[str, str], dict[str, float]]:
    table = {}
    for line in lines:
        head, *fields = line.split()
        assert head == "RESULT"
        values = dict(f.split("=", 1) for f in fields)
        table[(values["rule"], values["scenario"])] = {
            "false_promotion": float(values["false_promotion"]),
            "power": float(values["power"]), "k": float(values["k"]),
            "pairs": float(values["pairs"])}
    return table


@pytest.fixture(scope="module")
def results() -> dict[tuple[str, str], dict[str, float]]:
    lines = run.main(["--pairs", "80", "--rows", "300", "--resamples", "200", "--k", "20",
                      "--scenarios", "synthetic", "--workers", "1", "--effect", "150",
                      "--grid", "50,150"])
    return _parse(lines)


def test_every_rule_and_setting_has_a_finite_rate(
        results: dict[tuple[str, str], dict[str, float]]) -> None:
    rules = {"gate", "mlflow_threshold", "zenml_ge"}
    assert {rule for rule, _ in results} == rules
    assert {scenario for _, scenario in results} == {
        "synthetic-single", "synthetic-validation", "synthetic-test"}
    for row in results.values():
        assert row["pairs"] == 80
        for key in ("false_promotion", "power"):
            assert math.isfinite(row[key])
            assert 0.0 <= row[key] <= 1.0


def test_selecting_on_the_test_rows_inflates_false_promotion(
        results: dict[tuple[str, str], dict[str, float]]) -> None:
    for rule in ("gate", "mlflow_threshold", "zenml_ge"):
        single = results[(rule, "synthetic-single")]["false_promotion"]
        on_test = results[(rule, "synthetic-test")]["false_promotion"]
        assert on_test > single + 0.05, (rule, single, on_test)
    assert results[("gate", "synthetic-single")]["false_promotion"] <= 0.10
    assert results[("mlflow_threshold", "synthetic-test")]["false_promotion"] >= 0.8


def test_the_gate_has_power_at_a_large_effect(
        results: dict[tuple[str, str], dict[str, float]]) -> None:
    assert results[("gate", "synthetic-single")]["power"] >= 0.8


def test_wilson_interval_and_interpolation() -> None:
    low, high = wilson(0, 400)
    assert low == 0.0
    assert 0.0 < high < 0.01
    low, high = wilson(200, 400)
    assert low < 0.5 < high
    assert smallest_effect([10, 20], [0.6, 1.0]) == pytest.approx(15.0)
    assert smallest_effect([10, 20], [0.1, 0.2]) is None


def test_the_real_error_scenario_draws_validation_and_test_rows_from_disjoint_pools() -> None:
    """Validation draws never reuse a test row (the pipeline's sets are disjoint), and
    every model's RMSE on the test pool equals Production's: a true difference of zero."""
    rng = np.random.default_rng(0)
    test = rng.normal(0, [[1.0], [2.0], [0.5]], (3, 500))
    validation = rng.normal(0, 1, (3, 300)) + 1000.0  # values no test row has
    scenario = Resampled(test=test, validation=validation)
    rms = np.sqrt((scenario.test ** 2).mean(axis=1))
    assert rms == pytest.approx([scenario.rmse] * 3)
    drawn_test = scenario.draw(rng, models=3, rows=400, part="test")
    drawn_validation = scenario.draw(rng, models=3, rows=400, part="validation")
    assert np.isin(drawn_test[0], scenario.test[0]).all()
    assert not np.isin(drawn_validation[0], scenario.test[0]).any()
    assert np.isin(drawn_validation[1], scenario.validation[1]).all()


def _sliced_pool(rows: int = 3000) -> SlicedPool:
    """Two correlated models' errors on rows with two crossing slice columns."""
    rng = np.random.default_rng(1)
    shared = rng.standard_t(5, rows) * 300
    frame = pd.DataFrame({"cut": rng.choice(["a", "b", "c"], rows, p=[0.5, 0.3, 0.2]),
                          "color": rng.choice(["x", "y"], rows)})
    return SlicedPool(production=shared + rng.normal(0, 60, rows),
                      candidate=shared + rng.normal(0, 60, rows), frame=frame)


def test_the_slice_world_puts_every_slice_of_every_column_at_its_ratio() -> None:
    pool = _sliced_pool()
    errors = candidate_errors(pool, column="cut", value="b", regression=0.10, better=0.05,
                              columns=["cut", "color"])
    by_cut = pool.rmse_by("cut", errors) / pool.rmse_by("cut", pool.production)
    assert by_cut.to_dict() == pytest.approx({"a": 0.95, "b": 1.10, "c": 0.95}, rel=1e-6)
    by_color = pool.rmse_by("color", errors) / pool.rmse_by("color", pool.production)
    assert by_color.max() == pytest.approx(by_color.min(), rel=1e-6)  # one ratio for all
    assert worst_ratio(pool, errors, ["cut", "color"], skip="cut = b")[1] < 1.0


def test_the_slice_scenario_catches_a_worse_slice_and_spares_a_candidate_worse_on_none(
        ) -> None:
    pool = _sliced_pool()
    policy = PromotionPolicy(metric="rmse", greater_is_better=False, bootstrap_resamples=1000,
                             slices=SliceSection(columns=["cut", "color"], min_rows=200,
                                                 max_regression=15.0))
    settings = [SliceSetting(pool=pool, column="cut", value="b", regression=regression,
                             better=0.05, pairs=30, rows=3000, seed=5)
                for regression in (0.15, 0.0)]
    caught, clean = run_slices(settings, policy, workers=1)
    assert caught.rate("target_failed") >= 0.8
    assert clean.rate("any_failed") <= 0.2
    assert caught.cell("target_failed").strip().endswith("%]")
