"""The promotion gate: does the candidate beat Production on the same data by more than noise?

`decide` is the judgement, a pure function of the two evaluations, the bootstrap
interval and the card's policy, so every rule can be tested on constructed numbers.
`run_gate` is the shell around it: it resolves both models on the registry, checks
they are comparable, recomputes the held-out rows from the data (never trusting the
metrics logged at training time), scores both models on them, and bootstraps the
paired differences.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient

from pipeline import registry
from pipeline.card import ModelCard, PromotionPolicy, check_policy, policy_hash
from pipeline.data import PreparedData, prepare
from pipeline.datasets import DatasetSpec, load_spec
from pipeline.errors import ConfigError, RegistryError
from pipeline.evaluate import GREATER_IS_BETTER, evaluate
from pipeline.stats import Interval, paired_bootstrap, supports

VERDICT_TAG = "mlops.gate.verdict"
"""Run tag holding the compact verdict JSON that `mlops promote` reads on main."""
PASSED_TAG = "mlops.gate.passed"
ARTIFACT_DIR = "gate"


# --- the pure core ---------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """One model scored on the held-out rows."""

    run_id: str
    version: str | None
    metrics: dict[str, float]


@dataclass(frozen=True)
class FloorCheck:
    metric: str
    bound: float
    value: float | None
    greater_is_better: bool

    @property
    def ok(self) -> bool:
        if self.value is None or not np.isfinite(self.value):
            return False
        return self.value >= self.bound if self.greater_is_better else self.value <= self.bound

    def describe(self) -> str:
        side = "at least" if self.greater_is_better else "at most"
        if self.value is None:
            return f"{self.metric} must be {side} {fmt(self.bound)} but was not computed"
        state = "meets" if self.ok else "misses"
        return (f"{self.metric} is {fmt(self.value)}, which {state} the floor "
                f"({side} {fmt(self.bound)})")


@dataclass(frozen=True)
class Decision:
    passed: bool
    reasons: tuple[str, ...]
    floors: tuple[FloorCheck, ...]
    improvement_bound: float | None


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def check_floors(policy: PromotionPolicy, metrics: dict[str, float]) -> tuple[FloorCheck, ...]:
    return tuple(
        FloorCheck(metric=name, bound=bound, value=metrics.get(name),
                   greater_is_better=GREATER_IS_BETTER[name])
        for name, bound in sorted(policy.floors.items())
    )


def decide(*, policy: PromotionPolicy, candidate: Evaluation, production: Evaluation | None,
           interval: Interval | None, former_production: bool) -> Decision:
    """Pass only if every floor holds and the mode's test holds.

    A candidate that already is Production (a pull request that leaves the model alone)
    changes nothing: only the floors are checked, and promote will be a no-op.
    improve: the pessimistic end of the interval of the improvement must be strictly
    greater than `min_improvement`, so identical models never pass.
    rollback: the candidate must have been Production before; no improvement test.
    With no Production yet, the floors alone decide.
    """
    floors = check_floors(policy, candidate.metrics)
    failures = [f"floor: {f.describe()}" for f in floors if not f.ok]
    passes = [f"floor: {f.describe()}" for f in floors if f.ok]
    bound: float | None = None
    same = production is not None and production.run_id == candidate.run_id
    if same and production is not None:
        passes.append(f"the candidate run is already Production (version {production.version}): "
                      "nothing changes, so only the floors are checked")
    elif policy.mode == "rollback":
        if former_production:
            passes.append("rollback: the candidate was Production before; "
                          "the improvement test is skipped")
        else:
            failures.append("rollback: the candidate run was never Production of this model, "
                            "so it cannot be rolled back to")
    elif production is None:
        passes.append("no Production version yet: the candidate only has to meet the floors")
    elif interval is not None:
        bound = interval.improvement_bound(greater_is_better=policy.greater_is_better)
        text = _improvement_sentence(policy, production, interval, bound)
        (passes if bound > policy.min_improvement else failures).append(text)
    failures_first = tuple(failures) if failures else tuple(passes)
    return Decision(passed=not failures, reasons=failures_first, floors=floors,
                    improvement_bound=bound)


def _improvement_sentence(policy: PromotionPolicy, production: Evaluation,
                          interval: Interval, bound: float) -> str:
    better = "higher" if policy.greater_is_better else "lower"
    level = f"{policy.confidence:.0%}"
    head = (f"{policy.metric} ({better} is better): difference candidate - Production "
            f"version {production.version} is {fmt(interval.difference)}, {level} interval "
            f"[{fmt(interval.low)}, {fmt(interval.high)}]")
    if bound > policy.min_improvement:
        return (f"{head}; the improvement is at least {fmt(bound)}, "
                f"which clears min_improvement {fmt(policy.min_improvement)}")
    if interval.difference == 0 and interval.low == interval.high:
        return f"{head}; the candidate predicts exactly like Production, so it is no improvement"
    return (f"{head}; the improvement could be as small as {fmt(bound)}, which does not clear "
            f"min_improvement {fmt(policy.min_improvement)}: not better than Production "
            "by more than noise")


# --- the verdict -------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricRow:
    candidate: float
    production: float | None
    difference: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Verdict:
    """Everything the report, the JSON file, the run tag and `mlops promote` need."""

    passed: bool
    mode: str
    model_name: str
    metric: str
    greater_is_better: bool
    min_improvement: float
    confidence: float
    resamples: int
    seed: int
    candidate_run_id: str
    production_version: str | None
    production_run_id: str | None
    improvement_bound: float | None
    reasons: list[str]
    metrics: dict[str, MetricRow]
    floors: list[dict[str, Any]]
    data_hashes: dict[str, str | None]
    evaluated_rows: int
    policy_hash: str
    tracking_uri: str
    gated_at: str
    notes: list[str] = field(default_factory=list)

    @property
    def interval(self) -> MetricRow:
        return self.metrics[self.metric]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = "pass" if self.passed else "fail"
        row = self.metrics[self.metric]
        out["interval"] = {"metric": self.metric, "difference": row.difference,
                           "low": row.low, "high": row.high, "confidence": self.confidence,
                           "improvement_bound": self.improvement_bound}
        return out

    def tag_json(self) -> str:
        """The compact verdict stored on the candidate run (MLflow caps tags at 8,000 chars)."""
        compact = {
            "passed": self.passed, "mode": self.mode, "model_name": self.model_name,
            "production_version": self.production_version,
            "production_run_id": self.production_run_id, "metric": self.metric,
            "improvement_bound": self.improvement_bound, "policy_hash": self.policy_hash,
            "gated_at": self.gated_at,
        }
        return json.dumps(compact, sort_keys=True)


# --- the shell: registry, data, models ------------------------------------------------


@dataclass(frozen=True)
class ResolvedModel:
    run: Run
    uri: str
    info: ModelInfo
    version: ModelVersion | None

    @property
    def run_id(self) -> str:
        return str(self.run.info.run_id)

    @property
    def inputs(self) -> list[dict[str, Any]]:
        assert self.info.signature is not None
        return list(self.info.signature.inputs.to_dict())

    @property
    def data_hash(self) -> str | None:
        return self.run.data.tags.get("data_hash")


@dataclass
class GateOutcome:
    verdict: Verdict
    candidate: ResolvedModel
    production: ResolvedModel | None
    data: PreparedData
    predictions: dict[str, np.ndarray]
    probabilities: dict[str, np.ndarray | None]
    classes: list[Any] | None


def resolve_model(mlflow_client: MlflowClient, run_id: str, *, uri: str, what: str,
                  version: ModelVersion | None = None) -> ResolvedModel:
    """A finished run with a model and a signature; anything else is one line, exit 2."""
    try:
        run = mlflow_client.get_run(run_id)
    except MlflowException as err:
        if registry._is_missing(err):
            raise RegistryError(f"{what} run {run_id}: not found on the tracking server") from err
        raise
    if run.info.lifecycle_stage == "deleted":
        raise RegistryError(f"{what} run {run_id}: the run is deleted")
    if run.info.status != "FINISHED":
        raise RegistryError(f"{what} run {run_id}: status {run.info.status}, expected FINISHED")
    try:
        info = mlflow.models.get_model_info(uri)
    except (MlflowException, OSError) as err:
        raise RegistryError(f"{what} run {run_id}: no model at {uri}") from err
    if info.signature is None or info.signature.inputs is None:
        raise RegistryError(f"{what} run {run_id}: the model at {uri} has no signature")
    return ResolvedModel(run=run, uri=uri, info=info, version=version)


def check_comparable(candidate: ResolvedModel, production: ResolvedModel | None, *,
                     spec: DatasetSpec) -> None:
    """Same task and same feature schema, else the comparison means nothing."""
    for model, what in ((candidate, "candidate"), (production, "Production")):
        if model is None:
            continue
        task = model.run.data.tags.get("task")
        if task is not None and task != spec.task:
            raise RegistryError(f"{what} run {model.run_id}: task {task}, but the card's "
                                f"dataset {spec.name} is {spec.task}")
    names = [column.get("name") for column in candidate.inputs]
    if names != spec.feature_names:
        missing = sorted(set(spec.feature_names) - set(filter(None, names)))
        raise RegistryError(
            f"candidate run {candidate.run_id}: model inputs do not match dataset "
            f"{spec.name}'s features" + (f" (missing {', '.join(missing)})" if missing else "")
        )
    if production is not None and candidate.inputs != production.inputs:
        raise RegistryError(
            f"candidate run {candidate.run_id}: feature schema differs from Production "
            f"version {production.version.version if production.version else '?'} "
            f"({_schema_difference(candidate.inputs, production.inputs)})"
        )


def _schema_difference(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    by_name_a = {c.get("name"): c for c in a}
    by_name_b = {c.get("name"): c for c in b}
    for name in sorted(set(by_name_a) | set(by_name_b), key=str):
        if by_name_a.get(name) != by_name_b.get(name):
            left = by_name_a.get(name, {}).get("type", "absent")
            right = by_name_b.get(name, {}).get("type", "absent")
            return f"{name}: {left} vs {right}"
    return "column order"


def was_production(mlflow_client: MlflowClient, name: str, run_id: str) -> bool:
    """True if a version of this run was Production before (promote's tags or stage history)."""
    versions = mlflow_client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    previous = registry.version_by_alias(mlflow_client, name, registry.PREVIOUS)
    for version in versions:
        tags = version.tags or {}
        if "promoted_at" in tags or "promoted_by" in tags:
            return True
        if version.current_stage == "Archived":
            return True
        if previous is not None and previous.version == version.version:
            return True
    return False


def _predict(model: Any, x: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    prediction = np.asarray(model.predict(x))
    proba = np.asarray(model.predict_proba(x)) if hasattr(model, "predict_proba") else None
    return prediction, proba


def run_gate(card: ModelCard, *, mlflow_client: MlflowClient, tracking_uri: str) -> GateOutcome:
    """Resolve, check, evaluate both models on the same recomputed rows, and decide."""
    spec = load_spec(card.data.dataset)
    check_policy(card, task=spec.task)
    policy = card.promotion
    name = card.model.name
    run_id = card.model.candidate_run_id
    if run_id is None:
        raise ConfigError("model.candidate_run_id: not set; put the run ID of your candidate "
                          "(printed by `mlops train`) in the card")
    candidate = resolve_model(mlflow_client, run_id, what="candidate",
                              uri=f"runs:/{run_id}/{registry.MODEL_ARTIFACT}")
    current = registry.production_version(mlflow_client, name)
    production = None
    if current is not None:
        production = resolve_model(mlflow_client, str(current.run_id), version=current,
                                   uri=f"models:/{name}/{current.version}", what="Production")
    check_comparable(candidate, production, spec=spec)
    former = policy.mode == "rollback" and was_production(mlflow_client, name, run_id)

    data = prepare(spec, source=card.data.source, holdout_fraction=card.data.holdout_fraction)
    x, y = data.x_holdout, data.y_holdout
    truth = np.asarray(y)
    models = {"candidate": mlflow.sklearn.load_model(candidate.uri)}
    if production is not None:
        models["production"] = mlflow.sklearn.load_model(production.uri)
    predictions: dict[str, np.ndarray] = {}
    probabilities: dict[str, np.ndarray | None] = {}
    scores: dict[str, dict[str, float]] = {}
    for role, model in models.items():
        predictions[role], probabilities[role] = _predict(model, x)
        scores[role] = evaluate(model, x, y, task=spec.task)

    intervals: dict[str, Interval] = {}
    if production is not None:
        for metric in scores["candidate"]:
            if supports(metric):
                intervals[metric] = paired_bootstrap(
                    metric, truth, predictions["candidate"], predictions["production"],
                    resamples=policy.bootstrap_resamples, confidence=policy.confidence,
                    seed=policy.seed)

    cand_eval = Evaluation(run_id=run_id, version=None, metrics=scores["candidate"])
    prod_eval = None if production is None or current is None else Evaluation(
        run_id=production.run_id, version=current.version, metrics=scores["production"])
    decision = decide(policy=policy, candidate=cand_eval, production=prod_eval,
                      interval=intervals.get(policy.metric), former_production=former)
    verdict = _verdict(card, decision, scores, intervals, candidate, production, data,
                       tracking_uri)
    classes = list(models["candidate"].classes_) if hasattr(models["candidate"], "classes_") \
        else None
    return GateOutcome(verdict=verdict, candidate=candidate, production=production, data=data,
                       predictions=predictions, probabilities=probabilities, classes=classes)


def _verdict(card: ModelCard, decision: Decision, scores: dict[str, dict[str, float]],
             intervals: dict[str, Interval], candidate: ResolvedModel,
             production: ResolvedModel | None, data: PreparedData,
             tracking_uri: str) -> Verdict:
    policy = card.promotion
    rows: dict[str, MetricRow] = {}
    for metric, value in scores["candidate"].items():
        base = scores.get("production", {}).get(metric)
        interval = intervals.get(metric)
        rows[metric] = MetricRow(
            candidate=value, production=base,
            difference=None if base is None else value - base,
            low=None if interval is None else interval.low,
            high=None if interval is None else interval.high)
    notes = []
    hashes = {"candidate": candidate.data_hash,
              "production": production.data_hash if production else None,
              "evaluation": data.data_hash}
    if production is not None and candidate.data_hash != production.data_hash:
        notes.append(f"the two models were trained on data with different hashes "
                     f"(candidate {candidate.data_hash}, Production {production.data_hash})")
    if candidate.data_hash not in (None, data.data_hash):
        notes.append(f"the candidate was trained on data with hash {candidate.data_hash}; "
                     f"the data evaluated now has hash {data.data_hash}")
    version = production.version if production is not None else None
    return Verdict(
        passed=decision.passed, mode=policy.mode, model_name=card.model.name,
        metric=policy.metric, greater_is_better=policy.greater_is_better,
        min_improvement=policy.min_improvement, confidence=policy.confidence,
        resamples=policy.bootstrap_resamples, seed=policy.seed,
        candidate_run_id=candidate.run_id,
        production_version=version.version if version is not None else None,
        production_run_id=production.run_id if production is not None else None,
        improvement_bound=decision.improvement_bound, reasons=list(decision.reasons),
        metrics=rows,
        floors=[{"metric": f.metric, "bound": f.bound, "value": f.value,
                 "greater_is_better": f.greater_is_better, "ok": f.ok} for f in decision.floors],
        data_hashes=hashes, evaluated_rows=len(data.holdout), policy_hash=policy_hash(card),
        tracking_uri=tracking_uri,
        gated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), notes=notes,
    )


def read_verdict_tag(run: Run) -> dict[str, Any] | None:
    """The verdict the gate left on a run, or None when it was never gated."""
    raw = run.data.tags.get(VERDICT_TAG)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
