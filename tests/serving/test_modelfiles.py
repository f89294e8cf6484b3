"""Models as data, on real model folders written by MLflow: each refusal, and what passes.

Every attack here would run code or load foreign bytes without `modelio`:
the pickle's payload creates a marker file when unpickled, the self-whitelisting model
would load a type nobody reviewed, the swapped file would be served.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import Lasso, Ridge
from sklearn.neighbors import KNeighborsRegressor

from modelio import allowlist, sklearn_kind
from modelio import files as modelfiles
from pipeline.stages.datasets import load_spec
from pipeline.stages.features import build_model
from pipeline.stages.train import ESTIMATORS, make_estimator, stopping_rounds, trusted_types

X = pd.DataFrame({"a": np.arange(40, dtype=float), "b": np.arange(40, dtype=float) % 7})
Y = X["a"] * 2 + X["b"]
REQUIREMENTS = ["scikit-learn"]


def _save(folder: Path, model: object, **kwargs: object) -> Path:
    """MLflow's folder; with skops (its default) MLflow loads it back trusting the types
    named, so they are named (only the model's author's word: the check ignores them)."""
    kwargs.setdefault("input_example", X.head(2))
    if kwargs.get("serialization_format", "skops") == "skops":
        kwargs.setdefault("skops_trusted_types", _types_of(model))
    mlflow.sklearn.save_model(model, str(folder), pip_requirements=REQUIREMENTS, **kwargs)
    return folder


def _types_of(model: object) -> list[str]:
    skops_io = sklearn_kind.skops_io()
    return sorted(skops_io.get_untrusted_types(data=skops_io.dumps(model)))


class Payload:
    """Unpickling this creates the marker file: the proof that code ran on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.zeros(len(frame))


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return _save(tmp_path / "good", Ridge().fit(X, Y))


def test_a_skops_model_passes_and_loads_with_only_allowed_types(good: Path) -> None:
    checked = sklearn_kind.check_model(good)
    assert set(checked.manifest) >= {"MLmodel", "model.skops"}
    assert not allowlist.current().refused(checked.types)
    model = sklearn_kind.load_sklearn(checked)
    assert model.predict(X.head(2)) == pytest.approx(Ridge().fit(X, Y).predict(X.head(2)))


def test_a_replaced_file_is_refused_by_name(good: Path, tmp_path: Path) -> None:
    recorded = modelfiles.manifest(good)
    other = _save(tmp_path / "other", Ridge(alpha=50.0).fit(X, Y))  # valid, same schema
    shutil.copy(other / "model.skops", good / "model.skops")
    with pytest.raises(modelfiles.ModelRefused) as refused:
        sklearn_kind.check_model(good, expected_manifest=recorded)
    assert refused.value.rule == "manifest"
    assert refused.value.file == "model.skops"
    assert refused.value.expected == recorded["model.skops"][:12]
    assert str(refused.value).startswith("model.skops: expected sha256 ")


@pytest.mark.parametrize("serialization", ["pickle", "cloudpickle"])
def test_a_pickled_model_is_refused_before_its_code_runs(serialization: str,
                                                         tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = _save(tmp_path / "evil", Payload(marker), serialization_format=serialization)
    assert not marker.exists()
    with pytest.raises(modelfiles.ModelRefused, match=f"serialization format {serialization} "
                       "is refused") as refused:
        sklearn_kind.check_model(folder)
    assert refused.value.rule == "serialization"
    assert not marker.exists()


def test_a_model_cannot_whitelist_its_own_types(tmp_path: Path) -> None:
    """skops' trusted types in MLmodel are the author's word; only our list counts: a
    callable skops would trust by default (any numpy ufunc) is refused unless named."""
    model = TransformedTargetRegressor(regressor=Ridge(), func=np.sin, inverse_func=np.arcsin,
                                       check_inverse=False).fit(X, Y / 200)
    needed = _types_of(model)
    folder = _save(tmp_path / "sin", model, skops_trusted_types=needed)
    assert yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["sklearn"][
        "skops_trusted_types"] == needed
    with pytest.raises(modelfiles.ModelRefused, match="not on the loading allowlist") as refused:
        sklearn_kind.check_model(folder)
    assert refused.value.rule == "types"
    assert "numpy.arcsin (a callable not on the callables list)" in str(refused.value)
    assert "numpy.sin (a callable not on the callables list)" in str(refused.value)


def test_scikit_learns_own_estimators_load_by_rule(tmp_path: Path) -> None:
    """Any scikit-learn estimator loads without naming it (the allowlist's rule), and
    KNN's search tree, named in the list's types."""
    for name, model in (("lasso", Lasso(alpha=0.1)),
                        ("kd", KNeighborsRegressor(n_neighbors=2, algorithm="kd_tree"))):
        fitted = model.fit(X, Y)
        folder = _save(tmp_path / name, fitted)
        loaded = sklearn_kind.load_sklearn(sklearn_kind.check_model(folder))
        assert loaded.predict(X.head(3)) == pytest.approx(fitted.predict(X.head(3)))


def test_a_type_outside_scikit_learn_is_refused_with_every_other_at_once(
        tmp_path: Path) -> None:
    model = TransformedTargetRegressor(regressor=Ridge(), func=np.sin, inverse_func=os.system,
                                       check_inverse=False)
    refused = allowlist.current().refused(_types_of(model))
    assert [r.name for r in refused] == ["numpy.sin", "posix.system"]
    assert "os.system" in refused[1].why


@pytest.mark.parametrize(("edit", "rule"), [
    (lambda m: m["flavors"].__setitem__("python_function", {
        **m["flavors"]["python_function"], "loader_module": "evil.loader"}), "loader"),
    (lambda m: m["flavors"]["sklearn"].__setitem__("code", "code"), "code"),
    (lambda m: m["flavors"].__setitem__("onnx_custom", {}), "flavor"),
    (lambda m: m["flavors"].pop("sklearn"), "flavor"),
    (lambda m: m["flavors"]["sklearn"].__setitem__("pickled_model", "../../etc/passwd"),
     "path"),
    (lambda m: m["flavors"]["sklearn"].__setitem__("pickled_model", "/etc/passwd"), "path"),
    (lambda m: m["saved_input_example_info"].__setitem__("artifact_path", "../secret.json"),
     "path"),
    (lambda m: m["flavors"]["python_function"].__setitem__("env", {"virtualenv": "/etc/shadow"}),
     "path"),
    (lambda m: m["flavors"]["python_function"].__setitem__("model_path", "../../elsewhere"),
     "path"),
])
def test_mlmodel_rules(good: Path, edit: object, rule: str) -> None:
    meta = yaml.safe_load((good / "MLmodel").read_text())
    edit(meta)  # type: ignore[operator]
    (good / "MLmodel").write_text(yaml.safe_dump(meta))
    with pytest.raises(modelfiles.ModelRefused) as refused:
        sklearn_kind.check_model(good)
    assert refused.value.rule == rule


def test_a_file_linked_from_inside_the_folder_to_outside_it_is_refused(good: Path,
                                                                     tmp_path: Path) -> None:
    """A symbolic link passes the name check ("input_example.json") but not the resolved
    path's: MLflow would follow it out of the folder."""
    secret = tmp_path / "secret.json"
    secret.write_text('{"columns": ["a"], "data": [["the contents of a secret"]]}')
    (good / "input_example.json").unlink()
    (good / "input_example.json").symlink_to(secret)
    with pytest.raises(modelfiles.ModelRefused, match="leaves the model folder") as refused:
        sklearn_kind.check_model(good)
    assert refused.value.rule == "path"


def test_not_a_skops_file_is_refused(good: Path) -> None:
    (good / "model.skops").write_bytes(b"this is not a skops archive")
    with pytest.raises(modelfiles.ModelRefused, match="is not a skops file"):
        sklearn_kind.check_model(good)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_every_estimator_of_the_registry_is_on_the_allowlist(task: str) -> None:
    """`mlops train` refuses a model the server could not load: none of ours may be one."""
    spec = load_spec("diamonds")
    x = pd.DataFrame({"carat": [0.3, 0.5, 1.0, 1.2] * 10, "cut": ["Ideal", "Good"] * 20,
                      "color": ["E", "F"] * 20, "clarity": ["SI1", "VS2"] * 20,
                      "depth": [61.0] * 40, "table": [55.0] * 40, "x": [4.0] * 40,
                      "y": [4.0] * 40, "z": [2.5] * 40})
    y = x["carat"] * 1000 if task == "regression" else (x["carat"] > 0.6).astype(int)
    for name in ESTIMATORS[task]:
        estimator = make_estimator(task, name, {})
        if stopping_rounds(estimator):  # a plain fit, without validation rows to stop on
            estimator.set_params(n_estimators=5, **{key: None for key in (
                "early_stopping_rounds", "early_stopping_round") if key in
                estimator.get_params()})
        model = build_model(spec, estimator).fit(x[spec.feature_names], y)
        assert not allowlist.current().refused(trusted_types(model)), name
