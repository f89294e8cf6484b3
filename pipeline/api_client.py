"""A small client of the serving API, for people and the demo.

`predict` sends records to `POST /predict`; `wait_for_run` waits until the running
server reports a given run (the hot swap after a promotion, seen from outside).
"""

from __future__ import annotations

import math
import time
from typing import Any

import pandas as pd
import requests

from pipeline.errors import MlopsError, NegativeVerdict


class ServingError(MlopsError):
    """The serving API is unreachable or refused the request."""


def example_records(holdout: pd.DataFrame, feature_names: list[str], *, rows: int = 2
                    ) -> list[dict[str, Any]]:
    """The first held-out rows as JSON-ready records (missing values as null)."""
    frame = holdout[feature_names].head(rows)
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def predict(url: str, records: list[dict[str, Any]], *, timeout: float = 10.0) -> dict[str, Any]:
    """POST the records; a refusal becomes one line with the server's own reason."""
    try:
        response = requests.post(f"{url.rstrip('/')}/predict", json={"records": records},
                                 timeout=timeout)
    except requests.RequestException as err:
        raise ServingError(f"cannot reach the serving API at {url} ({type(err).__name__}); "
                           "start it with `make serve`") from err
    if response.status_code != 200:
        raise ServingError(f"{url}/predict answered {response.status_code}: "
                           f"{_detail(response)}")
    body: dict[str, Any] = response.json()
    return body


def model_info(url: str, *, timeout: float = 5.0) -> dict[str, Any]:
    try:
        response = requests.get(f"{url.rstrip('/')}/model", timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as err:
        raise ServingError(f"cannot read {url}/model ({type(err).__name__})") from err
    body: dict[str, Any] = response.json()
    return body


def wait_for_run(url: str, run_id: str, *, timeout: float = 120.0,
                 interval: float = 1.0) -> dict[str, Any]:
    """Poll `/model` until the server serves `run_id`; NegativeVerdict on timeout."""
    deadline = time.monotonic() + timeout
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            info = model_info(url)
        except ServingError:
            info = {}
        if info.get("run_id") == run_id:
            return info
        time.sleep(interval)
    raise NegativeVerdict(
        f"{url} still serves run {info.get('run_id', 'unknown')} after {timeout:.0f} s, "
        f"not {run_id} (last reload error: {info.get('last_reload_error') or 'none'})"
    )


def _detail(response: requests.Response) -> str:
    try:
        detail = response.json().get("detail", "")
    except ValueError:
        detail = response.text
    return str(detail)[:300] or response.reason
