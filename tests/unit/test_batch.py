"""Batch scoring against a small HTTP server on loopback that honours the /predict contract.

The server is real (http.server in a thread, real sockets, real status codes); only
the model behind it is a formula, so each client behaviour can be provoked on purpose.
The inference DAG's own test runs the same code against the real serving process.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import DataError, ServingError
from pipeline.jobs.scoring import score_through_api
from pipeline.serving_client import (
    RetryPolicy,
    ServingClient,
    parse_prediction_response,
    to_records,
)
from pipeline.stages.batch_files import InputColumn
from pipeline.stages.batch_model import model_inputs
from pipeline.stages.score_batch import ScoreResult, chunk_bounds, date_key, dated_output
from tests.utils import JsonHandler, free_port

DATE = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
FAST = RetryPolicy(attempts=3, backoff_seconds=0.01, max_backoff_seconds=0.02, timeout_seconds=5)


@dataclass
class FakeState:
    ready_status: int = 200
    fail_next: int = 0            # answer 503 to this many /predict calls first
    reject_with: int | None = None  # answer this 4xx to every /predict call
    versions: list[str] = field(default_factory=lambda: ["3"])  # one per call, last repeats
    chunks: list[int] = field(default_factory=list)
    predict_calls: int = 0


def _handler(state: FakeState) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):

        def do_GET(self) -> None:
            if self.path == "/ready":
                self.send_json(state.ready_status, {"ready": state.ready_status == 200})
            else:
                self.send_json(404, {"detail": "not found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.predict_calls += 1
            if state.fail_next > 0:
                state.fail_next -= 1
                self.send_json(503, {"detail": "model is loading"})
                return
            if state.reject_with is not None:
                self.send_json(state.reject_with, {"detail": "records[0].carat: field required"})
                return
            records = body["records"]
            state.chunks.append(len(records))
            version = state.versions[min(len(state.chunks) - 1, len(state.versions) - 1)]
            answer: dict[str, Any] = {
                "predictions": [1000.0 * r["carat"] + (r["depth"] or 0.0) for r in records],
                "model": {"name": "diamond-price", "version": version, "run_id": "r" * 32}}
            if self.path == "/predict?probabilities=true":  # a classifier: big or small
                answer["predictions"] = ["big" if r["carat"] > 1 else "small" for r in records]
                answer["classes"] = ["big", "small"]
                answer["probabilities"] = [[min(r["carat"] / 2, 1), 1 - min(r["carat"] / 2, 1)]
                                           for r in records]
            self.send_json(200, answer)

    return Handler


@pytest.fixture
def fake_api() -> Iterator[tuple[str, FakeState]]:
    state = FakeState()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def batch_csv(tmp_path: Path) -> Path:
    frame = pd.DataFrame({
        "id": range(7),
        "carat": [0.3, 0.5, 1.0, 1.2, 0.7, 2.0, 0.41],
        "cut": ["Ideal", "Good", "Premium", "Fair", "Very Good", "Ideal", "Good"],
        "depth": [61.0, None, 62.5, 60.1, 59.9, 63.0, 61.1],
    })
    path = tmp_path / "batch.csv"
    frame.to_csv(path, index=False)
    return path


# --- pure helpers ---------------------------------------------------------------------------


def test_model_inputs_give_categories_as_the_text_training_learned() -> None:
    frame = pd.DataFrame({"has_card": [True, False, None], "grade": [3, 4, 5],
                          "income": ["1.5", None, "2"], "unused": [1, 2, 3]})
    columns = [InputColumn("has_card", "string"), InputColumn("grade", "string"),
               InputColumn("income", "double")]
    x = model_inputs(frame, columns)
    assert list(x.columns) == ["has_card", "grade", "income"]
    assert x["has_card"].tolist()[:2] == ["True", "False"]
    assert pd.isna(x["has_card"][2])
    assert x["grade"].tolist() == ["3", "4", "5"]
    assert x["income"].tolist()[::2] == [1.5, 2.0]
    assert pd.isna(x["income"][1])


def test_chunk_bounds_cover_every_row_once() -> None:
    assert list(chunk_bounds(7, 3)) == [(0, 3), (3, 6), (6, 7)]
    assert list(chunk_bounds(0, 3)) == []
    with pytest.raises(ValueError, match="at least 1"):
        list(chunk_bounds(3, 0))


def test_records_are_json_ready_with_null_for_missing() -> None:
    frame = pd.DataFrame({"a": [1.5, float("nan")], "b": ["x", None], "n": [1, 2]})
    records = to_records(frame)
    assert records == [{"a": 1.5, "b": "x", "n": 1}, {"a": None, "b": None, "n": 2}]
    json.dumps(records, allow_nan=False)


def test_retry_delays_double_and_are_capped() -> None:
    policy = RetryPolicy(attempts=5, backoff_seconds=1, max_backoff_seconds=3)
    assert policy.delays() == [1, 2, 3, 3]
    assert RetryPolicy(attempts=1).delays() == []


def test_output_location_is_keyed_by_the_logical_date_in_utc() -> None:
    local = dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert date_key(local) == "20261126T233000Z"
    assert dated_output("s3://bucket/scores/", DATE) == \
        "s3://bucket/scores/logical_date=20261127T000000Z/scores"
    with pytest.raises(ValueError, match="timezone"):
        date_key(dt.datetime(2026, 1, 1))


@pytest.mark.parametrize(("body", "message"), [
    ([], "not a JSON object"),
    ({"predictions": [1.0], "model": {"version": "1"}}, "1 predictions for 2 rows"),
    ({"predictions": [1.0, 2.0]}, "which model version"),
])
def test_bad_prediction_responses_are_named(body: Any, message: str) -> None:
    with pytest.raises(ServingError, match=message):
        parse_prediction_response(body, rows=2)


def test_an_unreadable_batch_is_named_before_a_row_is_sent(
        fake_api: tuple[str, FakeState], tmp_path: Path) -> None:
    url, state = fake_api
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "batch.json").write_text("{}")
    for name in ("missing.csv", "empty.csv", "batch.json"):
        with pytest.raises(DataError, match=name):
            _score(url, tmp_path / name, tmp_path / "out")
    assert state.predict_calls == 0
    assert not (tmp_path / "out").exists()


# --- against the server on loopback ------------------------------------------------------------

COLUMNS = [InputColumn("carat", "double"), InputColumn("cut", "string"),
           InputColumn("depth", "double")]


def _score(url: str, source: Path, out: Path, *, chunk: int = 500,
           columns: list[InputColumn] = COLUMNS, probabilities: bool = False,
           retry: RetryPolicy = FAST) -> ScoreResult:
    """The api engine of `mlops score` and the inference DAG."""
    return score_through_api(source=str(source), output=str(out), url=url, columns=columns,
                             probabilities=probabilities, retry=retry, chunk_rows=chunk)


def test_scores_every_row_once_in_chunks_with_its_model_version(
        fake_api: tuple[str, FakeState], batch_csv: Path, tmp_path: Path) -> None:
    url, state = fake_api
    state.versions = ["3", "3", "4"]  # the model is swapped before the third chunk
    result = _score(url, batch_csv, tmp_path / "out", chunk=3)
    assert state.chunks == [3, 3, 1]
    out = pd.read_parquet(result.output)
    assert result.rows == len(out) == 7
    assert out["id"].tolist() == list(range(7))
    rows = pd.read_csv(batch_csv)
    expected = [1000.0 * c + (0.0 if pd.isna(d) else d)
                for c, d in zip(rows["carat"], rows["depth"], strict=True)]
    assert out["prediction"].tolist() == pytest.approx(expected)
    assert out["model_version"].tolist() == ["3"] * 6 + ["4"]
    assert result.model_versions == ["3", "4"]
    assert set(out["model_name"]) == {"diamond-price"}


def test_a_classifiers_probabilities_become_one_column_per_class(
        fake_api: tuple[str, FakeState], batch_csv: Path, tmp_path: Path) -> None:
    url, _ = fake_api
    result = _score(url, batch_csv, tmp_path / "out", chunk=3, probabilities=True)
    out = pd.read_parquet(result.output)
    assert list(out.columns[-6:]) == ["prediction", "probability_big", "probability_small",
                                      "model_name", "model_version", "model_run_id"]
    assert out["prediction"].tolist() == ["small"] * 3 + ["big", "small", "big", "small"]
    assert out["probability_big"].tolist() == pytest.approx(pd.read_csv(batch_csv)["carat"] / 2)


def test_rerunning_a_logical_date_replaces_its_output(
        fake_api: tuple[str, FakeState], batch_csv: Path, tmp_path: Path) -> None:
    url, state = fake_api
    out_dir = tmp_path / "out"
    dated = Path(dated_output(str(out_dir), DATE))
    first = _score(url, batch_csv, dated, chunk=4)
    state.versions = ["5"]
    state.chunks.clear()
    second = _score(url, batch_csv, dated, chunk=4)
    assert first.output == second.output
    files = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    assert files == ["logical_date=20261127T000000Z/scores/_SUCCESS",
                     "logical_date=20261127T000000Z/scores/part-00000.parquet"]
    out = pd.read_parquet(second.output)
    assert len(out) == 7
    assert set(out["model_version"]) == {"5"}


def test_transient_503s_are_retried(fake_api: tuple[str, FakeState], batch_csv: Path,
                                     tmp_path: Path) -> None:
    url, state = fake_api
    state.fail_next = 2
    result = _score(url, batch_csv, tmp_path / "out", chunk=10)
    assert result.rows == 7
    assert state.predict_calls == 3


def test_a_rejected_batch_fails_at_once_with_the_servers_reason(
        fake_api: tuple[str, FakeState], batch_csv: Path, tmp_path: Path) -> None:
    url, state = fake_api
    state.reject_with = 422
    with pytest.raises(ServingError, match=r"rejected the batch: HTTP 422 \(records\[0\]"):
        _score(url, batch_csv, tmp_path / "out")
    assert state.predict_calls == 1
    assert not (tmp_path / "out").exists()


def test_not_ready_fails_before_sending_rows(fake_api: tuple[str, FakeState], batch_csv: Path,
                                            tmp_path: Path) -> None:
    url, state = fake_api
    state.ready_status = 503
    with pytest.raises(ServingError, match=rf"{url}/ready is not ready after 3 attempt\(s\): "
                                           r"HTTP 503"):
        _score(url, batch_csv, tmp_path / "out")
    assert state.predict_calls == 0
    assert not (tmp_path / "out").exists()


def test_nothing_listening_fails_clearly_after_retries(batch_csv: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    waits: list[float] = []
    client = ServingClient(base_url=url, retry=RetryPolicy(attempts=3, backoff_seconds=0.5),
                           sleep=waits.append)
    with pytest.raises(ServingError, match=rf"{url}/ready is not ready after 3 attempt\(s\): "
                                           "connection refused"):
        client.wait_ready()
    assert waits == [0.5, 1.0]


def test_a_missing_feature_column_is_the_batchs_fault(
        fake_api: tuple[str, FakeState], batch_csv: Path, tmp_path: Path) -> None:
    url, state = fake_api
    with pytest.raises(DataError, match="has no column color"):
        _score(url, batch_csv, tmp_path / "out",
               columns=[InputColumn("carat", "double"), InputColumn("color", "string")])
    assert state.predict_calls == 0


def test_parquet_batches_are_read_too(fake_api: tuple[str, FakeState], batch_csv: Path,
                                      tmp_path: Path) -> None:
    url, _ = fake_api
    parquet = tmp_path / "batch.parquet"
    pd.read_csv(batch_csv).to_parquet(parquet)
    result = _score(url, parquet, tmp_path / "out")
    assert result.rows == 7


def test_spark_shuffles_only_an_input_its_own_splits_would_leave_on_one_core(
        tmp_path: Path) -> None:
    from pipeline.stages.score_spark import spreads_by_itself

    table = pa.table({"id": list(range(1000))})
    pq.write_table(table, tmp_path / "one-group.parquet")
    pq.write_table(table, tmp_path / "groups.parquet", row_group_size=100)
    assert not spreads_by_itself([f"file://{tmp_path}/one-group.parquet"], cores=2)
    assert spreads_by_itself([f"file://{tmp_path}/groups.parquet"], cores=2)
    assert not spreads_by_itself([f"file://{tmp_path}/groups.parquet"], cores=16)
    # As many files as cores: no footer is read (these names do not even exist).
    assert spreads_by_itself(["file:///nowhere/a.parquet", "file:///nowhere/b.parquet"],
                             cores=2)
