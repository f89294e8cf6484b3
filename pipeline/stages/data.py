"""Data preparation: load, validate against the declared schema, cleanse, split.

Each step is a pure function of a frame and the dataset's `DatasetSpec`; `prepare`
wires them. The split is keyed on the rows themselves (a hash of their values), so
each row lands in the same set on every run and every machine, whatever the file order:
train (fitting), validation (what `mlops train` logs and tuning selects on) and test,
sealed: only the gate scores it, so selecting among many runs cannot flatter it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from pipeline.errors import DataError, DataProblems
from pipeline.stages.datasets import Column, DatasetSpec

log = logging.getLogger(__name__)

BUILTIN = "builtin"
_HASH_BUCKETS = 10_000


@dataclass
class CleansingReport:
    """How many rows each cleansing rule dropped or fixed, in the order applied."""

    rows_in: int = 0
    rows_out: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, rule: str, count: int) -> None:
        self.counts[rule] = self.counts.get(rule, 0) + int(count)
        if count:
            log.info("cleanse: %s affected %d rows", rule, count)


@dataclass(frozen=True)
class PreparedData:
    """The stage's output: the three sets plus what was done to get them.

    `test` is the sealed set: the gate's rows. Training and tuning read `train` and
    `validation` only; nothing logged on a run before the gate is computed on `test`.
    """

    spec: DatasetSpec
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    report: CleansingReport
    data_hash: str
    source: str = ""
    """Where the rows were read from (the card's `data.source`): what a run records."""

    @property
    def x_train(self) -> pd.DataFrame:
        return self.train[self.spec.feature_names]

    @property
    def y_train(self) -> pd.Series:
        return self.train[self.spec.target.name]

    @property
    def x_validation(self) -> pd.DataFrame:
        return self.validation[self.spec.feature_names]

    @property
    def y_validation(self) -> pd.Series:
        return self.validation[self.spec.target.name]

    @property
    def x_test(self) -> pd.DataFrame:
        return self.test[self.spec.feature_names]

    @property
    def y_test(self) -> pd.Series:
        return self.test[self.spec.target.name]


def load(source: str, spec: DatasetSpec) -> pd.DataFrame:
    """Read the raw data: the spec's built-in copy, a CSV/Parquet path, or an s3:// URI."""
    if source == BUILTIN:
        if spec.load_builtin is None:
            raise DataError(f"data.source: dataset {spec.name!r} ships no built-in data")
        return spec.load_builtin()
    return read_table(source)


def read_table(source: str) -> pd.DataFrame:
    """A CSV/Parquet path or s3:// URI as a frame; unreadable input is one line."""
    suffix = Path(source.split("?")[0]).suffix.lower()
    if not source.startswith("s3://") and not Path(source).is_file():
        raise DataError(f"data.source: no such file {source}")
    try:
        if suffix in {".parquet", ".pq"}:
            frame = pd.read_parquet(source)
        elif suffix in {".csv", ".txt", ".gz"}:
            frame = pd.read_csv(source)
        else:
            raise DataError(f"data.source: {source} is neither .csv nor .parquet")
    except pd.errors.EmptyDataError as err:
        raise DataError(f"data.source: {source} is empty") from err
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as err:
        raise DataError(f"data.source: cannot read {source}: {_first_line(err)}") from err
    return frame


def validate(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Check names and dtypes; return the declared columns with canonical dtypes.

    Numeric columns become float64 and categorical ones strings (missing stays
    missing), so the model signature is the same whatever the file format.
    """
    if frame.empty:
        raise DataError(f"dataset {spec.name!r}: the data has no rows")
    missing = [c.name for c in spec.columns if c.name not in frame.columns]
    if missing:
        raise DataError(f"dataset {spec.name!r}: missing column(s) {', '.join(missing)}")
    out = pd.DataFrame(index=frame.index)
    problems = []
    for column in spec.columns:  # every column is checked: the user fixes all at once
        try:
            out[column.name] = _canonical(frame[column.name], column)
        except DataError as err:
            problems.append(str(err))
            continue
        if out[column.name].isna().all():
            problems.append(f"column {column.name!r}: every value is missing")
    if problems:
        raise DataProblems(problems)
    return out.reset_index(drop=True)


def _canonical(values: pd.Series, column: Column) -> pd.Series:
    if column.kind == "numeric":
        if ptypes.is_bool_dtype(values) or not (
            ptypes.is_numeric_dtype(values) or _is_textual(values)
        ):
            raise DataError(f"column {column.name!r}: expected numbers, found {values.dtype}")
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        bad = numbers.isna() & values.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"column {column.name!r}: expected numbers, {int(bad.sum())} value(s) are text "
                f"(first at row {row + 1})"
            )
        return numbers
    if ptypes.is_numeric_dtype(values) and not (
        ptypes.is_bool_dtype(values) or ptypes.is_integer_dtype(values)
    ):  # whole-number codes (labels 0/1, grades 1-5) are categories; 1.5 is not
        raise DataError(f"column {column.name!r}: expected categories (text), found {values.dtype}")
    return as_categories(values)


TEXT_DTYPE = pd.StringDtype(na_value=np.nan)
"""pandas' text dtype (what a Parquet string column reads as): categories are held in it."""


def as_categories(values: pd.Series) -> pd.Series:
    """Categories as text, missing stays missing: `True` becomes "True", 3 becomes "3".

    What training does to a categorical column, so scoring does it too: a boolean or
    integer column read from a file must reach the model as the text it learned.
    """
    if values.dtype == TEXT_DTYPE:
        return values  # already that text: batch scoring reads most files this way
    # Vectorized (str() per value in C, not a Python lambda): batch scoring calls this on
    # every batch; `infer_objects` gives the dtype a per-value map would have inferred
    # (pandas' text dtype, where a missing value reads as NaN, not None).
    text = values.astype(str).astype("object")
    return text.where(values.notna(), None).infer_objects()


def _is_textual(values: pd.Series) -> bool:
    return bool(ptypes.is_object_dtype(values) or ptypes.is_string_dtype(values))


def cleanse(frame: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, CleansingReport]:
    """Drop duplicates and rows without a target; act on values outside the declared ranges.

    A value outside its column's range or categories is kept, blanked or its row dropped,
    as the column's `outside` says (unset: a feature's is blanked, so the model's imputer
    fills it and one bad cell does not cost a whole row; the target's row is dropped).
    Never silently: each is counted in the report and logged as a warning.
    """
    report = CleansingReport(rows_in=len(frame))
    duplicated = frame.duplicated()
    report.add("drop_duplicates", int(duplicated.sum()))
    frame = frame.loc[~duplicated].copy()

    target = spec.target.name
    missing_target = frame[target].isna()
    report.add("drop_missing_target", int(missing_target.sum()))
    frame = frame.loc[~missing_target]
    invalid_target = ~_valid(frame[target], spec.target)
    if spec.target.outside == "keep":
        _kept(report, spec.target, int(invalid_target.sum()))
    else:
        report.add("drop_invalid_target", int(invalid_target.sum()))
        _warn_outside(spec.target, int(invalid_target.sum()), "dropped their rows")
        frame = frame.loc[~invalid_target]
    frame = frame.copy()

    for column in spec.features:
        invalid = frame[column.name].notna() & ~_valid(frame[column.name], column)
        outside = column.outside or "blank"
        if outside == "keep":
            _kept(report, column, int(invalid.sum()))
        elif outside == "drop":
            report.add(f"drop_invalid_{column.name}", int(invalid.sum()))
            _warn_outside(column, int(invalid.sum()), "dropped their rows")
            frame = frame.loc[~invalid]
        else:
            report.add(f"blank_invalid_{column.name}", int(invalid.sum()))
            _warn_outside(column, int(invalid.sum()), "blanked them (the model imputes)")
            frame.loc[invalid, column.name] = np.nan if column.kind == "numeric" else None
        report.add(f"missing_{column.name}", int(frame[column.name].isna().sum()))
        if frame[column.name].isna().all():
            raise DataError(f"column {column.name!r}: no valid value left after cleansing")
    if frame.empty:
        raise DataError(f"dataset {spec.name!r}: no row left after cleansing")
    report.rows_out = len(frame)
    return frame.reset_index(drop=True), report


def _kept(report: CleansingReport, column: Column, count: int) -> None:
    """`outside: keep`: the values stay as they are, counted and warned about."""
    report.add(f"outside_range_{column.name}", count)
    _warn_outside(column, count, "kept them (outside: keep)")


def _warn_outside(column: Column, count: int, what: str) -> None:
    if count:
        log.warning("column %r: %d value(s) outside its declared %s; %s", column.name, count,
                    "categories" if column.kind == "categorical" else "range", what)


def _valid(values: pd.Series, column: Column) -> pd.Series:
    """True where a present value is inside the declared range or categories."""
    if column.kind == "categorical":
        if column.categories is None:
            return pd.Series(True, index=values.index)
        return values.isin(column.categories)
    ok = pd.Series(True, index=values.index)
    if column.min is not None:
        ok &= values > column.min if column.min_exclusive else values >= column.min
    if column.max is not None:
        ok &= values <= column.max
    return ok & np.isfinite(values)


def row_keys(frame: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's values, stable across runs and machines."""
    keys: np.ndarray = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype="uint64")
    return keys


def split(
    frame: pd.DataFrame, *, validation_fraction: float, test_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train, validation and test rows, by where each row's value hash falls.

    The first `test_fraction` of hash buckets is the test set, the next
    `validation_fraction` the validation set, the rest train: so changing the
    validation fraction never moves a row in or out of the sealed test set.
    """
    for key, fraction in (("validation_fraction", validation_fraction),
                          ("test_fraction", test_fraction)):
        if not 0.0 < fraction < 1.0:
            raise DataError(f"data.{key}: {fraction} is not between 0 and 1")
    if validation_fraction + test_fraction >= 1.0:
        raise DataError(f"data: validation_fraction {validation_fraction} + test_fraction "
                        f"{test_fraction} leave no training rows")
    buckets = row_keys(frame) % _HASH_BUCKETS
    test_edge = round(test_fraction * _HASH_BUCKETS)
    validation_edge = test_edge + round(validation_fraction * _HASH_BUCKETS)
    in_test = buckets < test_edge
    in_validation = ~in_test & (buckets < validation_edge)
    parts = (frame.loc[~in_test & ~in_validation], frame.loc[in_validation], frame.loc[in_test])
    if any(part.empty for part in parts):
        raise DataError(f"split: {len(parts[0])} training, {len(parts[1])} validation and "
                        f"{len(parts[2])} test rows; need all three")
    train, validation, test = (part.reset_index(drop=True) for part in parts)
    return train, validation, test


def rows_hash(frame: pd.DataFrame) -> str:
    """A short hash of which rows a set holds (order-free), to name a set in a run or verdict."""
    keys = np.sort(row_keys(frame))
    return hashlib.sha256(keys.tobytes()).hexdigest()[:16]


def data_hash(frame: pd.DataFrame) -> str:
    """A short content hash of the prepared data, logged with every run."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    digest.update(row_keys(frame).tobytes())
    return digest.hexdigest()[:16]


def prepare(
    spec: DatasetSpec, *, source: str = BUILTIN, validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> PreparedData:
    """The whole data stage: load → validate → cleanse → split."""
    raw = load(source, spec)
    clean, report = cleanse(validate(raw, spec), spec)
    train, validation, test = split(clean, validation_fraction=validation_fraction,
                                    test_fraction=test_fraction)
    log.info(
        "data: %d rows in, %d after cleansing, %d train / %d validation / %d test (sealed)",
        report.rows_in, report.rows_out, len(train), len(validation), len(test),
    )
    return PreparedData(spec=spec, train=train, validation=validation, test=test,
                        report=report, data_hash=data_hash(clean), source=source)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
