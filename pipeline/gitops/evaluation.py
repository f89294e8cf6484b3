"""The gate's shell: resolve both models, check they compare, score them on the same rows.

`run_gate` resolves the candidate and Production on the registry, checks they are
comparable (task, feature schema), recomputes the sealed test rows from the data (no
run carries a metric on them: training logs validation metrics only), scores both
models on them, bootstraps
the paired differences and hands the numbers to the pure `gate.decide`. `record_verdict`
writes the result to the candidate run when asked (`mlops gate --record`): the PR's
gate runs read-only, and promote recomputes the verdict rather than trusting a tag.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import modelio
from modelio import files as modelio_files
from modelio import source as modelio_source
from pipeline import progress
from pipeline.errors import ConfigError, RegistryError
from pipeline.gitops import deployed, registry
from pipeline.gitops.budgets import Served, ServingCosts, ServingUnmeasured, one_row
from pipeline.gitops.budgets import measure as measure_serving
from pipeline.gitops.card import (
    ModelCard,
    PromotionPolicy,
    check_policy,
    check_slices,
    policy_hash,
    prepare_data,
)
from pipeline.gitops.gate import Decision, Evaluation, TwinCheck, decide
from pipeline.gitops.report import plot
from pipeline.gitops.slices import (
    SLICES_FILE,
    Slice,
    SliceTable,
    resamples_needed,
    split,
    table_json,
)
from pipeline.gitops.slices import compare as compare_slices
from pipeline.gitops.stats import Interval, paired_bootstrap, supports
from pipeline.gitops.verdict import MetricRow, Verdict
from pipeline.stages.data import PreparedData, rows_hash
from pipeline.stages.datasets import DatasetSpec, load_spec
from pipeline.stages.evaluate import Predictions, predict, scores_of
from pipeline.stages.twin import Twin, TwinRefused, compile_twin

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ResolvedModel:
    """A model's run, and its files downloaded and verified by `modelio` (nothing
    deserialized until `estimator`)."""

    run: Run
    opened: modelio.OpenedModel
    version: ModelVersion | None
    what: str

    @property
    def run_id(self) -> str:
        return str(self.run.info.run_id)

    @property
    def files(self) -> modelio_files.CheckedModel:
        return self.opened.files

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return list(self.opened.signature.inputs.to_dict())

    @property
    def data_hash(self) -> str | None:
        return self.run.data.tags.get("data_hash")

    @property
    def evaluated_manifest(self) -> dict[str, str]:
        """The SHA-256 of the files that make the model: every file but a derived one.

        A compiled twin is derived from the model at promotion, never taken from the
        run: one the run carries is left out here and replaced when promoted.
        """
        return modelio_files.without_derived(self.files.manifest)

    def input_example(self) -> pd.DataFrame | None:
        return self.opened.input_example()  # type: ignore[no-any-return]

    def estimator(self) -> Any:
        """The model, read by its kind trusting only allowed types (checked first)."""
        try:
            return self.opened.estimator()
        except modelio.ModelRefused as err:
            raise RegistryError(f"{self.what} run {self.run_id}: model refused: {err}") from err


@dataclass
class GateOutcome:
    verdict: Verdict
    candidate: ResolvedModel
    production: ResolvedModel | None
    data: PreparedData
    outputs: dict[str, Predictions]
    """Each model's answers on the sealed test rows ("candidate", "production")."""
    twin: Twin | TwinRefused
    """The candidate's twin, compiled here from its verified model with this code."""


def resolve_model(mlflow_client: MlflowClient, run_id: str, *, what: str, workdir: Path,
                  tracking_uri: str, version: ModelVersion | None = None) -> ResolvedModel:
    """A finished run whose model passes the data-only checks; anything else is one line.

    The files are downloaded once, hashed, checked and later loaded from the same
    folder, so the bytes that were evaluated are the bytes that were hashed. A registry
    version with a recorded manifest must still match it.
    """
    try:
        run = mlflow_client.get_run(run_id)
    except MlflowException as err:
        if registry.is_missing(err):
            raise RegistryError(f"{what} run {run_id}: not found on the tracking server") from err
        raise
    if run.info.lifecycle_stage == "deleted":
        raise RegistryError(f"{what} run {run_id}: the run is deleted")
    if run.info.status != "FINISHED":
        raise RegistryError(f"{what} run {run_id}: status {run.info.status}, expected FINISHED")
    source = (modelio_source.of_version(version) if version is not None
              else modelio_source.of_run(run_id, name=what))
    try:
        opened = registry.fetch_model(mlflow_client, source, workdir / what,
                                      tracking_uri=tracking_uri, require_manifest=False)
    except RegistryError as err:
        if isinstance(err.__cause__, modelio.ModelRefused):
            raise RegistryError(f"{what} run {run_id}: model refused: {err.__cause__}") from err
        raise RegistryError(f"{what} run {run_id}: {err}") from err
    signature = opened.signature
    if signature is None or signature.inputs is None:
        raise RegistryError(f"{what} run {run_id}: the model at {source.identity.uri} has no "
                            "signature")
    return ResolvedModel(run=run, opened=opened, version=version, what=what)


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
        if any(marker in tags for marker in registry.AUDIT_MARKERS):
            return True
        if version.current_stage == "Archived":
            return True
        if previous is not None and previous.version == version.version:
            return True
    return False


def run_gate(card: ModelCard, *, mlflow_client: MlflowClient, tracking_uri: str,
             data_root: Path | None = None, serving_url: str | None = None) -> GateOutcome:
    """Resolve, check, evaluate both models on the same recomputed rows, and decide.

    `data_root`: where the card's relative data files are (the gate workflow's copy of
    a pull request's files); by default the working directory. `serving_url`: the
    deployed server, asked whether it can load the candidate (a warning in the notes).
    """
    spec = load_spec(card.data.dataset)
    check_policy(card, task=spec.task)
    check_slices(card, spec=spec)
    policy = card.promotion
    name = card.model.name
    run_id = card.model.candidate_run_id
    if run_id is None:
        raise ConfigError("model.candidate_run_id: not set; put the run ID of your candidate "
                          "(printed by `mlops train`) in the card")
    # The models' folders stay on disk until their serving cost is measured: each is
    # loaded again there, in a process of its own.
    with tempfile.TemporaryDirectory(prefix="mlops-gate-") as tmp:
        workdir = Path(tmp)
        candidate = resolve_model(mlflow_client, run_id, what="candidate", workdir=workdir,
                                  tracking_uri=tracking_uri)
        current = registry.production_version(mlflow_client, name)
        production = None
        if current is not None:
            production = resolve_model(mlflow_client, str(current.run_id), version=current,
                                       what="Production", workdir=workdir,
                                       tracking_uri=tracking_uri)
        check_comparable(candidate, production, spec=spec)
        models = {"candidate": candidate.estimator()}
        example = candidate.input_example()
        supplied_twin = modelio_files.TWIN_FILE in candidate.files.manifest
        if production is not None:
            models["production"] = production.estimator()
        former = policy.mode == "rollback" and was_production(mlflow_client, name, run_id)

        with progress.stage("data: read, validate, cleanse, split"):
            data = prepare_data(card, root=data_root, spec=spec)
        pieces = split(data.test, policy.slices) if policy.slices is not None else None
        outputs, scores = _score(models, data)
        intervals = _bootstrap(policy, data, outputs, scores) if production is not None else {}
        table = _compare_slices(policy, pieces, data, outputs) if pieces is not None else None
        with progress.stage("compiling the candidate's twin and checking it on the same rows"):
            twin = compile_twin(models["candidate"], spec, data.x_test, data.y_test,
                                tolerance=card.model.twin_tolerance, example=example,
                                expected=outputs["candidate"])
        serving, unmeasured = _measure_serving(policy, candidate, production, twin, data,
                                               workdir=workdir)

    cand_eval = Evaluation(run_id=run_id, version=None, metrics=scores["candidate"])
    prod_eval = None if production is None or current is None else Evaluation(
        run_id=production.run_id, version=current.version, metrics=scores["production"])
    decision = decide(policy=policy, candidate=cand_eval, production=prod_eval,
                      interval=intervals.get(policy.metric), former_production=former,
                      twin=twin_check(twin), slices=table, serving=serving)
    verdict = _verdict(card, decision, scores, intervals, candidate, production, data,
                       tracking_uri, twin_check(twin), supplied_twin=supplied_twin,
                       serving=serving, unmeasured=unmeasured)
    # the deployed server's view of the candidate: a warning, not a verdict (gitops.deployed)
    if (warning := deployed.warning(serving_url, models["candidate"])) is not None:
        verdict = dataclasses.replace(verdict, notes=(*verdict.notes, warning))
    return GateOutcome(verdict=verdict, candidate=candidate, production=production, data=data,
                       outputs=outputs, twin=twin)


def _score(models: dict[str, Any], data: PreparedData
           ) -> tuple[dict[str, Predictions], dict[str, dict[str, float]]]:
    """Each model asked once on the sealed rows: metrics, bootstrap, slices, twin, plot."""
    x, y = data.x_test, data.y_test
    outputs: dict[str, Predictions] = {}
    scores: dict[str, dict[str, float]] = {}
    for role, model in models.items():
        with progress.stage(f"scoring {role} on {len(x):,} sealed test rows"):
            outputs[role] = predict(model, x)
            scores[role] = scores_of(outputs[role], y, task=data.spec.task)
    return outputs, scores


def _bootstrap(policy: PromotionPolicy, data: PreparedData, outputs: dict[str, Predictions],
               scores: dict[str, dict[str, float]]) -> dict[str, Interval]:
    """The paired interval of every metric the gate can resample, on all sealed rows."""
    truth = np.asarray(data.y_test)
    compared = [metric for metric in scores["candidate"] if supports(metric)]
    intervals: dict[str, Interval] = {}
    with progress.steps(f"bootstrap resamples ({', '.join(compared)})",
                        policy.bootstrap_resamples * len(compared)) as advance:
        for metric in compared:
            intervals[metric] = paired_bootstrap(
                metric, truth, outputs["candidate"].prediction,
                outputs["production"].prediction,
                resamples=policy.bootstrap_resamples, confidence=policy.confidence,
                seed=policy.seed, advance=advance)
    return intervals


def _compare_slices(policy: PromotionPolicy, pieces: list[Slice], data: PreparedData,
                    outputs: dict[str, Predictions]) -> SliceTable:
    """The primary metric on every slice; the corrected paired interval where judged."""
    assert policy.slices is not None
    theirs = outputs.get("production")
    total = resamples_needed(pieces, section=policy.slices, confidence=policy.confidence,
                             resamples=policy.bootstrap_resamples,
                             compared=theirs is not None)
    with progress.steps(f"slices: {len(pieces)} of {', '.join(policy.slices.columns)}",
                        total or None) as advance:
        return compare_slices(
            pieces, section=policy.slices, metric=policy.metric,
            truth=np.asarray(data.y_test), candidate=outputs["candidate"].prediction,
            production=theirs.prediction if theirs is not None else None,
            confidence=policy.confidence, resamples=policy.bootstrap_resamples,
            seed=policy.seed, advance=advance)


def _measure_serving(policy: PromotionPolicy, candidate: ResolvedModel,
                     production: ResolvedModel | None, twin: Twin | TwinRefused, data:
                     PreparedData, *, workdir: Path) -> tuple[ServingCosts | None, str | None]:
    """Both models' serving figures, each on the runtime it would be served with.

    The candidate serves its twin when the gate compiled one that agrees (promotion
    compiles it again), Production the twin its promotion recorded, else each serves
    through sklearn. Declared budgets need the figures: a failure to measure is raised
    (exit 2); without budgets it is a note, and the verdict carries no figures.
    """
    twin_file = None
    if isinstance(twin, Twin):
        twin_file = workdir / "candidate-twin.onnx"
        twin_file.write_bytes(twin.onnx_bytes)
    served = [_served(candidate, twin_file)]
    if production is not None:
        served.append(_served(production, production.files.twin_file))
    repeats = policy.budgets.repeats if policy.budgets is not None else 1
    try:
        with progress.stage(f"serving cost: {repeats * len(served)} measuring run(s), one "
                            "child process each"):
            costs = measure_serving(served, row=one_row(data.x_test), repeats=repeats)
    except ServingUnmeasured as err:
        if policy.budgets is not None:
            raise
        return None, f"{err}; no budget is declared, so the gate goes on without the figures"
    return ServingCosts(candidate=costs[0],
                        production=costs[1] if len(costs) > 1 else None), None


def _served(model: ResolvedModel, twin_file: Path | None) -> Served:
    identity = model.opened.identity
    return Served(what=model.what, name=identity.name, folder=model.opened.folder,
                  manifest=model.opened.source.manifest, twin=twin_file,
                  version=identity.version, run_id=identity.run_id)


def twin_check(twin: Twin | TwinRefused) -> TwinCheck:
    """What the gate says of the twin it compiled: it will serve, or sklearn will, and why."""
    if isinstance(twin, Twin):
        return TwinCheck(ok=True, detail=twin.parity.line())
    return TwinCheck(ok=False, detail=twin.reason)


def _verdict(card: ModelCard, decision: Decision, scores: dict[str, dict[str, float]],
             intervals: dict[str, Interval], candidate: ResolvedModel,
             production: ResolvedModel | None, data: PreparedData,
             tracking_uri: str, twin: TwinCheck | None = None, *,
             supplied_twin: bool = False, serving: ServingCosts | None = None,
             unmeasured: str | None = None) -> Verdict:
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
              "evaluation": data.data_hash, "test_rows": rows_hash(data.test)}
    if production is not None and candidate.data_hash != production.data_hash:
        notes.append(f"the two models were trained on data with different hashes "
                     f"(candidate {candidate.data_hash}, Production {production.data_hash})")
    if production is not None and production.version is not None and \
            registry.recorded_manifest(production.version) is None:
        notes.append(f"Production version {production.version.version} has no recorded "
                     "manifest: its files could not be checked against what was promoted")
    if supplied_twin:
        notes.append(f"the candidate run's model folder carries a {modelio_files.TWIN_FILE}: it is "
                     "ignored; the twin is compiled from the verified model at promotion")
    if unmeasured is not None:
        notes.append(unmeasured)
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
        improvement_bound=decision.improvement_bound, reasons=decision.reasons,
        metrics=rows,
        floors=decision.floors,
        data_hashes=hashes, evaluated_rows=len(data.test), policy_hash=policy_hash(card),
        tracking_uri=tracking_uri,
        gated_at=now(), notes=tuple(notes), manifest=candidate.evaluated_manifest,
        twin=twin.describe() if twin is not None else None,
        slices=decision.slices, serving=serving, budgets=decision.budgets,
    )


def draw_plot(outcome: GateOutcome) -> tuple[Figure, str] | None:
    """Predicted vs actual (regression) or ROC (classification) of the gate's test rows."""
    outputs = outcome.outputs
    return plot(task=outcome.data.spec.task, truth=outcome.data.y_test.to_numpy(),
                predictions={role: o.prediction for role, o in outputs.items()},
                probabilities={role: o.probabilities for role, o in outputs.items()},
                classes=outputs["candidate"].classes)


def record_verdict(mlflow_client: MlflowClient, outcome: GateOutcome, *, markdown: str,
                   drawn: tuple[Figure, str] | None) -> str | None:
    """`mlops gate --record`: the report, verdict and plot on the candidate run (needs write).

    Informational only (promote trusts none of it). A candidate that already is
    Production keeps what its promotion recorded: nothing is written, None is returned.
    """
    verdict = outcome.verdict
    assert verdict.candidate_run_id is not None
    if verdict.production_run_id == verdict.candidate_run_id:
        return None
    run_id = verdict.candidate_run_id
    folder = registry.GATE_ARTIFACT_DIR
    mlflow_client.log_text(run_id, markdown, f"{folder}/report.md")
    mlflow_client.log_dict(run_id, verdict.to_json(), f"{folder}/verdict.json")
    if verdict.slices is not None:
        mlflow_client.log_text(run_id, table_json(verdict.slices), f"{folder}/{SLICES_FILE}")
    if drawn is not None:
        mlflow_client.log_figure(run_id, drawn[0], f"{folder}/{drawn[1]}")
    mlflow_client.set_tag(run_id, registry.VERDICT_TAG, verdict.to_tag())
    mlflow_client.set_tag(run_id, registry.PASSED_TAG, str(verdict.passed).lower())
    return registry.run_url(verdict.tracking_uri, run_id)
