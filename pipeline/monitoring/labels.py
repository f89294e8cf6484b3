"""Late labels joined to the logged rows, and the gate's metric measured on live traffic.

A labels file (CSV or Parquet) holds one label per scored row, keyed by `request_id`
and `row` (what the log records), or by the card's `monitoring.id_column` when the
callers pass their own row IDs. The label column is `label`, or the target's name.
The interval is the percentile bootstrap of the gate's own statistics module
(`pipeline.gitops.stats`), at the card's confidence, resamples and seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from pipeline.errors import DataError
from pipeline.gitops import stats
from pipeline.gitops.card import ModelCard


@dataclass(frozen=True)
class LiveMetric:
    """The gate's metric on labeled live rows, beside what the gate measured."""

    metric: str
    value: float
    low: float
    high: float
    confidence: float
    rows: int
    greater_is_better: bool
    gate_value: float | None
    gate_source: str
    decayed: bool

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def line(self) -> str:
        beside = (f" (the gate measured {self.gate_value:.4g}: {self.gate_source})"
                  if self.gate_value is not None else " (no gate value recorded)")
        return (f"live {self.metric} {self.value:.4g} [{self.low:.4g}, {self.high:.4g}] on "
                f"{self.rows:,} labeled rows{beside}")


def read_labels(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"--labels {path}: no such file")
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise DataError(f"--labels {path}: cannot read ({str(err).splitlines()[0]})") from err


def join_labels(labels: pd.DataFrame, records: pd.DataFrame, *, target: str,
                id_column: str | None, where: str) -> pd.DataFrame:
    """(prediction, label) of every logged row that has a label."""
    label = "label" if "label" in labels.columns else target
    if label not in labels.columns:
        raise DataError(f"{where}: no label column (expected `label` or `{target}`)")
    if id_column is not None and id_column in labels.columns:
        keys = labels[[id_column, label]].rename(columns={id_column: "id", label: "label"})
        keys["id"] = keys["id"].astype(str)
        on = ["id"]
    elif {"request_id", "row"} <= set(labels.columns):
        keys = labels[["request_id", "row", label]].rename(columns={label: "label"})
        keys["request_id"] = keys["request_id"].astype(str)
        keys["row"] = pd.to_numeric(keys["row"], errors="coerce")
        on = ["request_id", "row"]
    else:
        wanted = f"`{id_column}` or " if id_column else ""
        raise DataError(f"{where}: no key columns (expected {wanted}`request_id` and `row`)")
    keys = keys.dropna(subset=["label"]).drop_duplicates(subset=on, keep="last")
    logged = records[[*on, "prediction"]].copy()
    if "row" in on:
        logged["row"] = logged["row"].astype(float)
        keys["row"] = keys["row"].astype(float)
    joined = logged.merge(keys, on=on, how="inner")
    if joined.empty:
        raise DataError(f"{where}: none of its {len(keys):,} keys ({' + '.join(on)}) matches "
                        "a logged row of the window")
    return joined


def live_metric(joined: pd.DataFrame, card: ModelCard, *, task: str,
                gate_value: float | None, gate_source: str) -> LiveMetric:
    """The card's metric on the joined rows with its bootstrap interval, and whether it
    decayed: the whole interval worse than the gate's value by more than the tolerance."""
    policy = card.promotion
    metric = policy.metric
    if task == "regression":
        y = joined["label"].to_numpy(dtype=float)
        p = joined["prediction"].to_numpy(dtype=float)
    else:
        y = joined["label"].astype(str).to_numpy()
        p = joined["prediction"].astype(str).to_numpy()
    value, low, high = stats.bootstrap(metric, y, p, resamples=policy.bootstrap_resamples,
                                       confidence=policy.confidence, seed=policy.seed)
    decayed = False
    if gate_value is not None:
        margin = card.monitoring.decay_tolerance * abs(gate_value)
        decayed = bool(high < gate_value - margin if policy.greater_is_better
                       else low > gate_value + margin)
    return LiveMetric(metric=metric, value=value, low=float(low), high=float(high),
                      confidence=policy.confidence, rows=len(y),
                      greater_is_better=policy.greater_is_better, gate_value=gate_value,
                      gate_source=gate_source, decayed=decayed)
