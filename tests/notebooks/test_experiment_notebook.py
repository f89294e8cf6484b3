"""The experimentation notebook, executed end to end against a real tracking server.

Production is bootstrapped with the deliberately weak `dummy` estimator, so the tuned
model must beat it through the gate's own functions and land in the (temporary) card:
for the repository's regression card and for the classification example's (f1_macro).
The trials are ranked on the validation rows; the gate alone scores the sealed test rows.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import nbformat
import pytest
from mlflow.tracking import MlflowClient
from nbclient import NotebookClient

from pipeline.gitops.card import load_card
from tests.conftest import TrackingServer
from tests.utils import REPO, run_mlops
from tests.utils.cards import unique_name, write_card

NOTEBOOK = REPO / "notebooks" / "experiment.ipynb"

pytestmark = pytest.mark.integration


def test_notebook_is_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "the notebook has code cells"
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert notebook.cells[-1].cell_type == "markdown"
    assert "git push" in notebook.cells[-1].source


@pytest.fixture(params=["diamonds", "rand_health"])
def card(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The repository's card (regression), or the classification example's."""
    if request.param == "diamonds":
        return write_card(tmp_path, unique_name("nb-diamonds"))
    text = (REPO / "examples/rand_health/model_card.yaml").read_text().replace(
        "name: self-rated-health", f"name: {unique_name('nb-health')}")
    path = tmp_path / "model_card.yaml"
    path.write_text(text)
    return path


def test_notebook_tunes_logs_each_trial_gates_and_proposes_the_best_run(
        tracking_env: TrackingServer, card: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    experiment = f"notebook-{uuid.uuid4().hex[:8]}"
    env = {**tracking_env.env, "MLOPS_EXPERIMENT": experiment}
    bootstrap = run_mlops("train", "--estimator", "dummy", "--register", "--promote", "--json",
                          "--card", str(card), env={**env, "MLOPS_EXPERIMENT": "nb-baseline"})
    assert bootstrap.returncode == 0, bootstrap.stderr
    production_run = json.loads(bootstrap.stdout)["run_id"]

    repo_card = (REPO / "model_card.yaml").read_text()
    monkeypatch.setenv("MLOPS_CARD", str(card))
    monkeypatch.setenv("MLOPS_EXPERIMENT", experiment)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    nbformat.write(notebook, tmp_path / "executed.ipynb")  # kept for reading a failure

    client = MlflowClient(tracking_env.uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 3, "one run per trial of the grid"
    assert {r.data.params["estimator"] for r in runs} == {"hist_gradient_boosting"}
    policy = load_card(card).promotion
    own = ("val_", "twin_", "cleanse_")  # validation, the twin's parity, the data's cleansing
    assert all(m.startswith(own) for r in runs for m in r.data.metrics), \
        "no trial carries a metric on the sealed test rows"
    ranked = sorted(runs, key=lambda r: r.data.metrics[f"val_{policy.metric}"],
                    reverse=policy.greater_is_better)
    best = ranked[0]

    proposed = load_card(card).model.candidate_run_id
    assert proposed == best.info.run_id != production_run
    text = "\n".join(_text_outputs(notebook))
    assert f"gate verdict for run {proposed}: PASS" in text
    assert (REPO / "model_card.yaml").read_text() == repo_card, \
        "the repository's own card is untouched"


def _text_outputs(notebook: nbformat.NotebookNode) -> list[str]:
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                texts.append(output["text"])
    return texts
