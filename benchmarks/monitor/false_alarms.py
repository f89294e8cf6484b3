"""How often does the monitor alarm on traffic that did not shift? And on traffic that did?

Windows are drawn from the training reference itself (the card's validation rows, with
a model's predictions on them, as `mlops train` stores them): each trial takes WINDOW
rows at random and tests them, column by column, against the other reference rows,
with the card's tests, thresholds and correction (`pipeline.monitoring.drift`). Any
drifted column is a false alarm of the family; the share of trials with one is the
family-wise false-alarm rate, which the correction must hold at or below the largest
threshold (0.05 with the card's defaults). The same trials without a correction show
what the correction buys. Then the power on the shift the acceptance check uses
(`carat` x 1.8) and on a subtler one (x 1.05).

Run: make bench-monitor (TRIALS=1000 WINDOW=600 by default).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.gitops.card import MonitoringSection, load_card, prepare_data
from pipeline.monitoring.drift import column_drift
from pipeline.stages.reference import PREDICTION, reference_frame
from pipeline.stages.train import fit, make_estimator

REPO = Path(__file__).resolve().parents[2]
TRIALS = int(os.environ.get("TRIALS", "1000"))
WINDOW = int(os.environ.get("WINDOW", "600"))


def alarm_rate(reference: pd.DataFrame, kinds: dict[str, str], policy: MonitoringSection,
               model: object, *, trials: int, shift: float | None, seed: int
               ) -> tuple[float, dict[str, int]]:
    """Share of trials with any drifted column, and how often each column drifted."""
    rng = np.random.default_rng(seed)
    alarms, per_column = 0, dict.fromkeys(kinds, 0)
    features = [name for name in kinds if name != PREDICTION]
    for _ in range(trials):
        chosen = rng.choice(len(reference), size=WINDOW, replace=False)
        rest = np.setdiff1d(np.arange(len(reference)), chosen)
        window = reference.iloc[chosen].reset_index(drop=True)
        if shift is not None:
            window = window.copy()
            window["carat"] = window["carat"] * shift
            window[PREDICTION] = model.predict(window[features])  # type: ignore[attr-defined]
        drifts = column_drift(reference.iloc[rest], window, kinds, policy)
        alarms += any(d.drifted for d in drifts)
        for d in drifts:
            per_column[d.name] += d.drifted
    return alarms / trials, per_column


def interval(rate: float, trials: int) -> tuple[float, float]:
    """Wilson's 95% interval of a proportion."""
    z = 1.96
    centre = (rate + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) \
        / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def main() -> None:
    card = load_card(REPO / "model_card.yaml")
    data = prepare_data(card)
    model = fit(data, make_estimator(data.spec.task, "hist_gradient_boosting", {"max_iter": 60}))
    reference = reference_frame(model, data.x_validation, data.y_validation)
    kinds = {c.name: c.kind for c in data.spec.features} | {PREDICTION: "numeric"}
    policy = card.monitoring
    largest = max(policy.numeric.threshold, policy.categorical.threshold)
    print(f"reference: {len(reference):,} validation rows of {data.spec.name}; windows of "
          f"{WINDOW} rows; {len(kinds)} columns tested ({len(kinds) - 1} features + the "
          f"prediction); {TRIALS} trials each")
    print(f"tests: numeric {policy.numeric.test} at {policy.numeric.threshold}, categorical "
          f"{policy.categorical.test} at {policy.categorical.threshold}")
    results = []
    for correction in (policy.correction, "bonferroni", "none"):
        began = time.perf_counter()
        rate, columns = alarm_rate(
            reference, kinds, policy.model_copy(update={"correction": correction}), model,
            trials=TRIALS, shift=None, seed=1)
        low, high = interval(rate, TRIALS)
        worst = max(columns, key=lambda name: columns[name])
        print(f"unshifted, correction {correction:10s}: family-wise false-alarm rate "
              f"{rate:.3f} [{low:.3f}, {high:.3f}] (most often: {worst}, "
              f"{columns[worst] / TRIALS:.3f}); {time.perf_counter() - began:.1f} s")
        results.append((correction, rate, low, high))
    powers = []
    for shift in (1.8, 1.05):
        rate, columns = alarm_rate(reference, kinds, policy, model, trials=max(TRIALS // 5, 50),
                                   shift=shift, seed=2)
        print(f"carat x {shift}: alarm rate {rate:.3f}, carat drifted in "
              f"{columns['carat'] / max(TRIALS // 5, 50):.3f} of the windows")
        powers.append((shift, rate))
    for correction, rate, low, high in results:
        print(f"RESULT family_false_alarm_rate correction={correction} rate={rate:.3f} "
              f"ci95=[{low:.3f},{high:.3f}] nominal={largest if correction != 'none' else 'n/a'}"
              f" trials={TRIALS} window={WINDOW}")
    for shift, rate in powers:
        print(f"RESULT alarm_rate shift=carat*{shift} rate={rate:.3f} window={WINDOW}")


if __name__ == "__main__":
    main()
