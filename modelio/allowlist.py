"""The loading allowlist: `allowlist.yaml`, read as data, and the one check of a type list.

Every skops file is held to it before it is read (`modelio.sklearn_kind`), and training
holds an estimator to it before fitting (`pipeline.stages.train`): a model that could
never be served is refused before any time is spent on it. `refused` names every type
that is not admitted at once, each with why, so a data scientist fixes them in one go.

What is admitted: scikit-learn's own estimators and transformers by rule (a class under
`sklearn.` that subclasses `BaseEstimator`; deciding imports that scikit-learn module,
never another), the classes named in `types`, the functions named in `callables`, and a
model kind's classes (`kinds`) where that kind's library is installed. The file's SHA-256
is its identity: the server publishes it, so promote can tell whether a deployed server
holds the same list (`capabilities`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

FILE = Path(__file__).with_name("allowlist.yaml")
SKLEARN_PREFIX = "sklearn."
SKLEARN_KIND = "sklearn"


@dataclass(frozen=True)
class Kind:
    """A model kind beyond scikit-learn: its library and the classes it adds."""

    name: str
    package: str
    types: frozenset[str]

    def installed(self) -> bool:
        return importlib.util.find_spec(self.package) is not None

    def version(self) -> str | None:
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return _module_version(self.package) if self.installed() else None


@dataclass(frozen=True)
class Refusal:
    """One type a model needs that is not admitted, and why in a few words."""

    name: str
    why: str

    def line(self) -> str:
        return f"{self.name} ({self.why})"


@dataclass(frozen=True)
class Allowlist:
    """The reviewed list, as read from its file."""

    sklearn_estimators: bool
    types: frozenset[str]
    callables: frozenset[str]
    kinds: tuple[Kind, ...]
    digest: str

    def kind_of(self, name: str) -> Kind | None:
        return next((kind for kind in self.kinds if name in kind.types), None)

    def refused(self, names: Iterable[str]) -> list[Refusal]:
        """Every name that is not admitted, sorted; empty when all are."""
        return [refusal for name in sorted(set(names))
                if (refusal := self._refusal(name)) is not None]

    def kinds_needed(self, names: Iterable[str]) -> list[Kind]:
        """The kinds beyond scikit-learn that a model with these types needs."""
        found = {kind.name: kind for name in names if (kind := self.kind_of(name))}
        return [found[key] for key in sorted(found)]

    def _refusal(self, name: str) -> Refusal | None:
        if name in self.types or name in self.callables:
            return None
        kind = self.kind_of(name)
        if kind is not None:
            return None if kind.installed() else Refusal(
                name, f"needs {kind.package}, which is not installed here")
        if self.sklearn_estimators and name.startswith(SKLEARN_PREFIX):
            found = _sklearn_object(name)
            if isinstance(found, type) and _is_estimator(found):
                return None
            if found is not None and not isinstance(found, type):
                return Refusal(name, "a callable not on the callables list")
            return Refusal(name, "a scikit-learn internal type not named in the types list")
        if _looks_callable(name):
            module, _, function = name.rpartition(".")
            alias = f", os.{function}" if module in ("posix", "nt") else ""
            return Refusal(name, f"a callable not on the callables list{alias}")
        return Refusal(name, "not on the loading allowlist")


def _sklearn_object(name: str) -> Any:
    """The object `name` names inside scikit-learn, or None (imports only sklearn's own
    modules: the prefix was checked by the caller)."""
    module_name, _, attribute = name.rpartition(".")
    if not module_name.startswith(SKLEARN_PREFIX):
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, attribute, None)


def _is_estimator(cls: type) -> bool:
    from sklearn.base import BaseEstimator

    return issubclass(cls, BaseEstimator) and cls.__module__.startswith(SKLEARN_PREFIX)


def _looks_callable(name: str) -> bool:
    """A function's name (lower case last part, as skops writes `posix.system`)."""
    last = name.rpartition(".")[2]
    return bool(last) and last[0].islower()


def _module_version(package: str) -> str | None:
    try:
        return str(getattr(importlib.import_module(package), "__version__", None))
    except ImportError:
        return None


def read(path: Path = FILE) -> Allowlist:
    """The allowlist file, validated; a malformed file fails loudly (it is ours)."""
    raw = path.read_bytes()
    value = yaml.safe_load(raw)
    if not isinstance(value, dict) or value.get("version") != 1:
        raise ValueError(f"{path}: not a version 1 loading allowlist")
    kinds = tuple(Kind(name=str(name), package=str(conf["package"]),
                       types=frozenset(_names(conf.get("types"), f"kinds.{name}.types")))
                  for name, conf in sorted((value.get("kinds") or {}).items()))
    return Allowlist(sklearn_estimators=bool(value.get("sklearn_estimators")),
                     types=frozenset(_names(value.get("types"), "types")),
                     callables=frozenset(str(c) for c in value.get("callables") or []),
                     kinds=kinds, digest=hashlib.sha256(raw).hexdigest())


def _names(entries: Any, where: str) -> list[str]:
    names = []
    for entry in entries or []:
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("why"):
            raise ValueError(f"{FILE.name} {where}: each entry needs a name and a why")
        names.append(str(entry["name"]))
    return names


@cache
def current() -> Allowlist:
    """The allowlist this code holds to (read once per process)."""
    return read()


@cache
def capabilities() -> dict[str, Any]:
    """What this process can load: each kind with its library's version (None: not
    installed), and the allowlist's digest. The server publishes it on `/model`; promote
    compares a candidate's needs with it (`pipeline.gitops.deployed`)."""
    allowlist = current()
    kinds: dict[str, str | None] = {SKLEARN_KIND: _distribution_version("scikit-learn")}
    kinds.update({kind.name: kind.version() for kind in allowlist.kinds})
    return {"kinds": kinds, "allowlist": allowlist.digest}


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
