"""Feature engineering: one ColumnTransformer, in one Pipeline with the estimator.

Keeping the transformer inside the logged model means the model takes the raw
feature columns: serving, the gate and batch scoring need no separate preprocessing.

The steps are chosen so the model's compiled twin (`pipeline.stages.twin`) can compute
exactly the same thing: a missing category becomes the string `MISSING_CATEGORY`
before it is imputed (a string tensor holds no NaN), and tree models get no scaler
(a split on a scaled value is a split on the raw value, and skipping it keeps the
twin's thresholds those of the trees).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from modelio.twin import MISSING_CATEGORY  # how a missing category travels, here and in the twin
from pipeline.stages.datasets import DatasetSpec

SCALE_FREE = (DummyClassifier, DummyRegressor, HistGradientBoostingClassifier,
              HistGradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor,
              ExtraTreesClassifier, ExtraTreesRegressor, GradientBoostingClassifier,
              GradientBoostingRegressor, DecisionTreeClassifier, DecisionTreeRegressor)
"""Estimators whose predictions do not depend on the scale of a feature."""
SCALE_FREE_LIBRARIES = ("xgboost.", "lightgbm.", "modelio.xgboost_kind")
"""Tree libraries, by module: their estimators are scale free too (neither need be
installed for this check)."""


def needs_scaling(estimator: BaseEstimator) -> bool:
    return not (isinstance(estimator, SCALE_FREE)
                or type(estimator).__module__.startswith(SCALE_FREE_LIBRARIES))


def build_preprocessor(spec: DatasetSpec, *, scale: bool = True) -> ColumnTransformer:
    """Impute (and scale) numbers; mark, impute and one-hot encode categories."""
    numeric_steps: list[tuple[str, BaseEstimator]] = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    categorical = Pipeline([
        ("mark_missing", SimpleImputer(missing_values=np.nan, strategy="constant",
                                       fill_value=MISSING_CATEGORY)),
        ("impute", SimpleImputer(missing_values=MISSING_CATEGORY, strategy="most_frequent")),
        ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ])
    return ColumnTransformer(
        [
            ("numeric", Pipeline(numeric_steps), spec.numeric_features()),
            ("categorical", categorical, spec.categorical_features()),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )


def build_model(spec: DatasetSpec, estimator: BaseEstimator) -> Pipeline:
    """The model that gets logged: raw columns in, predictions out."""
    return Pipeline([("features", build_preprocessor(spec, scale=needs_scaling(estimator))),
                     ("estimator", estimator)])
