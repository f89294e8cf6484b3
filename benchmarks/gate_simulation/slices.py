"""Does the gate see a candidate that is better overall but worse on one slice?

Every simulated pull request runs the gate's slice code on per-row errors whose truth is
known: `pipeline.gitops.slices.split` cuts the rows by the card's columns, `compare`
computes each slice's Bonferroni-corrected paired interval, `gate.judge_slices` judges
them against `max_regression`.

The world is the demo's sealed test rows: the real per-row errors of two trained models
(Production and a candidate variant) with the rows' real `cut` and `color`. The
candidate's errors are rescaled slice by slice of the target's column, so that on those
rows (the pool, the world's truth) its RMSE is `1 - better` times Production's on every
slice but the target, and `1 + regression` times Production's on the target. Each pull
request draws the gate's rows from the pool with replacement, at the demo's test size,
so the slices' sizes vary as they would. Two worlds per target:

- caught: the target slice is `regression` (10%) worse; the gate should fail naming it;
- false failure: the same candidate with the target slice at Production's level (no
  slice is worse); any slice that fails the gate is a false failure.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmarks.gate_simulation.simulation import _chunks, wilson
from pipeline.gitops.card import PromotionPolicy
from pipeline.gitops.gate import judge_slices
from pipeline.gitops.slices import compare, label, split


@dataclass(frozen=True)
class SlicedPool:
    """Both models' errors on the sealed test rows, and those rows' slice columns."""

    production: np.ndarray
    candidate: np.ndarray
    frame: pd.DataFrame

    def rmse_by(self, column: str, errors: np.ndarray) -> pd.Series:
        squared = pd.Series(errors ** 2, index=self.frame.index)
        return np.sqrt(squared.groupby(self.frame[column].to_numpy()).mean())  # type: ignore[no-any-return]


def candidate_errors(pool: SlicedPool, *, column: str, value: str, regression: float,
                     better: float, columns: list[str], sweeps: int = 200) -> np.ndarray:
    """The candidate's errors rescaled row by row so that, on the pool, every slice of
    every declared column has a known ratio of RMSE to Production's.

    On the target's column: `1 - better` on every slice, `1 + regression` on the target.
    On each other column: one ratio for all its slices, the one the target's column
    implies for all rows together, so no other slice is worse than that. A row's factor
    is a product of one factor per column (raking, iterative proportional fitting on the
    squared errors), since the slices of two columns cross.
    """
    keys = {name: pool.frame[name].astype(str).to_numpy() for name in columns}
    production = pool.production ** 2
    squared = pool.candidate ** 2
    goals: dict[str, pd.Series] = {}
    by_target = pd.Series(production).groupby(keys[column]).sum()
    ratio = pd.Series(1.0 - better, index=by_target.index)
    ratio[value] = 1.0 + regression
    overall = float(np.sqrt((ratio ** 2 * by_target).sum() / by_target.sum()))
    for name in columns:
        wanted = pd.Series(production).groupby(keys[name]).sum()
        scale = ratio if name == column else pd.Series(overall, index=wanted.index)
        goals[name] = (scale ** 2) * wanted  # the candidate's sum of squares on each slice
    factors = {name: np.ones(len(squared)) for name in columns}
    for _ in range(sweeps):
        for name in columns:
            others = np.prod([factors[o] for o in columns if o != name], axis=0)
            current = pd.Series(squared * others).groupby(keys[name]).sum()
            factors[name] = (goals[name] / current).reindex(keys[name]).to_numpy()
    weight = np.prod([factors[name] for name in columns], axis=0)
    errors: np.ndarray = pool.candidate * np.sqrt(weight)
    return errors


@dataclass(frozen=True)
class SliceSetting:
    """One world: the target slice, how much worse it is, how many pull requests."""

    pool: SlicedPool
    column: str
    value: str
    regression: float
    better: float
    pairs: int
    rows: int
    seed: int

    @property
    def target(self) -> str:
        return label(self.column, self.value)


@dataclass(frozen=True)
class SliceOutcome:
    setting: SliceSetting
    target_failed: int
    any_failed: int

    def rate(self, which: str) -> float:
        return getattr(self, which) / self.setting.pairs  # type: ignore[no-any-return]

    def cell(self, which: str) -> str:
        low, high = wilson(getattr(self, which), self.setting.pairs)
        return f"{self.rate(which):6.1%} [{low:.1%}, {high:.1%}]"


def one_pull_request(setting: SliceSetting, candidate: np.ndarray, policy: PromotionPolicy,
                     index: int) -> tuple[bool, bool]:
    """(the target slice failed, some slice failed) for one draw of the gate's rows."""
    assert policy.slices is not None
    rng = np.random.default_rng([setting.seed, index])
    rows = rng.integers(0, len(candidate), setting.rows)
    frame = setting.pool.frame.iloc[rows].reset_index(drop=True)
    table = compare(split(frame, policy.slices), section=policy.slices, metric="rmse",
                    truth=np.zeros(setting.rows), candidate=candidate[rows],
                    production=setting.pool.production[rows], confidence=policy.confidence,
                    resamples=policy.bootstrap_resamples, seed=policy.seed)
    judged, _ = judge_slices(policy.slices, table)
    return setting.target in judged.failed, bool(judged.failed)


def _chunk(args: tuple[SliceSetting, PromotionPolicy, range]) -> tuple[int, int]:
    setting, policy, indices = args
    assert policy.slices is not None
    candidate = candidate_errors(setting.pool, column=setting.column, value=setting.value,
                                 regression=setting.regression, better=setting.better,
                                 columns=policy.slices.columns)
    counts = [0, 0]
    for index in indices:
        target, any_slice = one_pull_request(setting, candidate, policy, index)
        counts[0] += int(target)
        counts[1] += int(any_slice)
    return counts[0], counts[1]


def run(settings: list[SliceSetting], policy: PromotionPolicy, *,
        workers: int) -> list[SliceOutcome]:
    jobs = [(s, policy, r) for s in settings for r in _chunks(s.pairs, max(1, workers) * 2)]
    if workers <= 1:
        results = [_chunk(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_chunk, jobs))
    outcomes = []
    for setting in settings:
        found = [r for (s, _, _), r in zip(jobs, results, strict=True) if s is setting]
        outcomes.append(SliceOutcome(setting=setting, target_failed=sum(t for t, _ in found),
                                     any_failed=sum(a for _, a in found)))
    return outcomes


def worst_ratio(pool: SlicedPool, candidate: np.ndarray, columns: list[str],
                skip: str | None = None) -> tuple[str, float]:
    """The slice where the candidate is worst relative to Production (its RMSE ratio), over
    every declared column: how the world looks to the slices that were not rescaled."""
    worst = ("", -math.inf)
    for column in columns:
        ratios = pool.rmse_by(column, candidate) / pool.rmse_by(column, pool.production)
        for value, ratio in ratios.items():
            name = label(column, str(value))
            if name != skip and ratio > worst[1]:
                worst = (name, float(ratio))
    return worst
