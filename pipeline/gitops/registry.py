"""Registry conventions on MLflow 3: the alias `production` is the source of truth.

The stage "Production" is mirrored (archiving the previous one) for older clients,
and `previous-production` remembers what to roll back to.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse, urlsplit, urlunsplit

import requests

import modelio
from modelio import files as modelfiles
from modelio import source as modelio_source
from pipeline import progress
from pipeline.errors import RegistryError
from pipeline.stages import MODEL_ARTIFACT

if TYPE_CHECKING:  # MLflow takes seconds to import: commands that only read stay quick
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

PRODUCTION = "production"
PREVIOUS = "previous-production"
STAGE = "Production"
VERDICT_TAG = "mlops.gate.verdict"
"""Run tag: the gate's verdict (`Verdict.to_tag`), what the reviewer saw on the PR."""
PASSED_TAG = "mlops.gate.passed"
GATE_ARTIFACT_DIR = "gate"
"""Folder of the candidate run's artifacts where the gate logs its report and plot."""
BOOTSTRAP_TAGS = {"promoted_by": "mlops train --promote (bootstrap)"}
MANIFEST_TAG = modelfiles.MANIFEST_TAG
"""Version tag: the SHA-256 of each of the version's files, written before the alias moves,
so the server can verify a version before it deserializes anything."""
PROMOTE_VERDICT_TAG = "mlops.promote.verdict"
"""Version tag: the verdict promote recomputed with main's code (`Verdict.to_tag`)."""
AUDIT_MARKERS = ("promoted_at", "promoted_by")
"""Tags written only after the alias moved: a version that has them was Production."""


def check_reachable(tracking_uri: str, *, timeout: float = 5.0) -> None:
    """Fail fast with one line instead of MLflow's minutes of retries."""
    if urlparse(tracking_uri).scheme not in {"http", "https"}:
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        requests.get(url, timeout=timeout)
    except requests.RequestException as err:
        raise RegistryError(
            f"cannot reach the MLflow tracking server at {tracking_uri} "
            f"({type(err).__name__}); start it with `make up` or set MLFLOW_TRACKING_URI"
        ) from err


def public_uri(tracking_uri: str) -> str:
    """The tracking URI without credentials, fit for a link in a public comment or a log."""
    parts = urlsplit(tracking_uri)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")).rstrip("/")


def run_url(tracking_uri: str, run_id: str) -> str:
    """The run's page in the MLflow UI (the UI finds the experiment from the run)."""
    return f"{public_uri(tracking_uri)}/#/runs/{run_id}"


def client(tracking_uri: str) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    check_reachable(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


class RegistryReader(Protocol):
    """What reading the registry's state takes: an `MlflowClient`, or the REST reader
    (`pipeline.gitops.rest_reader`) that answers the same two calls without importing
    MLflow, so `mlops status` starts in a fraction of a second."""

    def get_model_version_by_alias(self, name: str, alias: str) -> Any: ...

    def get_run(self, run_id: str) -> Any: ...


def reader(tracking_uri: str) -> RegistryReader:
    """The quickest reader for this tracking URI: REST over HTTP(S), else an MlflowClient
    (a database or folder URI, or an authentication plugin only MLflow knows)."""
    from pipeline.gitops.rest_reader import RestReader, supports

    if supports(tracking_uri):
        check_reachable(tracking_uri)
        return RestReader(tracking_uri)
    return client(tracking_uri)


MISSING_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"})


def is_missing(err: BaseException) -> bool:
    """MLflow's (or the REST reader's) error for a model, version or alias that is not there."""
    return getattr(err, "error_code", None) in MISSING_CODES


def version_by_alias(mlflow: RegistryReader, name: str, alias: str) -> Any:
    """The version an alias points at (a `ModelVersion` from an MlflowClient), or None when
    the model or alias does not exist."""
    try:
        return mlflow.get_model_version_by_alias(name, alias)
    except Exception as err:
        if is_missing(err):
            return None
        raise


def production_version(mlflow: MlflowClient, name: str) -> ModelVersion | None:
    version: ModelVersion | None = version_by_alias(mlflow, name, PRODUCTION)
    return version


def find_version_of_run(mlflow: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    """An existing version of `name` made from `run_id` (registering twice is a no-op)."""
    versions = mlflow.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    ready = [v for v in versions if v.status == "READY"]
    return min(ready, key=lambda v: int(v.version)) if ready else None


def logged_model_id(mlflow: MlflowClient, run_id: str) -> str:
    """The MLflow 3 LoggedModel that the run logged as `model`.

    MLflow 3 stores models outside the run's artifact folder, so a version must be
    created from `models:/<model_id>`, not from `runs:/<run_id>/model`.
    """
    run = mlflow.get_run(run_id)
    found = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_ARTIFACT}'",
    )
    if not found:
        raise RegistryError(f"run {run_id} has no logged model named {MODEL_ARTIFACT!r}")
    return str(max(found, key=lambda m: m.creation_timestamp).model_id)


def register_run(mlflow: MlflowClient, name: str, run_id: str, *,
                 wait_seconds: float = 120.0) -> ModelVersion:
    """Register the run's model under `name`, reusing a version of the same run."""
    existing = find_version_of_run(mlflow, name, run_id)
    if existing is not None:
        return existing
    from mlflow.exceptions import RestException

    try:
        mlflow.get_registered_model(name)
    except RestException as err:
        if not is_missing(err):
            raise
        mlflow.create_registered_model(name)
    model_id = logged_model_id(mlflow, run_id)
    version = mlflow.create_model_version(
        name=name, source=f"models:/{model_id}", run_id=run_id, model_id=model_id
    )
    return _wait_ready(mlflow, name, version.version, wait_seconds)


def _wait_ready(mlflow: MlflowClient, name: str, version: str, wait_seconds: float) -> ModelVersion:
    deadline = time.monotonic() + wait_seconds
    while True:
        current = mlflow.get_model_version(name, version)
        if current.status == "READY":
            return current
        if current.status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise RegistryError(f"model {name} version {version}: registration {current.status}")
        time.sleep(0.5)


def fetch_model(mlflow: MlflowClient, source: modelio.Source, workdir: Path, *,
                tracking_uri: str, require_manifest: bool | None = None) -> modelio.OpenedModel:
    """The source's files downloaded and verified by `modelio` (nothing deserialized yet);
    any failure is one line (`RegistryError`) naming the model and the rule."""
    from mlflow.exceptions import MlflowException

    try:
        with progress.stage(f"downloading {source.identity.uri}"):
            return modelio.fetch(source, workdir, tracking_uri=tracking_uri,
                                 require_manifest=require_manifest)
    except modelio.ModelRefused as err:
        raise RegistryError(f"{source.identity.label}: model refused: {err}") from err
    except (MlflowException, OSError) as err:
        raise RegistryError(f"no model at {source.identity.uri}") from err


def resolve(mlflow: MlflowClient, uri: str, *, name: str | None = None) -> modelio.Source:
    """A model URI as a `modelio.Source`; an unknown one is one line."""
    try:
        return modelio_source.resolve(mlflow, uri, name=name)
    except modelio.UnknownModel as err:
        raise RegistryError(str(err)) from err


def version_manifest(name: str, version: str, *, tracking_uri: str) -> dict[str, str]:
    """The SHA-256 of every file the registry serves for `name` version `version`, now."""
    from mlflow.exceptions import MlflowException

    source = modelio_source.pinned(f"models:/{name}/{version}", name=name)
    with tempfile.TemporaryDirectory(prefix="mlops-manifest-") as tmp:
        try:
            folder = modelio_source.download(source, Path(tmp), tracking_uri=tracking_uri)
        except (MlflowException, OSError) as err:
            raise RegistryError(f"no model at {source.identity.uri}") from err
        return modelfiles.manifest(folder)


def attach_twin(mlflow: MlflowClient, run_id: str, onnx_bytes: bytes | None,
                evaluated: dict[str, str]) -> dict[str, str]:
    """Write the twin promotion compiled into the run's model folder; the manifest to record.

    The twin is derived here, from the verified model, with reviewed code: its bytes
    replace any `model.onnx` the run's owner put in the folder, and the manifest names
    exactly the files that were evaluated plus this twin. Without a twin (no converter,
    or it disagreed) the manifest is the evaluated files alone, and a twin the run
    carries makes the version's files differ from it: promote refuses such a version.
    """
    if onnx_bytes is None:
        return dict(evaluated)
    with tempfile.TemporaryDirectory(prefix="mlops-twin-") as tmp:
        path = Path(tmp) / modelfiles.TWIN_FILE
        path.write_bytes(onnx_bytes)
        mlflow.log_model_artifact(logged_model_id(mlflow, run_id), str(path))
    return {**evaluated, modelfiles.TWIN_FILE: hashlib.sha256(onnx_bytes).hexdigest()}


def check_version_files(name: str, version: str, expected: dict[str, str], *,
                        tracking_uri: str) -> None:
    """The registered version must serve exactly the files that are about to be recorded."""
    found = version_manifest(name, version, tracking_uri=tracking_uri)
    difference = modelfiles.first_difference(expected, found)
    if difference is None:
        return
    file, want, got = difference
    if file in modelfiles.DERIVED_FILES and want is None:
        raise RegistryError(f"{name} version {version}: its model folder holds a {file} that "
                            "promotion did not compile (twins are derived from the model, "
                            "never supplied); train the run again without it")
    raise RegistryError(f"{name} version {version}: {file} has sha256 {(got or 'none')[:12]}, "
                        f"but the evaluated file had {(want or 'none')[:12]}; refused")


def recorded_manifest(version: ModelVersion) -> dict[str, str] | None:
    return modelfiles.parse_manifest((version.tags or {}).get(MANIFEST_TAG))


def set_production(mlflow: MlflowClient, name: str, version: str, *, manifest: dict[str, str],
                   tags: dict[str, str] | None = None) -> ModelVersion:
    """Point `production` at `version`, keep the old one as `previous-production`,
    mirror the stage, tag, and read the alias back.

    Order matters: the manifest goes first (the server verifies against it when it sees
    the alias move), the audit tags last (a version carries them only once it really
    was Production, so a half-done promotion is never mistaken for a former one).
    """
    current = production_version(mlflow, name)
    mlflow.set_model_version_tag(name, version, MANIFEST_TAG, modelfiles.dump_manifest(manifest))
    if current is not None and current.version != version:
        mlflow.set_registered_model_alias(name, PREVIOUS, current.version)
    mlflow.set_registered_model_alias(name, PRODUCTION, version)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        mlflow.transition_model_version_stage(
            name, version, STAGE, archive_existing_versions=True
        )
    for key, value in (tags or {}).items():
        mlflow.set_model_version_tag(name, version, key, value)
    after = production_version(mlflow, name)
    if after is None or after.version != version:
        raise RegistryError(f"model {name}: alias {PRODUCTION} did not move to version {version}")
    return after


def describe(mlflow: RegistryReader, name: str) -> dict[str, Any]:
    """The registry's view of a model, as plain data for `mlops status` (and the notebook)."""
    production = version_by_alias(mlflow, name, PRODUCTION)
    previous = version_by_alias(mlflow, name, PREVIOUS)
    state: dict[str, Any] = {"model": name, "production": None,
                             "previous_production": previous.version if previous else None}
    if production is not None and production.run_id:
        run = mlflow.get_run(production.run_id)
        state["production"] = {
            "version": production.version,
            "run_id": production.run_id,
            "stage": production.current_stage,
            "metrics": {k: v for k, v in sorted(run.data.metrics.items())
                        if not k.startswith("cleanse_")},
        }
    return state


def refuse_if_production_exists(mlflow: MlflowClient, name: str) -> None:
    """Bootstrap is for the first model only; later ones go through the gate."""
    current = production_version(mlflow, name)
    if current is not None:
        raise RegistryError(
            f"{name} already has Production version {current.version}; "
            "later models reach production through `mlops gate` and `mlops promote`"
        )


Derive = Callable[[Any, Any], "bytes | None"]
"""(verified estimator, its input example) -> the twin's bytes, or None for no twin."""


def bootstrap_production(mlflow: MlflowClient, name: str, run_id: str, *,
                         tracking_uri: str, derive_twin: Derive) -> ModelVersion:
    """Register a run and make it the first Production version of a model that has none.

    The check runs before and after registering: a second bootstrap racing this one,
    or a promotion in between, makes this one refuse instead of moving Production. The
    files are checked like any model the server will load; the twin is derived from
    the verified model (`derive_twin`, as promote derives it) and recorded with them.
    """
    refuse_if_production_exists(mlflow, name)
    version = register_run(mlflow, name, run_id)
    with tempfile.TemporaryDirectory(prefix="mlops-bootstrap-") as tmp:
        opened = fetch_model(mlflow, modelio_source.of_version(version), Path(tmp),
                             tracking_uri=tracking_uri, require_manifest=False)
        try:
            estimator = opened.estimator()
        except modelio.ModelRefused as err:
            raise RegistryError(f"run {run_id}: the model is refused: {err}") from err
        twin = derive_twin(estimator, opened.input_example())
        checked = opened.files
    evaluated = modelfiles.without_derived(checked.manifest)
    manifest = attach_twin(mlflow, run_id, twin, evaluated)
    check_version_files(name, version.version, manifest, tracking_uri=tracking_uri)
    refuse_if_production_exists(mlflow, name)
    return set_production(mlflow, name, version.version, manifest=manifest,
                          tags=dict(BOOTSTRAP_TAGS))
