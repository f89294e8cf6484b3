"""Feature engineering: one ColumnTransformer, in one Pipeline with the estimator.

Keeping the transformer inside the logged model means the model takes the raw
feature columns: serving, the gate and batch scoring need no separate preprocessing.
"""

from __future__ import annotations

from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from pipeline.stages.datasets import DatasetSpec


def build_preprocessor(spec: DatasetSpec) -> ColumnTransformer:
    """Impute and scale numbers; impute and one-hot encode categories."""
    numeric = Pipeline([
        ("impute", SimpleImputer(strategy="median")),
        ("scale", StandardScaler()),
    ])
    categorical = Pipeline([
        ("impute", SimpleImputer(strategy="most_frequent")),
        ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ])
    return ColumnTransformer(
        [
            ("numeric", numeric, spec.numeric_features()),
            ("categorical", categorical, spec.categorical_features()),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )


def build_model(spec: DatasetSpec, estimator: BaseEstimator) -> Pipeline:
    """The model that gets logged: raw columns in, predictions out."""
    return Pipeline([("features", build_preprocessor(spec)), ("estimator", estimator)])
