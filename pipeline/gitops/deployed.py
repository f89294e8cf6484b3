"""The deployed server and the registry agree: what it can load, and what it serves.

The server publishes on `/model` what it can load (`loads`: each model kind with its
library's version, and its allowlist's SHA-256) and what it serves (`version`,
`registry_version`, `behind_registry`, `last_refusal`). Before the alias moves, the gate
warns and promote refuses a candidate whose kind the deployed server lacks
(`cannot_load`). After the alias moved, promote waits until the server serves the new
version (`await_served`); when the server refuses it or fails to load it, promote moves
the alias back (`pipeline.gitops.promote`) and exits non-zero with the server's reason.

What cannot be known before the server tries (another allowlist, a library version
that does not read the model) is caught by that wait: the alias is back on the
version the server serves before anyone depends on the new one.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from mlflow.tracking import MlflowClient

from modelio import allowlist
from pipeline.errors import RegistryError
from pipeline.gitops import registry

STATUS_TIMEOUT_SECONDS = 5.0
WAIT_SECONDS = 300.0
"""How long promote waits for the server to serve a new version: a download, the checks,
loading and the warm-up (seconds for the built-in models; a large forest takes longer)."""


def server_status(url: str, *, timeout: float = STATUS_TIMEOUT_SECONDS) -> dict[str, Any]:
    """The server's `/model`, or one line saying why it could not be read."""
    endpoint = url.rstrip("/") + "/model"
    try:
        answer = requests.get(endpoint, timeout=timeout)
        answer.raise_for_status()
        status = answer.json()
    except (requests.RequestException, ValueError) as err:
        raise RegistryError(f"the serving API at {url} did not answer /model "
                            f"({type(err).__name__})") from None
    if not isinstance(status, dict):
        raise RegistryError(f"the serving API at {url} answered /model with no status")
    return status


def kinds_of(estimator: Any) -> list[str]:
    """The model kinds beyond scikit-learn that a loaded model needs (its skops types)."""
    from modelio import sklearn_kind

    skops_io = sklearn_kind.skops_io()
    types = skops_io.get_untrusted_types(data=skops_io.dumps(estimator))
    return [kind.name for kind in allowlist.current().kinds_needed(types)]


def cannot_load(status: dict[str, Any], kinds: list[str]) -> str | None:
    """Why the server that published `status` cannot load a model of `kinds`, or None.

    A server that publishes nothing (older code) is taken as loading scikit-learn
    models only."""
    loads = status.get("loads") or {}
    available = loads.get("kinds") or {allowlist.SKLEARN_KIND: "unknown"}
    missing = [kind for kind in kinds if not available.get(kind)]
    if missing:
        return (f"the deployed server cannot load a {missing[0]} model: it has no "
                f"{missing[0]} (it loads {', '.join(k for k, v in available.items() if v)})")
    return None


def allowlist_note(status: dict[str, Any]) -> str | None:
    """A note when the server holds another allowlist than this code."""
    digest = (status.get("loads") or {}).get("allowlist")
    if digest and digest != allowlist.current().digest:
        return (f"the deployed server holds another loading allowlist ({str(digest)[:12]}, "
                f"this code {allowlist.current().digest[:12]}): it decides when it loads")
    return None


def warning(url: str | None, estimator: Any) -> str | None:
    """The gate's warning, if the deployed server at `url` cannot load the candidate (or
    cannot be asked); None without a URL or when it can."""
    if not url:
        return None
    try:
        status = server_status(url)
    except RegistryError as err:
        return f"could not ask the deployed server what it loads: {err}"
    return cannot_load(status, kinds_of(estimator)) or allowlist_note(status)


def refuse_unloadable(url: str | None, estimator: Any, *, version: str | None = None) -> None:
    """Promote's check before the alias moves: raise with the reason when the deployed
    server cannot load the candidate."""
    if not url:
        return
    reason = cannot_load(server_status(url), kinds_of(estimator))
    if reason is not None:
        raise RegistryError(f"promote refuses{f' version {version}' if version else ''}: "
                            f"{reason}; deploy a server that loads it first")


@dataclass(frozen=True)
class Served:
    """The outcome of waiting: `reason` is None when the server serves the version."""

    version: str
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def await_served(url: str, version: str, *, timeout: float = WAIT_SECONDS,
                 poll: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> Served:
    """Poll `/model` until the server serves `version`, refuses it or fails to load it.

    A timeout is not a refusal (the server may be slow or unreachable); it raises, and
    the alias stays where promote put it."""
    deadline = clock() + timeout
    while True:
        try:
            status = server_status(url)
        except RegistryError:
            status = {}
        if str(status.get("version")) == version:
            return Served(version=version)
        reason = refusal_of(status, version)
        if reason is not None:
            return Served(version=version, reason=reason)
        if clock() >= deadline:
            raise RegistryError(f"the serving API at {url} did not serve version {version} "
                                f"within {timeout:.0f} s (it serves "
                                f"{status.get('version') or 'nothing'}); the alias stays on "
                                f"{version}: see its /model")
        sleep(poll)


def refusal_of(status: dict[str, Any], version: str) -> str | None:
    """The server's reason for not serving `version`, when it gave one."""
    refusal = status.get("last_refusal") or {}
    if str(refusal.get("version")) == version and refusal.get("reason"):
        return str(refusal["reason"])
    error = status.get("last_reload_error")
    if error and f"version {version}:" in str(error) \
            and str(status.get("registry_version")) == version:
        return str(error)
    return None


def confirm_served(client: MlflowClient, name: str, version: str, *, url: str | None,
                   baseline: str | None, previous: str | None,
                   tags: dict[str, str]) -> None:
    """After the alias moved to `version`: wait until the server at `url` serves it; if it
    refuses, move `production` back to `baseline` (and `previous-production` back to
    `previous`) and raise with the server's reason. Without a URL, nothing to wait for."""
    if not url:
        return
    served = await_served(url, version)
    if served.ok:
        return
    move_back(client, name, version, to=baseline, previous=previous, tags=tags)
    where = f"version {baseline}" if baseline else "no version (the alias is removed)"
    raise RegistryError(f"the deployed server refused {name} version {version}: "
                        f"{served.reason}; production is back on {where}")


def move_back(client: MlflowClient, name: str, refused: str, *, to: str | None,
              previous: str | None, tags: dict[str, str]) -> None:
    """Point `production` at `to` again (its recorded manifest), tagged as moved back."""
    if to is None:
        client.delete_registered_model_alias(name, registry.PRODUCTION)
        return
    target = client.get_model_version(name, to)
    manifest = registry.recorded_manifest(target)
    if manifest is None:
        raise RegistryError(f"{name} version {to} has no recorded manifest: cannot move the "
                            f"alias back from version {refused}; roll back by hand")
    registry.set_production(client, name, to, manifest=manifest, tags={
        **tags, "rolled_back_from": refused, "promoted_at": _now(),
        "promoted_by": "mlops promote (moved back: the deployed server refused "
                       f"version {refused})"})
    if previous is not None:
        client.set_registered_model_alias(name, registry.PREVIOUS, previous)
    else:
        client.delete_registered_model_alias(name, registry.PREVIOUS)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
