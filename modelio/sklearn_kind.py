"""Models as data, the scikit-learn kind: skops files, read trusting only our allowlist.

skops stores an estimator as a schema of types and their state; asked which types a
file needs, it answers without building any object. Those types are checked against
`modelio/allowlist.yaml`, a reviewed file, never the list in the model's own MLmodel.
skops' default trust in every scikit-learn estimator and every numpy and scipy ufunc is
turned off (`skops_io`), so each type and callable goes through the allowlist
(`modelio.allowlist`): scikit-learn's own estimators by rule, the rest by name, the
types of other kinds (`modelio.xgboost_kind`, `modelio.lightgbm_kind`) only where their
library is installed in a version that reads the model (`check_kinds`). Only then does
skops load the file, trusting exactly those types (`load_sklearn`).
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from modelio import allowlist
from modelio.files import CheckedModel, ModelRefused, check_files


def check_types(types: Iterable[str]) -> tuple[str, ...]:
    """The types, if `allowlist.yaml` admits every one; else refuse naming them all."""
    needed = tuple(sorted(set(types)))
    refused = allowlist.current().refused(needed)
    if refused:
        raise ModelRefused("types", refusal_line(refused))
    return needed


def refusal_line(refused: list[allowlist.Refusal]) -> str:
    """One line naming every refused type and why."""
    plural = "s" if len(refused) > 1 else ""
    return (f"type{plural} not on the loading allowlist (modelio/allowlist.yaml): "
            + "; ".join(r.line() for r in refused))


def check_kinds(types: Iterable[str], folder: Path) -> None:
    """Each library the types need is installed, in a version that reads the model's
    (the version training wrote into the model's requirements.txt)."""
    trained = _requirements(folder)
    for kind in allowlist.current().kinds_needed(types):
        installed = kind.version()
        if installed is None:
            raise ModelRefused("kind", f"this model is a {kind.name} model and {kind.package} "
                               "is not installed here")
        module = importlib.import_module(f"modelio.{kind.name}_kind")
        wanted = trained.get(module.DISTRIBUTION) or trained.get(kind.package)
        if wanted is not None and not module.compatible(wanted, installed):
            raise ModelRefused("kind", f"this model was trained with {kind.package} {wanted}; "
                               f"{installed} is installed here, which does not read it")


def _requirements(folder: Path) -> dict[str, str]:
    """`name==version` lines of the model's requirements.txt (no file: none)."""
    try:
        lines = (folder / "requirements.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    pins = (line.split("==", 1) for line in lines if "==" in line)
    return {name.strip().lower(): version.strip() for name, version in pins}


def skops_io() -> ModuleType:
    """`skops.io`, with none of scikit-learn's estimators trusted by default.

    Unless told which types to trust, skops trusts every scikit-learn estimator, and
    builds that list when it is imported by importing all of scikit-learn
    (`sklearn.utils.all_estimators`): importing skops after scikit-learn took 0.8 s
    with that list and takes 0.4 s without, on the server's cold start and in every
    `mlops` command that reads or writes a model. The list is emptied, so only the types
    the allowlist admits load (narrower than skops' default), and when skops is first
    imported here it is never built. For the whole process: MLflow, which loads a model
    back when it saves one with skops, then needs the types named (`skops_trusted_types`,
    as `mlops train` does).
    """
    if "skops.io" not in sys.modules:
        import sklearn.utils

        listed = sklearn.utils.all_estimators
        sklearn.utils.all_estimators = _no_estimators
        try:
            importlib.import_module("skops.io")
        finally:
            sklearn.utils.all_estimators = listed
    from skops.io import _trusted_types

    _trusted_types.SKLEARN_ESTIMATOR_TYPE_NAMES.clear()  # shared by every skops node type
    _trusted_types.NUMPY_UFUNC_TYPE_NAMES.clear()  # callables: only our named list
    _trusted_types.SCIPY_UFUNC_TYPE_NAMES.clear()
    module: ModuleType = sys.modules["skops.io"]
    return module


def _no_estimators(*_args: Any, **_kwargs: Any) -> list[tuple[str, type]]:
    return []


def untrusted_types(model_file: Path) -> list[str]:
    """What skops would need to trust; reads the file's schema, builds no object."""
    try:
        return list(skops_io().get_untrusted_types(file=model_file))
    except Exception as err:  # any failure to read the schema is a refusal
        raise ModelRefused("format", f"{model_file.name} is not a skops file "
                           f"({type(err).__name__})") from None



def check_model(folder: Path, *, expected_manifest: Mapping[str, str] | None = None
                ) -> CheckedModel:
    """Every check, in order, without deserializing anything."""
    checked = check_files(folder, expected_manifest=expected_manifest)
    return dataclasses.replace(checked, types=check_types(untrusted_types(checked.model_file)))


def load_sklearn(checked: CheckedModel) -> Any:
    """The estimator, loaded by skops trusting exactly the checked, allowed types (checked
    here first when they were not yet)."""
    types = checked.types
    if types is None:
        types = check_types(untrusted_types(checked.model_file))
    check_kinds(types, checked.folder)
    try:
        return skops_io().load(checked.model_file, trusted=list(types))
    except Exception as err:  # a state the admitted types' own parsers reject
        raise ModelRefused("format", f"{checked.model_file.name} does not load: "
                           f"{type(err).__name__}: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:200]
