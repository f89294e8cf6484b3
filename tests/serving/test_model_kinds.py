"""XGBoost and LightGBM models as data: stored in the skops file with their boosters in the
libraries' own formats, and loaded only through the allowlist.

The attacks: a crafted state that carries an object whose `__setstate__` runs code (it
creates a marker file), which skops would build if it trusted the file's own list, as
MLflow's loader does; boosters whose bytes are not a model; a callable objective; a
kind whose library the loading process lacks or reads in another major version.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import lightgbm
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import xgboost
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from modelio import allowlist, sklearn_kind
from modelio import files as modelfiles
from pipeline.errors import ConfigError
from pipeline.stages.estimators import check_loadable
from pipeline.stages.train import pip_requirements

X = pd.DataFrame({"a": np.arange(200, dtype=float), "b": np.arange(200, dtype=float) % 7})
Y = X["a"] * 2 + X["b"]


class Armed:
    """Built by skops, its `__setstate__` creates the marker: the proof code ran on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).touch()
        self.__dict__.update(state)


def booster(kind: str) -> Any:
    if kind == "xgboost":
        return xgboost.XGBRegressor(n_estimators=5, max_depth=2)
    return lightgbm.LGBMRegressor(n_estimators=5, num_leaves=4, verbose=-1)


def fitted(kind: str) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("estimator", booster(kind))]).fit(X, Y)


def save(folder: Path, model: Pipeline) -> Path:
    skops_io = sklearn_kind.skops_io()
    types = sorted(skops_io.get_untrusted_types(data=skops_io.dumps(model)))
    mlflow.sklearn.save_model(model, str(folder), serialization_format="skops",
                              skops_trusted_types=types, input_example=X.head(2),
                              pip_requirements=pip_requirements(types))
    return folder


@pytest.mark.parametrize("kind", ["xgboost", "lightgbm"])
def test_a_booster_pipeline_loads_as_data_and_predicts_the_same(kind: str,
                                                                tmp_path: Path) -> None:
    model = fitted(kind)
    folder = save(tmp_path / kind, model)
    checked = sklearn_kind.check_model(folder)
    assert [k.name for k in allowlist.current().kinds_needed(checked.types)] == [kind]
    loaded = sklearn_kind.load_sklearn(checked)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    requirements = (folder / "requirements.txt").read_text()
    assert f"{'xgboost-cpu' if kind == 'xgboost' else 'lightgbm'}==" in requirements


@pytest.mark.parametrize("kind", ["xgboost", "lightgbm"])
def test_a_crafted_state_that_would_run_code_is_refused_before_anything_is_built(
        kind: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    model = fitted(kind)
    model.steps[-1][1].__dict__["extra"] = Armed(marker)  # rides in the booster's state
    folder = save(tmp_path / kind, model)
    marker.unlink(missing_ok=True)  # saving loaded it back once (MLflow's own check)

    skops_io = sklearn_kind.skops_io()
    own_list = skops_io.get_untrusted_types(file=folder / "model.skops")
    skops_io.load(folder / "model.skops", trusted=own_list)  # the file's word, as MLflow
    assert marker.exists(), "the attack is real: trusting the file's list runs its code"
    marker.unlink()

    with pytest.raises(modelfiles.ModelRefused) as refused:
        sklearn_kind.load_sklearn(sklearn_kind.check_model(folder))
    assert refused.value.rule == "types"
    assert f"{__name__}.Armed (not on the loading allowlist)" in str(refused.value)
    assert not marker.exists()


@pytest.mark.parametrize(("kind", "cls", "attribute", "junk"), [
    ("xgboost", xgboost.core.Booster, "handle", bytearray(b"not an XGBoost model")),
    ("lightgbm", lightgbm.basic.Booster, "_handle", "not a LightGBM model"),
])
def test_a_booster_whose_bytes_are_not_a_model_is_refused(
        kind: str, cls: type, attribute: str, junk: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The booster's state goes to the library's parser of its own format: junk is an
    error there, not code."""
    model = fitted(kind)
    skops_io = sklearn_kind.skops_io()
    with monkeypatch.context() as patch:
        patch.setattr(cls, "__getstate__", lambda self: {**self.__dict__, attribute: junk})
        data = skops_io.dumps(model)
    folder = save(tmp_path / kind, fitted(kind))
    (folder / "model.skops").write_bytes(data)
    assert zipfile.is_zipfile(folder / "model.skops")
    with pytest.raises(modelfiles.ModelRefused, match=r"model\.skops does not load") as refused:
        sklearn_kind.load_sklearn(sklearn_kind.check_model(folder))
    assert refused.value.rule == "format"


def test_a_callable_objective_is_refused_before_fitting() -> None:
    with pytest.raises(ConfigError, match=r"posix.system \(a callable not on the callables "
                       r"list, os.system\)"):
        check_loadable(xgboost.XGBRegressor(objective=os.system))


def test_a_process_without_the_kinds_library_refuses_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = save(tmp_path / "xgb", fitted("xgboost"))
    monkeypatch.setattr(allowlist.Kind, "installed", lambda self: self.name != "xgboost")
    with pytest.raises(modelfiles.ModelRefused,
                       match=r"xgboost.core.Booster \(needs xgboost, which is not installed"):
        sklearn_kind.check_model(folder)


def test_a_model_of_another_major_version_of_its_library_is_refused(tmp_path: Path) -> None:
    folder = save(tmp_path / "lgbm", fitted("lightgbm"))
    requirements = folder / "requirements.txt"
    requirements.write_text("\n".join(
        "lightgbm==3.3.5" if line.startswith("lightgbm==") else line
        for line in requirements.read_text().splitlines()))
    with pytest.raises(modelfiles.ModelRefused, match=r"trained with lightgbm 3\.3\.5") as refused:
        sklearn_kind.load_sklearn(sklearn_kind.check_model(folder))
    assert refused.value.rule == "kind"
