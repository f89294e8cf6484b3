"""Serving budgets: each model measured in a child process of its own, and the judgement.

The measuring runs are real: model folders saved as training saves them, loaded by
`python -m pipeline.gitops.budget_probe` through `modelio`. No assertion is on time:
the figures are checked for what they are (a runtime, sizes that equal the files,
positive timings, a median per figure), never for how fast.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import mlflow.sklearn
import pytest
from sklearn.pipeline import Pipeline

from pipeline.gitops.budgets import (
    FIGURES,
    Served,
    ServingCost,
    ServingCosts,
    ServingUnmeasured,
    measure,
    one_row,
)
from pipeline.gitops.card import BudgetSection, PromotionPolicy
from pipeline.gitops.gate import BudgetCheck, Evaluation, decide, judge_budgets
from pipeline.stages.data import PreparedData, prepare
from pipeline.stages.datasets import load_spec
from pipeline.stages.train import fit, input_example, make_estimator, model_signature, trusted_types
from pipeline.stages.twin import Twin, compile_twin

MB = 1024 * 1024


@pytest.fixture(scope="module")
def data() -> PreparedData:
    full = prepare(load_spec("diamonds"))
    return dataclasses.replace(full, train=full.train.sample(2000, random_state=0),
                               validation=full.validation.head(300))


@pytest.fixture(scope="module")
def saved(data: PreparedData, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[Path, Path]:
    """A ridge model's folder as training saves it, and its compiled twin's file."""
    model: Pipeline = fit(data, make_estimator("regression", "ridge", {}))
    root = tmp_path_factory.mktemp("budget-models")
    folder = root / "model"
    mlflow.sklearn.save_model(model, str(folder), serialization_format="skops",
                              signature=model_signature(model, data.x_train),
                              input_example=input_example(data), pip_requirements=["sklearn"],
                              skops_trusted_types=trusted_types(model))
    twin = compile_twin(model, data.spec, data.x_validation, data.y_validation,
                        example=input_example(data))
    assert isinstance(twin, Twin)
    twin_file = root / "twin.onnx"
    twin_file.write_bytes(twin.onnx_bytes)
    return folder, twin_file


def _served(what: str, folder: Path, twin: Path | None = None) -> Served:
    return Served(what=what, name="m", folder=folder, manifest=None, twin=twin)


@pytest.mark.slow
def test_each_model_is_measured_on_its_runtime_in_its_own_process(
        saved: tuple[Path, Path], data: PreparedData) -> None:
    folder, twin = saved
    candidate, production = measure([_served("candidate", folder, twin),
                                     _served("Production", folder)],
                                    row=one_row(data.x_test), repeats=2)
    assert (candidate.runtime, production.runtime) == ("onnx", "sklearn")
    assert (candidate.runs, production.runs) == (2, 2)
    assert candidate.model_mb == pytest.approx(twin.stat().st_size / MB)
    assert production.model_mb == pytest.approx((folder / "model.skops").stat().st_size / MB)
    for cost in (candidate, production):
        assert 0 < cost.p50_ms <= cost.p99_ms
        assert cost.load_s > 0
        assert cost.memory_mb > 0  # the runtime's libraries and the model, at least


@pytest.mark.slow
def test_a_twin_the_runtime_refuses_is_measured_as_the_server_serves_it(
        saved: tuple[Path, Path], data: PreparedData, tmp_path: Path) -> None:
    folder, _ = saved
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"not a graph")
    [cost] = measure([_served("Production", folder, garbage)], row=one_row(data.x_test),
                     repeats=1)
    assert cost.runtime == "sklearn"


@pytest.mark.slow
def test_a_model_that_cannot_be_measured_is_one_line(
        saved: tuple[Path, Path], data: PreparedData, tmp_path: Path) -> None:
    folder, _ = saved
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "MLmodel").unlink()
    with pytest.raises(ServingUnmeasured) as caught:
        measure([_served("candidate", broken)], row=one_row(data.x_test), repeats=1)
    assert str(caught.value) == ("serving cost: the candidate model could not be measured: "
                                 "ModelRefused: no MLmodel file: not an MLflow model")
    with pytest.raises(ServingUnmeasured, match=r"^serving cost: the Production model could "
                       r"not be measured: its run took more than 0\.001 s$"):
        measure([_served("Production", folder)], row=one_row(data.x_test), repeats=1,
                timeout=0.001)


def test_the_timed_row_is_the_first_complete_sealed_row(data: PreparedData) -> None:
    rows = data.x_test.head(3).copy()
    rows.iloc[0, 0] = None
    assert one_row(rows).index.tolist() == [rows.index[1]]


def _cost(**figures: float) -> ServingCost:
    base = {"p50_ms": 0.5, "p99_ms": 2.0, "model_mb": 0.2, "load_s": 0.1, "memory_mb": 40.0}
    return ServingCost(runtime="onnx", runs=3, **{**base, **figures})


def test_a_budget_holds_at_its_limit_and_fails_above_it_naming_the_figure() -> None:
    serving = ServingCosts(candidate=_cost(model_mb=0.2), production=_cost(model_mb=0.05))
    checks = judge_budgets(BudgetSection(model_mb=0.2, p99_ms=1.0), serving)
    assert [(c.name, c.ok) for c in checks] == [("p99_ms", False), ("model_mb", True)]
    assert checks[0].describe() == ("budget p99_ms: the candidate's one-row latency, p99 is "
                                    "2 ms, over the budget of 1 ms; Production: 2 ms")
    assert serving.ratio("model_mb") == pytest.approx(4.0)
    assert set(BudgetSection(p50_ms=1, p99_ms=2, model_mb=3, load_s=4,
                             memory_mb=5).limits()) == set(FIGURES)


def test_a_budget_without_its_figure_fails_closed() -> None:
    [check] = judge_budgets(BudgetSection(load_s=10), None)
    assert check == BudgetCheck(name="load_s", limit=10, value=None)
    assert not check.ok
    assert "could not be measured" in check.describe()
    assert not BudgetCheck(name="p50_ms", limit=1, value=float("nan")).ok


def _decide(policy: PromotionPolicy, serving: ServingCosts | None, **kw: object) -> object:
    args: dict[str, object] = {
        "policy": policy, "candidate": Evaluation("c" * 32, None, {"rmse": 500.0}),
        "production": Evaluation("d" * 32, "3", {"rmse": 560.0}), "interval": None,
        "former_production": True, "serving": serving, **kw}
    return decide(**args)  # type: ignore[arg-type]


def test_budgets_are_absolute_like_floors_judged_in_every_mode() -> None:
    policy = PromotionPolicy(metric="rmse", greater_is_better=False, mode="rollback",
                             budgets=BudgetSection(model_mb=0.001))
    decision = _decide(policy, ServingCosts(candidate=_cost()))
    assert not decision.passed  # type: ignore[attr-defined]
    assert decision.reasons[0].startswith(  # type: ignore[attr-defined]
        "budget model_mb: the candidate's model size on disk is 0.2 MB, over the budget of "
        "0.001 MB")
    generous = policy.model_copy(update={"budgets": BudgetSection(model_mb=100)})
    assert _decide(generous, ServingCosts(candidate=_cost())).passed  # type: ignore[attr-defined]
    assert not _decide(generous, None).passed  # type: ignore[attr-defined]
    # Without budgets the figures decide nothing.
    plain = policy.model_copy(update={"budgets": None})
    assert _decide(plain, None).passed  # type: ignore[attr-defined]
