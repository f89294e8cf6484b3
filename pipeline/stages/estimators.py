"""Which estimator to fit: a built-in name, a data scientist's `MODULE:FACTORY`, or an
estimator object, and whether the model it makes could ever be loaded.

Everything here runs before any data is read or any run is created, so each mistake is
one line naming the module, attribute, package or parameter, and exit 2 (`ConfigError`):
a factory that cannot be imported, is not callable, raises or returns something that is
not an estimator; an estimator whose library is not installed; a parameter it does not
have; a type the loading allowlist does not admit (`check_loadable`, every refused type
at once, the same check the server makes before it reads a model file).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelio import allowlist, sklearn_kind
from pipeline.errors import ConfigError
from pipeline.stages.datasets import Task

EARLY_STOPPING_ROUNDS = 50
"""Boosting rounds without improvement on the validation rows before XGBoost and
LightGBM stop (the built-ins; a factory sets its own)."""

FACTORY = re.compile(r"^(?P<module>[A-Za-z_][\w.]*):(?P<attribute>[A-Za-z_]\w*)$")


def _dummy(task: Task) -> Any:
    from sklearn.dummy import DummyClassifier, DummyRegressor

    return DummyRegressor(strategy="mean") if task == "regression" \
        else DummyClassifier(strategy="prior")


def _linear(task: Task) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge

    return Ridge(alpha=1.0) if task == "regression" else LogisticRegression(max_iter=1000)


def _hist_gradient_boosting(task: Task) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingRegressor if task == "regression" \
        else HistGradientBoostingClassifier
    return cls(random_state=0)


def _random_forest(task: Task) -> Any:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    cls = RandomForestRegressor if task == "regression" else RandomForestClassifier
    return cls(n_estimators=100, min_samples_leaf=2, random_state=0)


def _xgboost(task: Task) -> Any:
    """Histogram trees, up to 1000 rounds, stopped early on the validation rows."""
    library("xgboost", "xgboost-cpu")
    from xgboost import XGBRegressor

    common = {"n_estimators": 1000, "learning_rate": 0.1, "max_depth": 6,
              "subsample": 0.8, "colsample_bytree": 0.8, "tree_method": "hist",
              "early_stopping_rounds": EARLY_STOPPING_ROUNDS, "random_state": 0}
    if task == "regression":
        return XGBRegressor(**common)
    from modelio.xgboost_kind import XGBLabelClassifier

    return XGBLabelClassifier(**common)


def _lightgbm(task: Task) -> Any:
    """Leaf-wise trees, up to 1000 rounds, stopped early on the validation rows."""
    library("lightgbm", "lightgbm")
    from lightgbm import LGBMClassifier, LGBMRegressor

    cls = LGBMRegressor if task == "regression" else LGBMClassifier
    return cls(n_estimators=1000, learning_rate=0.1, num_leaves=31, subsample=0.8,
               subsample_freq=1, colsample_bytree=0.8, random_state=0, verbose=-1,
               early_stopping_round=EARLY_STOPPING_ROUNDS)


BUILT_IN: dict[Task, dict[str, Callable[[Task], Any]]] = {
    "regression": {"dummy": _dummy, "ridge": _linear,
                   "hist_gradient_boosting": _hist_gradient_boosting,
                   "random_forest": _random_forest, "xgboost": _xgboost, "lightgbm": _lightgbm},
    "classification": {"dummy": _dummy, "logistic": _linear,
                       "hist_gradient_boosting": _hist_gradient_boosting,
                       "random_forest": _random_forest, "xgboost": _xgboost,
                       "lightgbm": _lightgbm},
}
"""The names `--estimator` takes, per task; anything else is `MODULE:FACTORY`."""


def library(package: str, distribution: str) -> None:
    """Fail in one line when an estimator's library is not installed."""
    if importlib.util.find_spec(package) is None:
        raise ConfigError(f"--estimator: {package} is not installed (pip install "
                          f"{distribution}, pinned in requirements.txt)")


def make_estimator(task: Task, name: str, params: dict[str, Any], *,
                   root: Path | None = None) -> Any:
    """The estimator `name` names (a built-in, or `MODULE:FACTORY` importable from
    `root`, the repository root by default), with `params` set."""
    choices = BUILT_IN[task]
    if name in choices:
        estimator = choices[name](task)
    elif ":" in name:
        estimator = from_factory(name, root=root or Path.cwd())
    else:
        raise ConfigError(f"--estimator {name!r}: unknown for {task}; choose one of "
                          f"{', '.join(sorted(choices))}, or MODULE:FACTORY")
    return with_params(estimator, params)


def from_factory(spelling: str, *, root: Path) -> Any:
    """Import `MODULE:FACTORY` from `root` and call it; every failure is one line."""
    match = FACTORY.match(spelling)
    if match is None:
        raise ConfigError(f"--estimator {spelling!r}: expected MODULE:FACTORY, e.g. "
                          "my_models:extra_trees")
    module_name, attribute = match["module"], match["attribute"]
    with importable_from(root):
        try:
            module = fresh_import(module_name, root)
        except ModuleNotFoundError as err:
            if err.name is not None and module_name.split(".")[0] != err.name.split(".")[0] \
                    and not module_name.startswith(f"{err.name}."):
                raise ConfigError(f"--estimator {spelling}: module {module_name} needs "
                                  f"{err.name}, which is not installed") from None
            raise ConfigError(f"--estimator {spelling}: no module {module_name} importable "
                              f"from {root}") from None
        except Exception as err:
            raise ConfigError(f"--estimator {spelling}: importing {module_name} failed: "
                              f"{_one_line(err)}") from None
    factory = getattr(module, attribute, None)
    if factory is None:
        raise ConfigError(f"--estimator {spelling}: module {module_name} has no attribute "
                          f"{attribute}")
    if not callable(factory):
        raise ConfigError(f"--estimator {spelling}: {module_name}.{attribute} is not "
                          f"callable (a {type(factory).__name__}); it must be a function "
                          "returning an unfitted estimator")
    try:
        estimator = factory()
    except Exception as err:
        raise ConfigError(f"--estimator {spelling}: {module_name}.{attribute}() raised "
                          f"{_one_line(err)}") from None
    return check_estimator(estimator, what=f"--estimator {spelling}: "
                                           f"{module_name}.{attribute}() returned")


def check_estimator(estimator: Any, *, what: str) -> Any:
    """An object with scikit-learn's estimator interface, or one line saying what it is."""
    missing = [m for m in ("fit", "predict", "get_params", "set_params")
               if not callable(getattr(estimator, m, None))]
    if isinstance(estimator, type) or missing:
        kind = f"the class {estimator.__name__} (call it)" if isinstance(estimator, type) \
            else f"a {type(estimator).__name__}, which has no {', '.join(missing)}"
        raise ConfigError(f"{what} {kind}: not a scikit-learn estimator")
    return estimator


def fresh_import(module_name: str, root: Path) -> Any:
    """The module as its file under `root` is now: a notebook that edits `my_models.py`
    and trains again gets the edit, and a module of the same name imported from another
    folder is not taken for it."""
    cached = sys.modules.get(module_name)
    if cached is not None:
        where = getattr(cached, "__file__", None)
        if where is not None and Path(where).resolve().is_relative_to(root.resolve()):
            return importlib.reload(cached)
        if (root / Path(*module_name.split("."))).with_suffix(".py").is_file():
            del sys.modules[module_name]
    return importlib.import_module(module_name)


@contextmanager
def importable_from(root: Path) -> Iterator[None]:
    """`root` first on the import path while a factory is imported."""
    entry = str(root.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        sys.path.remove(entry)


def with_params(estimator: Any, params: dict[str, Any]) -> Any:
    """`params` set on the estimator; a name it does not have fails here."""
    valid = estimator.get_params(deep=True)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        shallow = sorted(estimator.get_params(deep=False))
        raise ConfigError(f"--param {unknown[0]}: {type(estimator).__name__} has no such "
                          f"parameter (valid: {', '.join(shallow)})")
    try:
        return estimator.set_params(**params)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"--param: {type(estimator).__name__} rejects it: "
                          f"{_one_line(err)}") from None


def check_loadable(model: Any) -> tuple[str, ...]:
    """The types the model's skops file will need, if the loading allowlist admits all;
    else one line naming every refused type.

    Run on the unfitted model before fitting (its estimators, transformers and callables
    are known then), and on the fitted one before logging (fitting adds the trees and
    boosters). The check is `modelio`'s own, the one the server, the gate and promote
    make before they read a model file."""
    skops_io = sklearn_kind.skops_io()
    try:
        needed = skops_io.get_untrusted_types(data=skops_io.dumps(model))
    except Exception as err:  # skops cannot store it as data at all
        raise ConfigError(f"the model cannot be stored as data (skops): "
                          f"{_one_line(err)}") from None
    refused = allowlist.current().refused(needed)
    if refused:
        raise ConfigError(f"the model could not be loaded: {sklearn_kind.refusal_line(refused)}")
    return tuple(sorted(set(needed)))


def kind_requirements(types: tuple[str, ...]) -> list[str]:
    """`package==version` of each model kind beyond scikit-learn the types need, for the
    model's requirements.txt (the server checks the version it reads with)."""
    pins = []
    for kind in allowlist.current().kinds_needed(types):
        module = importlib.import_module(f"modelio.{kind.name}_kind")
        version = kind.version()
        if version is not None:
            pins.append(f"{module.DISTRIBUTION}=={version}")
    return pins


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:300]
