"""Slices: splitting the sealed rows, the corrected per-slice bootstrap, and the judgement."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ConfigError
from pipeline.gitops.card import PromotionPolicy, SliceSection
from pipeline.gitops.gate import Evaluation, decide
from pipeline.gitops.slices import (
    SliceRow,
    SliceTable,
    compare,
    corrected_confidence,
    slice_resamples,
    split,
    table_json,
)
from pipeline.gitops.stats import Interval, paired_bootstrap


def _section(**overrides: object) -> SliceSection:
    base: dict[str, object] = {"columns": ["cut"], "min_rows": 50, "max_regression": 20.0}
    return SliceSection.model_validate({**base, **overrides})


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "cut": ["Ideal", "Fair", None, "Ideal", "Good", "Fair"],
        "carat": [0.3, 0.5, 1.0, 2.5, np.nan, 0.99],
    })


def test_a_categorical_column_makes_a_slice_per_value_and_one_for_gaps() -> None:
    pieces = split(_frame(), _section())
    assert [(p.label, p.positions.tolist()) for p in pieces] == [
        ("cut = Fair", [1, 5]), ("cut = Good", [4]), ("cut = Ideal", [0, 3]),
        ("cut = (missing)", [2])]


def test_a_numeric_column_makes_a_slice_per_declared_bin() -> None:
    pieces = split(_frame(), _section(columns=["carat"], bins={"carat": [0.5, 1, 2]}))
    assert [(p.label, p.positions.tolist()) for p in pieces] == [
        ("carat < 0.5", [0]), ("carat in [0.5, 1)", [1, 5]), ("carat in [1, 2)", [2]),
        ("carat ≥ 2", [3]), ("carat = (missing)", [4])]


def test_slicing_fails_closed_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^promotion\.slices\.columns: 'shape' is not a "
                       r"column of the data \(columns: cut, carat\)$"):
        split(_frame(), _section(columns=["cut", "shape"]))
    with pytest.raises(ConfigError, match=r"^promotion\.slices\.bins\.carat: carat is "
                       r"numeric; declare its bin edges"):
        split(_frame(), _section(columns=["carat"]))
    with pytest.raises(ConfigError, match=r"^promotion\.slices\.bins\.cut: cut is not numeric"):
        split(_frame(), _section(columns=["cut"], bins={"cut": [1.0]}))
    many = pd.DataFrame({"id": [f"row-{i}" for i in range(101)]})
    with pytest.raises(ConfigError, match=r"101 slices, more than 100"):
        split(many, _section(columns=["id"]))


def _errors(rows: int, seed: int, *, worse: slice | None = None,
            factor: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth 0 and correlated errors of two models; the candidate `factor` times
    Production's error on the rows in `worse`, 0.9 times elsewhere."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_t(5, rows) * 400
    production = shared + rng.normal(0, 80, rows)
    candidate = 0.9 * (shared + rng.normal(0, 80, rows))
    if worse is not None:
        candidate[worse] = factor * (shared[worse] + rng.normal(0, 80, len(candidate[worse])))
    return np.zeros(rows), candidate, production


def test_each_judged_slice_gets_the_bonferroni_interval_on_its_own_rows() -> None:
    frame = pd.DataFrame({"cut": ["a"] * 600 + ["b"] * 300 + ["c"] * 30})
    truth, candidate, production = _errors(len(frame), 1)
    section = _section(min_rows=100)
    table = compare(split(frame, section), section=section, metric="rmse", truth=truth,
                    candidate=candidate, production=production, confidence=0.95,
                    resamples=1000, seed=7)
    assert (table.correction, table.family) == ("bonferroni", 2)  # c has too few rows
    assert table.confidence == corrected_confidence(0.95, 2) == pytest.approx(0.975)
    a, b, c = table.rows
    own = paired_bootstrap("rmse", truth[600:900], candidate[600:900], production[600:900],
                           resamples=slice_resamples(1000, confidence=0.975),
                           confidence=0.975, seed=7 + 1 + 1)
    assert (b.low, b.high) == (pytest.approx(own.low), pytest.approx(own.high))
    assert (a.rows, b.rows, c.rows) == (600, 300, 30)
    assert c.low is None
    assert c.candidate is not None
    assert c.production is not None
    # Corrected, the interval is wider than the card's level alone would make it.
    plain = paired_bootstrap("rmse", truth[600:900], candidate[600:900], production[600:900],
                             resamples=slice_resamples(1000, confidence=0.975),
                             confidence=0.95, seed=9)
    assert b.high - b.low > plain.high - plain.low  # type: ignore[operator]
    # The digest is the SHA-256 of the artifact's text, and the same rows give the same one.
    assert table.digest == hashlib.sha256(table_json(table).encode()).hexdigest()
    again = compare(split(frame, section), section=section, metric="rmse", truth=truth,
                    candidate=candidate, production=production, confidence=0.95,
                    resamples=1000, seed=7)
    assert again == table


def test_many_slices_raise_the_resamples_so_each_end_has_some_beyond_it() -> None:
    assert slice_resamples(2000, confidence=corrected_confidence(0.95, 12)) == 2400
    assert slice_resamples(2000, confidence=corrected_confidence(0.95, 4)) == 2000
    assert slice_resamples(2000, confidence=corrected_confidence(0.95, 40)) == 8000


def _policy(**overrides: object) -> PromotionPolicy:
    base: dict[str, object] = {"metric": "rmse", "greater_is_better": False,
                               "slices": {"columns": ["cut"], "min_rows": 50,
                                          "max_regression": 20.0}}
    return PromotionPolicy.model_validate({**base, **overrides})


def _table(*rows: SliceRow, metric: str = "rmse") -> SliceTable:
    return SliceTable(metric=metric, correction="bonferroni", confidence=0.99, family=5,
                      min_rows=50, max_regression=20.0, rows=rows).sealed()


CANDIDATE = Evaluation(run_id="c" * 32, version=None, metrics={"rmse": 500.0})
PRODUCTION = Evaluation(run_id="d" * 32, version="3", metrics={"rmse": 560.0})
CLEAR_WIN = Interval(metric="rmse", difference=-60, low=-80, high=-40, confidence=0.95,
                     resamples=2000)


def _decide(policy: PromotionPolicy, table: SliceTable | None, **kw: object) -> object:
    args: dict[str, object] = {"policy": policy, "candidate": CANDIDATE,
                               "production": PRODUCTION, "interval": CLEAR_WIN,
                               "former_production": False, "slices": table, **kw}
    return decide(**args)  # type: ignore[arg-type]


def test_a_slice_that_could_be_worse_than_the_margin_fails_the_gate_naming_it() -> None:
    table = _table(SliceRow("cut", "Fair", 300, 950.0, 900.0, low=12.0, high=88.0),
                   SliceRow("cut", "Ideal", 4000, 480.0, 540.0, low=-75.0, high=-45.0),
                   SliceRow("cut", "Good", 40, 2000.0, 500.0))  # too few rows: shown only
    decision = _decide(_policy(), table)
    assert not decision.passed  # type: ignore[attr-defined]
    assert decision.reasons == (  # type: ignore[attr-defined]
        "slice cut = Fair (300 rows): the candidate's rmse could be 88 higher (worse) than "
        "Production's (950 vs 900; 99.00% interval of the difference [12, 88], Bonferroni "
        "over 5 slices), more than max_regression 20",)
    judged = decision.slices  # type: ignore[attr-defined]
    assert [row.holds for row in judged.rows] == [False, True, None]
    assert judged.failed == ("cut = Fair",)
    assert judged.digest != table.digest  # the judged table is the one the verdict names


def test_non_inferiority_a_slice_within_the_margin_holds_even_if_not_better() -> None:
    table = _table(SliceRow("cut", "Fair", 300, 905.0, 900.0, low=-10.0, high=19.9))
    decision = _decide(_policy(), table)
    assert decision.passed  # type: ignore[attr-defined]
    assert any(r.startswith("slices: on all 1 slices of cut with at least 50 rows")
               for r in decision.reasons)  # type: ignore[attr-defined]
    # For a metric where higher is better, the pessimistic end is the low one.
    r2 = _policy(metric="r2", greater_is_better=True)
    better = Interval(metric="r2", difference=0.02, low=0.01, high=0.03, confidence=0.95,
                      resamples=2000)
    row = SliceRow("cut", "Fair", 300, 0.80, 0.85, low=-0.08, high=-0.02)
    assert not _decide(r2.model_copy(update={"slices": _section(max_regression=0.05)}),
                       _table(row, metric="r2"), interval=better).passed  # type: ignore[attr-defined]
    assert _decide(r2.model_copy(update={"slices": _section(max_regression=0.1)}),
                   _table(row, metric="r2"), interval=better).passed  # type: ignore[attr-defined]


def test_declared_slices_fail_closed_without_their_table_or_an_interval() -> None:
    missing = _decide(_policy(), None)
    assert not missing.passed  # type: ignore[attr-defined]
    assert "slices: declared on cut but not compared with Production" in \
        missing.reasons[0]  # type: ignore[attr-defined]
    no_interval = _decide(_policy(), _table(SliceRow("cut", "Fair", 300, 950.0, 900.0)))
    assert not no_interval.passed  # type: ignore[attr-defined]
    assert "no interval against Production" in no_interval.reasons[0]  # type: ignore[attr-defined]


def test_slices_are_not_judged_without_a_comparison() -> None:
    bad = _table(SliceRow("cut", "Fair", 300, 950.0, 900.0, low=12.0, high=88.0))
    rollback = _decide(_policy(mode="rollback"), bad, former_production=True)
    assert rollback.passed  # type: ignore[attr-defined]
    same = _decide(_policy(), bad, production=replace(PRODUCTION, run_id=CANDIDATE.run_id))
    assert same.passed  # type: ignore[attr-defined]
    first = _decide(_policy(), bad, production=None, interval=None)
    assert first.passed  # type: ignore[attr-defined]


def test_the_gate_catches_a_candidate_better_overall_but_worse_on_one_slice() -> None:
    """The whole path on numbers whose truth is known: 10% worse on one slice."""
    frame = pd.DataFrame({"cut": ["a"] * 3000 + ["b"] * 3000 + ["c"] * 3000})
    truth, candidate, production = _errors(len(frame), 3, worse=slice(3000, 6000), factor=1.1)
    policy = _policy(slices={"columns": ["cut"], "min_rows": 100, "max_regression": 10.0},
                     bootstrap_resamples=1000)
    assert policy.slices is not None
    table = compare(split(frame, policy.slices), section=policy.slices, metric="rmse",
                    truth=truth, candidate=candidate, production=production,
                    confidence=0.95, resamples=1000, seed=0)
    decision = _decide(policy, table)
    assert not decision.passed  # type: ignore[attr-defined]
    assert [r.split(" (")[0] for r in decision.reasons] == ["slice cut = b"]  # type: ignore[attr-defined]


def test_with_no_slice_big_enough_the_reason_says_none_is_judged() -> None:
    decision = _decide(_policy(), _table(SliceRow("cut", "Fair", 30, 950.0, 900.0)))
    assert decision.passed  # type: ignore[attr-defined]
    assert "slices: no slice of cut has 50 rows or more, so none is judged" in \
        decision.reasons  # type: ignore[attr-defined]
