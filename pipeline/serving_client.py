"""The one client of the serving API: readiness, predictions with retries, the model.

People (`mlops predict`, `mlops serve-wait`), the demo and the batch stage (the Airflow
inference DAG) all use `ServingClient`. Guarantees:

- `wait_ready` returns only once `GET /ready` answers 200, else one clear error naming
  the URL after the configured retries;
- each `predict` is retried with exponential backoff on connection errors, timeouts, 429
  and 5xx; a 4xx answer is the caller's fault and fails at once with the server's reason
  (which never echoes the payload);
- every answer is checked: one prediction per row and the model version that made them.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from pipeline.errors import NegativeVerdict, ServingError

if TYPE_CHECKING:  # numpy and pandas load with the frames, not with every command
    import pandas as pd

DEFAULT_URL = "http://127.0.0.1:8000"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


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


def to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: numpy scalars become Python values, missing values become null."""
    import numpy as np
    import pandas as pd

    def plain(value: Any) -> Any:
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
            return value.isoformat()
        return value

    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return [{str(k): plain(v) for k, v in row.items()} for row in records]


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


def parse_probabilities(body: dict[str, Any], *, rows: int) -> dict[str, list[float]]:
    """Each class's probabilities (by label) from `/predict?probabilities=true`'s answer."""
    classes, matrix = body.get("classes"), body.get("probabilities")
    if not isinstance(classes, list) or not isinstance(matrix, list) or len(matrix) != rows \
            or not all(isinstance(r, list) and len(r) == len(classes) for r in matrix):
        raise ServingError("serving API: /predict?probabilities=true did not answer one "
                           "probability per class for each row")
    return {str(label): [float(r[i]) for r in matrix] for i, label in enumerate(classes)}


@dataclass
class ServingClient:
    """Calls one serving API with timeouts and retries; `sleep` is injectable for tests.

    With `probabilities` (for a classifier) `score` also answers each class's
    probability; the server refuses it for a regressor (a 4xx: fails at once).
    """

    base_url: str = DEFAULT_URL
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    session: requests.Session = field(default_factory=requests.Session)
    sleep: Callable[[float], None] = time.sleep
    probabilities: bool = False

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
        """POST rows to /predict: the predictions and the model that made them."""
        return parse_prediction_response(self._post_predict(records), rows=len(records))

    def score(self, rows: pd.DataFrame
              ) -> tuple[list[Any], dict[str, str], dict[str, list[float]]]:
        """The batch stage's `Scorer`: one chunk of a frame through `/predict`; with
        `probabilities`, each class's too (by label)."""
        records = to_records(rows)
        body = self._post_predict(records)
        predictions, model = parse_prediction_response(body, rows=len(records))
        probabilities = parse_probabilities(body, rows=len(records)) if self.probabilities \
            else {}
        return predictions, model, probabilities

    def _post_predict(self, records: list[dict[str, Any]]) -> Any:
        """POST rows to /predict; retry what may pass on a second try, nothing else."""
        url = self.url("/predict")
        query = {"probabilities": "true"} if self.probabilities else None
        last = "no answer"
        for delay in [*self.retry.delays(), None]:
            try:
                response = self.session.post(url, json={"records": records}, params=query,
                                             timeout=self.retry.timeout_seconds)
            except requests.RequestException as err:
                last = _describe_exception(err)
            else:
                if response.status_code == 200:
                    return _json_or_empty(response)
                last = f"HTTP {response.status_code}{_detail(response)}"
                if response.status_code not in _RETRY_STATUSES:
                    raise ServingError(f"serving API at {url} rejected the batch: {last}")
            if delay is not None:
                self.sleep(delay)
        raise ServingError(f"serving API at {url} failed after {self.retry.attempts} "
                           f"attempt(s): {last}")

    def model(self) -> dict[str, Any]:
        """What `GET /model` says is being served (one try: callers poll)."""
        url = self.url("/model")
        try:
            response = self.session.get(url, timeout=min(self.retry.timeout_seconds, 5.0))
            response.raise_for_status()
        except requests.RequestException as err:
            raise ServingError(f"cannot read {url} ({type(err).__name__})") from err
        body = _json_or_empty(response)
        return body if isinstance(body, dict) else {}

    def wait_for_run(self, run_id: str, *, timeout: float = 120.0,
                     interval: float = 1.0) -> dict[str, Any]:
        """Poll `/model` until the server serves `run_id`; NegativeVerdict on timeout."""
        deadline = time.monotonic() + timeout
        info: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                info = self.model()
            except ServingError:
                info = {}
            if info.get("run_id") == run_id:
                return info
            self.sleep(interval)
        raise NegativeVerdict(
            f"{self.base_url} still serves run {info.get('run_id', 'unknown')} after "
            f"{timeout:.0f} s, not {run_id} (last reload error: "
            f"{info.get('last_reload_error') or 'none'})"
        )


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
