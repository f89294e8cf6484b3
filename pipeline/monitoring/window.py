"""A time window of the prediction log, as rows of features and predictions.

Only the `date=` folders that can hold the window are listed (a file lives under the
date of its first row and spans at most a day), plus any Parquet file lying at the
top of the log. Every file read must be the prediction log's schema: a stray file of
another schema stops the monitor with its name (exit 2) rather than being skipped.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.errors import DataError
from serving.prediction_log import partition, schema_problem


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.end <= self.start:
            raise DataError(f"--from {self.start.isoformat()} is not before --to "
                            f"{self.end.isoformat()}")

    def line(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M:%S} to {self.end:%Y-%m-%d %H:%M:%S} UTC"


@dataclass(frozen=True)
class LoggedRows:
    """The window's rows of one model version."""

    records: pd.DataFrame
    """request_id, row, id, time, model_version, runtime, source, prediction (parsed)."""
    features: pd.DataFrame
    """The inputs, one column per feature, same order as `records`."""


def parse_time(text: str, *, option: str) -> dt.datetime:
    """An ISO 8601 time; without a zone it is UTC."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as err:
        raise DataError(f"{option}: {text!r} is not an ISO 8601 time") from err
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def log_files(location: str, window: Window) -> tuple[pafs.FileSystem, list[str]]:
    """The log's finished Parquet files that can hold rows of `window`."""
    if location.startswith("s3://"):
        filesystem, root = pafs.FileSystem.from_uri(location.rstrip("/"))
    else:
        filesystem, root = pafs.LocalFileSystem(), os.path.abspath(location)
    root = root.rstrip("/")
    if not location.startswith("s3://"):
        if filesystem.get_file_info(root).type != pafs.FileType.Directory:
            raise DataError(f"{location}: no prediction log there (no such folder)")
    elif not filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        # On S3 a prefix is not an object: listing it is all a reader may (and need) do.
        raise DataError(f"{location}: no prediction log there (nothing under the prefix)")
    wanted = set()
    day = (window.start - dt.timedelta(days=1)).date()
    while day <= window.end.date():
        wanted.add(partition(dt.datetime.combine(day, dt.time(), dt.UTC)))
        day += dt.timedelta(days=1)
    files = []
    for info in filesystem.get_file_info(pafs.FileSelector(root)):
        if info.base_name.startswith((".", "_")):
            continue
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet"):
            files.append(info.path)
        elif info.type == pafs.FileType.Directory and info.base_name in wanted:
            files += [f.path for f in filesystem.get_file_info(pafs.FileSelector(info.path))
                      if f.type == pafs.FileType.File and f.base_name.endswith(".parquet")
                      and not f.base_name.startswith((".", "_"))]
    return filesystem, sorted(files)


def read_window(location: str, window: Window, *, model_name: str,
                version: str) -> LoggedRows:
    """The rows `model_name` `version` scored in `window`; a window without any is bad
    input (exit 2), with what the window did hold."""
    filesystem, files = log_files(location, window)
    tables = []
    for path in files:
        try:
            schema = pq.read_schema(path, filesystem=filesystem)
        except (OSError, pa.ArrowInvalid) as err:
            raise DataError(f"{path}: not a readable Parquet file ({err})") from err
        problem = schema_problem(schema)
        if problem is not None:
            raise DataError(f"{path}: {problem}; move it out of the prediction log")
        table = pq.read_table(path, filesystem=filesystem, filters=[
            ("time", ">=", pa.scalar(window.start, pa.timestamp("us", tz="UTC"))),
            ("time", "<", pa.scalar(window.end, pa.timestamp("us", tz="UTC")))])
        if table.num_rows:
            tables.append(table)
    if not tables:
        raise DataError(f"{location}: no logged rows from {window.line()} "
                        f"({len(files)} file(s) looked at)")
    table = pa.concat_tables(tables)
    mine = table.filter(pc.and_(pc.equal(table["model_name"], model_name),
                                pc.equal(table["model_version"], version)))
    if mine.num_rows == 0:
        found = sorted({f"{n} version {v}" for n, v in zip(
            table["model_name"].to_pylist(), table["model_version"].to_pylist(), strict=True)})
        raise DataError(f"{location}: {table.num_rows} logged row(s) from {window.line()}, "
                        f"none of {model_name} version {version} (found: {', '.join(found)})")
    records = mine.drop_columns(["inputs", "probabilities"]).to_pandas()
    records["prediction"] = [orjson.loads(v) for v in records["prediction"]]
    features = pd.DataFrame.from_records([orjson.loads(v) for v in
                                          mine["inputs"].to_pylist()])
    return LoggedRows(records=records, features=features)
