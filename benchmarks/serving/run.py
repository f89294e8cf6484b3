"""Benchmark: this server vs `mlflow models serve` on the same registered model.

Starts a throwaway MLflow server (SQLite, temporary folder), trains a cheap model
(ridge) into it as Production, starts both servers on loopback with one worker each,
and drives each in turn with the same payloads from `loadgen` (closed loop, bounded
in time): 1 and 100 rows, 2 and 16 connections. Prints requests/s, p50, p99 and the
ratio to MLflow, plus the floor: sklearn's own predict on the same frames, in process.

Usage: .venv/bin/python benchmarks/serving/run.py   (make bench-serving)
Environment: BENCH_SECONDS (per measurement, default 4), BENCH_ESTIMATOR (ridge).
Timings on shared machines are noisy: compare the ratios measured in one run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.serving.loadgen import Result, load  # noqa: E402
from pipeline.gitops.card import load_card, prepare_data  # noqa: E402
from pipeline.localstack.process import ManagedProcess, venv_bin  # noqa: E402
from pipeline.localstack.sqlite import mlflow_server  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
ESTIMATOR = os.environ.get("BENCH_ESTIMATOR", "ridge")
SCENARIOS = [(1, 2), (1, 16), (100, 2), (100, 16)]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ok(url: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"error: {url} did not answer within {seconds:.0f} s")


def train(env: dict[str, str]) -> dict[str, str]:
    done = subprocess.run(
        [venv_bin("mlops"), "train", "--estimator", ESTIMATOR, "--register", "--promote",
         "--json"], capture_output=True, text=True, env={**os.environ, **env}, cwd=REPO,
        check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: training failed: {done.stderr.strip().splitlines()[-1]}")
    result: dict[str, str] = json.loads(done.stdout)
    return result


def floor(model_uri: str, frames: dict[int, object]) -> dict[int, float]:
    """Median ms of the model's own predict on the same rows, in this process."""
    import mlflow.sklearn

    model = mlflow.sklearn.load_model(model_uri)
    out = {}
    for rows, frame in frames.items():
        times = []
        for _ in range(300):
            began = time.perf_counter()
            model.predict(frame)
            times.append((time.perf_counter() - began) * 1000)
        out[rows] = statistics.median(times[20:])
    return out


def main() -> None:
    card = load_card(REPO / "model_card.yaml")
    data = prepare_data(card)
    unseen = data.x_validation.dropna().reset_index(drop=True)
    frames = {rows: unseen.head(rows) for rows, _ in SCENARIOS}
    bodies = {rows: {
        "predict": orjson.dumps({"records": frame.to_dict(orient="records")}),
        "invocations": orjson.dumps({"dataframe_split": frame.to_dict(orient="split",
                                                                      index=False)}),
    } for rows, frame in frames.items()}

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        home = Path(tmp)
        mlflow_port, ours_port, theirs_port = free_port(), free_port(), free_port()
        tracking, command = mlflow_server(home=home / "mlflow", host="127.0.0.1",
                                          port=mlflow_port)
        env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
               "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
        ours = ManagedProcess(name="serving", home=home,
                              health_url=f"http://127.0.0.1:{ours_port}/ready")
        theirs = ManagedProcess(name="mlflow-serve", home=home,
                                health_url=f"http://127.0.0.1:{theirs_port}/health")
        try:
            print(f"starting MLflow and training {ESTIMATOR} ...", file=sys.stderr)
            tracking.start(command, wait_seconds=180)
            trained = train(env)
            model_uri = f"models:/{card.model.name}@production"
            os.environ.update(env)
            floors = floor(model_uri, frames)
            print("starting both servers (one worker each) ...", file=sys.stderr)
            ours.start([sys.executable, "-m", "serving"], wait_seconds=180, env={
                **env, "MODEL_NAME": card.model.name, "SERVING_HOST": "127.0.0.1",
                "SERVING_PORT": str(ours_port), "SERVING_LOG_LEVEL": "warning"})
            theirs.start([venv_bin("mlflow"), "models", "serve", "-m", model_uri,
                          "--env-manager", "local", "-h", "127.0.0.1",
                          "-p", str(theirs_port), "-w", "1"], wait_seconds=180,
                         env={**env, "PATH": f"{Path(venv_bin('mlflow')).parent}:"
                                             f"{os.environ.get('PATH', '')}"})
            results = run_all(bodies, ours_port, theirs_port)
        finally:
            for process in (theirs, ours, tracking):
                process.stop()
    print_table(results, floors, trained, ESTIMATOR)


def run_all(bodies: dict[int, dict[str, bytes]], ours_port: int,
            theirs_port: int) -> list[tuple[int, int, Result, Result, Result]]:
    results = []
    for rows, connections in SCENARIOS:
        print(f"  {rows} row(s), {connections} connections ...", file=sys.stderr)
        common = {"host": "127.0.0.1", "connections": connections, "seconds": SECONDS}
        mlflow_result = load(port=theirs_port, path="/invocations",
                             body=bodies[rows]["invocations"], **common)  # type: ignore[arg-type]
        invocations = load(port=ours_port, path="/invocations",
                           body=bodies[rows]["invocations"], **common)  # type: ignore[arg-type]
        predict = load(port=ours_port, path="/predict",
                       body=bodies[rows]["predict"], **common)  # type: ignore[arg-type]
        results.append((rows, connections, mlflow_result, invocations, predict))
    return results


def print_table(results: list[tuple[int, int, Result, Result, Result]],
                floors: dict[int, float], trained: dict[str, str], estimator: str) -> None:
    print(f"\nmodel: {estimator} in the ColumnTransformer+OneHot pipeline (run "
          f"{trained['run_id']}); {SECONDS:.0f} s per cell, loopback, one worker each")
    print("| rows | conns | server | endpoint | req/s | p50 ms | p99 ms | failed "
          "| req/s vs MLflow |")
    print("|---:|---:|---|---|---:|---:|---:|---:|---:|")
    for rows, connections, theirs, invocations, predict in results:
        for server, endpoint, result in (("mlflow models serve", "/invocations", theirs),
                                         ("this server", "/invocations", invocations),
                                         ("this server", "/predict", predict)):
            ratio = result.rps / theirs.rps if theirs.rps else float("nan")
            print(f"| {rows} | {connections} | {server} | {endpoint} | {result.rps:.0f} | "
                  f"{result.p50:.2f} | {result.p99:.2f} | {result.failures} | {ratio:.2f}x |")
    print("\nfloor (sklearn predict on the same DataFrame, in process, median): "
          + ", ".join(f"{rows} row(s) {ms:.2f} ms" for rows, ms in sorted(floors.items())))


if __name__ == "__main__":
    main()
