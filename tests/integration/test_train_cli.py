"""`mlops train` through the installed console script, against a real MLflow server."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from pipeline.gitops.card import load_card, prepare_data
from pipeline.stages.evaluate import evaluate, on_validation
from tests.conftest import TrackingServer, TrackingServers, selected_backends
from tests.utils import run_mlops
from tests.utils.cards import write_card

pytestmark = pytest.mark.integration


def _card(tmp_path: Path, model_name: str) -> Path:
    return write_card(tmp_path, model_name)


def _env(server: TrackingServer, experiment: str) -> dict[str, str]:
    return {**server.env, "MLOPS_EXPERIMENT": experiment}


def _runs(server: TrackingServer, experiment: str) -> list[str]:
    client = MlflowClient(server.uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return [r.info.run_id for r in client.search_runs([found.experiment_id], "")]


def test_train_register_promote_logs_validation_metrics_only(
    tracking_server: TrackingServer, tracking_env: TrackingServer, tmp_path: Path
) -> None:
    card_path = _card(tmp_path, "it-train-bootstrap")
    env = _env(tracking_server, "it-train")
    done = run_mlops("train", "--estimator", "ridge", "--register", "--promote", "--json",
                     "--card", str(card_path), env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["production"] == summary["version"] == "1"

    client = MlflowClient(tracking_server.uri)
    production = client.get_model_version_by_alias("it-train-bootstrap", "production")
    assert production.run_id == summary["run_id"]
    assert production.current_stage == "Production"
    run = client.get_run(summary["run_id"])
    for tag in ("git_commit", "data_hash", "dataset", "package_version"):
        assert run.data.tags[tag], tag

    model = mlflow.sklearn.load_model("models:/it-train-bootstrap@production")
    data = prepare_data(load_card(card_path))
    assert run.data.tags["data_hash"] == data.data_hash
    logged = {k: v for k, v in run.data.metrics.items()
              if not k.startswith(("cleanse_", "twin_"))}
    # The twin's parity is measured on the validation rows too, never on the sealed ones.
    assert run.data.metrics["twin_rows"] == len(data.validation)
    on_validation_rows = on_validation(
        evaluate(model, data.x_validation, data.y_validation, task="regression"))
    assert set(logged) == set(on_validation_rows) == {"val_rmse", "val_mae", "val_r2"}
    for name, value in on_validation_rows.items():
        np.testing.assert_allclose(logged[name], value, rtol=1e-9)
        np.testing.assert_allclose(summary["metrics"][name], value, rtol=1e-9)
    on_test_rows = evaluate(model, data.x_test, data.y_test, task="regression")
    for name, value in on_test_rows.items():
        assert not np.isclose(logged[f"val_{name}"], value, rtol=1e-6), \
            f"{name}: the run carries the sealed test rows' value"

    again = run_mlops("train", "--estimator", "dummy", "--register", "--promote",
                      "--card", str(card_path), env=env)
    assert again.returncode == 2
    assert "already has Production version 1" in again.stderr
    versions = client.search_model_versions("name='it-train-bootstrap'")
    assert [v.version for v in versions] == ["1"], "a refused bootstrap registered nothing"


def test_plain_train_prints_only_the_run_id_on_stdout(
    tracking_server: TrackingServer, tmp_path: Path
) -> None:
    env = _env(tracking_server, "it-train-plain")
    done = run_mlops("train", "--estimator", "dummy", "--card",
                     str(_card(tmp_path, "it-train-plain")), env=env)
    assert done.returncode == 0, done.stderr
    assert _runs(tracking_server, "it-train-plain") == [done.stdout.strip()]
    assert "trained dummy: val_rmse=" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--register", "--estimator", "catboost"],
         "--estimator 'catboost': unknown for regression"),
        (["--register", "--param", "depth=3"], "--param depth: HistGradientBoosting"),
        (["--register", "--param", "max_iter=-5"], "'max_iter' parameter"),
        (["--promote"], "--promote needs --register"),
        (["--registered-by", "a job"], "--registered-by needs --register"),
    ],
)
def test_bad_input_fails_in_one_line_and_logs_nothing(
    tracking_server: TrackingServer, tmp_path: Path, args: list[str], message: str
) -> None:
    experiment = "it-train-bad-input"
    card_path = _card(tmp_path, "it-train-bad")
    before = _runs(tracking_server, experiment)
    done = run_mlops("train", *args, "--card", str(card_path),
                     env=_env(tracking_server, experiment))
    assert done.returncode == 2
    error_lines = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 1, done.stderr
    assert message in error_lines[0]
    assert "Traceback" not in done.stderr
    assert _runs(tracking_server, experiment) == before
    assert MlflowClient(tracking_server.uri).search_model_versions("name='it-train-bad'") == []


FACTORIES = '''
import os

from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.linear_model import Ridge

NOT_CALLABLE = [ExtraTreesRegressor()]


def extra_trees():
    return ExtraTreesRegressor(n_estimators=5)


def raises():
    raise RuntimeError("no data here")


def not_an_estimator():
    return "ExtraTreesRegressor"


def a_class():
    return ExtraTreesRegressor


def two_callables():
    return TransformedTargetRegressor(regressor=Ridge(), func=eval, inverse_func=os.system)
'''


@pytest.fixture(scope="module")
def one_server(tracking_servers: TrackingServers) -> TrackingServer:
    """The first selected backend: a factory is refused before the registry is written to,
    whichever database is behind it."""
    return tracking_servers.get(selected_backends()[0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--estimator", "nowhere:f"], "--estimator nowhere:f: no module nowhere importable from"),
        (["--estimator", "needs_pkg:f"],
         "--estimator needs_pkg:f: module needs_pkg needs catboost_not_here, which is not "
         "installed"),
        (["--estimator", "factories:missing"],
         "--estimator factories:missing: module factories has no attribute missing"),
        (["--estimator", "factories:NOT_CALLABLE"],
         "factories.NOT_CALLABLE is not callable (a list)"),
        (["--estimator", "factories:raises"],
         "factories.raises() raised RuntimeError: no data here"),
        (["--estimator", "factories:not_an_estimator"],
         "factories.not_an_estimator() returned a str, which has no fit, predict, get_params, "
         "set_params: not a scikit-learn estimator"),
        (["--estimator", "factories:a_class"],
         "factories.a_class() returned the class ExtraTreesRegressor (call it)"),
        (["--estimator", "factories:extra_trees", "--param", "max_featurez=1"],
         "--param max_featurez: ExtraTreesRegressor has no such parameter"),
        (["--estimator", "factories:extra_trees", "--param", "n_estimators=-1"],
         "'n_estimators' parameter of ExtraTreesRegressor"),
        (["--estimator", "factories:two_callables"],
         "builtins.eval (a callable not on the callables list); posix.system (a callable not "
         "on the callables list, os.system)"),
        (["--estimator", "a:b:c"], "expected MODULE:FACTORY"),
    ],
)
def test_a_bad_factory_fails_in_one_line_before_any_run(
    one_server: TrackingServer, tmp_path: Path, args: list[str], message: str
) -> None:
    """`MODULE:FACTORY` from the working directory: every mistake named, exit 2, no run."""
    tracking_server = one_server
    (tmp_path / "factories.py").write_text(FACTORIES)
    (tmp_path / "needs_pkg.py").write_text("import catboost_not_here\n")
    experiment = "it-train-bad-factory"
    card_path = _card(tmp_path, "it-train-bad-factory")
    before = _runs(tracking_server, experiment)
    done = run_mlops("train", *args, "--card", str(card_path),
                     env=_env(tracking_server, experiment), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    error_lines = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 1, done.stderr
    assert message in error_lines[0]
    assert "Traceback" not in done.stderr
    assert _runs(tracking_server, experiment) == before


def test_bad_data_file_fails_in_one_line(tracking_server: TrackingServer, tmp_path: Path) -> None:
    card_path = _card(tmp_path, "it-train-bad-data")
    (tmp_path / "empty.csv").write_text("")
    card_path.write_text(card_path.read_text().replace(
        "source: builtin", f"source: {tmp_path / 'empty.csv'}"))
    done = run_mlops("train", "--card", str(card_path),
                     env=_env(tracking_server, "it-train-bad-data"))
    assert done.returncode == 2
    expected = f"error: data.source: {tmp_path}/empty.csv is empty"
    assert done.stderr.strip().splitlines()[-1] == expected


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    done = run_mlops("status", "--card", str(_card(tmp_path, "x")),
                     env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    assert done.returncode == 2
    assert done.stderr.startswith(
        "error: cannot reach the MLflow tracking server at http://127.0.0.1:9"
    )
