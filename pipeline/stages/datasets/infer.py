"""A first schema from the data itself: each column's kind, range or categories, and why.

`mlops data init` calls `propose` and shows its guesses before writing them as a YAML
schema for a person to review. The rules are few and said out loud (the reason beside
each column), because a schema nobody can explain is one nobody reviews:

- numbers (or text that parses as numbers) -> numeric, with the observed range
  (pandera's schema inference supplies the bounds and whether values are missing);
- true/false, or text with at most `MAX_CATEGORIES` distinct values -> categorical;
- text with more distinct values -> categorical without a list (any value accepted),
  unless every row differs: an identifier, left out of the features;
- the task follows the target: text, true/false or a few whole numbers -> classification;
- every range and list is the one seen, so it is written `outside: keep`: a value outside
  it later is kept, counted and warned about (the range is there for monitoring), never
  silently blanked or its row dropped; tighten it by hand where a bound is a rule;
- a column it was unsure about (whole numbers that may be codes, numbers written as
  text, many distinct texts, mostly missing, one value only) gets a one-line note.

Problems with the data (an empty file, a target that does not exist or has one
class, a column with no value at all) are collected, not raised one by one, so the
user sees all of them: the first in the one-line error, every one with --json.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from pipeline.errors import DataProblems
from pipeline.stages.datasets import Column, DatasetSpec, Task

MAX_CATEGORIES = 50
MAX_CLASSES_OF_NUMBERS = 20  # a numeric target with at most this many whole values: labels
FEW_CODES = 10  # a numeric feature with at most this many whole values may be codes
MOSTLY_MISSING = 0.5


@dataclass(frozen=True)
class Guess:
    """One column as inferred, and the reason in words."""

    column: Column
    reason: str


@dataclass(frozen=True)
class Proposal:
    """The proposed schema, with a reason per column, a note per column it was unsure
    about, and the columns left out."""

    spec: DatasetSpec
    reasons: dict[str, str]
    left_out: dict[str, str]
    rows: int
    notes: dict[str, str] = field(default_factory=dict)


def propose(frame: pd.DataFrame, *, target: str, name: str, task: Task | None = None
            ) -> Proposal:
    """The schema `frame` suggests, or DataProblems naming everything that stops it."""
    if frame.empty or len(frame.columns) == 0:
        raise DataProblems(["the data has no rows"])
    if target not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:12])) + (", ..." if frame.shape[1] > 12 else "")
        raise DataProblems([f"--target: no column {target!r} in the data (columns: {shown})"])
    problems = [f"column {c!r}: every value is missing" for c in frame.columns
                if frame[c].isna().all()]
    stats = _observed_bounds(frame)
    values = frame[target].dropna()
    chosen_task = task or _task_of(values)
    target_guess, target_problem = _target(values, target, chosen_task, stats)
    if target_problem and not frame[target].isna().all():
        problems.append(target_problem)
    guesses: dict[str, Guess] = {}
    left_out: dict[str, str] = {}
    for column in frame.columns:
        if column == target or frame[column].isna().all():
            continue
        guess = _feature(frame[column], str(column), stats)
        if guess is None:
            left_out[str(column)] = (f"a different value on each of {len(frame)} rows: an "
                                     "identifier, left out of the features")
        else:
            guesses[str(column)] = guess
    if not guesses and not problems:
        problems.append("no feature column left besides the target")
    if problems or target_guess is None:
        raise DataProblems(problems)
    spec = DatasetSpec(name=name, task=chosen_task, target=target_guess.column,
                       features=tuple(g.column for g in guesses.values()))
    reasons = {target: target_guess.reason} | {k: g.reason for k, g in guesses.items()}
    notes = {str(c): note for c in frame.columns if str(c) in reasons
             and (note := unsure(frame[c], is_target=c == target, task=chosen_task))}
    return Proposal(spec=spec, reasons=reasons, left_out=left_out, rows=len(frame),
                    notes=notes)


def unsure(values: pd.Series, *, is_target: bool, task: Task) -> str | None:
    """One line about a column whose guess a person should check, or None."""
    present = values.dropna()
    missing = 1 - len(present) / max(len(values), 1)
    if present.nunique() == 1:
        return f"one value only ({present.iloc[0]!r}): it cannot help a model; drop it?"
    if _is_text(values) and _parses_as_numbers(values):
        return "numbers written as text: check the file's format (a unit, a comma?)"
    numeric = ptypes.is_numeric_dtype(values) and not ptypes.is_bool_dtype(values)
    if numeric and is_target and task == "classification":
        return (f"{present.nunique()} whole numbers taken as classes: for a quantity, "
                "use --task regression")
    if numeric and not is_target and present.nunique() <= FEW_CODES \
            and bool(np.all(np.mod(present.astype(float), 1) == 0)):
        shown = ", ".join(_fmt(v) for v in sorted(present.unique())[:FEW_CODES])
        return (f"{present.nunique()} distinct whole numbers ({shown}): if they are codes, "
                "not amounts, make it categorical")
    if _is_text(values) and MAX_CATEGORIES < present.nunique() < len(values):
        return (f"{present.nunique()} distinct texts: free text or an identifier? kept as "
                "a category, any value")
    if missing > MOSTLY_MISSING:
        return f"{missing:.0%} missing: the model imputes them; is it worth keeping?"
    return None


def dataset_name(source: str) -> str:
    """`data/My Loans.csv` -> `my_loans`: a name for the schema from the file's."""
    stem = re.split(r"[\\/]", source.rstrip("/"))[-1].split(".")[0]
    name = re.sub(r"[^a-z0-9_]+", "_", stem.lower()).strip("_")
    return name if re.match(r"^[a-z_]", name or "0") else f"data_{name}"


def _observed_bounds(frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """min and max of each numeric column, as pandera's schema inference reports them."""
    with warnings.catch_warnings():  # pandera's import warns about optional backends
        warnings.simplefilter("ignore")
        import pandera.pandas as pa

        inferred = pa.infer_schema(frame.loc[:, [not ptypes.is_bool_dtype(frame[c])
                                                 for c in frame.columns]])
    assert isinstance(inferred, pa.DataFrameSchema)
    bounds: dict[str, tuple[float, float]] = {}
    for name, column in inferred.columns.items():
        stats: dict[str, Any] = {}
        for check in column.checks:
            stats.update(check.statistics or {})
        if "min_value" in stats and "max_value" in stats:
            bounds[str(name)] = (float(stats["min_value"]), float(stats["max_value"]))
    return bounds


def _task_of(values: pd.Series) -> Task:
    if _is_text(values) and not _parses_as_numbers(values):
        return "classification"
    if ptypes.is_bool_dtype(values):
        return "classification"
    numbers = pd.to_numeric(values, errors="coerce")
    whole = bool(np.all(np.mod(numbers.dropna(), 1) == 0))
    return "classification" if whole and numbers.nunique() <= MAX_CLASSES_OF_NUMBERS \
        else "regression"


def _target(values: pd.Series, name: str, task: Task, stats: dict[str, tuple[float, float]]
            ) -> tuple[Guess | None, str | None]:
    if values.empty:
        return None, None  # reported as a column with every value missing
    if task == "classification":
        labels = sorted(_labels(values).unique())
        if len(labels) < 2:
            return None, (f"--target {name!r}: one class only ({labels[0]!r}); a classifier "
                          "needs at least two")
        if len(labels) > MAX_CATEGORIES:
            return None, (f"--target {name!r}: {len(labels)} distinct labels; for a number "
                          "to predict use --task regression")
        column = Column(name=name, kind="categorical", categories=tuple(labels),
                        outside="keep")
        return Guess(column, f"target: {len(labels)} classes -> classification"), None
    if _is_text(values) and not _parses_as_numbers(values):
        return None, f"--target {name!r}: text, but --task regression needs numbers"
    low, high = stats.get(name) or _bounds(values)
    column = Column(name=name, kind="numeric", min=low, max=high, outside="keep")
    return Guess(column, f"target: numbers from {_fmt(low)} to {_fmt(high)} -> regression, "
                         "range as seen"), None


def _feature(values: pd.Series, name: str, stats: dict[str, tuple[float, float]]
             ) -> Guess | None:
    present = values.dropna()
    if ptypes.is_bool_dtype(values) or (_is_text(values) and not _parses_as_numbers(values)):
        labels = sorted(_labels(present).unique())
        kind = "true/false" if ptypes.is_bool_dtype(values) else "text"
        if len(labels) <= MAX_CATEGORIES:
            return Guess(Column(name=name, kind="categorical", categories=tuple(labels),
                                outside="keep"),
                         f"{kind} with {len(labels)} distinct values -> categorical")
        if len(labels) == len(values):
            return None
        return Guess(Column(name=name, kind="categorical"),
                     f"text with {len(labels)} distinct values -> categorical, any value "
                     "(too many to list)")
    low, high = stats.get(name) or _bounds(present)
    what = "text that parses as numbers" if _is_text(values) else "numbers"
    gaps = f", {int(values.isna().sum())} missing" if values.isna().any() else ""
    return Guess(Column(name=name, kind="numeric", min=low, max=high, outside="keep"),
                 f"{what} from {_fmt(low)} to {_fmt(high)}{gaps} -> numeric, range as seen")


def _labels(values: pd.Series) -> pd.Series:
    """Labels as the pipeline stores them: text; whole numbers without a trailing .0."""
    if ptypes.is_numeric_dtype(values) and not ptypes.is_bool_dtype(values):
        numbers = values.astype(float)
        if bool(np.all(np.mod(numbers, 1) == 0)):
            return numbers.astype("int64").astype(str)
    return values.astype(str)


def _bounds(values: pd.Series) -> tuple[float, float]:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    return float(numbers.min()), float(numbers.max())


def _is_text(values: pd.Series) -> bool:
    return bool(ptypes.is_object_dtype(values) or ptypes.is_string_dtype(values))


def _parses_as_numbers(values: pd.Series) -> bool:
    present = values.dropna()
    return bool(len(present)) and bool(pd.to_numeric(present, errors="coerce").notna().all())


def _fmt(value: float) -> str:
    return f"{value:.6g}"
