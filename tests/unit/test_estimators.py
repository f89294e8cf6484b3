"""Choosing an estimator: built-in names, `MODULE:FACTORY`, and the allowlist before fitting."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from pipeline.errors import ConfigError
from pipeline.stages import estimators
from pipeline.stages.estimators import check_loadable, make_estimator
from pipeline.stages.train import stopping_rounds


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
def test_the_boosters_are_built_in_for_both_tasks_and_stop_early(name: str, task: str) -> None:
    estimator = make_estimator(task, name, {"learning_rate": 0.2})  # type: ignore[arg-type]
    assert stopping_rounds(estimator) == estimators.EARLY_STOPPING_ROUNDS
    assert estimator.get_params()["learning_rate"] == 0.2
    assert hasattr(estimator, "predict_proba") is (task == "classification")


def test_a_booster_whose_library_is_missing_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "xgboost" else real(name, *a))
    with pytest.raises(ConfigError, match=r"--estimator: xgboost is not installed \(pip install "
                       r"xgboost-cpu"):
        make_estimator("regression", "xgboost", {})


def test_a_factory_is_imported_again_when_its_file_changed(tmp_path: Path) -> None:
    module = tmp_path / "edited_models.py"
    module.write_text("from sklearn.linear_model import Ridge\n\n\ndef f():\n"
                      "    return Ridge(alpha=1.0)\n")
    assert make_estimator("regression", "edited_models:f", {}, root=tmp_path).alpha == 1.0
    module.write_text("from sklearn.linear_model import Ridge\n\n\ndef f():\n"
                      "    return Ridge(alpha=7.0)\n")
    os.utime(module, (module.stat().st_mtime + 5,) * 2)  # a newer file for the bytecode cache
    assert make_estimator("regression", "edited_models:f", {}, root=tmp_path).alpha == 7.0


def test_a_factory_of_the_same_name_elsewhere_is_not_taken_for_it(tmp_path: Path) -> None:
    for folder, alpha in (("a", 2.0), ("b", 3.0)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "twin_named.py").write_text(
            "from sklearn.linear_model import Ridge\n\n\ndef f():\n"
            f"    return Ridge(alpha={alpha})\n")
        assert make_estimator("regression", "twin_named:f", {},
                              root=tmp_path / folder).alpha == alpha


def test_nested_parameters_of_a_factory_can_be_set(tmp_path: Path) -> None:
    (tmp_path / "nested_models.py").write_text(
        "import numpy as np\nfrom sklearn.compose import TransformedTargetRegressor\n"
        "from sklearn.linear_model import Ridge\n\n\ndef f():\n"
        "    return TransformedTargetRegressor(regressor=Ridge(), func=np.log1p, "
        "inverse_func=np.expm1)\n")
    built = make_estimator("regression", "nested_models:f", {"regressor__alpha": 4.0},
                           root=tmp_path)
    assert built.regressor.alpha == 4.0


def test_every_refused_type_is_named_at_once_before_fitting() -> None:
    model = Pipeline([("shell", FunctionTransformer(func=os.system)),
                      ("estimator", TransformedTargetRegressor(
                          regressor=Ridge(), func=np.sin, inverse_func=eval))])
    with pytest.raises(ConfigError) as refused:
        check_loadable(model)
    message = str(refused.value)
    assert message.startswith("the model could not be loaded: types not on the loading "
                              "allowlist (modelio/allowlist.yaml): ")
    for name in ("builtins.eval", "numpy.sin", "posix.system"):
        assert name in message


def test_the_allowed_callables_and_scikit_learns_estimators_pass() -> None:
    model = TransformedTargetRegressor(regressor=Ridge(), func=np.log1p, inverse_func=np.expm1)
    assert "numpy.log1p" in check_loadable(model)
