"""The prediction log: every scored row as Parquet, written off the request path.

What is logged is one record per scored row (`SCHEMA`, version `SCHEMA_VERSION`, the one
place the shape is written down): when, which request and row, which model (name,
version, run, runtime), the inputs as the model took them and what it answered. The
monitor (`mlops monitor`) reads these files back and compares them with what the model
was validated on; batch scoring writes the same record through the same class.

The request path only enqueues (`PredictionLog.record`: a tuple appended under a lock);
one writer thread turns what waits into Arrow tables, one row group per flush, and
appends them to the current file. A file is finished (and only then visible under its
final name: a local file is renamed into place, an S3 object appears when its upload
completes) when it reaches `rotate_bytes` or `rotate_seconds`, or on `close()`, which
writes everything still queued: nothing is lost on a clean shutdown. A crash loses what
was not yet flushed (at most `flush_seconds` of traffic and the open file's footer).

The queue is bounded in rows. When it is full the server's rows are dropped and
counted (`prediction_log_rows_dropped{reason="queue_full"}`), never waited for; batch
scoring passes `block=True` and waits instead, since it has no latency to protect.

Files go under `<destination>/date=YYYY-MM-DD/` (UTC, the date of a file's first row),
`destination` a local folder or an `s3://bucket/prefix` (pyarrow's S3 client: the
standard AWS credential chain, and `AWS_ENDPOINT_URL` for an S3 protocol server).
Readers skip names that start with `.` or `_` (files still being written).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from serving.schema import ID_FIELD
from serving.settings import ServingSettings

log = logging.getLogger("serving.prediction_log")

SCHEMA_VERSION = "1"
SCHEMA_KEY = b"mlops.prediction_log.schema_version"
"""Key of the Parquet file metadata that says which version of `SCHEMA` a file holds."""

SCHEMA = pa.schema(
    [
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("row", pa.int32(), nullable=False),
        pa.field("id", pa.string()),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string()),
        pa.field("model_run_id", pa.string()),
        pa.field("runtime", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("inputs", pa.string(), nullable=False),
        pa.field("prediction", pa.string(), nullable=False),
        pa.field("probabilities", pa.string()),
    ],
    metadata={SCHEMA_KEY: SCHEMA_VERSION.encode()},
)
"""One record per scored row (version 1):

- `time`: when the row was handed to the log (UTC, microseconds);
- `request_id`: the request's `X-Request-ID` (a batch's own ID for batch scoring);
- `row`: the row's index in its request (or batch part);
- `id`: the caller's ID of the row, when one was passed through (the card's
  `monitoring.id_column`), else null: labels are joined on it, or on (request_id, row);
- `model_name`, `model_version`, `model_run_id`, `runtime` (`onnx` or `sklearn`): the
  model that answered;
- `source`: `serving`, or the batch engine (`score:local`, `score:spark`);
- `inputs`: the row's features as the model took them, one JSON object;
- `prediction`: the model's answer for the row, one JSON value;
- `probabilities`: a classifier's class probabilities (JSON object, label to
  probability) when they were computed, else null.
"""


DICTIONARY_COLUMNS = ["request_id", "model_name", "model_version", "model_run_id", "runtime",
                      "source"]


def schema_problem(schema: pa.Schema) -> str | None:
    """Why a file's schema is not this version's prediction log, or None when it is."""
    version = (schema.metadata or {}).get(SCHEMA_KEY)
    if version is None:
        return "not a prediction log (no schema version in its metadata)"
    if version.decode() != SCHEMA_VERSION:
        return (f"prediction log schema version {version.decode()}, this reader knows "
                f"version {SCHEMA_VERSION}")
    if not schema.remove_metadata().equals(SCHEMA.remove_metadata()):
        return "columns differ from the prediction log schema version " + SCHEMA_VERSION
    return None


def partition(moment: dt.datetime) -> str:
    """The folder of a file whose first row was logged at `moment`: `date=YYYY-MM-DD`."""
    return f"date={moment.astimezone(dt.UTC):%Y-%m-%d}"


@dataclass(frozen=True)
class ModelInfo:
    """The model that answered: what each record names."""

    name: str
    version: str | None
    run_id: str | None
    runtime: str
    classes: tuple[Any, ...] | None = None
    """A classifier's labels in the order of its probability columns."""


@dataclass(slots=True)
class _Entry:
    at: float
    request_id: str
    model: ModelInfo
    inputs: Any
    outputs: Any
    probabilities: Any
    ids: Sequence[Any] | None
    rows: int
    keep: np.ndarray | None  # the sampled rows, or None for all


class PredictionLog:
    """A bounded queue of scored rows and the thread that writes them as Parquet.

    Use as a context manager, or `start()` then `close()`. `record()` is the one call
    on the request path.
    """

    def __init__(self, destination: str, *, source: str = "serving", sample_rate: float = 1.0,
                 max_queue_rows: int = 100_000, flush_rows: int = 10_000,
                 flush_seconds: float = 5.0, rotate_bytes: int = 64 * 1024 * 1024,
                 rotate_seconds: float = 3600.0, idle_seconds: float = 10.0,
                 block: bool = False) -> None:
        if not destination:
            raise ValueError("the prediction log needs a folder or an s3:// prefix")
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError("sample_rate must be in (0, 1]")
        if not 0 < rotate_seconds <= 86_400:
            raise ValueError("rotate_seconds must be in (0, 86400]: readers list a file "
                             "under the date of its first row")
        self.destination = destination.rstrip("/")
        self.source = source
        self.sample_rate = sample_rate
        self.max_queue_rows = max_queue_rows
        self.flush_rows = max(1, min(flush_rows, max_queue_rows))
        self.flush_seconds = flush_seconds
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.idle_seconds = idle_seconds
        self.block = block
        self.rows_written = 0
        self.rows_dropped: dict[str, int] = {"queue_full": 0, "write_error": 0, "closed": 0}
        self.files_written = 0
        self.write_errors = 0
        self._fs, self._root = _filesystem(self.destination)
        self._local = isinstance(self._fs, pafs.LocalFileSystem)
        self._queue: deque[_Entry] = deque()
        self._queued_rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._flushed = threading.Condition(self._lock)
        self._flush_asked = 0
        self._flush_done = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        self._file: _OpenFile | None = None
        self._random = np.random.default_rng()  # its bit generator locks: thread-safe
        self._prefix = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._sequence = 0

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> PredictionLog | None:
        """The server's log as its settings say (`PREDICTION_LOG*`), None when off."""
        if not settings.prediction_log.strip():
            return None
        return cls(settings.prediction_log.strip(), source="serving",
                   sample_rate=settings.prediction_log_sample_rate,
                   max_queue_rows=settings.prediction_log_queue_rows,
                   rotate_seconds=settings.prediction_log_rotate_seconds,
                   rotate_bytes=settings.prediction_log_rotate_bytes,
                   idle_seconds=settings.prediction_log_idle_seconds)

    # --- the request path ------------------------------------------------------------------

    def record(self, model: ModelInfo, request_id: str, inputs: Any, outputs: Sequence[Any],
               probabilities: Any = None, *, ids: Sequence[Any] | None = None) -> bool:
        """Queue one request's rows; False when they were dropped (queue full, closed).

        `inputs`: the rows as the model took them: a pandas frame, a mapping of column
        arrays (or an object with `.arrays`, as `serving.schema.ColumnBatch`), or a
        sequence of row mappings. `outputs`: one prediction per row. `probabilities`: one
        row of class probabilities per row, columns in `model.classes` order. Nothing is
        copied or converted here: do not change these objects afterwards.
        """
        rows = len(outputs)
        keep = None
        if self.sample_rate < 1.0:
            keep = np.flatnonzero(self._random.random(rows) < self.sample_rate)
            if len(keep) == 0:
                return True
        counted = rows if keep is None else len(keep)
        entry = _Entry(time.time(), request_id, model, inputs, outputs, probabilities, ids,
                       rows, keep)
        with self._lock:
            if self._closing:
                self.rows_dropped["closed"] += counted
                return False
            if self._queued_rows + counted > self.max_queue_rows and self._queue:
                if not self.block:
                    self.rows_dropped["queue_full"] += counted
                    return False
                while self._queued_rows + counted > self.max_queue_rows and self._queue \
                        and not self._closing:
                    self._room.wait()
            self._queue.append(entry)
            self._queued_rows += counted
            if self._queued_rows >= self.flush_rows:
                self._wake.notify()
        return True

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> PredictionLog:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log",
                                            daemon=True)
            self._thread.start()
        return self

    def flush(self, timeout: float = 60.0) -> None:
        """Write everything queued so far into a row group (the file stays open)."""
        with self._lock:
            self._flush_asked += 1
            wanted = self._flush_asked
            self._wake.notify()
            self._flushed.wait_for(lambda: self._flush_done >= wanted or self._thread is None,
                                   timeout=timeout)

    def close(self, timeout: float = 60.0) -> None:
        """Write what is queued, finish the open file, stop the thread."""
        with self._lock:
            self._closing = True
            self._wake.notify()
            self._room.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():
                log.error("the prediction log did not finish writing within %.0f s", timeout)
            self._thread = None

    def __enter__(self) -> PredictionLog:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    # --- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                self._wake.wait_for(
                    lambda: self._closing or self._queued_rows >= self.flush_rows
                    or self._flush_asked > self._flush_done, timeout=self._wait_seconds())
                entries = list(self._queue)
                self._queue.clear()
                self._queued_rows = 0
                asked, closing = self._flush_asked, self._closing
                self._room.notify_all()
            if entries:
                self._write(entries)
            self._rotate_if_due(closing=closing)
            with self._lock:
                self._flush_done = asked
                self._flushed.notify_all()
                if closing and not self._queue:
                    return

    def _wait_seconds(self) -> float:
        wait = self.flush_seconds
        if self._file is not None:
            wait = min(wait, max(0.0, self._file.opened + self.rotate_seconds - time.time()))
            if self.idle_seconds > 0:
                wait = min(wait, max(0.0, self._file.written + self.idle_seconds - time.time()))
        return max(wait, 0.01)

    def _write(self, entries: list[_Entry]) -> None:
        rows = sum(e.rows if e.keep is None else len(e.keep) for e in entries)
        try:
            table = records_table(entries, source=self.source)
            if self._file is None:
                self._file = self._open(entries[0].at)
            self._file.writer.write_table(table)
            self._file.written = time.time()
            self.rows_written += table.num_rows
        except Exception:
            log.exception("the prediction log could not write %d rows", rows)
            self.write_errors += 1
            self.rows_dropped["write_error"] += rows
            self._abandon()

    def _open(self, first: float) -> _OpenFile:
        moment = dt.datetime.fromtimestamp(first, dt.UTC)
        self._sequence += 1
        name = f"{moment:%Y%m%dT%H%M%S}-{self._prefix}-{self._sequence:05d}.parquet"
        folder = f"{self._root}/{partition(moment)}"
        final = f"{folder}/{name}"
        # A local file is written under a hidden name and renamed when finished; an S3
        # object only appears once its upload completes.
        path = f"{folder}/.{name}.tmp" if self._local else final
        if self._local:
            self._fs.create_dir(folder, recursive=True)
        stream = self._fs.open_output_stream(path)
        # Dictionaries only where values repeat; the JSON columns are mostly distinct.
        writer = pq.ParquetWriter(stream, SCHEMA, compression="zstd", compression_level=1,
                                  use_dictionary=DICTIONARY_COLUMNS)
        now = time.time()
        return _OpenFile(path=path, final=final, stream=stream, writer=writer,
                         opened=now, written=now)

    def _rotate_if_due(self, *, closing: bool) -> None:
        file = self._file
        if file is None:
            return
        now = time.time()
        # Idle: a burst of traffic is readable soon after it ends, not an hour later.
        idle = self.idle_seconds > 0 and now - file.written >= self.idle_seconds
        due = closing or idle or now - file.opened >= self.rotate_seconds \
            or file.stream.tell() >= self.rotate_bytes
        if not due:
            return
        self._file = None
        try:
            file.writer.close()
            file.stream.close()
            if file.path != file.final:
                self._fs.move(file.path, file.final)
            self.files_written += 1
        except Exception:
            log.exception("the prediction log could not finish %s", file.final)
            self.write_errors += 1

    def _abandon(self) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        try:
            file.writer.close()
            file.stream.close()
            if file.path != file.final:
                self._fs.delete_file(file.path)
        except Exception:  # noqa: S110 - already counted; the file is given up either way
            pass


@dataclass
class _OpenFile:
    path: str
    final: str
    stream: Any
    writer: pq.ParquetWriter
    opened: float
    written: float  # when rows were last written into it


def _filesystem(destination: str) -> tuple[pafs.FileSystem, str]:
    if destination.startswith("s3://"):
        filesystem, path = pafs.FileSystem.from_uri(destination)
        return filesystem, path.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(destination)


# --- entries to records ----------------------------------------------------------------------


def records_table(entries: Sequence[_Entry], *, source: str) -> pa.Table:
    """The records of queued entries, one Arrow table of `SCHEMA`.

    Column by column: constants are repeated lists, a batch's inputs one Arrow array
    encoded column-wise (`json_objects`), so a batch of 50,000 rows costs a few C-level
    operations, and a request of one row a few list appends.
    """
    chunks: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    for entry in entries:
        keep = entry.keep
        n = entry.rows if keep is None else len(keep)
        model = entry.model
        constant = {"time": dt.datetime.fromtimestamp(entry.at, dt.UTC),
                    "request_id": entry.request_id, "model_name": model.name,
                    "model_version": model.version, "model_run_id": model.run_id,
                    "runtime": model.runtime, "source": source}
        for name, value in constant.items():
            _extend(chunks[name], [value] * n)
        _extend(chunks["row"], list(range(entry.rows)) if keep is None else keep.tolist())
        ids = None if entry.ids is None else [None if v is None else str(v)
                                              for v in _values(entry.ids)]
        probabilities = _probability_rows(entry.probabilities, model.classes)
        for name, values in (("id", ids), ("inputs", input_rows(entry.inputs, entry.rows)),
                             ("prediction", json_values(entry.outputs)),
                             ("probabilities", probabilities)):
            if values is None:
                _extend(chunks[name], [None] * n)
            elif keep is None:
                _extend(chunks[name], values)
            elif isinstance(values, list):
                _extend(chunks[name], [values[i] for i in keep])
            else:
                _extend(chunks[name], values.take(pa.array(keep)))
    arrays = [pa.chunked_array([c if isinstance(c, pa.Array) else pa.array(c, type=f.type)
                                for c in chunks[f.name]], type=f.type) for f in SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _extend(chunks: list[Any], values: list[Any] | pa.Array) -> None:
    """Append to a column's chunks: Python lists run together, Arrow arrays stay whole."""
    if isinstance(values, pa.Array):
        chunks.append(values)
    elif chunks and isinstance(chunks[-1], list):
        chunks[-1].extend(values)
    else:
        chunks.append(list(values))


def input_rows(inputs: Any, rows: int) -> list[str] | pa.Array:
    """Each row's features as one JSON object (text), whatever shape `inputs` came in:
    columns (a frame, a mapping of arrays) are encoded column by column in Arrow; row
    mappings (a request's records) one by one with orjson."""
    if type(inputs).__name__ == "DataFrame":
        return json_objects(pa.Table.from_pandas(inputs, preserve_index=False))
    arrays = getattr(inputs, "arrays", inputs)
    if isinstance(arrays, Mapping):
        return json_objects(pa.table({str(name): pa.array(values, from_pandas=True)
                                      for name, values in arrays.items()}))
    return [_json(_row_mapping(row)) for row in inputs]


def json_objects(table: pa.Table) -> pa.Array:
    """`{"column": value, ...}` per row, joined from each column's JSON text in Arrow."""
    parts: list[Any] = []
    for index, name in enumerate(table.column_names):
        parts.append(("{" if index == 0 else ",") + _json(name) + ":")
        parts.append(_json_column(table.column(name)))
    parts.append("}" if parts else "{}")
    if len(parts) == 1:
        return pa.array(["{}"] * table.num_rows, pa.string())
    joined = pc.binary_join_element_wise(*parts, "")
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


def _json_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column's values as JSON text: numbers and booleans cast (NaN and infinities are
    null, as JSON has neither), everything else encoded once per distinct value."""
    kind = column.type
    if pa.types.is_floating(kind):
        finite = pc.is_finite(column)
        text = pc.if_else(finite, pc.cast(column, pa.string()), pa.scalar(None, pa.string()))
        return pc.fill_null(text, "null")
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return pc.fill_null(pc.cast(column, pa.string()), "null")
    if pa.types.is_null(kind):
        return pc.fill_null(pc.cast(column, pa.string()), "null")
    encoded = pc.dictionary_encode(column).combine_chunks()
    distinct = [_json(_plain(value)) for value in encoded.dictionary.to_pylist()]
    text = pc.take(pa.array(distinct, pa.string()), encoded.indices)
    return pa.chunked_array([pc.fill_null(text, "null")])


def _plain(value: Any) -> Any:
    """A value orjson can write: dates and times as ISO text."""
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if isoformat is not None else value


def json_values(values: Any) -> list[str]:
    """One JSON value per element; a numeric array in one orjson call."""
    array = np.asarray(values)
    if array.ndim == 1 and array.dtype.kind in "iuf" and len(array) > 0:
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            array = np.where(np.isfinite(array), array, np.nan)
            return [_json(None if np.isnan(v) else v) for v in array.tolist()]
        text = orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        return text[1:-1].split(",")
    return [_json(value) for value in _values(values)]


def _row_mapping(row: Any) -> Any:
    if isinstance(row, Mapping):
        return row
    dump = getattr(row, "model_dump", None)  # a pydantic row: by its aliases (column names)
    # A row's own ID is recorded in `id`, not among the model's inputs.
    return dump(by_alias=True, exclude={ID_FIELD}) if dump is not None else row


def _values(values: Any) -> list[Any]:
    tolist = getattr(values, "tolist", None)
    return list(tolist() if tolist is not None else values)


def _probability_rows(probabilities: Any, classes: tuple[Any, ...] | None) -> list[str] | None:
    if probabilities is None:
        return None
    table = _values(probabilities)
    labels = [str(label) for label in classes] if classes is not None else None
    out = []
    for row in table:
        names = labels or [str(i) for i in range(len(row))]
        out.append(_json(dict(zip(names, row, strict=True))))
    return out


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
                        ).decode()


# --- metrics ---------------------------------------------------------------------------------


class PredictionLogCollector(Collector):
    """The log's counters, read when `/metrics` is scraped (register it in the app's
    registry: `registry.register(PredictionLogCollector(log))`)."""

    def __init__(self, prediction_log: PredictionLog) -> None:
        self.log = prediction_log

    def collect(self) -> Iterator[Metric]:
        written = CounterMetricFamily("prediction_log_rows_written",
                                      "Scored rows written to the prediction log",
                                      value=self.log.rows_written)
        yield written
        dropped = CounterMetricFamily("prediction_log_rows_dropped",
                                      "Scored rows not logged, by reason (queue_full: the "
                                      "writer fell behind; write_error; closed)",
                                      labels=["reason"])
        for reason, count in sorted(self.log.rows_dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped
        yield GaugeMetricFamily("prediction_log_queue_rows", "Rows waiting to be written",
                                value=self.log.queued_rows)
        yield GaugeMetricFamily("prediction_log_queue_limit",
                                "Rows that may wait (PREDICTION_LOG_QUEUE_ROWS)",
                                value=self.log.max_queue_rows)
        yield CounterMetricFamily("prediction_log_files", "Prediction log files finished",
                                  value=self.log.files_written)
        yield CounterMetricFamily("prediction_log_write_errors",
                                  "Failed writes of the prediction log (their rows dropped)",
                                  value=self.log.write_errors)

    def describe(self) -> list[Metric]:
        return []
