"""Slices: who gets worse. The sealed test rows split by a column, each part compared.

One number over all sealed rows can hide a slice that gets worse: a candidate better
overall may be worse on the rarest cut or the cheapest stones. `split` cuts the test
rows by each column the card names (a categorical column's values, a numeric column's
declared bins); `compare` computes the primary metric of both models on every slice and,
on each slice with at least `min_rows` rows, the paired bootstrap interval of
`metric(candidate) - metric(Production)` on that slice's rows.

The correction is Bonferroni's: with `m` slices judged, each interval is computed at
confidence `1 - (1 - confidence) / m`, so all of them hold together with at least the
card's confidence, whatever the dependence between slices (a `cut` slice and a `color`
slice share rows). The reviewer reads the whole table; each interval in it is what it
claims even after reading all of them. Judging (`gate.judge_slices`) reads the
pessimistic end, so the correction makes a slice harder to pass: docs/gate.md,
"Slices", says why this one and what it costs.

Numbers only: the judgement against the card's `max_regression` is `gate.judge_slices`,
pure, and the table's JSON and digest are here (`table_json`, `digest`), so the report,
the artifact and the verdict agree on one table.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError
from pipeline.gitops.card import MAX_SLICES, SliceSection
from pipeline.gitops.stats import paired_bootstrap
from pipeline.stages.metrics import METRICS

CORRECTION = "bonferroni"
SLICES_FILE = "slices.json"
"""The slice table as an artifact (`table_json`): beside the verdict, on the run."""
MISSING = "(missing)"
"""The slice of rows where the column has no value."""
TAIL_RESAMPLES = 5
"""At least this many resamples beyond each end of a corrected interval: with many
slices, the card's resamples are raised so that an end is not one resample's value."""
_DIGITS = 10
"""Figures kept in the table, so the same rows give the same digest on every machine."""


@dataclass(frozen=True)
class Slice:
    """Some of the sealed test rows: those where `column` has `value`."""

    column: str
    value: str
    positions: np.ndarray

    @property
    def label(self) -> str:
        return label(self.column, self.value)


def label(column: str, value: str) -> str:
    """How a slice is named in reasons and reports: `cut = Ideal`, `carat in [0.5, 1)`."""
    if value.startswith(("< ", "≥ ", "[")):
        return f"{column} {'in ' if value.startswith('[') else ''}{value}"
    return f"{column} = {value}"


@dataclass(frozen=True)
class SliceRow:
    """One slice in the table: its rows, both models' metric, the corrected interval of
    the difference candidate - Production, and whether it holds (None: not judged)."""

    column: str
    value: str
    rows: int
    candidate: float | None
    production: float | None
    low: float | None = None
    high: float | None = None
    holds: bool | None = None

    @property
    def label(self) -> str:
        return label(self.column, self.value)

    @property
    def difference(self) -> float | None:
        if self.candidate is None or self.production is None:
            return None
        return self.candidate - self.production


@dataclass(frozen=True)
class SliceTable:
    """Every slice of the card's columns, on the primary metric, and how it was judged.

    `confidence` is each judged slice's interval (Bonferroni: the card's level shared by
    `family` slices); `digest` is the SHA-256 of `table_json`, the `slices.json`
    artifact, so a verdict that carries no rows (the run tag) still names its table.
    """

    metric: str
    correction: str
    confidence: float
    family: int
    min_rows: int
    max_regression: float
    rows: tuple[SliceRow, ...]
    digest: str = ""
    failed: tuple[str, ...] = ()
    """The labels of the slices that fail the gate (`gate.judge_slices`)."""

    def sealed(self) -> SliceTable:
        """The table with its digest computed from its rows."""
        return replace(self, digest=digest(self))

    def without_rows(self) -> SliceTable:
        """What the run tag keeps: everything but the rows (the digest names them)."""
        return replace(self, rows=())


def table_json(table: SliceTable) -> str:
    """The table as the `slices.json` artifact: canonical JSON, whose SHA-256 is `digest`."""
    body = {key: value for key, value in asdict(table).items()
            if key not in ("digest", "failed")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(table: SliceTable) -> str:
    return hashlib.sha256(table_json(table).encode()).hexdigest()


def row_from_json(value: dict[str, Any]) -> SliceRow:
    return SliceRow(**value)


def table_from_json(value: dict[str, Any]) -> SliceTable:
    data = dict(value)
    data["rows"] = tuple(row_from_json(row) for row in data.get("rows", ()))
    data["failed"] = tuple(data.get("failed", ()))
    return SliceTable(**data)


# --- splitting the rows ------------------------------------------------------------------


def split(frame: pd.DataFrame, section: SliceSection) -> list[Slice]:
    """The card's slices of `frame` (the sealed test rows), column by column.

    Fails closed, in one line: a declared column missing from the rows, a numeric
    column without bins, or more slices than `MAX_SLICES`.
    """
    slices: list[Slice] = []
    for column in section.columns:
        if column not in frame.columns:
            raise ConfigError(f"promotion.slices.columns: {column!r} is not a column of the "
                              f"data (columns: {', '.join(map(str, frame.columns))})")
        values = frame[column]
        edges = section.bins.get(column)
        if edges is not None:
            if not pd.api.types.is_numeric_dtype(values):
                raise ConfigError(f"promotion.slices.bins.{column}: {column} is not numeric "
                                  "in the data, so it cannot be binned")
            slices += _binned(column, values.to_numpy(dtype=float), edges)
        elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            raise ConfigError(f"promotion.slices.bins.{column}: {column} is numeric; declare "
                              "its bin edges to slice it")
        else:
            slices += _by_value(column, values)
    if len(slices) > MAX_SLICES:
        raise ConfigError(f"promotion.slices.columns: {len(slices)} slices, more than "
                          f"{MAX_SLICES}; slice fewer columns or fewer values")
    return slices


def _by_value(column: str, values: pd.Series) -> list[Slice]:
    codes, uniques = pd.factorize(values, sort=True, use_na_sentinel=True)
    found = [Slice(column, str(value), np.flatnonzero(codes == code))
             for code, value in enumerate(uniques)]
    missing = np.flatnonzero(codes == -1)
    if len(missing):
        found.append(Slice(column, MISSING, missing))
    return found


def _binned(column: str, values: np.ndarray, edges: list[float]) -> list[Slice]:
    """Half-open bins `[a, b)` between the edges, and the two open ends."""
    where = np.searchsorted(np.asarray(edges, dtype=float), values, side="right")
    found = []
    for index in range(len(edges) + 1):
        positions = np.flatnonzero((where == index) & ~np.isnan(values))
        if len(positions):
            found.append(Slice(column, _bin_name(edges, index), positions))
    missing = np.flatnonzero(np.isnan(values))
    if len(missing):
        found.append(Slice(column, MISSING, missing))
    return found


def _bin_name(edges: list[float], index: int) -> str:
    if index == 0:
        return f"< {edges[0]:g}"
    if index == len(edges):
        return f"≥ {edges[-1]:g}"
    return f"[{edges[index - 1]:g}, {edges[index]:g})"


# --- comparing the models on each slice ------------------------------------------------


def corrected_confidence(confidence: float, family: int) -> float:
    """Bonferroni: each of `family` intervals at this level, all of them at `confidence`."""
    return 1.0 - (1.0 - confidence) / max(family, 1)


def slice_resamples(resamples: int, *, confidence: float) -> int:
    """The card's resamples, raised so each end of an interval at `confidence` has at
    least `TAIL_RESAMPLES` resamples beyond it."""
    tail = (1.0 - confidence) / 2
    return max(resamples, math.ceil(round(TAIL_RESAMPLES / tail, 6)))


def compare(slices: list[Slice], *, section: SliceSection, metric: str, truth: np.ndarray,
            candidate: np.ndarray, production: np.ndarray | None, confidence: float,
            resamples: int, seed: int,
            advance: Callable[[int], None] | None = None) -> SliceTable:
    """Both models' metric on every slice; on slices with `min_rows` rows or more (when
    there is a Production to compare with), the Bonferroni-corrected paired interval."""
    judged = [s for s in slices if len(s.positions) >= section.min_rows]
    family = len(judged) if production is not None else 0
    level = corrected_confidence(confidence, family)
    count = slice_resamples(resamples, confidence=level)
    value = METRICS[metric].value
    rows = []
    for index, piece in enumerate(slices):
        at = piece.positions
        mine = value(truth[at], candidate[at])
        theirs = value(truth[at], production[at]) if production is not None else None
        low = high = None
        if production is not None and len(at) >= section.min_rows:
            interval = paired_bootstrap(metric, truth[at], candidate[at], production[at],
                                        resamples=count, confidence=level,
                                        seed=seed + 1 + index, advance=advance)
            low, high = interval.low, interval.high
        rows.append(SliceRow(column=piece.column, value=piece.value, rows=len(at),
                             candidate=_kept(mine), production=_kept(theirs),
                             low=_kept(low), high=_kept(high)))
    return SliceTable(metric=metric, correction=CORRECTION, confidence=level, family=family,
                      min_rows=section.min_rows, max_regression=section.max_regression,
                      rows=tuple(rows)).sealed()


def resamples_needed(slices: list[Slice], *, section: SliceSection, confidence: float,
                     resamples: int, compared: bool) -> int:
    """How many resamples `compare` will draw in all (a progress bar's total)."""
    if not compared:
        return 0
    judged = [s for s in slices if len(s.positions) >= section.min_rows]
    level = corrected_confidence(confidence, len(judged))
    return len(judged) * slice_resamples(resamples, confidence=level)


def _kept(value: float | None) -> float | None:
    """A figure as the table keeps it: finite, to `_DIGITS` significant digits, else None."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{_DIGITS}g}")
