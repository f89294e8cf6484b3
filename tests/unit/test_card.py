"""model_card.yaml: the schema, the policy's metrics, and the policy hash promote relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.cli import run
from pipeline.errors import ConfigError
from pipeline.gitops.card import (
    DEMO_CARD,
    ModelCard,
    check_policy,
    check_slices,
    demo_leftovers,
    load_card,
    policy_hash,
    prose_fingerprint,
    write_candidate_run_id,
)
from tests.utils import REPO

RUN_ID = "0123456789abcdef0123456789abcdef"


def _raw() -> dict[str, object]:
    raw = yaml.safe_load((REPO / "model_card.yaml").read_text())
    assert isinstance(raw, dict)
    return raw


def _card(**promotion: object) -> ModelCard:
    raw = _raw()
    raw["promotion"] = {**raw["promotion"], **promotion}  # type: ignore[dict-item]
    return ModelCard.model_validate(raw)


def test_a_card_loads_from_a_string_path_as_from_a_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert load_card("model_card.yaml") == load_card(REPO / "model_card.yaml")


def test_the_repository_card_is_valid_and_its_policy_fits_the_demo_task() -> None:
    card = load_card(REPO / "model_card.yaml")
    check_policy(card, task="regression")
    assert card.promotion.metric == "rmse"
    assert card.promotion.greater_is_better is False
    assert card.card.ethical_considerations.strip()


@pytest.mark.parametrize(("change", "where"), [
    ({"floors": {"auc": 0.8}}, "promotion.floors.auc"),
    ({"floors": {"accuracy": 0.8}}, "promotion.floors.accuracy"),
    ({"metric": "accuracy", "greater_is_better": True}, "promotion.metric"),
    ({"metric": "rmse", "greater_is_better": True}, "promotion.greater_is_better"),
])
def test_a_policy_that_does_not_fit_the_task_names_the_field(
    change: dict[str, object], where: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{where}: "):
        check_policy(_card(**change), task="regression")


def test_classification_policies_may_floor_probability_metrics() -> None:
    card = _card(metric="f1_macro", greater_is_better=True, floors={"roc_auc": 0.7})
    check_policy(card, task="classification")
    with pytest.raises(ConfigError, match=r"promotion\.floors\.r2"):
        check_policy(_card(metric="accuracy", greater_is_better=True, floors={"r2": 0.1}),
                     task="classification")


@pytest.mark.parametrize(("mutate", "where"), [
    (lambda raw: raw["promotion"].update(confidence=1.5), "promotion.confidence"),
    (lambda raw: raw["promotion"].update(bootstrap_resamples=10),
     "promotion.bootstrap_resamples"),
    (lambda raw: raw["promotion"].update(mode="yolo"), "promotion.mode"),
    (lambda raw: raw["model"].update(candidate_run_id="not-a-run"), "model.candidate_run_id"),
    (lambda raw: raw["card"].update(limitations="  "), "card.limitations"),
    (lambda raw: raw["promotion"].update(surprise=1), "promotion.surprise"),
    (lambda raw: raw["data"].update(test_fraction=1.0), "data.test_fraction"),

    (lambda raw: raw["data"].update(validation_fraction=0.5, test_fraction=0.5),
     "data: validation_fraction \\+ test_fraction must stay below 1"),
])
def test_an_invalid_card_fails_with_the_field_path(tmp_path: Path, mutate: object,
                                                    where: str) -> None:
    raw = _raw()
    mutate(raw)  # type: ignore[operator]
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=where) as err:
        load_card(path)
    assert "\n" not in str(err.value)


def test_policy_hash_follows_the_policy_not_the_prose() -> None:
    base = ModelCard.model_validate(_raw())
    raw = _raw()
    raw["card"]["limitations"] = "Reworded after review."  # type: ignore[index]
    assert policy_hash(ModelCard.model_validate(raw)) == policy_hash(base)
    assert policy_hash(_card(floors={"r2": 0.95})) != policy_hash(base)
    raw = _raw()
    raw["model"]["candidate_run_id"] = RUN_ID  # type: ignore[index]
    assert policy_hash(ModelCard.model_validate(raw)) != policy_hash(base)


def test_writing_the_candidate_keeps_comments_and_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "model_card.yaml"
    original = (REPO / "model_card.yaml").read_text()
    path.write_text(original)
    write_candidate_run_id(path, RUN_ID)
    text = path.read_text()
    assert load_card(path).model.candidate_run_id == RUN_ID
    assert "# the MLflow run ID of the candidate" in text
    assert len(text.splitlines()) == len(original.splitlines())
    with pytest.raises(ConfigError, match="32-character"):
        write_candidate_run_id(path, "abc")
    assert load_card(path).model.candidate_run_id == RUN_ID


def test_docs_name_the_primary_metrics_the_card_accepts() -> None:
    """docs/data.md's table of primary metrics is what check_policy accepts, per task."""
    import re

    from pipeline.stages.metrics import METRICS
    from tests.utils import REPO

    text = (REPO / "docs" / "data.md").read_text()
    for task in ("regression", "classification"):
        row = re.search(rf"^\| {task} \| ([^|]*) \|", text, re.MULTILINE)
        assert row is not None, task
        documented = set(re.findall(r"`(\w+)`", row.group(1)))
        assert documented == {m.name for m in METRICS.values()
                              if m.task == task and m.resamplable}, task
    with pytest.raises(ConfigError, match="log_loss and roc_auc may be floors"):
        check_policy(_card(metric="roc_auc", greater_is_better=True), task="classification")


def test_the_demo_card_fingerprints_are_the_shipped_card() -> None:
    """DEMO_CARD must describe model_card.yaml as shipped: edit both together."""
    card = load_card(REPO / "model_card.yaml")
    assert card.model.name == DEMO_CARD["model.name"]
    assert {f"card.{k}": prose_fingerprint(v) for k, v in card.card.model_dump().items()
            if v is not None} == {k: v for k, v in DEMO_CARD.items() if k != "model.name"}


def test_a_card_about_other_data_with_demo_leftovers_is_refused(tmp_path: Path) -> None:
    """The first gate of a fork that only pointed data: at its own file: refused in one
    line naming the leftovers, not "feature schema differs from Production" later."""
    raw = _raw()
    raw["data"] = {**raw["data"], "dataset": "loans.schema.yaml"}  # type: ignore[dict-item]
    card = ModelCard.model_validate(raw)
    assert demo_leftovers(card)[:2] == ["model.name", "card.owner"]
    with pytest.raises(ConfigError, match=r"^model\.name, card\.owner, .*: still the demo "
                                          r"card's, but data\.dataset is 'loans\.schema\.yaml'"):
        check_policy(card, task="regression")
    raw["model"] = {**raw["model"], "name": "loans"}  # type: ignore[dict-item]
    raw["card"] = {k: f"Ours: {v}" for k, v in raw["card"].items()}  # type: ignore[union-attr]
    check_policy(ModelCard.model_validate(raw), task="regression")  # nothing left over


def test_mlops_card_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(REPO)
    assert run(["card", "check"]) == 0
    assert "model_card.yaml: valid; model diamond-price, regression on diamonds" in \
        capsys.readouterr().out
    text = (REPO / "model_card.yaml").read_text().replace(
        "dataset: diamonds ", "dataset: rand_health ").replace(
        "metric: rmse ", "metric: f1_macro ").replace(
        "greater_is_better: false", "greater_is_better: true").replace(
        "    r2: 0.90", "    accuracy: 0.5")
    (tmp_path / "card.yaml").write_text(text)
    assert run(["card", "check", "--card", str(tmp_path / "card.yaml")]) == 2
    assert "model.name, card.owner" in capsys.readouterr().err
SLICES = {"columns": ["cut", "carat"], "bins": {"carat": [0.5, 1, 2]}, "min_rows": 200,
          "max_regression": 50}


@pytest.mark.parametrize(("slices", "where"), [
    ({**SLICES, "columns": []}, "promotion.slices.columns"),
    ({**SLICES, "columns": ["cut", "cut"]}, "promotion.slices.columns: .*'cut' is named twice"),
    ({**SLICES, "bins": {"carat": [1, 0.5]}}, "carat: edges must be strictly increasing"),
    ({**SLICES, "bins": {"carat": []}}, "carat: give at least one edge"),
    ({**SLICES, "bins": {"depth": [60]}}, "bins.depth: not one of the slice columns"),
    ({**SLICES, "max_regression": -1}, "promotion.slices.max_regression"),
    ({**SLICES, "min_rows": 1}, "promotion.slices.min_rows"),
    ({key: value for key, value in SLICES.items() if key != "max_regression"},
     "promotion.slices.max_regression: Field required"),
])
def test_an_invalid_slices_section_names_the_field(tmp_path: Path, slices: dict[str, object],
                                                   where: str) -> None:
    _refused(tmp_path, "slices", slices, where)


def _refused(tmp_path: Path, key: str, section: dict[str, object], where: str) -> None:
    raw = _raw()
    raw["promotion"][key] = section  # type: ignore[index]
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=where) as err:
        load_card(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("budgets", "where"), [
    ({"p99_ms": 0}, "promotion.budgets.p99_ms"),
    ({"model_mb": -1}, "promotion.budgets.model_mb"),
    ({"latency": 5}, "promotion.budgets.latency"),
    ({"repeats": 0}, "promotion.budgets.repeats"),
])
def test_an_invalid_budgets_section_names_the_field(tmp_path: Path, budgets: dict[str, object],
                                                    where: str) -> None:
    _refused(tmp_path, "budgets", budgets, where)


def test_slice_columns_must_be_the_datasets_and_numeric_ones_binned() -> None:
    from pipeline.stages.datasets import load_spec

    spec = load_spec("diamonds")
    check_slices(_card(slices=SLICES), spec=spec)
    with pytest.raises(ConfigError, match=r"^promotion\.slices\.columns: 'shape' is not a "
                       r"column of dataset diamonds \(columns: carat, cut"):
        check_slices(_card(slices={**SLICES, "columns": ["shape"], "bins": {}}), spec=spec)
    with pytest.raises(ConfigError, match=r"^promotion\.slices\.bins\.depth: depth is numeric"):
        check_slices(_card(slices={**SLICES, "columns": ["depth"], "bins": {}}), spec=spec)
    with pytest.raises(ConfigError, match=r"^promotion\.slices\.bins\.cut: cut is categorical"):
        check_slices(_card(slices={**SLICES, "columns": ["cut"], "bins": {"cut": [1]}}),
                     spec=spec)


def test_a_card_without_slices_or_budgets_keeps_the_policy_hash_it_had() -> None:
    """Verdicts gated before these keys existed still match the policy they were gated on."""
    base = load_card(REPO / "model_card.yaml")
    assert policy_hash(base) == "922972f343c8a089"  # the repository card's, before them
    assert policy_hash(_card(slices=SLICES)) != policy_hash(base)
    assert policy_hash(_card(budgets={"p99_ms": 20})) != policy_hash(base)
    assert policy_hash(_card(budgets={"p99_ms": 20})) != policy_hash(_card(budgets={"p99_ms": 25}))
