"""How often does the gate promote a candidate that is not better, and how often a better one?

Every simulated pull request runs the real gate code on per-row errors whose truth is
known: `pipeline.gitops.stats.paired_bootstrap` computes the interval and
`pipeline.gitops.gate.decide` decides, with the card's policy (floors off: they do not
depend on noise). Beside it, the anchors' point rules see the same rows:

- `mlflow_threshold`: MLflow's `MetricThreshold` with `min_absolute_change=0` and
  `min_relative_change=0` promotes when the candidate's metric is strictly better;
- `zenml_ge`: ZenML's promotion step compares with `>=`: the candidate's metric at least
  as good as Production's.

A model is a vector of per-row errors (truth 0, prediction = error), so RMSE is the
root mean square of the vector. Each scenario draws, for one simulated pull request,
Production's and `k` candidates' errors on a validation sample and on a test sample,
independent of each other as the pipeline's disjoint sets are; every candidate has the
same true RMSE as Production minus `effect` dollars.
Selection picks the candidate with the lowest RMSE on the validation rows (what the
three sets allow) or on the test rows (what the gate's own rows invite), and the gate
then scores the winner on the test rows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from pipeline.gitops.card import PromotionPolicy
from pipeline.gitops.gate import Evaluation, decide
from pipeline.gitops.stats import Method, paired_bootstrap

RULES = ("gate", "mlflow_threshold", "zenml_ge")
Selection = Literal["none", "validation", "test"]
Part = Literal["validation", "test"]


class Scenario(Protocol):
    """Per-row errors of Production (row 0) and `k` candidates, equal true RMSE."""

    @property
    def name(self) -> str: ...

    @property
    def rmse(self) -> float:
        """Production's true RMSE, in dollars."""
        ...

    def draw(self, rng: np.random.Generator, *, models: int, rows: int,
             part: Part) -> np.ndarray:
        """An array [models, rows] of errors on `part`'s rows; every model's true RMSE on
        the test rows is `rmse`."""
        ...


@dataclass(frozen=True)
class Synthetic:
    """Correlated heavy-tailed errors with a row-level scale shared by every model.

    error[m, r] = rmse * s[r] * (sqrt(rho) * Z[r] + sqrt(1 - rho) * W[m, r]), with Z and
    W Student t (df degrees of freedom, unit variance) and s[r] log-normal with
    E[s^2] = 1: some rows (expensive stones) are hard for every model, every model's
    errors have heavy tails, and two models' errors correlate by about rho.
    """

    name: str = "synthetic"
    rmse: float = 550.0
    rho: float = 0.8
    df: float = 4.0
    log_scale_sd: float = 0.6

    def draw(self, rng: np.random.Generator, *, models: int, rows: int,
             part: Part) -> np.ndarray:
        """Every draw is fresh rows of a continuous world, whichever part it is for."""
        unit = math.sqrt(self.df / (self.df - 2))
        z = rng.standard_t(self.df, rows) / unit
        w = rng.standard_t(self.df, (models, rows)) / unit
        s = np.exp(self.log_scale_sd * rng.standard_normal(rows) - self.log_scale_sd ** 2)
        errors: np.ndarray = self.rmse * s * (math.sqrt(self.rho) * z
                                              + math.sqrt(1 - self.rho) * w)
        return errors


@dataclass(frozen=True)
class Resampled:
    """Rows drawn with replacement from real per-row errors of trained models.

    `test[m]` holds model m's errors on the demo's sealed test rows and `validation[m]`
    on its validation rows: two disjoint pools, as the pipeline's sets are, so that a
    validation winner is the candidate that looked best on other rows, as in a real
    search. Each model's errors are rescaled, in both pools by the same factor, so that
    its RMSE on the test pool equals Production's (row 0): the true difference on the
    gate's rows is zero, the shape and the row-by-row correlation are real.
    """

    test: np.ndarray
    validation: np.ndarray
    name: str = "diamonds"
    rmse: float = field(init=False)

    def __post_init__(self) -> None:
        if self.test.shape[0] != self.validation.shape[0]:
            raise ValueError(f"{self.name}: the two pools hold different models")
        rms = np.sqrt((self.test ** 2).mean(axis=1))
        scale = (rms[0] / rms)[:, None]
        object.__setattr__(self, "test", self.test * scale)
        object.__setattr__(self, "validation", self.validation * scale)
        object.__setattr__(self, "rmse", float(rms[0]))

    def draw(self, rng: np.random.Generator, *, models: int, rows: int,
             part: Part) -> np.ndarray:
        pool = self.test if part == "test" else self.validation
        if models > len(pool):
            raise ValueError(f"{self.name}: {len(pool)} models, {models} asked")
        picked: np.ndarray = pool[:models, rng.integers(0, pool.shape[1], rows)]
        return picked


@dataclass(frozen=True)
class Setting:
    """One row of the table: a scenario, a true effect, k candidates and a selection."""

    scenario: Scenario
    effect: float
    k: int
    selection: Selection
    pairs: int
    test_rows: int
    validation_rows: int
    seed: int
    method: Method = "percentile"

    @property
    def label(self) -> str:
        chosen = "" if self.k == 1 else f", best of {self.k} on {self.selection}"
        return f"{self.scenario.name}, effect {self.effect:g}{chosen}"


@dataclass(frozen=True)
class Outcome:
    """How many of `pairs` simulated pull requests each rule promoted."""

    setting: Setting
    promoted: dict[str, int]

    def rate(self, rule: str) -> float:
        return self.promoted[rule] / self.setting.pairs

    def interval(self, rule: str) -> tuple[float, float]:
        return wilson(self.promoted[rule], self.setting.pairs)


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial rate (95% by default)."""
    if trials <= 0:
        raise ValueError("trials must be positive")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    spread = math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    half = z * spread / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def _rmse(errors: np.ndarray) -> np.ndarray:
    values: np.ndarray = np.sqrt((errors ** 2).mean(axis=-1))
    return values


def one_pull_request(setting: Setting, policy: PromotionPolicy, index: int) -> dict[str, bool]:
    """Draw one production/candidates set, select, and apply every rule to the winner."""
    rng = np.random.default_rng([setting.seed, index])
    models = setting.k + 1
    shrink = 1.0 - setting.effect / setting.scenario.rmse
    test = setting.scenario.draw(rng, models=models, rows=setting.test_rows, part="test")
    test[1:] *= shrink
    if setting.selection == "validation":
        validation = setting.scenario.draw(rng, models=models, rows=setting.validation_rows,
                                           part="validation")
        validation[1:] *= shrink
        winner = 1 + int(np.argmin(_rmse(validation[1:])))
    elif setting.selection == "test":
        winner = 1 + int(np.argmin(_rmse(test[1:])))
    else:
        winner = 1
    production, candidate = test[0], test[winner]
    rmse_c, rmse_p = float(_rmse(candidate)), float(_rmse(production))
    interval = paired_bootstrap("rmse", np.zeros(setting.test_rows), candidate, production,
                                resamples=policy.bootstrap_resamples,
                                confidence=policy.confidence, seed=policy.seed,
                                method=setting.method)
    decision = decide(policy=policy,
                      candidate=Evaluation(run_id="candidate", version=None,
                                           metrics={"rmse": rmse_c}),
                      production=Evaluation(run_id="production", version="1",
                                            metrics={"rmse": rmse_p}),
                      interval=interval, former_production=False)
    return {"gate": decision.passed, "mlflow_threshold": rmse_c < rmse_p,
            "zenml_ge": rmse_c <= rmse_p}


def _chunk(args: tuple[Setting, PromotionPolicy, range]) -> dict[str, int]:
    setting, policy, indices = args
    counts = dict.fromkeys(RULES, 0)
    for index in indices:
        for rule, passed in one_pull_request(setting, policy, index).items():
            counts[rule] += int(passed)
    return counts


def _chunks(total: int, parts: int) -> Iterator[range]:
    step = max(1, math.ceil(total / parts))
    for start in range(0, total, step):
        yield range(start, min(total, start + step))


def run(settings: list[Setting], policy: PromotionPolicy, *, workers: int) -> list[Outcome]:
    """Every setting's pull requests, spread over `workers` processes (1: in-process)."""
    jobs = [(s, policy, r) for s in settings for r in _chunks(s.pairs, max(1, workers) * 2)]
    if workers <= 1:
        results = [_chunk(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_chunk, jobs))
    outcomes = []
    for setting in settings:
        counts = dict.fromkeys(RULES, 0)
        for (s, _, _), result in zip(jobs, results, strict=True):
            if s is setting:
                for rule in RULES:
                    counts[rule] += result[rule]
        outcomes.append(Outcome(setting=setting, promoted=counts))
    return outcomes


def smallest_effect(effects: list[float], power: list[float], *, target: float = 0.8
                    ) -> float | None:
    """Linear interpolation of the effect where power first reaches `target`."""
    points = list(zip(effects, power, strict=True))
    for (e0, p0), (e1, p1) in itertools.pairwise(points):
        if p0 >= target:
            return e0
        if p1 >= target:
            return e0 + (target - p0) * (e1 - e0) / (p1 - p0)
    return points[-1][0] if points and points[-1][1] >= target else None
