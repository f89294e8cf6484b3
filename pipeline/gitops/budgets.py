"""What it costs to serve a model: one-row latency, size, load time, memory.

A template that promotes a model ten times slower or larger does it silently unless
someone measures. The gate measures the candidate and Production on the runtime each
would be served with (a compiled twin through onnxruntime when it has one, else its own
runtime), each in a child process of its own (`pipeline.gitops.budget_probe`), so the
load time and the memory are each model's and not whatever the gate process holds.
The machine is noisy: the children run in turns (candidate, Production, candidate, ...),
`repeats` times each, and every figure is the median over a model's runs; the report
prints each figure's ratio to Production's, measured in the same turns.

The budgets themselves (`promotion.budgets`) are judged by `gate.judge_budgets`, pure;
figures that cannot be measured are an error here (`ServingUnmeasured`), which the gate
turns into exit 2 when the card declares a budget: never a silent pass.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import MlopsError, first_line

FIGURES: dict[str, tuple[str, str]] = {
    "p50_ms": ("one-row latency, p50", "ms"),
    "p99_ms": ("one-row latency, p99", "ms"),
    "model_mb": ("model size on disk", "MB"),
    "load_s": ("load time, to the first answer", "s"),
    "memory_mb": ("resident memory of runtime and model", "MB"),
}
"""Every figure measured, with what it is and its unit (the card's budget keys)."""
MIN_CALLS, MAX_CALLS, SECONDS = 100, 2000, 1.0
"""Timed one-row calls per run: at least 100, then until a second has passed (at most
2,000), so a slow model still gets a p99 and a fast one many samples."""
TIMEOUT_S = 600.0
"""A run that takes longer (a huge graph swapping) counts as not measurable."""


class ServingUnmeasured(MlopsError):
    """A figure a budget needs could not be measured: the gate cannot run (exit 2)."""


@dataclass(frozen=True)
class ServingCost:
    """One model's figures on its serving runtime: medians over `runs` child processes."""

    runtime: str
    p50_ms: float
    p99_ms: float
    model_mb: float
    load_s: float
    memory_mb: float
    runs: int

    def figure(self, name: str) -> float:
        value: float = getattr(self, name)
        return value


@dataclass(frozen=True)
class Served:
    """A model as the server would run it: its verified folder and, when a twin serves,
    the ONNX file (Production's recorded twin, or the twin the gate compiled)."""

    what: str
    name: str
    folder: Path
    manifest: dict[str, str] | None
    twin: Path | None
    version: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class ServingCosts:
    """Both models' figures, measured in the same turns (Production's None: there is none)."""

    candidate: ServingCost
    production: ServingCost | None = None

    def ratio(self, name: str) -> float | None:
        """The candidate's figure over Production's (None without Production or at 0)."""
        if self.production is None or self.production.figure(name) <= 0:
            return None
        return self.candidate.figure(name) / self.production.figure(name)


def one_row(x: pd.DataFrame) -> pd.DataFrame:
    """The row both models are timed on: the first sealed test row with every value (one
    with gaps only when no row is complete), the same row for both."""
    complete = x.dropna()
    return (complete if len(complete) else x).iloc[:1]


def measure(models: list[Served], *, row: pd.DataFrame, repeats: int,
            timeout: float | None = None) -> list[ServingCost]:
    """Each model's figures, in the order given: `repeats` runs each, in turns, medians.

    Raises `ServingUnmeasured` (one line, naming the model) when a run fails or takes
    longer than `timeout` seconds (`TIMEOUT_S`).
    """
    timeout = TIMEOUT_S if timeout is None else timeout
    records = json.loads(row.to_json(orient="records"))
    runs: dict[str, list[dict[str, Any]]] = {model.what: [] for model in models}
    with tempfile.TemporaryDirectory(prefix="mlops-budget-") as tmp:
        for turn in range(repeats):
            for model in models:
                spec = Path(tmp) / f"{model.what}-{turn}.json"
                spec.write_text(json.dumps(_spec(model, records, list(row.columns))),
                                encoding="utf-8")
                runs[model.what].append(_run_child(model, spec, timeout=timeout))
    return [_median(runs[model.what]) for model in models]


def _spec(model: Served, records: list[dict[str, Any]], columns: list[str]) -> dict[str, Any]:
    return {"name": model.name, "version": model.version, "run_id": model.run_id,
            "folder": str(model.folder), "manifest": model.manifest,
            "twin": str(model.twin) if model.twin is not None else None,
            "row": records, "columns": columns, "min_calls": MIN_CALLS,
            "max_calls": MAX_CALLS, "seconds": SECONDS}


def _run_child(model: Served, spec: Path, *, timeout: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "pipeline.gitops.budget_probe", str(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=_child_environment(), check=False)
    except subprocess.TimeoutExpired:
        raise ServingUnmeasured(f"serving cost: the {model.what} model could not be measured: "
                                f"its run took more than {timeout:g} s") from None
    except OSError as err:
        raise ServingUnmeasured(f"serving cost: cannot start the measuring process "
                                f"({err.strerror})") from err
    if done.returncode != 0:
        reason = first_line(done.stderr, default=f"exit status {done.returncode}")
        raise ServingUnmeasured(f"serving cost: the {model.what} model could not be "
                                f"measured: {reason}")
    try:
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        return {name: float(figures[name]) for name in FIGURES} | {
            "runtime": str(figures["runtime"])}
    except (ValueError, KeyError, IndexError, TypeError):
        raise ServingUnmeasured(f"serving cost: the {model.what} model's measuring process "
                                "answered something unreadable") from None


def _child_environment() -> dict[str, str]:
    """The gate's environment, with the thread pools the server runs with (one thread)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _median(runs: list[dict[str, Any]]) -> ServingCost:
    return ServingCost(runtime=runs[0]["runtime"], runs=len(runs),
                       **{name: statistics.median(run[name] for run in runs)
                          for name in FIGURES})


def cost_from_json(value: dict[str, Any] | None) -> ServingCost | None:
    return None if value is None else ServingCost(**value)


def costs_from_json(value: dict[str, Any]) -> ServingCosts:
    candidate = cost_from_json(value["candidate"])
    if candidate is None:
        raise ValueError("serving: the candidate's figures are missing")
    return ServingCosts(candidate=candidate, production=cost_from_json(value.get("production")))
