"""The gate's decision, verdict and report as pure functions of constructed evaluations."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.gitops.budgets import ServingCost, ServingCosts
from pipeline.gitops.card import PromotionPolicy
from pipeline.gitops.gate import BudgetCheck, Decision, Evaluation, FloorCheck, decide
from pipeline.gitops.github import audit_from_env, pr_number_from_event
from pipeline.gitops.promote import differences, serving_movements
from pipeline.gitops.registry import public_uri
from pipeline.gitops.report import (
    CHART_SIZE,
    MARKER,
    embedded_verdict,
    interval_sentence,
    plot,
    render,
)
from pipeline.gitops.slices import SliceRow, SliceTable, table_json
from pipeline.gitops.stats import Interval
from pipeline.gitops.verdict import TAG_LIMIT, MetricRow, Verdict

CANDIDATE, PRODUCTION = "c" * 32, "d" * 32


def _policy(**overrides: object) -> PromotionPolicy:
    base: dict[str, object] = {"metric": "rmse", "greater_is_better": False,
                               "floors": {"r2": 0.9}}
    return PromotionPolicy.model_validate({**base, **overrides})


def _evals(cand: dict[str, float], prod: dict[str, float] | None,
           same: bool = False) -> tuple[Evaluation, Evaluation | None]:
    candidate = Evaluation(run_id=PRODUCTION if same else CANDIDATE, version=None, metrics=cand)
    production = None if prod is None else Evaluation(run_id=PRODUCTION, version="3",
                                                      metrics=prod)
    return candidate, production


def _interval(difference: float, low: float, high: float, metric: str = "rmse") -> Interval:
    return Interval(metric=metric, difference=difference, low=low, high=high,
                    confidence=0.95, resamples=2000)


def _decide(policy: PromotionPolicy, cand: dict[str, float], prod: dict[str, float] | None,
            interval: Interval | None, *, former: bool = False, same: bool = False
            ) -> Decision:
    candidate, production = _evals(cand, prod, same)
    return decide(policy=policy, candidate=candidate, production=production,
                  interval=interval, former_production=former)


def test_a_clear_improvement_passes_and_says_by_how_much() -> None:
    decision = _decide(_policy(), {"rmse": 580, "r2": 0.98}, {"rmse": 1130, "r2": 0.92},
                       _interval(-550, -595, -515))
    assert decision.passed
    assert decision.improvement_bound == 515
    assert any("at least 515" in r for r in decision.reasons)


def test_an_improvement_within_noise_fails_in_plain_words() -> None:
    decision = _decide(_policy(), {"rmse": 1120, "r2": 0.92}, {"rmse": 1130, "r2": 0.92},
                       _interval(-10, -30, 12))
    assert not decision.passed
    assert decision.improvement_bound == -12
    assert "not better than Production by more than noise" in decision.reasons[0]


def test_a_candidate_worse_over_the_whole_interval_is_called_worse() -> None:
    decision = _decide(_policy(), {"rmse": 4500, "r2": 0.2}, {"rmse": 1130, "r2": 0.92},
                       _interval(3430, 3361, 3505))
    assert not decision.passed
    improvement = [r for r in decision.reasons if r.startswith("rmse (lower is better)")]
    assert improvement[0].endswith("the whole interval is on the worse side: worse than "
                                   "Production by 3,361 to 3,505")


def test_identical_predictions_never_pass() -> None:
    decision = _decide(_policy(), {"rmse": 1130, "r2": 0.92}, {"rmse": 1130, "r2": 0.92},
                       _interval(0, 0, 0))
    assert not decision.passed
    assert "exactly like Production" in decision.reasons[0]


def test_min_improvement_is_a_margin_the_bound_must_clear() -> None:
    policy = _policy(min_improvement=600)
    decision = _decide(policy, {"rmse": 580, "r2": 0.98}, {"rmse": 1130, "r2": 0.92},
                       _interval(-550, -595, -515))
    assert not decision.passed
    assert "does not clear min_improvement 600" in decision.reasons[0]


def test_the_direction_comes_from_the_policy_for_greater_is_better_metrics() -> None:
    policy = _policy(metric="r2", greater_is_better=True, floors={})
    up = _decide(policy, {"r2": 0.95}, {"r2": 0.90}, _interval(0.05, 0.04, 0.06, "r2"))
    down = _decide(policy, {"r2": 0.85}, {"r2": 0.90}, _interval(-0.05, -0.06, -0.04, "r2"))
    assert up.passed
    assert not down.passed


def test_a_floor_fails_the_gate_even_with_a_big_improvement() -> None:
    decision = _decide(_policy(floors={"r2": 0.99, "mae": 400}),
                       {"rmse": 580, "r2": 0.98, "mae": 300}, {"rmse": 1130, "r2": 0.92},
                       _interval(-550, -595, -515))
    assert not decision.passed
    assert decision.reasons == ("floor: r2 is 0.98, which misses the floor (at least 0.99)",)
    assert [f.ok for f in decision.floors] == [True, False]  # mae at most 400 holds


def test_a_floor_on_a_metric_that_was_not_computed_fails() -> None:
    decision = _decide(_policy(floors={"r2": 0.9}), {"rmse": 580, "r2": float("nan")}, None,
                       None)
    assert not decision.passed


def test_with_production_and_no_interval_the_gate_fails_closed() -> None:
    """The improvement test needs the interval; without it (or with another metric's),
    a candidate that meets the floors must not pass on them alone."""
    for interval in (None, _interval(-550, -595, -515, metric="mae")):
        decision = _decide(_policy(), {"rmse": 580, "r2": 0.98}, {"rmse": 1130, "r2": 0.92},
                           interval)
        assert not decision.passed
        assert decision.reasons == ("rmse: no bootstrap interval against Production version 3,"
                                    " so the gate cannot tell whether the candidate is better; "
                                    "it fails closed",)


def test_without_production_the_floors_alone_decide() -> None:
    assert _decide(_policy(), {"rmse": 3900, "r2": 0.91}, None, None).passed
    failed = _decide(_policy(), {"rmse": 3900, "r2": 0.0}, None, None)
    assert not failed.passed
    assert "r2 is 0" in failed.reasons[0]


def test_a_pull_request_that_keeps_the_production_run_changes_nothing() -> None:
    decision = _decide(_policy(), {"rmse": 1130, "r2": 0.92}, {"rmse": 1130, "r2": 0.92},
                       _interval(0, 0, 0), same=True)
    assert decision.passed
    assert any("already Production (version 3): nothing changes" in r for r in decision.reasons)
    tightened = _decide(_policy(floors={"r2": 0.95}), {"rmse": 1130, "r2": 0.92},
                        {"rmse": 1130, "r2": 0.92}, _interval(0, 0, 0), same=True)
    assert not tightened.passed  # a stricter floor still applies to what is in production


def test_rollback_skips_the_improvement_test_but_keeps_the_floors() -> None:
    policy = _policy(mode="rollback")
    worse = ({"rmse": 1130, "r2": 0.92}, {"rmse": 580, "r2": 0.98}, _interval(550, 515, 595))
    assert _decide(policy, *worse, former=True).passed
    never = _decide(policy, *worse, former=False)
    assert not never.passed
    assert "never Production" in never.reasons[0]
    below_floor = _decide(policy, {"rmse": 3900, "r2": 0.1}, {"rmse": 580, "r2": 0.98},
                          None, former=True)
    assert not below_floor.passed


def _verdict(passed: bool, reasons: list[str]) -> Verdict:
    return Verdict(
        passed=passed, mode="improve", model_name="diamond-price", metric="rmse",
        greater_is_better=False, min_improvement=0.0, confidence=0.95, resamples=2000, seed=0,
        candidate_run_id=CANDIDATE, production_version="3", production_run_id=PRODUCTION,
        improvement_bound=-12.0, reasons=tuple(reasons),
        metrics={"rmse": MetricRow(1120, 1130, -10, -30, 12),
                 "r2": MetricRow(0.92, 0.92, 0.0, -0.001, 0.001)},
        floors=(FloorCheck(metric="r2", bound=0.9, value=0.92, greater_is_better=True),),
        data_hashes={"candidate": "aaa", "production": "bbb", "evaluation": "aaa"},
        evaluated_rows=10956, policy_hash="f00", gated_at="2026-11-27T18:00:00+00:00",
        tracking_uri="https://user:secret@mlflow.example.org:8443/", notes=("different hashes",),
    )


def test_the_verdict_json_names_the_baseline_and_the_interval() -> None:
    payload = json.loads(json.dumps(_verdict(False, ["noise"]).to_json()))
    assert payload["production_version"] == "3"
    assert payload["candidate_run_id"] == CANDIDATE
    assert payload["passed"] is False
    assert payload["verdict"] == "fail"
    assert payload["reasons"] == ["noise"]
    assert payload["interval"] == {"metric": "rmse", "difference": -10, "low": -30, "high": 12,
                                   "confidence": 0.95, "improvement_bound": -12.0}
    assert set(payload["metrics"]) == {"rmse", "r2"}
    tag = json.loads(_verdict(False, ["noise"]).to_tag())
    assert tag["production_version"] == "3"
    assert tag["policy_hash"] == "f00"


def test_the_report_starts_with_the_verdict_and_why() -> None:
    text = render(_verdict(False, ["rmse: not better than Production by more than noise"]),
                  plot_note="predicted vs actual in the workflow run's artifacts")
    lines = text.splitlines()
    assert lines[0] == MARKER
    assert "FAIL" in lines[1]
    assert "**Why it failed:**" in text
    assert text.index("Why it failed") < text.index("| metric |")
    assert "| rmse (primary) | 1,120 | 1,130 | -10 | [-30, 12] |" in text
    assert "| r2 | ≥ 0.9 | 0.92 | yes |" in text
    assert "<code>aaa</code>" in text
    assert "<code>bbb</code>" in text
    assert "different hashes" in text
    assert f"https://mlflow.example.org:8443/#/runs/{CANDIDATE}" in text
    assert f"https://mlflow.example.org:8443/#/runs/{PRODUCTION}" in text
    assert "secret" not in text
    assert "on 10,956 sealed test rows" in lines[3]
    assert "PASS" in render(_verdict(True, ["ok"])).splitlines()[1]


def test_links_never_carry_credentials() -> None:
    assert public_uri("http://u:p@127.0.0.1:5000/") == "http://127.0.0.1:5000"
    assert public_uri("https://mlflow.example.org/base/") == "https://mlflow.example.org/base"


def test_the_plot_is_predicted_vs_actual_or_roc() -> None:
    y = np.linspace(0, 10, 50)
    drawn = plot(task="regression", truth=y, predictions={"candidate": y, "production": y + 1},
                 probabilities={}, classes=None)
    assert drawn is not None
    assert drawn[1] == "predicted_vs_actual.png"
    labels = np.array([0, 1] * 25)
    proba = np.column_stack([1 - labels * 0.8, labels * 0.8])
    roc = plot(task="classification", truth=labels, predictions={"candidate": labels},
               probabilities={"candidate": proba, "production": None}, classes=[0, 1])
    assert roc is not None
    assert roc[1] == "roc.png"
    assert plot(task="classification", truth=labels, predictions={"candidate": labels},
                probabilities={"candidate": None}, classes=[0, 1]) is None


def test_on_actions_the_report_links_the_plot_in_the_workflow_runs_artifacts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.cli.gitops import _save_plot  # the gate command's own step

    y = np.linspace(0, 10, 50)
    drawn = plot(task="regression", truth=y, predictions={"candidate": y, "production": y + 1},
                 probabilities={}, classes=None)
    for key, value in {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": "4242",
                       "GITHUB_REPOSITORY": "acme/models"}.items():
        monkeypatch.setenv(key, value)
    note = _save_plot(drawn, tmp_path / "gate" / "plot.png")
    assert (tmp_path / "gate" / "plot.png").stat().st_size > 0
    link = "[workflow run's artifacts](https://github.com/acme/models/actions/runs/4242)"
    assert note == f"predicted vs actual in the {link}"
    assert f"- plot: predicted vs actual in the {link}" in render(_verdict(True, ["ok"]),
                                                                 plot_note=note)


@pytest.mark.parametrize(("event", "number"), [
    ({"pull_request": {"number": 42}}, "42"),
    ({"head_commit": {"message": "Merge pull request #17 from me/better-model\n\nbody"}}, "17"),
    ({"head_commit": {"message": "Better model (#23)\n\n* squashed"}}, "23"),
    ({"head_commit": {"message": "Direct push"}}, None),
    ({}, None),
])
def test_the_pr_number_comes_from_the_event(event: dict[str, object],
                                            number: str | None) -> None:
    assert pr_number_from_event(event) == number


def test_audit_tags_from_github_actions(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"head_commit": {"message": "Merge pull request #5 from x"}}))
    audit = audit_from_env({
        "GITHUB_SHA": "abc123", "GITHUB_ACTOR": "octocat", "GITHUB_REPOSITORY": "o/r",
        "GITHUB_RUN_ID": "99", "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_EVENT_PATH": str(event), "USER": "runner"})
    assert audit.tags() == {"git_sha": "abc123", "pr_number": "5", "actor": "octocat",
                            "workflow_run_url": "https://github.com/o/r/actions/runs/99"}


def test_audit_tags_have_local_defaults_for_the_demo() -> None:
    audit = audit_from_env({"USER": "ada"})
    assert (audit.pr_number, audit.workflow_run_url, audit.actor) == ("none", "local", "ada")
    assert audit.git_sha  # git HEAD here, "unknown" outside a repository
    override = audit_from_env({"USER": "ada"}, pr_number="8", actor="bob", git_sha="f" * 40)
    assert (override.pr_number, override.actor, override.git_sha) == ("8", "bob", "f" * 40)


def test_the_verdict_round_trips_through_its_tag_and_its_json() -> None:
    """One shape: what the gate writes is exactly what promote and the report read back."""
    verdict = _verdict(True, ["rmse: better", "floor: r2 holds"])
    verdict = Verdict(**{**verdict.__dict__, "manifest": {"MLmodel": "ab" * 32}})
    assert Verdict.from_tag(verdict.to_tag()) == verdict
    assert Verdict.from_json(json.loads(json.dumps(verdict.to_json()))) == verdict
    with pytest.raises(ValueError, match="unknown verdict field"):
        Verdict.from_json({**verdict.to_json(), "passed_by_hand": True})


def _clear_win() -> Verdict:
    """RMSE 20 lower than Production's, interval [-27.3, -4.5]: a clear improvement."""
    base = _verdict(True, ["ok"])
    return replace(base, min_improvement=2.0, improvement_bound=4.5,
                   metrics={"rmse": MetricRow(1110, 1130, -20, -27.3, -4.5),
                            "r2": MetricRow(0.93, 0.92, 0.01, 0.004, 0.016)})


def test_the_report_says_what_the_interval_means_for_this_pr() -> None:
    assert interval_sentence(_clear_win()) == (
        "With 95% confidence the candidate's RMSE is between 4.5 and 27.3 lower than "
        "Production's.")
    worse = replace(_clear_win(), metrics={"rmse": MetricRow(1150, 1130, 20, 5, 31)})
    assert interval_sentence(worse) == (
        "With 95% confidence the candidate's RMSE is worse than Production's: between 5 and "
        "31 higher.")
    assert "cannot tell which model is better" in (interval_sentence(_verdict(True, ["ok"]))
                                                    or "")
    assert interval_sentence(replace(_clear_win(), metrics={})) is None


def test_the_report_draws_each_interval_and_min_improvement_as_mermaid() -> None:
    text = render(_clear_win())
    blocks = re.findall(r"```mermaid\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 2
    rmse, r2 = blocks
    assert rmse.splitlines()[:2] == [CHART_SIZE, "xychart-beta"]
    assert 'title "rmse: improvement over Production, 95% interval"' in rmse
    assert "rmse: the bars are the improvement over Production (positive = better) at the " \
           "interval's ends and as observed; the line is min_improvement 2.</sub>" in text
    assert "r2: the bars are the improvement over Production (positive = better) at the " \
           "interval's ends and as observed; the line is no change.</sub>" in text
    # Improvements (positive = better): pessimistic end, observed, optimistic end.
    assert "    bar [4.5, 20, 27.3]" in rmse.splitlines()
    assert "    line [2, 2, 2]" in rmse.splitlines()
    assert "    bar [0.004, 0.01, 0.016]" in r2.splitlines()
    assert "    line [0, 0, 0]" in r2.splitlines()
    axis = next(line for line in rmse.splitlines() if "y-axis" in line)
    low, high = (float(v) for v in re.findall(r"(-?[\d.]+) --> (-?[\d.]+)", axis)[0])
    assert low < 2 < 27.3 < high
    # The sentence and the charts come before the floors; the verdict stays hidden last.
    assert text.index("With 95% confidence") < text.index("```mermaid") < text.index("| floor")
    assert embedded_verdict(text) == _clear_win()
    assert text.rstrip().splitlines()[-1].startswith("<!-- mlops-verdict:")


def test_a_metric_without_an_interval_draws_no_chart() -> None:
    verdict = replace(_clear_win(), metrics={"rmse": MetricRow(1110, None, None, None, None)})
    text = render(verdict)
    assert "```mermaid" not in text
    assert "With 95% confidence" not in text


def _sliced(rows: int = 12) -> Verdict:
    """A verdict with a slice table (one slice failing), serving figures and budgets."""
    table = SliceTable(
        metric="rmse", correction="bonferroni", confidence=1 - 0.05 / rows, family=rows,
        min_rows=100, max_regression=50.0,
        rows=tuple(SliceRow(column="cut", value=f"value {i:03d} " + "x" * 40, rows=400 + i,
                            candidate=500.0 + i, production=520.0, low=-60.0, high=10.0 + i,
                            holds=i != 3) for i in range(rows)),
        failed=(f"cut = value 003 {'x' * 40}",)).sealed()
    cost = ServingCost(runtime="onnx", p50_ms=0.4, p99_ms=1.9, model_mb=0.21, load_s=0.08,
                       memory_mb=41.0, runs=3)
    return replace(_verdict(False, ["slice cut = value 003: could be worse"]), slices=table,
                   serving=ServingCosts(candidate=cost, production=replace(cost, p50_ms=5.8)),
                   budgets=(BudgetCheck(name="p99_ms", limit=20.0, value=1.9,
                                        production=2.0),))


def test_the_slice_table_travels_in_the_json_and_only_its_digest_in_the_tag() -> None:
    verdict = _sliced(rows=100)
    assert Verdict.from_json(json.loads(json.dumps(verdict.to_json()))) == verdict
    tag = verdict.to_tag()
    assert len(tag) <= TAG_LIMIT < len(json.dumps(verdict.to_json()))
    back = Verdict.from_tag(tag)
    assert back == verdict.compact()
    assert back.slices is not None
    assert verdict.slices is not None
    assert back.slices.rows == ()
    assert back.slices.digest == verdict.slices.digest == hashlib.sha256(
        table_json(verdict.slices).encode()).hexdigest()
    assert back.slices.failed == verdict.slices.failed
    assert back.serving == verdict.serving
    assert back.budgets == verdict.budgets
    assert json.loads(tag)["budgets"] == [{"name": "p99_ms", "limit": 20.0, "value": 1.9,
                                           "production": 2.0, "ok": True}]


def test_the_report_shows_the_slices_and_both_models_serving_costs() -> None:
    text = render(_sliced())
    assert ("| slice | rows | candidate | Production | difference | 99.58% interval | holds |"
            in text)
    assert "| cut = value 003 " + "x" * 40 + " | 403 | 503 | 520 | -17 | [-60, 13] | **no** |" \
        in text
    assert "Bonferroni-corrected for the 12 slices judged" in text
    assert "| one-row latency, p50 (ms) | — | 0.4 | 5.8 | 0.07x | — |" in text
    assert "| one-row latency, p99 (ms) | ≤ 20 | 1.9 | 1.9 | 1.00x | yes |" in text
    assert "| figure | budget | candidate (onnx) | Production (onnx) |" in text
    assert text.index("| floor") < text.index("**Slices**") < text.index("**Serving cost**")
    assert "<details>" not in text  # 12 slices fit; a longer table is folded
    assert "<details><summary>all 13 slices (1 failing)</summary>" in render(_sliced(13))
    # The embedded verdict (the tag form) still names the table by its digest.
    embedded = embedded_verdict(text)
    assert embedded is not None
    assert embedded.slices is not None
    assert embedded.slices.digest == _sliced().slices.digest  # type: ignore[union-attr]


def test_promote_compares_budget_states_and_slice_digests_but_not_timings() -> None:
    reviewed = _sliced()
    assert reviewed.serving is not None
    assert reviewed.slices is not None
    slower = replace(reviewed.serving.candidate, p50_ms=0.6, p99_ms=2.5)
    noisy = replace(reviewed, serving=replace(reviewed.serving, candidate=slower))
    assert differences(reviewed, noisy) == ()
    moved = serving_movements(reviewed, noisy)
    assert moved[0].startswith("the candidate (onnx), PR -> main: p50_ms 0.4 -> 0.6 (1.50x); "
                               "p99_ms 1.9 -> 2.5 (1.32x); model_mb 0.21 -> 0.21 (1.00x)")
    over = replace(noisy, budgets=(BudgetCheck(name="p99_ms", limit=20.0, value=25.0),))
    assert differences(reviewed, over) == (
        "budget p99_ms: holds on the PR, fails on main",)
    other_table = replace(reviewed, slices=replace(
        reviewed.slices, rows=reviewed.slices.rows[1:]).sealed())
    assert [d.split(":")[0] for d in differences(reviewed, other_table)] == [
        "slice table sha256"]
    # The tag form (what the sticky comment embeds) compares by the same digest.
    assert differences(reviewed.compact(), reviewed) == ()


def test_the_signed_verdict_names_the_slice_table_by_its_digest() -> None:
    """The comment's hidden token stays small however many slices there are."""
    from pipeline.gitops import signing
    from pipeline.gitops.signing import Evidence

    private, public = signing.new_key_pair()
    tokens = {}
    for rows in (12, 100):
        evidence = Evidence(verdict=_sliced(rows), repository="o/r", pr_number="7",
                            head_sha="a" * 40)
        tokens[rows] = signing.sign(evidence, private)
        verified = signing.verify(tokens[rows], public)
        assert verified == replace(evidence, verdict=evidence.verdict.compact())
    assert abs(len(tokens[100]) - len(tokens[12])) < 200


def test_a_rollback_shows_its_slices_without_judging_them() -> None:
    verdict = _sliced()
    assert verdict.slices is not None
    unjudged = replace(verdict.slices, rows=tuple(replace(row, holds=None)
                                                  for row in verdict.slices.rows),
                       failed=()).sealed()
    text = render(replace(verdict, mode="rollback", slices=unjudged))
    assert "shown here, not judged" in text
    assert "fails when the candidate" not in text
    assert text.count("| not judged |") == 12
