"""Models as data, the XGBoost kind: an XGBoost model as the last step of a scikit-learn
Pipeline (or alone), stored in the same skops file, whose booster is XGBoost's own format.

Why loading it runs no code (the argument docs/serving.md repeats):

* skops builds only the types `allowlist.yaml` admits, checked before the file is read:
  `xgboost.sklearn.XGBRegressor` / `XGBClassifier` and `xgboost.core.Booster`, plus
  scikit-learn's own classes and the named callables. A type the file names and the
  list does not admit is refused with every other such type, before any object exists.
* The wrappers are built with `cls.__new__` and scikit-learn's `BaseEstimator.__setstate__`:
  a version check and a dict update. Their attributes are values of checked types only
  (numbers, strings, arrays, the booster); a callable objective, metric or callback
  would be a function type, refused unless it is on the callables list (and none of
  those is called by `predict`).
* `Booster.__setstate__` creates an empty booster and hands the state's bytes, XGBoost's
  UBJSON document of its trees and configuration (`XGBoosterSerializeToBuffer`), to
  `XGBoosterUnserializeFromBuffer`: a parser of data in the library's C++ code. Bytes that
  are not such a document raise `XGBoostError` (a refusal), they are not executed.

The model is stored this way, not as a separate `.ubj` file beside a skops pipeline,
so that it stays one MLflow sklearn model: MLflow's clients and `mlflow models serve`
load it unchanged, and the manifest, the gate, batch scoring and the twin see one file.
The library must be installed where the model loads, in a compatible version
(`compatible`): the server says which kinds it has on `/model`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

KIND = "xgboost"
PACKAGE = "xgboost"
DISTRIBUTION = "xgboost-cpu"
"""The CPU-only build, what the project and the serving image install."""


def compatible(trained: str, installed: str) -> bool:
    """XGBoost reads the snapshots of its own major version (newer minors warn only)."""
    return trained.split(".")[0] == installed.split(".")[0]


try:  # the class exists where XGBoost is installed; skops imports it only for such a model
    from xgboost import XGBClassifier as _Classifier
except ImportError:  # pragma: no cover - a server without the kind refuses first
    _Classifier = None  # type: ignore[assignment, misc]

if _Classifier is not None:

    class XGBLabelClassifier(_Classifier):  # type: ignore[misc, valid-type]
        """`XGBClassifier` for any labels (XGBoost's takes 0..n-1 only): the labels are
        encoded when fitting and given back by `predict` and `classes_`, as scikit-learn's
        classifiers do. Its state adds `labels_`, an array: loading it runs nothing more
        than the class it extends."""

        def fit(self, X: Any, y: Any, **kwargs: Any) -> XGBLabelClassifier:
            labels, codes = np.unique(np.asarray(y), return_inverse=True)
            if "eval_set" in kwargs:
                kwargs["eval_set"] = [(x, np.searchsorted(labels, np.asarray(truth)))
                                      for x, truth in kwargs["eval_set"]]
            self.__dict__.pop("labels_", None)  # XGBoost checks codes against classes_
            super().fit(X, codes, **kwargs)
            self.labels_ = labels
            return self

        @property
        def classes_(self) -> np.ndarray:
            labels = self.__dict__.get("labels_")
            return np.arange(self.n_classes_) if labels is None else np.asarray(labels)

        def predict(self, X: Any, **kwargs: Any) -> np.ndarray:
            codes = np.asarray(super().predict(X, **kwargs), dtype=np.int64)
            return np.asarray(self.labels_)[codes]
