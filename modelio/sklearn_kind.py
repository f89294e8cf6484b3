"""Models as data, the scikit-learn kind: skops files, read trusting only our allowlist.

skops stores an estimator as a schema of types and their state; asked which types a
file needs, it answers without building any object. Those types are checked against
`ALLOWED_TYPES`, a list held here, never the one in the model's own MLmodel; skops'
default trust in every scikit-learn estimator is turned off (`skops_io`), so each
estimator and transformer is named here. Only then does skops load the file, trusting
exactly those types (`load_sklearn`).
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from modelio.files import CheckedModel, ModelRefused, check_files

ALLOWED_TYPES = frozenset({
    "numpy.dtype",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.dummy.DummyClassifier",
    "sklearn.dummy.DummyRegressor",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._tree.Tree",
})
"""Every type the estimators of `pipeline.stages.train` need beyond skops' safe
primitives, containers, numpy and scikit-learn's internal loss and binning types (a test
checks every estimator against this list). Add a type only after reading what it can do
when loaded."""

def check_types(types: Iterable[str]) -> tuple[str, ...]:
    """The types, if every one is on our allowlist."""
    needed = tuple(sorted(set(types)))
    refused = [name for name in needed if name not in ALLOWED_TYPES]
    if refused:
        more = f" and {len(refused) - 1} more" if len(refused) > 1 else ""
        raise ModelRefused("types", f"type {refused[0]}{more} is not on the loading allowlist "
                           "(modelio/sklearn_kind.py ALLOWED_TYPES)")
    return needed


def skops_io() -> ModuleType:
    """`skops.io`, with none of scikit-learn's estimators trusted by default.

    Unless told which types to trust, skops trusts every scikit-learn estimator, and
    builds that list when it is imported by importing all of scikit-learn
    (`sklearn.utils.all_estimators`): importing skops after scikit-learn took 0.8 s
    with that list and takes 0.4 s without, on the server's cold start and in every
    `mlops` command that reads or writes a model. The list is emptied, so only the types
    named in `ALLOWED_TYPES` load (narrower than skops' default), and when skops is first
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
    return skops_io().load(checked.model_file, trusted=list(types))
