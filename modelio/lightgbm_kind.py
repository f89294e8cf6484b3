"""Models as data, the LightGBM kind: a LightGBM model as the last step of a scikit-learn
Pipeline (or alone), stored in the same skops file, whose booster is LightGBM's own text
model format.

Why loading it runs no code (the argument docs/serving.md repeats):

* skops builds only the types `allowlist.yaml` admits, checked before the file is read:
  `lightgbm.sklearn.LGBMRegressor` / `LGBMClassifier`, `lightgbm.basic.Booster` and the
  plain containers it keeps its scores in, plus scikit-learn's own classes (the
  classifier's label encoder) and the named callables.
* The wrappers are built with `cls.__new__` and scikit-learn's `BaseEstimator.__setstate__`:
  a version check and a dict update, of values of checked types only. A callable
  objective (`_objective`) would be a function type, refused unless on the callables
  list, and `predict` never calls it.
* `Booster.__setstate__` hands the state's string, the model as LightGBM's text format
  (`model_to_string`), to `LGBM_BoosterLoadModelFromString`: a parser of data in the
  library's C++ code. A string that is not a model raises `LightGBMError` (a refusal).

Stored in the skops file for the same reason as the XGBoost kind: one MLflow sklearn
model, loaded unchanged by MLflow's clients, one file for the manifest and the twin.
"""

from __future__ import annotations

KIND = "lightgbm"
PACKAGE = "lightgbm"
DISTRIBUTION = "lightgbm"


def compatible(trained: str, installed: str) -> bool:
    """LightGBM's text format is read by its own major version."""
    return trained.split(".")[0] == installed.split(".")[0]
