"""The promotion gate's judgement: does the candidate beat Production by more than noise?

`decide` is a pure function of the two evaluations, the bootstrap interval and the
card's policy, so every rule can be tested on constructed numbers; the floors are
checked here too. The shell that resolves the models, recomputes the rows and scores
them is `pipeline.gitops.evaluation`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.gitops.card import PromotionPolicy
from pipeline.gitops.stats import Interval
from pipeline.stages.metrics import greater_is_better

# --- the pure core ---------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """One model scored on the sealed test rows."""

    run_id: str
    version: str | None
    metrics: dict[str, float]


@dataclass(frozen=True)
class FloorCheck:
    metric: str
    bound: float
    value: float | None
    greater_is_better: bool

    @property
    def ok(self) -> bool:
        if self.value is None or not np.isfinite(self.value):
            return False
        return self.value >= self.bound if self.greater_is_better else self.value <= self.bound

    def describe(self) -> str:
        side = "at least" if self.greater_is_better else "at most"
        if self.value is None:
            return f"{self.metric} must be {side} {fmt(self.bound)} but was not computed"
        state = "meets" if self.ok else "misses"
        return (f"{self.metric} is {fmt(self.value)}, which {state} the floor "
                f"({side} {fmt(self.bound)})")


@dataclass(frozen=True)
class Decision:
    passed: bool
    reasons: tuple[str, ...]
    floors: tuple[FloorCheck, ...]
    improvement_bound: float | None


@dataclass(frozen=True)
class TwinCheck:
    """The twin the gate compiled from the candidate, against the candidate, on its rows.

    `ok`: it compiles and agrees, so promotion will compile it again and it will serve;
    else the model serves through its own runtime and `detail` says why.
    """

    ok: bool
    detail: str

    def describe(self) -> str:
        if self.ok:
            return (f"twin: compiled from the candidate, it agrees with the model "
                    f"({self.detail}); promotion compiles it again and it serves")
        return f"twin: none will serve ({self.detail}); the model serves through sklearn"


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def check_floors(policy: PromotionPolicy, metrics: dict[str, float]) -> tuple[FloorCheck, ...]:
    return tuple(
        FloorCheck(metric=name, bound=bound, value=metrics.get(name),
                   greater_is_better=greater_is_better(name))
        for name, bound in sorted(policy.floors.items())
    )


def decide(*, policy: PromotionPolicy, candidate: Evaluation, production: Evaluation | None,
           interval: Interval | None, former_production: bool,
           twin: TwinCheck | None = None) -> Decision:
    """Pass only if every floor holds and the mode's test holds.

    A candidate that already is Production (a pull request that leaves the model alone)
    changes nothing: only the floors are checked, and promote will be a no-op.
    improve: the pessimistic end of the interval of the improvement must be strictly
    greater than `min_improvement`, so identical models never pass; without the
    interval there is nothing to decide on, and the gate fails (closed).
    rollback: the candidate must have been Production before; no improvement test.
    With no Production yet, the floors alone decide. The twin (compiled from the
    candidate by the gate) never fails it: one that does not agree is never recorded,
    and the model serves through its own runtime; it is a line among the reasons.
    """
    floors = check_floors(policy, candidate.metrics)
    failures = [f"floor: {f.describe()}" for f in floors if not f.ok]
    passes = [f"floor: {f.describe()}" for f in floors if f.ok]
    bound: float | None = None
    same = production is not None and production.run_id == candidate.run_id
    if same and production is not None:
        passes.append(f"the candidate run is already Production (version {production.version}): "
                      "nothing changes, so only the floors are checked")
    elif policy.mode == "rollback":
        if former_production:
            passes.append("rollback: the candidate was Production before; "
                          "the improvement test is skipped")
        else:
            failures.append("rollback: the candidate run was never Production of this model, "
                            "so it cannot be rolled back to")
    elif production is None:
        passes.append("no Production version yet: the candidate only has to meet the floors")
    elif interval is None or interval.metric != policy.metric:
        failures.append(f"{policy.metric}: no bootstrap interval against Production version "
                        f"{production.version}, so the gate cannot tell whether the candidate "
                        "is better; it fails closed")
    else:
        bound = interval.improvement_bound(greater_is_better=policy.greater_is_better)
        text = _improvement_sentence(policy, production, interval, bound)
        (passes if bound > policy.min_improvement else failures).append(text)
    if twin is not None:
        passes.append(twin.describe())
    failures_first = tuple(failures) if failures else tuple(passes)
    return Decision(passed=not failures, reasons=failures_first, floors=floors,
                    improvement_bound=bound)


def _improvement_sentence(policy: PromotionPolicy, production: Evaluation,
                          interval: Interval, bound: float) -> str:
    better = "higher" if policy.greater_is_better else "lower"
    level = f"{policy.confidence:.0%}"
    head = (f"{policy.metric} ({better} is better): difference candidate - Production "
            f"version {production.version} is {fmt(interval.difference)}, {level} interval "
            f"[{fmt(interval.low)}, {fmt(interval.high)}]")
    if bound > policy.min_improvement:
        return (f"{head}; the improvement is at least {fmt(bound)}, "
                f"which clears min_improvement {fmt(policy.min_improvement)}")
    if interval.difference == 0 and interval.low == interval.high:
        return f"{head}; the candidate predicts exactly like Production, so it is no improvement"
    best = interval.high if policy.greater_is_better else -interval.low
    if best < 0:
        return (f"{head}; the whole interval is on the worse side: worse than Production by "
                f"{fmt(-best)} to {fmt(-bound)}")
    return (f"{head}; the improvement could be as small as {fmt(bound)}, which does not clear "
            f"min_improvement {fmt(policy.min_improvement)}: not better than Production "
            "by more than noise")
