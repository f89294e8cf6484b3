"""Drift of each column of a window against the training reference, corrected together.

The tests are the ones Evidently runs for these column types (`ks`,
`cramer_von_mises`, `chisquare`, `g_test`), called on scipy directly: Evidently 0.7.23,
the newest release, does not import under pandas 3 (docs/monitoring.md). Each gives a
p-value; the p-values of all columns of a window (every feature and the prediction)
are corrected together, Holm's step-down by default (statsmodels), and a column drifts
when its corrected p-value is below its kind's threshold. So a window of unshifted
traffic raises any alarm with a chance of at most the largest threshold, however many
features the model has (`make bench-monitor` measures it).

Categorical columns: a missing value is a category of its own; the test is the
two-sample form (a 2 x k table of reference and window counts, `chi2_contingency`), and
the categories whose expected count in the window is under 5 are pooled into one bin
(the chi-square approximation needs it): a new category seen often enough drifts, a
stray one does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from pipeline.gitops.card import MonitoringSection

MIN_EXPECTED = 5.0
MISSING = "(missing)"


@dataclass(frozen=True)
class Outcome:
    test: str
    test_statistic: float
    p_value: float


@dataclass(frozen=True)
class ColumnDrift:
    """One column's verdict: `statistic` (the corrected p-value) against `threshold`."""

    name: str
    kind: str
    test: str
    test_statistic: float
    p_value: float
    statistic: float
    threshold: float
    drifted: bool

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "drifted": self.drifted, "statistic": self.statistic,
                "threshold": self.threshold, "p_value": self.p_value, "test": self.test,
                "test_statistic": self.test_statistic, "kind": self.kind}


def numeric_test(reference: pd.Series, window: pd.Series, test: str) -> Outcome:
    """Two-sample test of the non-missing values (a column now always missing drifts)."""
    ref = pd.to_numeric(reference, errors="coerce").dropna().to_numpy(dtype=float)
    cur = pd.to_numeric(window, errors="coerce").dropna().to_numpy(dtype=float)
    if len(cur) == 0 or len(ref) == 0:
        return Outcome(test, float("nan"), 0.0 if len(cur) != len(ref) else 1.0)
    if test == "ks":
        result = stats.ks_2samp(ref, cur)
    elif test == "cramer_von_mises":
        result = stats.cramervonmises_2samp(ref, cur)
    else:
        raise ValueError(f"unknown numeric test {test!r}")
    return Outcome(test, float(result.statistic), float(result.pvalue))


def categorical_test(reference: pd.Series, window: pd.Series, test: str) -> Outcome:
    """Are the window's categories drawn like the reference's? A two-sample test of the
    2 x k table of counts (reference row, window row), so the reference's own sampling
    noise is accounted for: a one-sample test against its shares, taken as exact, alarms
    a little too often (measured by `make bench-monitor`)."""
    ref = reference.astype("object").where(reference.notna(), MISSING).astype(str)
    cur = window.astype("object").where(window.notna(), MISSING).astype(str)
    counts = pd.DataFrame({"reference": ref.value_counts(), "window": cur.value_counts()}
                          ).fillna(0.0)
    expected = counts.sum(axis=1) / counts.to_numpy().sum() * len(cur)
    common = counts[expected >= MIN_EXPECTED]
    rare = counts[expected < MIN_EXPECTED].sum()
    table = common.to_numpy().T
    if rare.sum() > 0:
        table = np.column_stack([table, rare.to_numpy()])
    if table.shape[1] < 2:
        return Outcome(test, 0.0, 1.0)
    lambda_ = {"chisquare": "pearson", "g_test": "log-likelihood"}.get(test)
    if lambda_ is None:
        raise ValueError(f"unknown categorical test {test!r}")
    result = stats.chi2_contingency(table, correction=False, lambda_=lambda_)
    return Outcome(test, float(result.statistic), float(result.pvalue))


def column_drift(reference: pd.DataFrame, window: pd.DataFrame, kinds: dict[str, str],
                 policy: MonitoringSection) -> list[ColumnDrift]:
    """Each column of `kinds` tested, the p-values corrected together (the family)."""
    raw: list[tuple[str, str, Outcome, float]] = []
    for name, kind in kinds.items():
        missing = name not in window.columns
        column = window[name] if not missing else pd.Series([None] * len(window))
        if kind == "numeric":
            result = numeric_test(reference[name], column, policy.numeric.test)
            raw.append((name, kind, result, policy.numeric.threshold))
        else:
            result = categorical_test(reference[name], column, policy.categorical.test)
            raw.append((name, kind, result, policy.categorical.threshold))
    p_values = np.array([r.p_value for _, _, r, _ in raw])
    if policy.correction == "none" or not len(raw):  # type: ignore[comparison-overlap]
        adjusted = p_values  # uncorrected: what `make bench-monitor` compares with
    else:
        adjusted = multipletests(p_values, method=policy.correction)[1]
    return [ColumnDrift(name=name, kind=kind, test=result.test,
                        test_statistic=result.test_statistic, p_value=result.p_value,
                        statistic=float(corrected), threshold=threshold,
                        drifted=bool(corrected < threshold))
            for (name, kind, result, threshold), corrected in zip(raw, adjusted, strict=True)]
