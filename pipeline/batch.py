"""Batch scoring through the serving API: read a batch, score it in chunks, write it once.

The scheduler (the Airflow inference DAG) only wires these functions. The pure parts
(records from a frame, chunk bounds, the output path of a logical date, retry
delays) are separate from the HTTP shell (`ScoringClient`), so each can be tested on
its own. Guarantees:

- the API must answer `GET /ready` with 200 before any row is sent, else one clear
  error naming the URL after the configured retries;
- each chunk is retried with exponential backoff on connection errors, timeouts, 429
  and 5xx; a 4xx answer is the batch's fault and fails at once with the server's reason;
- every input row gets exactly one score and the model version that produced it (a
  model swapped mid-batch shows up as two versions, never as a silent mix);
- the output of a logical date is written to a temporary file and renamed into place,
  so re-running the same date replaces it and a failed run leaves nothing half-written.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import requests

from pipeline.errors import DataError, MlopsError

OUTPUT_FILE = "scores.parquet"
SCORE_COLUMNS = ("prediction", "model_name", "model_version", "model_run_id")
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ServingError(MlopsError):
    """The serving API is unreachable, not ready, or answered something unusable."""


# --- the pure core ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently to call the API before giving up."""

    attempts: int = 4
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 10.0
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")

    def delays(self) -> list[float]:
        """The waits between attempts: backoff, 2x backoff, ... capped (attempts - 1 of them)."""
        return [min(self.backoff_seconds * 2**i, self.max_backoff_seconds)
                for i in range(self.attempts - 1)]


def chunk_bounds(rows: int, size: int) -> Iterator[tuple[int, int]]:
    """[start, stop) of consecutive chunks covering `rows` rows."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    for start in range(0, rows, size):
        yield start, min(start + size, rows)


def to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: numpy scalars become Python values, missing values become null."""
    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return [{str(k): _plain(v) for k, v in row.items()} for row in records]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        return value.isoformat()
    return value


def select_features(frame: pd.DataFrame, features: Sequence[str] | None) -> pd.DataFrame:
    """The columns the model takes, in its order; a missing one is the batch's fault."""
    if features is None:
        return frame
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise DataError(f"batch: missing feature column(s) {', '.join(missing)}")
    return frame[list(features)]


def date_key(logical_date: dt.datetime) -> str:
    """A file-system and S3 safe key of a logical date, in UTC: 20261127T000000Z."""
    if logical_date.tzinfo is None:
        raise ValueError("logical_date must be timezone-aware")
    return logical_date.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def output_location(output_dir: str, logical_date: dt.datetime) -> str:
    """Where the scores of one logical date live: one file per date, replaced on re-runs."""
    return f"{output_dir.rstrip('/')}/logical_date={date_key(logical_date)}/{OUTPUT_FILE}"


def parse_prediction_response(body: Any, *, rows: int) -> tuple[list[Any], dict[str, str]]:
    """Check `{"predictions": [...], "model": {...}}` and return its two parts."""
    if not isinstance(body, dict):
        raise ServingError("serving API: /predict answered something that is not a JSON object")
    predictions, model = body.get("predictions"), body.get("model")
    if not isinstance(predictions, list) or len(predictions) != rows:
        got = len(predictions) if isinstance(predictions, list) else "no"
        raise ServingError(f"serving API: /predict returned {got} predictions for {rows} rows")
    if not isinstance(model, dict) or model.get("version") in (None, ""):
        raise ServingError("serving API: /predict did not say which model version answered")
    return predictions, {
        "model_name": str(model.get("name", "")),
        "model_version": str(model["version"]),
        "model_run_id": str(model.get("run_id", "")),
    }


# --- the HTTP shell ----------------------------------------------------------------------


@dataclass
class ScoringClient:
    """Calls one serving API with timeouts and retries; `sleep` is injectable for tests."""

    base_url: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    session: requests.Session = field(default_factory=requests.Session)
    sleep: Callable[[float], None] = time.sleep

    def url(self, path: str) -> str:
        return f"{self.base_url.rstrip('/')}/{path.lstrip('/')}"

    def wait_ready(self) -> dict[str, Any]:
        """Return `/ready`'s answer once it is 200; else fail naming the URL and the last reason."""
        url = self.url("/ready")
        last = "no answer"
        for delay in [*self.retry.delays(), None]:
            try:
                response = self.session.get(url, timeout=self.retry.timeout_seconds)
            except requests.RequestException as err:
                last = _describe_exception(err)
            else:
                if response.status_code == 200:
                    body = _json_or_empty(response)
                    return body if isinstance(body, dict) else {}
                last = f"HTTP {response.status_code}{_detail(response)}"
            if delay is not None:
                self.sleep(delay)
        raise ServingError(f"serving API at {url} is not ready after {self.retry.attempts} "
                           f"attempt(s): {last}")

    def predict(self, records: list[dict[str, Any]]) -> tuple[list[Any], dict[str, str]]:
        """POST one chunk to /predict; retry what may pass on a second try, nothing else."""
        url = self.url("/predict")
        last = "no answer"
        for delay in [*self.retry.delays(), None]:
            try:
                response = self.session.post(url, json={"records": records},
                                             timeout=self.retry.timeout_seconds)
            except requests.RequestException as err:
                last = _describe_exception(err)
            else:
                if response.status_code == 200:
                    return parse_prediction_response(_json_or_empty(response), rows=len(records))
                last = f"HTTP {response.status_code}{_detail(response)}"
                if response.status_code not in _RETRY_STATUSES:
                    raise ServingError(f"serving API at {url} rejected the batch: {last}")
            if delay is not None:
                self.sleep(delay)
        raise ServingError(f"serving API at {url} failed after {self.retry.attempts} "
                           f"attempt(s): {last}")


def _describe_exception(err: requests.RequestException) -> str:
    if isinstance(err, requests.Timeout):
        return "timed out"
    if isinstance(err, requests.ConnectionError):
        return "connection refused or unreachable"
    return type(err).__name__


def _json_or_empty(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}


def _detail(response: requests.Response) -> str:
    """The server's own one-line reason, if it gave one (it never echoes the payload)."""
    body = _json_or_empty(response)
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        where = ".".join(str(p) for p in detail[0].get("loc", []))
        detail = f"{where}: {detail[0].get('msg')}" if where else detail[0].get("msg")
    if not detail and isinstance(body, dict):
        detail = body.get("message") or body.get("reason")
    text = re.sub(r"\s+", " ", str(detail)).strip()[:200] if detail else ""
    return f" ({text})" if text else ""


# --- reading, scoring, writing -------------------------------------------------------------


def read_batch(source: str) -> pd.DataFrame:
    """A CSV or Parquet file, local or `s3://` (S3 needs s3fs and credentials)."""
    if not source.strip():
        raise DataError("batch: no input given (a CSV/Parquet path or an s3:// URI)")
    suffix = Path(source.split("?")[0]).suffix.lower()
    if not source.startswith("s3://") and not Path(source).is_file():
        raise DataError(f"batch: no such file {source}")
    if suffix not in {".parquet", ".pq", ".csv", ".gz", ".txt"}:
        raise DataError(f"batch: {source} is neither .csv nor .parquet")
    try:
        # Through fsspec (s3fs for s3://), which any S3 protocol server accepts.
        with fsspec.open(source, "rb", compression="infer") as handle:
            if suffix in {".parquet", ".pq"}:
                frame = pd.read_parquet(handle)
            else:
                frame = pd.read_csv(handle)
    except pd.errors.EmptyDataError as err:
        raise DataError(f"batch: {source} is empty") from err
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(f"batch: cannot read {source}: {first}") from err
    if frame.empty:
        raise DataError(f"batch: {source} has no rows")
    return frame


def score_frame(frame: pd.DataFrame, *, client: ScoringClient,
                features: Sequence[str] | None = None, chunk_size: int = 500) -> pd.DataFrame:
    """The input rows plus one prediction each and the model that produced it."""
    inputs = select_features(frame, features)
    parts: list[pd.DataFrame] = []
    for start, stop in chunk_bounds(len(inputs), chunk_size):
        predictions, model = client.predict(to_records(inputs.iloc[start:stop]))
        part = pd.DataFrame({"prediction": predictions}, index=frame.index[start:stop])
        for key, value in model.items():
            part[key] = value
        parts.append(part)
    scores = pd.concat(parts)
    out = frame.copy()
    for column in SCORE_COLUMNS:
        out[column] = scores[column]
    return out.reset_index(drop=True)


def write_scores(frame: pd.DataFrame, location: str) -> None:
    """Write all-or-nothing: a temp file renamed into place (one PUT on S3, also atomic)."""
    if location.startswith("s3://"):
        with fsspec.open(location, "wb") as handle:
            frame.to_parquet(handle, index=False)
        return
    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class BatchResult:
    """What the scoring task hands on by XCom: small, JSON-ready."""

    output: str
    rows: int
    model_versions: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"output": self.output, "rows": self.rows, "model_versions": self.model_versions}


def score_batch(*, source: str, output_dir: str, logical_date: dt.datetime, serving_url: str,
                features: Sequence[str] | None = None, chunk_size: int = 500,
                retry: RetryPolicy | None = None) -> BatchResult:
    """The inference stage: ready check → read → score in chunks → one file for the date."""
    client = ScoringClient(base_url=serving_url, retry=retry or RetryPolicy())
    client.wait_ready()
    frame = read_batch(source)
    scored = score_frame(frame, client=client, features=features, chunk_size=chunk_size)
    location = output_location(output_dir, logical_date)
    write_scores(scored, location)
    versions = sorted(scored["model_version"].unique().tolist(), key=_version_order)
    return BatchResult(output=location, rows=len(scored), model_versions=versions)


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (10**9, version)
