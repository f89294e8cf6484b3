"""The gate against noise and model selection, by simulation (`make bench-gate-sim`).

Two scenarios, each with known truth (benchmarks/gate_simulation/simulation.py):
`synthetic` (correlated heavy-tailed errors) and `diamonds` (real per-row errors of
gradient-boosting models trained in-process on the demo data, on its validation and
its test rows, rescaled to equal RMSE on the test rows, then shifted by the effect).
A third, `slices` (benchmarks/gate_simulation/slices.py), asks whether the gate's slice
rule catches a candidate better overall but worse on one slice, and how often it fails
one that is worse on none. For the first two, with the demo's validation and test sizes:

- false promotion at a true difference of zero, for one candidate, for the best of k
  selected on validation rows, and for the best of k selected on the test rows;
- power at the stated effect (`--effect`, dollars of RMSE) for one candidate;
- the smallest effect promoted with 80% power, interpolated on a grid of effects.

The gate runs with the card's policy except the floors (off) and the resamples
(`--resamples`, 500 by default instead of the card's 2,000, to keep the run near 12
minutes on two cores: fewer resamples make each interval's ends noisier, not biased).
2,000 pull requests per setting (`--pairs`) keep the Monte Carlo interval of a 5% rate
within about one point; the power curve uses a quarter of `--pairs` per effect. Rates
come with 95% Wilson intervals over the simulated pull requests.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gate_simulation.simulation import (
    RULES,
    Outcome,
    Resampled,
    Scenario,
    Setting,
    Synthetic,
    run,
    smallest_effect,
)
from benchmarks.gate_simulation.slices import (
    SlicedPool,
    SliceSetting,
    candidate_errors,
    worst_ratio,
)
from benchmarks.gate_simulation.slices import run as run_slices
from pipeline.gitops.card import PromotionPolicy, SliceSection, load_card, prepare_data
from pipeline.gitops.slices import corrected_confidence, slice_resamples
from pipeline.gitops.stats import METHODS, Method
from pipeline.stages.data import PreparedData

REPO = Path(__file__).resolve().parents[2]
STATED_EFFECT = 25.0
"""Dollars of RMSE: the effect docs/gate.md states the gate's power at."""


VARIANTS: list[dict[str, object]] = [
    {}, {"learning_rate": 0.06, "max_leaf_nodes": 41, "random_state": 1},
    {"learning_rate": 0.15, "max_leaf_nodes": 21, "random_state": 2},
    {"learning_rate": 0.1, "l2_regularization": 1.0, "random_state": 3},
    {"learning_rate": 0.08, "max_depth": 8, "random_state": 4}]
"""The default histogram gradient boosting (Production) and four trained variants."""


@functools.cache
def _fitted() -> tuple[PreparedData, tuple[Any, ...]]:
    """The demo's data and the five models, fitted once for every scenario that uses them."""
    from pipeline.stages.train import fit, make_estimator

    data = prepare_data(load_card(REPO / "model_card.yaml"))
    return data, tuple(fit(data, make_estimator(data.spec.task, "hist_gradient_boosting", p))
                       for p in VARIANTS)


def _errors(model: Any, x: Any, y: Any) -> np.ndarray:
    errors: np.ndarray = np.asarray(model.predict(x), dtype=float) - np.asarray(y, dtype=float)
    return errors


def diamonds_scenario(models: int) -> tuple[Resampled, int, int]:
    """Real per-row errors on the demo's validation and test rows: Production and
    `models - 1` candidates.

    Production is the default histogram gradient boosting, and four variants are
    trained; the candidates are the variants and blends of two of them (the weighted
    average of their predictions, a real ensemble model, weights 1/4, 1/2 or 3/4), so
    20 candidates are 20 real models from five fits.
    """
    data, fitted = _fitted()
    pools = [_candidates([_errors(m, x, y) for m in fitted], models)
             for x, y in ((data.x_validation, data.y_validation), (data.x_test, data.y_test))]
    return (Resampled(validation=pools[0], test=pools[1]), len(data.validation),
            len(data.test))


def sliced_pool(columns: list[str]) -> tuple[SlicedPool, int]:
    """Production's and the first variant's errors on the sealed test rows, with the rows'
    slice columns; and the demo's test size."""
    data, fitted = _fitted()
    pool = SlicedPool(production=_errors(fitted[0], data.x_test, data.y_test),
                      candidate=_errors(fitted[1], data.x_test, data.y_test),
                      frame=data.test[columns].reset_index(drop=True))
    return pool, len(data.test)


def _candidates(errors: list[np.ndarray], models: int) -> np.ndarray:
    """The fitted models' errors, then blends of two variants, `models` rows in all."""
    from itertools import combinations

    blends = [w * errors[a] + (1 - w) * errors[b]
              for w in (0.5, 0.25, 0.75) for a, b in combinations(range(1, 5), 2)]
    return np.vstack([*errors, *blends][:models])


def settings_for(scenario: Scenario, *, pairs: int, k: int, effect: float, grid: list[float],
                 validation_rows: int, test_rows: int, seed: int,
                 method: Method = "percentile") -> list[Setting]:
    def make(effect: float, k: int, selection: str, pairs: int, offset: int) -> Setting:
        return Setting(scenario=scenario, effect=effect, k=k, selection=selection,  # type: ignore[arg-type]
                       pairs=pairs, test_rows=test_rows, validation_rows=validation_rows,
                       seed=seed * 1000 + offset, method=method)

    fixed = [make(0.0, 1, "none", pairs, 1), make(0.0, k, "validation", pairs, 2),
             make(0.0, k, "test", pairs, 3), make(effect, 1, "none", pairs, 4)]
    curve = [make(e, 1, "none", max(25, pairs // 4), 10 + i) for i, e in enumerate(grid)]
    return fixed + curve


def _cell(outcome: Outcome, rule: str) -> str:
    low, high = outcome.interval(rule)
    return f"{outcome.rate(rule):6.1%} [{low:.1%}, {high:.1%}]"


def report(scenario: Scenario, outcomes: list[Outcome], grid: list[float], k: int) -> list[str]:
    single, by_validation, by_test, power = outcomes[:4]
    curve = outcomes[4:]
    n = single.setting.test_rows
    print(f"\n## {scenario.name}: Production RMSE {scenario.rmse:,.0f}, "
          f"{n:,} test rows, {single.setting.validation_rows:,} validation rows")
    print(f"| {'setting':<46} | " + " | ".join(f"{r:<24}" for r in RULES) + " |")
    print(f"|{'-' * 48}|" + "|".join("-" * 26 for _ in RULES) + "|")
    rows = [("false promotion, 1 candidate, effect 0", single),
            (f"false promotion, best of {k} on validation", by_validation),
            (f"false promotion, best of {k} on test rows", by_test),
            (f"power, 1 candidate, effect {power.setting.effect:g} dollars", power)]
    for label, outcome in rows:
        print(f"| {label:<46} | " + " | ".join(f"{_cell(outcome, r):<24}" for r in RULES) + " |")
    lines = []
    for rule in RULES:
        rates = [o.rate(rule) for o in curve]
        mde = smallest_effect(grid, rates)
        if mde is None:
            text = f"more than {grid[-1]:g} dollars"
        elif rates[0] >= 0.8:
            text = f"at most {grid[0]:g} dollars"
        else:
            text = f"{mde:.1f} dollars"
        print(f"smallest effect with 80% power, {rule}: {text} "
              f"(grid {', '.join(f'{e:g}' for e in grid)}; "
              + ", ".join(f"{o.rate(rule):.0%}" for o in curve) + ")")
        for name, outcome in (("single", single), ("validation", by_validation),
                              ("test", by_test)):
            lines.append(f"RESULT rule={rule} scenario={scenario.name}-{name} "
                         f"k={outcome.setting.k} pairs={outcome.setting.pairs} "
                         f"false_promotion={outcome.rate(rule):.4f} "
                         f"power={power.rate(rule):.4f}")
    return lines


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000, help="pull requests per setting")
    parser.add_argument("--k", type=int, default=20, help="candidates in a selection")
    parser.add_argument("--resamples", type=int, default=500, help="bootstrap resamples")
    parser.add_argument("--effect", type=float, default=STATED_EFFECT, help="dollars of RMSE")
    parser.add_argument("--grid", default="10,20,25,30", help="effects for the power curve")
    parser.add_argument("--rows", type=int, default=0,
                        help="test and validation rows (0: the demo's sizes)")
    parser.add_argument("--scenarios", default="synthetic,diamonds,slices")
    parser.add_argument("--slice-pairs", type=int, default=400,
                        help="pull requests per world of the slices scenario")
    parser.add_argument("--slice-columns", default="cut,color")
    parser.add_argument("--slice-target", default="cut=Good",
                        help="COLUMN=VALUE: the slice the candidate is worse on")
    parser.add_argument("--slice-regression", type=float, default=0.10,
                        help="how much worse on the target slice (share of Production's RMSE)")
    parser.add_argument("--slice-better", type=float, default=0.05,
                        help="how much better elsewhere (share of Production's RMSE)")
    parser.add_argument("--slice-min-rows", type=int, default=800)
    parser.add_argument("--slice-margin", type=float, default=80.0,
                        help="max_regression, dollars of RMSE")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", choices=METHODS, default="percentile",
                        help="the bootstrap interval (the gate's is percentile)")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.k < 1 or args.rows < 0:
        parser.error("--pairs and --k must be positive, --rows not negative")
    grid = [float(e) for e in args.grid.split(",")]
    policy = load_card(REPO / "model_card.yaml").promotion.model_copy(
        update={"floors": {}, "bootstrap_resamples": args.resamples})
    method: Method = args.method
    start = time.perf_counter()
    names = args.scenarios.split(",")
    print(f"gate simulation: {args.pairs} pull requests per setting, k={args.k}, "
          f"{args.resamples} resamples ({method}), "
          f"confidence {policy.confidence:g}, "
          f"min_improvement {policy.min_improvement:g}, seed {args.seed}")
    results: list[str] = []
    for name in names:
        scenario: Scenario
        if name == "slices":
            results += slices_report(args, policy)
            continue
        if name == "diamonds":
            scenario, validation_rows, test_rows = diamonds_scenario(args.k + 1)
        elif name == "synthetic":
            validation_rows, test_rows = (args.rows, args.rows) if args.rows else _demo_sizes()
            scenario = Synthetic()
        else:
            parser.error(f"--scenarios: unknown scenario {name!r} "
                         "(synthetic, diamonds, slices)")
        if args.rows:
            validation_rows = test_rows = args.rows
        settings = settings_for(scenario, pairs=args.pairs, k=args.k, effect=args.effect,
                                grid=grid, validation_rows=validation_rows,
                                test_rows=test_rows, seed=args.seed, method=method)
        results += report(scenario, run(settings, policy, workers=args.workers), grid, args.k)
    print(f"\n{time.perf_counter() - start:.0f} s")
    for line in results:
        print(line)
    return results


def slices_report(args: argparse.Namespace, policy: PromotionPolicy) -> list[str]:
    """The slices scenario: the catch rate and the false-failure rate, with their truth."""
    columns = args.slice_columns.split(",")
    column, _, value = args.slice_target.partition("=")
    pool, rows = sliced_pool(columns)
    if args.rows:
        rows = args.rows
    section = SliceSection(columns=columns, min_rows=args.slice_min_rows,
                           max_regression=args.slice_margin)
    sliced = policy.model_copy(update={"slices": section})
    worlds = [(args.slice_regression, "caught"), (0.0, "false failure")]
    settings = [SliceSetting(pool=pool, column=column, value=value, regression=regression,
                             better=args.slice_better, pairs=args.slice_pairs, rows=rows,
                             seed=args.seed * 1000 + 100 + i)
                for i, (regression, _) in enumerate(worlds)]
    outcomes = run_slices(settings, sliced, workers=args.workers)
    target = settings[0].target
    production = float(pool.rmse_by(column, pool.production)[value])
    print(f"\n## slices: the demo's sealed rows ({rows:,} drawn per pull request), slices on "
          f"{', '.join(columns)}, min_rows {section.min_rows:,}, max_regression "
          f"{section.max_regression:g} dollars, Bonferroni; {args.slice_pairs} pull requests "
          f"per world")
    family = sum(int((pool.frame[c].value_counts() >= section.min_rows).sum()) for c in columns)
    level = corrected_confidence(policy.confidence, family)
    print(f"{family} slices judged in the pool: each interval at {level:.2%}, from "
          f"{slice_resamples(policy.bootstrap_resamples, confidence=level):,} resamples")
    print(f"target {target}: Production's RMSE on it {production:,.0f} dollars, "
          f"{int((pool.frame[column] == value).sum()):,} rows in the pool; the candidate is "
          f"{args.slice_better:.0%} better on every other {column} slice")
    print(f"| {'world':<62} | {'gate fails naming the target':<28} | "
          f"{'gate fails on some slice':<28} |")
    print(f"|{'-' * 64}|{'-' * 30}|{'-' * 30}|")
    for (regression, _), outcome in zip(worlds, outcomes, strict=True):
        errors = candidate_errors(pool, column=column, value=value, regression=regression,
                                  better=args.slice_better, columns=columns)
        other, ratio = worst_ratio(pool, errors, columns, skip=target)
        world = (f"{regression:.0%} worse on {target} "
                 f"(worst other slice: {other} x{ratio:.3f})")
        print(f"| {world:<62} | {outcome.cell('target_failed'):<28} | "
              f"{outcome.cell('any_failed'):<28} |")
    caught, clean = outcomes
    return [f"RESULT rule=gate scenario=diamonds-slices target={target.replace(' ', '')} "
            f"regression={args.slice_regression:g} pairs={args.slice_pairs} "
            f"catch={caught.rate('target_failed'):.4f} "
            f"false_failure={clean.rate('any_failed'):.4f}"]


def _demo_sizes() -> tuple[int, int]:
    """The demo card's validation and test set sizes."""
    data = prepare_data(load_card(REPO / "model_card.yaml"))
    return len(data.validation), len(data.test)


if __name__ == "__main__":
    main()
