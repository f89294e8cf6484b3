"""The prediction log's cost: what a request pays, and what the writer thread spends.

The request path's only work is `PredictionLog.record` (a tuple appended under a lock);
it is timed per call for requests of 1, 10 and 100 diamond rows, against the peer
measured in the same run: validating the same request's body against the model's
request schema (`serving.schema`), which every /predict request pays anyway. The
writer thread's cost is the process CPU time per logged row while it drains REQUESTS
one-row requests (the server's case) and a 200,000 row frame in batches (batch
scoring's case), into a temporary folder.

Run: make bench-prediction-log
"""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np
import orjson

from pipeline.stages.datasets import load_spec
from serving.prediction_log import ModelInfo, PredictionLog
from serving.schema import ColumnSpec, from_columns

REQUESTS = 20_000
MODEL = ModelInfo(name="diamond-price", version="1", run_id="0" * 32, runtime="onnx")


def per_call(fn: object, calls: int) -> float:
    """Median of 5 rounds of `calls` calls, in microseconds per call."""
    rounds = []
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(calls):
            fn()  # type: ignore[operator]
        rounds.append((time.perf_counter() - began) / calls * 1e6)
    return statistics.median(rounds)


def main() -> None:
    spec = load_spec("diamonds")
    frame = spec.load_builtin()[spec.feature_names]  # type: ignore[misc]
    records = frame.head(100).to_dict("records")
    schema = from_columns([ColumnSpec(c.name, "double" if c.kind == "numeric" else "string")
                           for c in spec.features], max_rows=1000)
    print("request path: record() per call vs validating the request body, median of 5 "
          "rounds")
    ratios = []
    with tempfile.TemporaryDirectory() as folder:
        log = PredictionLog(folder, max_queue_rows=10_000_000, flush_rows=10_000_000)
        for rows in (1, 10, 100):
            body = records[:rows]
            predictions = np.full(rows, 512.5)
            record = per_call(lambda b=body, p=predictions: log.record(MODEL, "req", b, p),
                              2_000)
            payload = orjson.dumps({"records": body})
            respond = per_call(lambda b=payload: schema.request.model_validate_json(b), 2_000)
            ratios.append((rows, record, respond))
            print(f"  {rows:3d} row(s): record() {record:.2f} us, body validation "
                  f"{respond:.2f} us")
        log.close()

    with tempfile.TemporaryDirectory() as folder:
        one = records[:1]
        cpu, wall = time.process_time(), time.perf_counter()
        with PredictionLog(folder) as log:
            for request in range(REQUESTS):
                log.record(MODEL, f"req-{request}", one, [512.5])
        served_cpu = (time.process_time() - cpu) / REQUESTS * 1e6
        served_rate = REQUESTS / (time.perf_counter() - wall)
        print(f"server case: {REQUESTS:,} one-row requests logged, {served_cpu:.1f} us of CPU "
              f"per row (request path and writer), {served_rate:,.0f} rows/s")

    with tempfile.TemporaryDirectory() as folder:
        big = frame.sample(200_000, replace=True, random_state=0).reset_index(drop=True)
        predictions = np.random.default_rng(0).random(len(big)) * 10_000
        cpu, wall = time.process_time(), time.perf_counter()
        with PredictionLog(folder, block=True, max_queue_rows=200_000, flush_rows=50_000) as log:
            for start in range(0, len(big), 50_000):
                log.record(MODEL, f"batch-{start}", big.iloc[start:start + 50_000],
                           predictions[start:start + 50_000])
        batch_cpu = (time.process_time() - cpu) / len(big) * 1e6
        batch_rate = len(big) / (time.perf_counter() - wall)
        print(f"batch case: {len(big):,} rows in 50,000-row frames, {batch_cpu:.2f} us of CPU "
              f"per row, {batch_rate:,.0f} rows/s")

    for rows, record, respond in ratios:
        print(f"RESULT record_us rows={rows} us={record:.2f} validation_us={respond:.2f} "
              f"ratio={record / respond:.2f}")
    print(f"RESULT writer_cpu_us_per_row case=server us={served_cpu:.1f} "
          f"rows_per_s={served_rate:.0f}")
    print(f"RESULT writer_cpu_us_per_row case=batch us={batch_cpu:.2f} rows_per_s={batch_rate:.0f}")


if __name__ == "__main__":
    main()
