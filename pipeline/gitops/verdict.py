"""The gate's verdict: one typed value, and its one JSON form.

The gate builds it, the report renders it, `--json` writes it, the run tag stores it,
and promote reads it back and compares it with the verdict it recomputes. Dicts appear
only at the edge: `to_json`/`from_json` (and `to_tag`/`from_tag`, the same JSON,
compact) are the one place the shape is written down, round-trip tested.

The slice table can be long (a slice per value of each declared column), and MLflow
caps a tag at 8,000 characters: the tag keeps the table's digest and the failed
slices, not its rows, which are in the report, the `--json` file and the `slices.json`
artifact (whose SHA-256 is that digest).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from pipeline.gitops.budgets import ServingCosts, costs_from_json
from pipeline.gitops.gate import BudgetCheck, FloorCheck
from pipeline.gitops.slices import SliceTable, table_from_json

TAG_LIMIT = 8000
"""MLflow caps a tag value at 8,000 characters."""


@dataclass(frozen=True)
class MetricRow:
    """One metric for both models: values, difference and its bootstrap interval."""

    candidate: float
    production: float | None
    difference: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Verdict:
    """Everything the report, the JSON file, the run tag and `mlops promote` need.

    `candidate_run_id` is None only for a card that names no candidate (nothing gated).
    `manifest` maps each file of the candidate's model to its SHA-256: the bytes that
    were evaluated, which promote and the server check again before trusting them.
    """

    passed: bool
    mode: str
    model_name: str
    metric: str
    greater_is_better: bool
    min_improvement: float
    confidence: float
    resamples: int
    seed: int
    candidate_run_id: str | None
    production_version: str | None
    production_run_id: str | None
    improvement_bound: float | None
    reasons: tuple[str, ...]
    metrics: dict[str, MetricRow]
    floors: tuple[FloorCheck, ...]
    data_hashes: dict[str, str | None]
    evaluated_rows: int
    policy_hash: str
    tracking_uri: str
    gated_at: str
    notes: tuple[str, ...] = ()
    manifest: dict[str, str] = field(default_factory=dict)
    twin: str | None = None
    """What the twin the gate compiled from the candidate does on the evaluated rows (one
    sentence): it serves, or sklearn does and why."""
    slices: SliceTable | None = None
    """The primary metric per slice and how each was judged (None: no slices declared);
    without rows in the tag form (`compact`)."""
    serving: ServingCosts | None = None
    """Both models' serving figures (None: not measured, a note says why)."""
    budgets: tuple[BudgetCheck, ...] = ()

    @property
    def interval(self) -> MetricRow | None:
        return self.metrics.get(self.metric)

    @property
    def gated(self) -> bool:
        """False for the card that names no candidate: there was nothing to judge."""
        return self.candidate_run_id is not None

    def to_json(self) -> dict[str, Any]:
        """The JSON object of `mlops gate --json` (with two derived keys for readers)."""
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        out["notes"] = list(self.notes)
        out["floors"] = [{**asdict(floor), "ok": floor.ok} for floor in self.floors]
        out["budgets"] = [{**asdict(check), "ok": check.ok} for check in self.budgets]
        out["verdict"] = "pass" if self.passed else "fail"
        row = self.interval
        out["interval"] = {"metric": self.metric,
                           "difference": row.difference if row else None,
                           "low": row.low if row else None, "high": row.high if row else None,
                           "confidence": self.confidence,
                           "improvement_bound": self.improvement_bound}
        return out

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Verdict:
        """The inverse of `to_json`; derived keys are ignored, unknown keys refused."""
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known - {"verdict", "interval"}
        if unknown:
            raise ValueError(f"unknown verdict field(s): {', '.join(sorted(unknown))}")
        data = {key: value[key] for key in known if key in value}
        data["reasons"] = tuple(data.get("reasons", ()))
        data["notes"] = tuple(data.get("notes", ()))
        data["metrics"] = {name: MetricRow(**row) for name, row in data["metrics"].items()}
        data["floors"] = tuple(
            FloorCheck(metric=f["metric"], bound=f["bound"], value=f["value"],
                       greater_is_better=f["greater_is_better"]) for f in data["floors"])
        data["manifest"] = dict(data.get("manifest", {}))
        if data.get("slices") is not None:
            data["slices"] = table_from_json(data["slices"])
        if data.get("serving") is not None:
            data["serving"] = costs_from_json(data["serving"])
        data["budgets"] = tuple(
            BudgetCheck(name=b["name"], limit=b["limit"], value=b["value"],
                        production=b.get("production")) for b in data.get("budgets", ()))
        return cls(**data)

    def compact(self) -> Verdict:
        """The verdict as its tag keeps it: the slice table without its rows."""
        if self.slices is None:
            return self
        return replace(self, slices=self.slices.without_rows())

    def to_tag(self) -> str:
        """The verdict as a run tag: the same JSON, compact (`compact`: the slice table's
        digest, not its rows); notes and reasons trimmed if needed."""
        text = _compact(self.compact().to_json())
        if len(text) > TAG_LIMIT:
            text = _compact(replace(self.compact(), notes=(),
                                    reasons=self.reasons[:1]).to_json())
        if len(text) > TAG_LIMIT:
            raise ValueError(f"the verdict is {len(text)} characters, over MLflow's tag limit")
        return text

    @classmethod
    def from_tag(cls, text: str) -> Verdict:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("the verdict tag is not a JSON object")
        return cls.from_json(value)

    def summary(self) -> str:
        """One line for the audit tag on a promoted version."""
        text = f"{'pass' if self.passed else 'fail'} ({self.mode}, {self.metric}"
        if self.improvement_bound is not None:
            text += f", improvement bound {self.improvement_bound:.6g}"
        return text + f", gated at {self.gated_at})"


def no_candidate(*, model_name: str, metric: str, greater_is_better: bool,
                 policy_hash: str, gated_at: str) -> Verdict:
    """What `mlops gate` reports for a card without a candidate: nothing to judge, a pass."""
    return Verdict(
        passed=True, mode="improve", model_name=model_name, metric=metric,
        greater_is_better=greater_is_better, min_improvement=0.0, confidence=0.95,
        resamples=0, seed=0, candidate_run_id=None, production_version=None,
        production_run_id=None, improvement_bound=None,
        reasons=("the card names no candidate run",), metrics={}, floors=(),
        data_hashes={}, evaluated_rows=0, policy_hash=policy_hash, tracking_uri="",
        gated_at=gated_at)


def _compact(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
