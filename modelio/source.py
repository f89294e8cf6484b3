"""Where a model's files come from: a registry version, an alias, or a run.

`resolve` turns a URI into a `Source`: who the model is and, for a registry version,
the manifest promotion recorded on it (the SHA-256 its files must still have). MLflow's
client is imported when first needed: a process that only serves a model it already
has pays nothing for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelio.files import MANIFEST_TAG, parse_manifest
from modelio.identity import ModelIdentity

PRODUCTION_ALIAS = "production"
_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)/?$")
_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)/?$")
_RUN = re.compile(r"^runs:/(?P<run_id>[^/]+)/(?P<path>[^/].*)$")


class UnknownModel(Exception):
    """The URI names no model the registry has (one line: which, and why)."""


@dataclass(frozen=True)
class Source:
    """A model to fetch: who it is, and the manifest its files must match.

    `registered`: a registry version, whose files are trusted only as promotion
    recorded them; a run's model (`runs:/`) has no manifest and is checked by the
    format rules alone.
    """

    identity: ModelIdentity
    manifest: dict[str, str] | None = None
    registered: bool = False


def of_version(version: Any) -> Source:
    """A registry `ModelVersion` as a source, with its recorded manifest."""
    identity = ModelIdentity(name=str(version.name), version=str(version.version),
                             run_id=version.run_id,
                             uri=f"models:/{version.name}/{version.version}")
    return Source(identity=identity, registered=True,
                  manifest=parse_manifest((version.tags or {}).get(MANIFEST_TAG)))


def of_run(run_id: str, *, name: str, path: str = "model") -> Source:
    return Source(identity=ModelIdentity(name=name, version=None, run_id=run_id,
                                         uri=f"runs:/{run_id}/{path}"))


def pinned(uri: str, *, name: str | None) -> Source:
    """A fixed URI, without asking the registry (the server's `MODEL_URI`)."""
    if match := _VERSION.match(uri):
        return Source(identity=ModelIdentity(name=match["name"], version=match["version"],
                                             run_id=None, uri=uri), registered=False)
    run = _RUN.match(uri)
    return Source(identity=ModelIdentity(name=name or uri, version=None,
                                         run_id=run["run_id"] if run else None, uri=uri))


def resolve(client: Any, uri: str, *, name: str | None = None) -> Source:
    """`models:/NAME/VERSION`, `models:/NAME@ALIAS` or `runs:/RUN_ID/PATH` as a source.

    `client` is an `MlflowClient`; `name` names a run's model (its registered name).
    """
    from mlflow.exceptions import MlflowException

    if run := _RUN.match(uri):
        return of_run(run["run_id"], name=name or uri, path=run["path"])
    try:
        if version := _VERSION.match(uri):
            return of_version(client.get_model_version(version["name"], version["version"]))
        if alias := _ALIAS.match(uri):
            return of_version(client.get_model_version_by_alias(alias["name"],
                                                                alias["alias"]))
    except MlflowException as err:
        if getattr(err, "error_code", "") in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND",
                                               "INVALID_PARAMETER_VALUE"}:
            raise UnknownModel(f"{uri}: no such model, version or alias") from None
        raise
    raise UnknownModel(f"{uri}: not a model URI (models:/NAME/VERSION, models:/NAME@ALIAS "
                       "or runs:/RUN_ID/PATH)")


def download(source: Source, destination: Path, *, tracking_uri: str) -> Path:
    """The source's files in a local folder (MLflow's artifact download, no loading)."""
    import mlflow.artifacts

    return Path(mlflow.artifacts.download_artifacts(
        artifact_uri=source.identity.uri, dst_path=str(destination), tracking_uri=tracking_uri))
