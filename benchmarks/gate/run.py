"""Time the gate's compute on the demo data: evaluating both models and the bootstrap.

No MLflow server is needed: two models (ridge as Production, histogram gradient
boosting as candidate) are fitted in-process on the card's dataset, then the same
steps `mlops gate` runs after loading them are timed: scoring the sealed test rows and
the paired bootstrap of every metric with the card's resamples. Median of REPEATS.
Registry round trips (model download, tags, artifacts) are not included: they depend
on the server and the network, not on the gate. The slice comparison is timed on `cut`
and `color` (12 slices, Bonferroni-corrected intervals) with the card's resamples.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.gitops.card import SliceSection, load_card, prepare_data
from pipeline.gitops.slices import compare as compare_slices
from pipeline.gitops.slices import split
from pipeline.gitops.stats import paired_bootstrap
from pipeline.stages.datasets import load_spec
from pipeline.stages.evaluate import evaluate
from pipeline.stages.metrics import METRICS
from pipeline.stages.train import fit, make_estimator

REPO = Path(__file__).resolve().parents[2]

REPEATS = 5
SLICE_COLUMNS = ("cut", "color")


def timed(fn: Callable[[], object]) -> float:
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    card = load_card(REPO / "model_card.yaml")
    policy = card.promotion
    spec = load_spec(card.data.dataset)
    start = time.perf_counter()
    data = prepare_data(card)
    prepare_s = time.perf_counter() - start
    production = fit(data, make_estimator(spec.task, "ridge", {}))
    candidate = fit(data, make_estimator(spec.task, "hist_gradient_boosting", {}))
    x, y = data.x_test, data.y_test
    truth = np.asarray(y)
    p_cand, p_prod = np.asarray(candidate.predict(x)), np.asarray(production.predict(x))

    def evaluation() -> None:
        for model in (candidate, production):
            model.predict(x)
            evaluate(model, x, y, task=spec.task)

    rows = [("prepare data (load, validate, cleanse, split; once)", prepare_s)]
    rows.append(("evaluate both models on the test rows", timed(evaluation)))
    total_bootstrap = 0.0
    resamplable = [m.name for m in METRICS.values() if m.task == spec.task and m.resamplable]
    for metric in resamplable:
        seconds = timed(lambda m=metric: paired_bootstrap(  # type: ignore[misc]
            m, truth, p_cand, p_prod, resamples=policy.bootstrap_resamples,
            confidence=policy.confidence, seed=policy.seed))
        total_bootstrap += seconds
        rows.append((f"paired bootstrap of {metric}", seconds))
    rows.append(("paired bootstrap, all metrics", total_bootstrap))
    section = SliceSection(columns=list(SLICE_COLUMNS), min_rows=100, max_regression=50.0)
    pieces = split(data.test, section)
    slice_s = timed(lambda: compare_slices(
        pieces, section=section, metric=policy.metric, truth=truth, candidate=p_cand,
        production=p_prod, confidence=policy.confidence,
        resamples=policy.bootstrap_resamples, seed=policy.seed))
    rows.append((f"slices: {len(pieces)} of {', '.join(SLICE_COLUMNS)}, corrected bootstrap",
                 slice_s))
    print(f"gate compute on {spec.name}: {len(data.test):,} test rows, "
          f"{policy.bootstrap_resamples:,} resamples, median of {REPEATS}")
    for label, seconds in rows:
        print(f"  {label:<55} {seconds * 1000:9.1f} ms")
    per_resample = total_bootstrap / policy.bootstrap_resamples / len(resamplable)
    print(f"  {'bootstrap cost per resample and metric':<55} {per_resample * 1e6:9.1f} us")
    evaluation_s = rows[1][1]
    print(f"  ratio bootstrap / evaluation: {total_bootstrap / evaluation_s:.2f}")
    print(f"  ratio slices / bootstrap of {policy.metric}: "
          f"{slice_s / dict(rows)[f'paired bootstrap of {policy.metric}']:.2f}")


if __name__ == "__main__":
    main()
