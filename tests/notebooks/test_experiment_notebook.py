"""The experimentation notebook, executed headless (papermill) against a real tracking
server, as `make notebook` would run it cell by cell.

Production is bootstrapped with the deliberately weak `dummy` estimator. On the
repository's regression card the notebook compares its algorithms (built-in names, the
factory in notebooks/my_models.py, an estimator object), tunes the winner, shows the
leaderboard, gates the best run on the sealed test rows and proposes it into a copy of
the card. On the classification example (f1_macro) it runs with papermill's parameters:
fewer algorithms, and the card itself written. Runs are ranked on the validation rows;
the gate alone scores the sealed test rows.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from pipeline.gitops.card import load_card
from tests.conftest import TrackingServer
from tests.utils import REPO, run_mlops
from tests.utils.cards import unique_name, write_card

NOTEBOOK = REPO / "notebooks" / "experiment.ipynb"

pytestmark = pytest.mark.integration


def test_notebook_is_stored_without_outputs_and_takes_parameters() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "the notebook has code cells"
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert [c for c in code if "parameters" in c.metadata.get("tags", [])] == code[:1]
    assert "from pipeline import api" in "\n".join(c.source for c in code)
    assert notebook.cells[-1].cell_type == "markdown"
    assert "git push" in notebook.cells[-1].source


def bootstrap(card: Path, env: dict[str, str]) -> str:
    done = run_mlops("train", "--estimator", "dummy", "--register", "--promote", "--json",
                     "--card", str(card), env={**env, "MLOPS_EXPERIMENT": "nb-baseline"})
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["run_id"])


def execute(tmp_path: Path, **parameters: Any) -> nbformat.NotebookNode:
    """Run the notebook from its own folder, as JupyterLab's kernel would; the executed
    copy stays in tmp_path for reading a failure."""
    out = tmp_path / "executed.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(out), parameters=parameters,
                               cwd=str(NOTEBOOK.parent), kernel_name="python3",
                               progress_bar=False, execution_timeout=900)
    return nbformat.read(out, as_version=4)


def experiment_runs(client: MlflowClient, experiment: str) -> list[Run]:
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    return list(client.search_runs([found.experiment_id]))


def best_by_validation(runs: list[Run], card: Path) -> Run:
    policy = load_card(card).promotion
    return sorted(runs, key=lambda r: r.data.metrics[f"val_{policy.metric}"],
                  reverse=policy.greater_is_better)[0]


def assert_nothing_scored_the_sealed_rows(runs: list[Run]) -> None:
    own = ("val_", "twin_", "cleanse_")  # validation, the twin's parity, the data's cleansing
    assert all(m.startswith(own) for r in runs for m in r.data.metrics), \
        "no run carries a metric on the sealed test rows"


def test_notebook_compares_tunes_ranks_gates_and_proposes_into_a_copy(
        tracking_env: TrackingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card = write_card(tmp_path / "repo", unique_name("nb-diamonds"))
    card_text = card.read_text()
    repo_card = (REPO / "model_card.yaml").read_text()
    production_run = bootstrap(card, tracking_env.env)
    experiment = f"notebook-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLOPS_EXPERIMENT", experiment)

    notebook = execute(tmp_path, CARD=str(card))

    runs = experiment_runs(MlflowClient(tracking_env.uri), experiment)
    estimators = {run.data.params["estimator"] for run in runs}
    assert {"hist_gradient_boosting", "lightgbm", "xgboost", "random_forest",
            "my_models:extra_trees", "my_gradient_boosting"} == estimators
    compared, tuned = 6, len(runs) - 6
    assert tuned == 2, "the winner's two tuning runs"
    winner = [name for name, count in _counts(runs).items() if count == 1 + tuned]
    assert len(winner) == 1, "the tuning runs are the winner's"
    assert len(runs) == compared + tuned
    assert_nothing_scored_the_sealed_rows(runs)

    best = best_by_validation(runs, card)
    copy = card.with_suffix(".proposed.yaml")
    assert load_card(copy).model.candidate_run_id == best.info.run_id != production_run
    assert card.read_text() == card_text, "the card itself is untouched"
    assert (REPO / "model_card.yaml").read_text() == repo_card
    text = "\n".join(_outputs(notebook))
    assert f"gate verdict for run {best.info.run_id}: PASS" in text
    leaderboard = next(t for t in _outputs(notebook) if "this notebook's best" in t)
    assert all(run.info.run_id in leaderboard for run in runs), "every run on the board"


def test_notebook_on_a_classification_card_with_parameters_writes_the_card_itself(
        tracking_env: TrackingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card = tmp_path / "model_card.yaml"
    card.write_text((REPO / "examples/rand_health/model_card.yaml").read_text().replace(
        "name: self-rated-health", f"name: {unique_name('nb-health')}"))
    bootstrap(card, tracking_env.env)
    experiment = f"notebook-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLOPS_EXPERIMENT", experiment)

    notebook = execute(tmp_path, CARD=str(card), WRITE_REAL_CARD=True,
                       ALGORITHMS={"hist_gradient_boosting": {"max_iter": 60}},
                       TUNING={"hist_gradient_boosting": [{"learning_rate": 0.2}],
                               "factory": [{"min_samples_leaf": 5}],
                               "object": [{"learning_rate": 0.2}]})

    runs = experiment_runs(MlflowClient(tracking_env.uri), experiment)
    assert {run.data.params["estimator"] for run in runs} == {
        "hist_gradient_boosting", "my_models:extra_trees_classifier", "my_gradient_boosting"}
    assert len(runs) == 3 + 1
    assert_nothing_scored_the_sealed_rows(runs)
    best = best_by_validation(runs, card)
    assert load_card(card).model.candidate_run_id == best.info.run_id
    assert not card.with_suffix(".proposed.yaml").exists()
    assert f"gate verdict for run {best.info.run_id}: PASS" in "\n".join(_outputs(notebook))


def _counts(runs: list[Run]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in runs:
        name = run.data.params["estimator"]
        counts[name] = counts.get(name, 0) + 1
    return counts


def _outputs(notebook: nbformat.NotebookNode) -> list[str]:
    """The text the notebook showed: printed streams and displayed tables."""
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                texts.append(output["text"])
            elif "text/plain" in output.get("data", {}):
                texts.append(output["data"]["text/plain"])
    return texts
