"""The promotion gate's judgement: does the candidate beat Production by more than noise?

`decide` is a pure function of the two evaluations, the bootstrap interval, the slice
table, the serving figures and the card's policy, so every rule can be tested on
constructed numbers; the floors, the slices (`judge_slices`) and the serving budgets
(`judge_budgets`) are judged here too. The shell that resolves the models, recomputes
the rows, scores, slices and measures them is `pipeline.gitops.evaluation`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pipeline.gitops.budgets import FIGURES, ServingCosts
from pipeline.gitops.card import BudgetSection, PromotionPolicy, SliceSection
from pipeline.gitops.slices import SliceRow, SliceTable
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
class BudgetCheck:
    """One serving budget of the card against the candidate's measured figure."""

    name: str
    limit: float
    value: float | None
    production: float | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None and bool(np.isfinite(self.value)) \
            and self.value <= self.limit

    def describe(self) -> str:
        what, unit = FIGURES.get(self.name, (self.name, ""))
        if self.value is None:
            return (f"budget {self.name}: the candidate's {what} could not be measured, so "
                    "the budget cannot be checked; it fails closed")
        state = "within" if self.ok else "over"
        theirs = "" if self.production is None else f"; Production: {fmt(self.production)} {unit}"
        return (f"budget {self.name}: the candidate's {what} is {fmt(self.value)} {unit}, "
                f"{state} the budget of {fmt(self.limit)} {unit}{theirs}")


@dataclass(frozen=True)
class Decision:
    passed: bool
    reasons: tuple[str, ...]
    floors: tuple[FloorCheck, ...]
    improvement_bound: float | None
    slices: SliceTable | None = None
    """The slice table with each judged slice's `holds` set (None: no slices declared)."""
    budgets: tuple[BudgetCheck, ...] = ()


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


def judge_slices(section: SliceSection, table: SliceTable) -> tuple[SliceTable, list[str]]:
    """Each slice with at least `min_rows` rows holds when the pessimistic end of its
    (corrected) interval, as an improvement, is at least `-max_regression`; the table with
    `holds` set, and one failure sentence per slice that does not hold.

    Non-inferiority: the candidate must show it is not worse than Production by more
    than the margin, so a judged slice without an interval fails (closed). Smaller
    slices are shown but not judged (`holds` None).
    """
    greater = greater_is_better(table.metric)
    rows: list[SliceRow] = []
    failures: list[str] = []
    for row in table.rows:
        if row.rows < section.min_rows:
            rows.append(replace(row, holds=None))
            continue
        if row.low is None or row.high is None:
            rows.append(replace(row, holds=False))
            failures.append(f"slice {row.label}: no interval against Production on its "
                            f"{row.rows:,} rows, so the gate cannot tell whether it got worse; "
                            "it fails closed")
            continue
        worst = row.low if greater else -row.high  # as an improvement: positive = better
        holds = worst >= -section.max_regression
        rows.append(replace(row, holds=holds))
        if not holds:
            failures.append(_slice_sentence(table, row, -worst, section.max_regression))
    failed = tuple(row.label for row in rows if row.holds is False)
    judged = replace(table, rows=tuple(rows), failed=failed).sealed()
    return judged, failures


def _slice_sentence(table: SliceTable, row: SliceRow, regression: float,
                    limit: float) -> str:
    direction = "higher" if not greater_is_better(table.metric) else "lower"
    return (f"slice {row.label} ({row.rows:,} rows): the candidate's {table.metric} could be "
            f"{fmt(regression)} {direction} (worse) than Production's ({fmt(row.candidate)} vs "
            f"{fmt(row.production)}; {table.confidence:.2%} interval of the difference "
            f"[{fmt(row.low)}, {fmt(row.high)}], Bonferroni over {table.family} slices), "
            f"more than max_regression {fmt(limit)}")


def judge_budgets(budgets: BudgetSection, serving: ServingCosts | None
                  ) -> tuple[BudgetCheck, ...]:
    """Every declared budget against the candidate's figure; unmeasured fails closed."""
    checks = []
    for name, limit in budgets.limits().items():
        value = serving.candidate.figure(name) if serving is not None else None
        theirs = (serving.production.figure(name)
                  if serving is not None and serving.production is not None else None)
        checks.append(BudgetCheck(name=name, limit=limit, value=value, production=theirs))
    return tuple(checks)


def decide(*, policy: PromotionPolicy, candidate: Evaluation, production: Evaluation | None,
           interval: Interval | None, former_production: bool,
           twin: TwinCheck | None = None, slices: SliceTable | None = None,
           serving: ServingCosts | None = None) -> Decision:
    """Pass only if every floor holds, the mode's test holds, no slice got worse beyond
    the card's margin and every serving budget holds.

    A candidate that already is Production (a pull request that leaves the model alone)
    changes nothing: only the floors are checked, and promote will be a no-op.
    improve: the pessimistic end of the interval of the improvement must be strictly
    greater than `min_improvement`, so identical models never pass; without the
    interval there is nothing to decide on, and the gate fails (closed).
    rollback: the candidate must have been Production before; no improvement test.
    With no Production yet, the floors alone decide. The twin (compiled from the
    candidate by the gate) never fails it: one that does not agree is never recorded,
    and the model serves through its own runtime; it is a line among the reasons.
    Slices are a comparison with Production, judged when the improvement test runs
    (mode improve, a Production that is another run); declared but not computed, the
    gate fails closed. Budgets are absolute, like floors: judged in every mode, and a
    declared budget without its measured figure fails.
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
    compared = (policy.mode == "improve" and production is not None and not same)
    judged = slices
    if policy.slices is not None and compared:
        if slices is None or slices.metric != policy.metric:
            failures.append(f"slices: declared on {', '.join(policy.slices.columns)} but not "
                            "compared with Production, so the gate cannot tell whether a "
                            "slice got worse; it fails closed")
        else:
            judged, slice_failures = judge_slices(policy.slices, slices)
            failures += slice_failures
            if not slice_failures:
                passes.append(_slices_hold(judged, policy.slices))
    budgets = judge_budgets(policy.budgets, serving) if policy.budgets is not None else ()
    failures += [check.describe() for check in budgets if not check.ok]
    passes += [check.describe() for check in budgets if check.ok]
    if twin is not None:
        passes.append(twin.describe())
    failures_first = tuple(failures) if failures else tuple(passes)
    return Decision(passed=not failures, reasons=failures_first, floors=floors,
                    improvement_bound=bound, slices=judged, budgets=budgets)


def _slices_hold(table: SliceTable, section: SliceSection) -> str:
    judged = sum(1 for row in table.rows if row.holds is not None)
    if not judged:
        return (f"slices: no slice of {', '.join(section.columns)} has {section.min_rows:,} "
                "rows or more, so none is judged")
    return (f"slices: on all {judged} slices of {', '.join(section.columns)} with at least "
            f"{section.min_rows:,} rows, the candidate's {table.metric} is not worse than "
            f"Production's by more than max_regression {fmt(section.max_regression)} "
            f"({table.confidence:.2%} intervals, Bonferroni over {table.family} slices)")


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
