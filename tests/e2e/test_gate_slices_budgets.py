"""Who gets worse and what it costs to serve: slices and serving budgets, end to end.

A ridge Production and the default candidate (histogram gradient boosting), trained
and gated through the installed `mlops` command against a real MLflow server, as a data
scientist and the workflows do it (docs/gate.md, "Slices" and "Serving budgets").
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline.gitops import budgets, registry
from pipeline.gitops.card import write_candidate_run_id
from tests.conftest import TrackingServer
from tests.utils import run_mlops
from tests.utils.cards import write_card

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

@pytest.fixture(scope="module")
def tracking_server(first_backend_server: TrackingServer) -> TrackingServer:
    """One backend: nothing here depends on the registry's database (tests/conftest.py)."""
    return first_backend_server


EXPERIMENT = "e2e-gate-slices"
POLICY_END = "  seed: 0\n"
SLICES = """  slices:
    columns: [cut, color]
    min_rows: 100
    max_regression: 60
"""
GENEROUS = """  budgets:
    p50_ms: 1000
    p99_ms: 5000
    model_mb: 500
    load_s: 300
    memory_mb: 8000
    repeats: 1
"""
CUTS = ("Fair", "Good", "Very Good", "Premium", "Ideal")


@dataclass(frozen=True)
class Models:
    server: TrackingServer
    name: str
    ridge: str
    candidate: str


def _mlops(server: TrackingServer, card: Path, *args: str) -> tuple[int, str, str]:
    done = run_mlops(*args, "--card", str(card),
                     env={**server.env, "MLOPS_EXPERIMENT": EXPERIMENT}, timeout=600)
    return done.returncode, done.stdout, done.stderr.strip()


def _card(directory: Path, models: Models, policy: str = "") -> Path:
    card = write_card(directory, models.name, replace={POLICY_END: POLICY_END + policy})
    write_candidate_run_id(card, models.candidate)
    return card


@pytest.fixture(scope="module")
def models(tracking_server: TrackingServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Models:
    """A ridge Production (version 1) and a candidate trained with the defaults."""
    name = f"e2e-slices-{uuid.uuid4().hex[:8]}"
    card = write_card(tmp_path_factory.mktemp("card"), name)
    code, out, err = _mlops(tracking_server, card, "train", "--estimator", "ridge",
                            "--register", "--promote", "--json")
    assert code == 0, err
    ridge = json.loads(out)["run_id"]
    code, out, err = _mlops(tracking_server, card, "train", "--json")
    assert code == 0, err
    return Models(server=tracking_server, name=name, ridge=ridge,
                  candidate=json.loads(out)["run_id"])


def test_slices_on_cut_and_color_are_in_the_report_the_verdict_and_the_artifact(
        models: Models, tmp_path: Path) -> None:
    card = _card(tmp_path, models, SLICES)
    files = {key: tmp_path / f"gate.{key}" for key in ("md", "json", "slices")}
    code, _, err = _mlops(models.server, card, "gate", "--report", str(files["md"]),
                          "--json", str(files["json"]), "--slices", str(files["slices"]))
    assert code == 0, err
    report = files["md"].read_text()
    verdict = json.loads(files["json"].read_text())
    for cut in CUTS:
        assert f"| cut = {cut} |" in report, cut
    assert "Bonferroni-corrected for the 12 slices judged" in report
    slices = verdict["slices"]
    assert slices["correction"] == "bonferroni"
    assert slices["family"] == 12
    assert slices["confidence"] == pytest.approx(1 - 0.05 / 12)
    assert [row["value"] for row in slices["rows"] if row["column"] == "cut"] == sorted(CUTS)
    assert {row["column"] for row in slices["rows"]} == {"cut", "color"}
    assert all(row["holds"] is True for row in slices["rows"])  # better on every slice
    assert slices["failed"] == []
    # The artifact is the table the verdict names by its digest.
    assert hashlib.sha256(files["slices"].read_bytes()).hexdigest() == slices["digest"]
    assert json.loads(files["slices"].read_text())["rows"] == slices["rows"]
    # Without budgets the serving figures are still measured, once per model.
    assert verdict["serving"]["candidate"]["runs"] == 1
    # Production serves the twin its promotion recorded, the candidate the one the gate
    # compiled (both models convert).
    assert verdict["serving"]["production"]["runtime"] == "onnx"
    assert verdict["serving"]["candidate"]["runtime"] == "onnx"


def test_a_model_over_its_size_budget_fails_the_gate_naming_the_budget(
        models: Models, tmp_path: Path) -> None:
    tight = GENEROUS.replace("model_mb: 500", "model_mb: 0.001")
    card = _card(tmp_path, models, tight)
    code, _, err = _mlops(models.server, card, "gate", "--report", str(tmp_path / "r.md"))
    assert code == 1, err
    line = err.splitlines()[-1]
    assert line.startswith("error: gate failed: budget model_mb: the candidate's model size "
                           "on disk is "), line
    assert "over the budget of 0.001 MB" in line
    assert "| model size on disk (MB) | ≤ 0.001 |" in (tmp_path / "r.md").read_text()


def test_within_generous_budgets_the_gate_passes_and_shows_both_models_costs(
        models: Models, tmp_path: Path) -> None:
    card = _card(tmp_path, models, GENEROUS)
    report, verdict_file = tmp_path / "r.md", tmp_path / "v.json"
    code, _, err = _mlops(models.server, card, "gate", "--report", str(report),
                          "--json", str(verdict_file))
    assert code == 0, err
    text = report.read_text()
    verdict = json.loads(verdict_file.read_text())
    serving = verdict["serving"]
    assert "| figure | budget | candidate (onnx) | Production (onnx) |" in text
    for figure in ("one-row latency, p50 (ms)", "one-row latency, p99 (ms)",
                   "model size on disk (MB)"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {figure} |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[-1] == "yes"
        assert float(cells[2].replace(",", "")) > 0  # candidate
        assert float(cells[3].replace(",", "")) > 0  # Production
    for role in ("candidate", "production"):
        assert serving[role]["p50_ms"] > 0
        assert serving[role]["model_mb"] > 0
    assert [check["name"] for check in verdict["budgets"]] == [
        "p50_ms", "p99_ms", "model_mb", "load_s", "memory_mb"]
    assert all(check["ok"] for check in verdict["budgets"])


def test_a_slice_column_the_data_does_not_have_is_one_line_and_exit_2(
        models: Models, tmp_path: Path) -> None:
    card = _card(tmp_path, models, SLICES.replace("[cut, color]", "[cut, shape]"))
    code, _out, err = _mlops(models.server, card, "gate", "--report", str(tmp_path / "r.md"))
    assert code == 2
    assert err.splitlines()[-1] == (
        "error: promotion.slices.columns: 'shape' is not a column of dataset diamonds "
        "(columns: carat, cut, color, clarity, depth, table, x, y, z, price)")
    assert not (tmp_path / "r.md").exists()
    numeric = _card(tmp_path, models, SLICES.replace("[cut, color]", "[carat]"))
    code, _, err = _mlops(models.server, numeric, "gate")
    assert code == 2
    assert err.splitlines()[-1].startswith(
        "error: promotion.slices.bins.carat: carat is numeric; declare its bin edges")


def _gate_in_process(card: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from pipeline.cli.app import run

    capsys.readouterr()
    code = run([*args, "--card", str(card)])
    out, err = capsys.readouterr()
    return code, out, err.strip()


def test_a_budget_that_cannot_be_measured_stops_the_gate_and_no_budget_only_notes_it(
        models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], tracking_env: TrackingServer) -> None:
    monkeypatch.setenv("MLOPS_EXPERIMENT", EXPERIMENT)
    monkeypatch.setattr(budgets, "TIMEOUT_S", 0.01)  # no child answers this fast
    card = _card(tmp_path, models, GENEROUS)
    code, _, err = _gate_in_process(card, monkeypatch, capsys, "gate")
    assert code == 2
    assert err.splitlines()[-1] == (
        "error: serving cost: the candidate model could not be measured: its run took more "
        "than 0.01 s")
    plain = _card(tmp_path / "plain", models)
    verdict = tmp_path / "v.json"
    code, out, err = _gate_in_process(plain, monkeypatch, capsys, "gate", "--json",
                                      str(verdict))
    assert code == 0, err
    assert json.loads(verdict.read_text())["serving"] is None
    assert "no budget is declared, so the gate goes on without the figures" in out


def test_promote_re_measures_a_flip_to_over_budget_blocks_and_noise_is_only_printed(
        models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], tracking_env: TrackingServer) -> None:
    card = _card(tmp_path, models, GENEROUS.replace("p50_ms: 1000", "p50_ms: 50"))
    reviewed = tmp_path / "reviewed.json"
    code, _, err = _mlops(models.server, card, "gate", "--json", str(reviewed))
    assert code == 0, err
    monkeypatch.setenv("MLOPS_EXPERIMENT", EXPERIMENT)
    measured = budgets.measure

    def on_a_slower_machine(factor: float):  # type: ignore[no-untyped-def]
        def slower(*args, **kwargs):  # type: ignore[no-untyped-def]
            costs = measured(*args, **kwargs)
            return [replace(costs[0], p50_ms=costs[0].p50_ms * factor), *costs[1:]]
        return slower

    # Main's machine measures the candidate at 1,000 times its one-row p50: over 50 ms.
    monkeypatch.setattr("pipeline.gitops.evaluation.measure_serving", on_a_slower_machine(1e3))
    code, _, err = _gate_in_process(card, monkeypatch, capsys, "promote", "--verdict",
                                    str(reviewed))
    assert code == 1, err
    line = err.splitlines()[-1]
    assert line.startswith("error: promote: the gate re-computed on main fails: budget p50_ms: ")
    assert line.endswith("(the PR's verdict differs: budget p50_ms: holds on the PR, fails "
                         "on main)")
    client = MlflowClient(models.server.uri, registry_uri=models.server.uri)
    assert registry.production_version(client, models.name).run_id == models.ridge

    # 30% slower, still within budget: printed beside the PR's figures, not compared.
    monkeypatch.setattr("pipeline.gitops.evaluation.measure_serving", on_a_slower_machine(1.3))
    code, out, err = _gate_in_process(card, monkeypatch, capsys, "promote", "--verdict",
                                      str(reviewed))
    assert code == 0, err
    assert "the PR's verdict agrees" in out
    moved = [line for line in err.splitlines() if "serving cost re-measured" in line]
    assert len(moved) == 2
    assert moved[0].startswith("promote: serving cost re-measured (within noise, not "
                               "compared): the candidate (")
    assert "p50_ms " in moved[0]
    assert "model_mb " in moved[0]
    assert registry.production_version(client, models.name).run_id == models.candidate
