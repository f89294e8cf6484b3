"""`mlops data init` on files the tests write: the schema it proposes, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import run
from pipeline.errors import ConfigError
from pipeline.gitops.card import check_policy, load_card, placeholders
from pipeline.stages.data import prepare
from pipeline.stages.datasets import load_spec
from tests.utils import REPO


def loans(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """A small lending table: an identifier, numbers with a gap, text, booleans, a label."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "customer_id": [f"c{i:04d}" for i in range(rows)],
        "income": rng.normal(50, 15, rows).round(1),
        "region": rng.choice(["north", "south", "east"], rows),
        "tenure": rng.integers(0, 30, rows),
        "has_card": rng.choice([True, False], rows),
    })
    frame["outcome"] = np.where(frame["income"] + rng.normal(0, 10, rows) > 50,
                                "approved", "declined")
    frame.loc[3, "income"] = np.nan
    return frame


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with the repository's card, where the user runs `mlops`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLOPS_CARD", str(tmp_path / "model_card.yaml"))
    (tmp_path / "model_card.yaml").write_text((REPO / "model_card.yaml").read_text())
    return tmp_path


def test_a_schema_from_a_csv_that_the_pipeline_then_reads(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loans().to_csv(workdir / "loans.csv", index=False)
    assert run(["data", "init", "loans.csv", "--target", "outcome"]) == 0
    captured = capsys.readouterr()
    assert "text with 3 distinct values -> categorical" in captured.err  # the table says why
    assert "customer_id" in captured.err
    assert "identifier" in captured.err

    text = (workdir / "loans.schema.yaml").read_text()
    assert "# Left out: customer_id" in text
    card = load_card(workdir / "model_card.yaml")
    assert (card.data.dataset, card.data.source) == ("loans.schema.yaml", "loans.csv")
    assert "dataset: loans.schema.yaml  # schema by mlops data init" in \
        (workdir / "model_card.yaml").read_text()

    spec = load_spec(card.data.dataset)
    assert (spec.name, spec.task, spec.target.name) == ("loans", "classification", "outcome")
    assert spec.target.categories == ("approved", "declined")
    kinds = {c.name: (c.kind, c.min, c.max, c.categories) for c in spec.features}
    assert kinds["region"] == ("categorical", None, None, ("east", "north", "south"))
    assert kinds["has_card"][0] == "categorical"
    assert kinds["tenure"][:2] == ("numeric", 0)
    assert "customer_id" not in kinds
    data = prepare(spec, source=card.data.source)
    assert data.report.rows_in == 300
    assert data.report.counts["missing_income"] == 1

    # A whole card for this data, not the demo's with a new data section.
    assert (card.model.name, card.promotion.metric, card.promotion.greater_is_better) == \
        ("loans", "f1_macro", True)
    check_policy(card, task="classification")  # no leftover of the demo card either
    assert list(card.promotion.floors) == ["f1_macro"]
    assert "dummy baseline" in (workdir / "model_card.yaml").read_text()
    assert set(placeholders(card)) >= {"card.owner", "card.intended_use", "card.limitations"}
    assert "wrote a new" in captured.err


def test_whole_number_labels_and_a_numeric_target(workdir: Path) -> None:
    frame = loans().assign(outcome=lambda f: (f["outcome"] == "approved").astype(int))
    frame.to_csv(workdir / "labels.csv", index=False)
    assert run(["data", "init", "labels.csv", "--target", "outcome", "--json"]) == 0
    spec = load_spec("labels.schema.yaml")
    assert (spec.task, spec.target.categories) == ("classification", ("0", "1"))
    assert set(prepare(spec, source="labels.csv").y_train) == {"0", "1"}

    assert run(["data", "init", "labels.csv", "--target", "income", "--name", "income",
                "--task", "regression"]) == 0
    spec = load_spec("income.schema.yaml")
    assert (spec.task, spec.target.kind) == ("regression", "numeric")
    assert "outcome" in spec.feature_names


def test_json_is_one_object(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loans().to_csv(workdir / "loans.csv", index=False)
    assert run(["data", "init", "loans.csv", "--target", "outcome", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["written"] is True
    assert out["task"] == "classification"
    assert {c["name"]: c["kind"] for c in out["columns"]}["region"] == "categorical"
    assert out["left_out"].keys() == {"customer_id"}


def _empty(path: Path) -> None:
    path.write_text("")


def _no_rows(path: Path) -> None:
    path.write_text("income,outcome\n")


def _one_class(path: Path) -> None:
    loans().assign(outcome="approved").to_csv(path, index=False)


def _all_missing(path: Path) -> None:
    loans().assign(notes=np.nan).to_csv(path, index=False)


@pytest.mark.parametrize(("write", "target", "expected"), [
    (_empty, "outcome", "error: data.source: in.csv is empty"),
    (_no_rows, "outcome", "error: the data has no rows"),
    (lambda p: loans().to_csv(p, index=False), "label",
     "error: --target: no column 'label' in the data (columns: customer_id, income"),
    (_one_class, "outcome",
     "error: --target 'outcome': one class only ('approved'); a classifier needs at least two"),
    (_all_missing, "outcome", "error: column 'notes': every value is missing"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(
        workdir: Path, capsys: pytest.CaptureFixture[str], write: object, target: str,
        expected: str) -> None:
    write(workdir / "in.csv")  # type: ignore[operator]
    card_before = (workdir / "model_card.yaml").read_text()
    assert run(["data", "init", "in.csv", "--target", target]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(expected), err[0]
    assert sorted(p.name for p in workdir.iterdir()) == ["in.csv", "model_card.yaml"]
    assert (workdir / "model_card.yaml").read_text() == card_before


def test_every_problem_in_json_the_first_on_the_line(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loans().assign(notes=np.nan, remarks=None, outcome="approved").to_csv(
        workdir / "in.csv", index=False)
    assert run(["data", "init", "in.csv", "--target", "outcome", "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"written": False, "errors": [
        "column 'notes': every value is missing",
        "column 'remarks': every value is missing",
        "--target 'outcome': one class only ('approved'); a classifier needs at least two"]}
    assert captured.err.strip() == "error: column 'notes': every value is missing (and 2 more)"
    assert not (workdir / "in.schema.yaml").exists()


def test_an_existing_schema_is_not_overwritten_without_force(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loans().to_csv(workdir / "loans.csv", index=False)
    (workdir / "loans.schema.yaml").write_text("# reviewed by hand\n")
    assert run(["data", "init", "loans.csv", "--target", "outcome"]) == 2
    assert "exists; review or delete it, or pass --force" in capsys.readouterr().err
    assert (workdir / "loans.schema.yaml").read_text() == "# reviewed by hand\n"
    assert run(["data", "init", "loans.csv", "--target", "outcome", "--force"]) == 0


@pytest.mark.parametrize(("change", "message"), [
    (("categories: [approved, declined]", "categories: [yes, no]"),
     "True was read as true/false: quote it"),
    (("kind: numeric\n    min: 0", "kind: categorical\n    min: 0"),
     "a categorical column has categories, not min/max"),
    (("task: classification", "task: regression"), "a regression target is numeric"),
    (("kind: numeric", "kind: number"), "Input should be 'numeric' or 'categorical'"),
])
def test_a_hand_edited_schema_is_checked(workdir: Path, change: tuple[str, str],
                                         message: str) -> None:
    loans().to_csv(workdir / "loans.csv", index=False)
    assert run(["data", "init", "loans.csv", "--target", "outcome"]) == 0
    path = workdir / "loans.schema.yaml"
    path.write_text(path.read_text().replace(*change, 1))
    with pytest.raises(ConfigError, match=r"loans\.schema\.yaml: ") as err:
        load_spec("loans.schema.yaml")
    assert message in str(err.value)


def test_the_builtin_classification_dataset_is_a_yaml_schema_with_real_flaws() -> None:
    spec = load_spec("rand_health")
    assert (spec.task, spec.target.categories) == (
        "classification", ("excellent", "good", "fair", "poor"))
    assert spec.categorical_features() == ["coinsurance", "individual_deductible",
                                           "physical_limitation"]
    data = prepare(spec)
    assert data.report.rows_in == 20_190
    assert data.report.counts["drop_duplicates"] == 11_065
    assert data.report.counts["blank_invalid_physical_limitation"] == 577
    assert set(data.y_test) == {"excellent", "good", "fair", "poor"}
    example = load_card(REPO / "examples" / "rand_health" / "model_card.yaml")  # make demo's
    assert example.data.dataset == "rand_health"
    check_policy(example, task=spec.task)


def test_a_card_that_already_names_the_schema_is_kept(workdir: Path) -> None:
    """A re-run (new rows, --force) keeps the reviewed card: only its data section moves."""
    loans().to_csv(workdir / "loans.csv", index=False)
    assert run(["data", "init", "loans.csv", "--target", "outcome"]) == 0
    card = workdir / "model_card.yaml"
    reviewed = card.read_text().replace("TODO: the team that answers for this model",
                                        "The lending team")
    card.write_text(reviewed)
    loans(rows=400).to_csv(workdir / "more_loans.csv", index=False)
    assert run(["data", "init", "more_loans.csv", "--target", "outcome", "--name", "loans",
                "--force"]) == 0
    assert load_card(card).card.owner == "The lending team"
    assert load_card(card).data.source == "more_loans.csv"
    assert card.read_text() == reviewed.replace("source: loans.csv", "source: more_loans.csv")


def test_the_floor_is_the_dummy_baseline_on_the_validation_rows_and_its_rule(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: the dummy predicts the training mean; a useful model closes a tenth of
    the gap to a perfect RMSE of 0 on the same validation rows the pipeline uses."""
    frame = loans(rows=400)
    frame["amount"] = frame["income"].fillna(50) * 3 + np.random.default_rng(1).normal(0, 5, 400)
    frame.to_csv(workdir / "amounts.csv", index=False)
    assert run(["data", "init", "amounts.csv", "--target", "amount", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["card_written"], out["model_name"], out["metric"]) == ("new", "amounts", "rmse")
    card = load_card(workdir / "model_card.yaml")
    data = prepare(load_spec(card.data.dataset), source=card.data.source,
                   validation_fraction=card.data.validation_fraction,
                   test_fraction=card.data.test_fraction)
    dummy_rmse = float(np.sqrt(((data.y_validation - data.y_train.mean()) ** 2).mean()))
    floor = out["floors"][0]
    assert floor["metric"] == "rmse"
    assert floor["baseline"] == pytest.approx(dummy_rmse)
    assert card.promotion.floors["rmse"] == pytest.approx(0.9 * dummy_rmse, rel=1e-3)
    assert floor["rule"].startswith("the dummy baseline (predicts the mean of the training "
                                    f"target) scores rmse {dummy_rmse:.4g} on the "
                                    f"{len(data.validation)} validation rows")
    assert floor["rule"] in " ".join((workdir / "model_card.yaml").read_text().replace(
        "    # ", " ").split())  # written beside the floor


def test_ranges_as_seen_never_drop_or_blank_rows_later(
        workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The schema records the ranges of the file it read; rows from later data outside
    them are kept, counted and warned about, not silently blanked or dropped."""
    frame = loans(rows=400)
    frame.head(300).to_csv(workdir / "loans.csv", index=False)
    assert run(["data", "init", "loans.csv", "--target", "outcome"]) == 0
    spec = load_spec("loans.schema.yaml")
    assert {c.outside for c in spec.columns} == {"keep"}
    later = frame.copy()
    later.loc[350:359, "income"] = 10_000.0  # far above the range seen
    later.loc[360:364, "region"] = "west"  # a region the first file did not have
    later.to_csv(workdir / "later.csv", index=False)
    with caplog.at_level("WARNING"):
        data = prepare(spec, source="later.csv")
    assert data.report.rows_out == 400  # no row dropped
    income = next(c for c in spec.features if c.name == "income")
    outside = ~later["income"].dropna().between(income.min, income.max)
    assert int(outside.sum()) >= 10
    assert data.report.counts["outside_range_income"] == int(outside.sum())
    assert data.report.counts["outside_range_region"] == 5
    assert (pd.concat([data.train, data.validation, data.test])["income"] == 10_000).sum() == 10
    assert (f"column 'income': {int(outside.sum())} value(s) outside its declared range; "
            "kept them") in caplog.text


def test_a_note_for_each_column_it_was_unsure_about(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = loans().assign(grade=lambda f: np.arange(len(f)) % 3 + 1, constant=7)
    frame.to_csv(workdir / "loans.csv", index=False)
    assert run(["data", "init", "loans.csv", "--target", "outcome", "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert notes["grade"].startswith("3 distinct whole numbers (1, 2, 3): if they are codes")
    assert notes["constant"].startswith("one value only")
    assert "income" not in notes
    assert "# Unsure about grade: 3 distinct whole numbers" in \
        (workdir / "loans.schema.yaml").read_text()


def test_a_missing_card_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    loans().to_csv(tmp_path / "loans.csv", index=False)
    assert run(["data", "init", "loans.csv", "--target", "outcome", "--card",
                "cards/loans.yaml", "--model-name", "loan-outcome"]) == 0
    card = load_card(tmp_path / "cards" / "loans.yaml")
    assert (card.model.name, card.data.dataset) == ("loan-outcome", "cards/loans.schema.yaml")
