"""Benchmark: this server (compiled twin and sklearn) vs `mlflow models serve`, per estimator.

Starts a throwaway MLflow server (SQLite, temporary folder). For each estimator
(ridge, hist_gradient_boosting, random_forest, xgboost, lightgbm) it trains the model into it as
Production of its own registered model, then starts in turn, one worker each on
loopback: `mlflow models serve`, this server with the twin (`SERVING_RUNTIME=auto`,
onnxruntime) and this server with sklearn (`SERVING_RUNTIME=sklearn`). Each is driven
with the same payloads from `loadgen` (closed loop, bounded in time); for each server
it records the cold start (process start to ready, the model's files from the local
tracking server; ours is ready on its twin before the sklearn model loads, and its cells
are measured once that load is done), the resident memory after warm-up, and for ours
the HTTP floor
(`/health` on the same server and load generator). The in-process floor is sklearn's
own predict on the same frames.

The twin is measured twice: with the prediction log off (as every other server here)
and on (`onnx+log`, every row recorded to a local folder).

The last lines are machine-readable, one per cell:
RESULT estimator=<name> runtime=<onnx|sklearn|onnx+log> rows=<n> conns=<c> rps=<x>
mlflow_rps=<y> ratio=<x/y> p50_ms=<p> p99_ms=<q> parity_max_abs=<d>
and the log's cost, one per twin cell:
RESULT prediction_log estimator=<name> rows=<n> conns=<c> rps_off=<a> rps_on=<b>
throughput_ratio=<b/a>

Usage: .venv/bin/python benchmarks/serving/run.py   (make bench-serving)
Environment: BENCH_SECONDS (per cell, default 4), BENCH_ESTIMATORS (comma-separated,
default all five), BENCH_SCENARIOS (rows x conns, default "1x2,100x2").
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.serving.loadgen import Result, load  # noqa: E402
from pipeline.gitops.card import load_card, prepare_data  # noqa: E402
from pipeline.localstack.process import ManagedProcess, venv_bin  # noqa: E402
from pipeline.localstack.sqlite import mlflow_server  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
ESTIMATORS = os.environ.get("BENCH_ESTIMATORS",
                            "ridge,hist_gradient_boosting,random_forest,xgboost,"
                            "lightgbm").split(",")
SCENARIOS = [tuple(int(n) for n in cell.split("x"))
             for cell in os.environ.get("BENCH_SCENARIOS", "1x2,100x2").split(",")]
RUNTIMES = ("onnx", "sklearn", "onnx+log")
"""The twin, sklearn, and the twin with the prediction log on (the others log nothing)."""


@dataclass
class Served:
    """One server process for one model: how it started, its memory, its cells."""

    cold_start_s: float
    rss_mb: float
    cells: dict[tuple[int, int], Result]
    health: Result | None = None
    runtime: str = ""


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


def train(env: dict[str, str], card: Path, estimator: str) -> dict[str, Any]:
    done = subprocess.run(
        [venv_bin("mlops"), "train", "--card", str(card), "--estimator",
         estimator, "--register", "--promote", "--json"], capture_output=True, text=True,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)}, cwd=REPO, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: training failed: {done.stderr.strip().splitlines()[-1]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def floor(model_uri: str, frames: dict[int, object]) -> dict[int, float]:
    """Median ms of the model's own predict on the same rows, in this process."""
    import tempfile

    from threadpoolctl import threadpool_limits

    import modelio
    from modelio import source as modelio_source

    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        model = modelio.fetch(modelio_source.pinned(model_uri, name=None), Path(tmp),
                              tracking_uri=os.environ["MLFLOW_TRACKING_URI"]).estimator()
    out = {}
    with threadpool_limits(limits=1):
        for rows, frame in frames.items():
            times = []
            for _ in range(200):
                began = time.perf_counter()
                model.predict(frame)
                times.append((time.perf_counter() - began) * 1000)
            out[rows] = statistics.median(times[20:])
    return out


def resident_mb(process: ManagedProcess) -> float:
    """Resident memory of the server and its children (gunicorn workers), in MB."""
    import psutil

    pid = process.pid()
    if pid is None:
        return float("nan")
    root = psutil.Process(pid)
    members = [root, *root.children(recursive=True)]
    return sum(p.memory_info().rss for p in members) / 1e6


def wait_until_whole(port: int, timeout: float = 120.0) -> None:
    """Our server is ready with a twin before its sklearn model is loaded (twin first);
    the cells are measured after that load, which would otherwise share the cores."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests.get(f"http://127.0.0.1:{port}/model", timeout=2).json().get(
                "sklearn") != "loading":
            return
        time.sleep(0.05)
    raise RuntimeError(f"the server on port {port} did not finish loading in {timeout:.0f} s")


def measure(process: ManagedProcess, command: list[str], env: dict[str, str], port: int,
            path: str, bodies: dict[int, bytes], *, health: bool) -> Served:
    began = time.monotonic()
    process.start(command, wait_seconds=300, env=env)
    cold = time.monotonic() - began
    common = {"host": "127.0.0.1", "port": port, "seconds": SECONDS}
    cells = {}
    try:
        if health:
            wait_until_whole(port)
        load(path=path, body=bodies[SCENARIOS[0][0]], connections=1, seconds=1.0,
             host="127.0.0.1", port=port)  # warm-up before the memory is read
        rss = resident_mb(process)
        for rows, connections in SCENARIOS:
            cells[(rows, connections)] = load(path=path, body=bodies[rows],
                                              connections=connections, **common)  # type: ignore[arg-type]
        floor_http = load(path="/health", body=b"", connections=SCENARIOS[0][1], **common) \
            if health else None  # type: ignore[arg-type]
    finally:
        process.stop()
    return Served(cold_start_s=cold, rss_mb=rss, cells=cells, health=floor_http)


def bench_estimator(estimator: str, home: Path, env: dict[str, str], card_text: str,
                    bodies: dict[int, dict[str, bytes]], frames: dict[int, Any]
                    ) -> dict[str, Any]:
    name = f"bench-{estimator.replace('_', '-')}"
    card = home / f"{estimator}.yaml"
    card.write_text(card_text.replace("name: diamond-price", f"name: {name}", 1))
    print(f"training {estimator} ...", file=sys.stderr)
    trained = train(env, card, estimator)
    import mlflow

    run = mlflow.MlflowClient().get_run(trained["run_id"])
    parity = run.data.metrics.get("twin_parity_max_abs", float("nan"))
    model_uri = f"models:/{name}@production"
    floors = floor(model_uri, frames)
    port = free_port()
    mlflow_process = ManagedProcess(name=f"mlflow-serve-{estimator}", home=home,
                                    health_url=f"http://127.0.0.1:{port}/health")
    print(f"  mlflow models serve ({estimator}) ...", file=sys.stderr)
    theirs = measure(mlflow_process, [venv_bin("mlflow"), "models", "serve", "-m", model_uri,
                                      "--env-manager", "local", "-h", "127.0.0.1",
                                      "-p", str(port), "-w", "1"],
                     {**env, "PATH": f"{Path(venv_bin('mlflow')).parent}:"
                                     f"{os.environ.get('PATH', '')}"},
                     port, "/invocations", {r: b["invocations"] for r, b in bodies.items()},
                     health=False)
    ours: dict[str, Served] = {}
    for runtime in RUNTIMES:
        port = free_port()
        process = ManagedProcess(name=f"serving-{estimator}-{runtime}", home=home,
                                 health_url=f"http://127.0.0.1:{port}/ready")
        print(f"  this server, {runtime} ({estimator}) ...", file=sys.stderr)
        ours[runtime] = measure(process, [sys.executable, "-m", "serving"], {
            **env, "MODEL_NAME": name, "SERVING_HOST": "127.0.0.1", "SERVING_PORT": str(port),
            "SERVING_LOG_LEVEL": "warning",
            "SERVING_RUNTIME": "sklearn" if runtime == "sklearn" else "auto",
            "PREDICTION_LOG": str(home / f"log-{estimator}") if runtime == "onnx+log" else ""},
            port, "/predict", {r: b["predict"] for r, b in bodies.items()}, health=True)
        ours[runtime].runtime = runtime
    return {"estimator": estimator, "trained": trained, "parity": parity, "floors": floors,
            "mlflow": theirs, "ours": ours}


def main() -> None:
    card_path = REPO / "model_card.yaml"
    card = load_card(card_path)
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
        mlflow_port = free_port()
        tracking, command = mlflow_server(home=home / "mlflow", host="127.0.0.1",
                                          port=mlflow_port)
        env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
               "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
        try:
            print("starting MLflow ...", file=sys.stderr)
            tracking.start(command, wait_seconds=180)
            os.environ.update(env)
            results = [bench_estimator(estimator, home, env, card_path.read_text(), bodies,
                                       frames) for estimator in ESTIMATORS]
        finally:
            tracking.stop()
    print_table(results)


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"\n{SECONDS:.0f} s per cell, loopback, one worker each; ratio = req/s of this "
          "server / req/s of `mlflow models serve` on the same model")
    print("| estimator | runtime | rows | conns | req/s | p50 ms | p99 ms | failed | "
          "mlflow req/s | mlflow p50 ms | ratio | in-process sklearn ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = []
    for result in results:
        theirs: Served = result["mlflow"]
        for runtime, served in result["ours"].items():
            for (rows, conns), cell in served.cells.items():
                base = theirs.cells[(rows, conns)]
                ratio = cell.rps / base.rps if base.rps else float("nan")
                failed = cell.failures + base.failures
                print(f"| {result['estimator']} | {runtime} | {rows} | {conns} | "
                      f"{cell.rps:.0f} | {cell.p50:.2f} | {cell.p99:.2f} | {failed} | "
                      f"{base.rps:.0f} | {base.p50:.2f} | {ratio:.1f}x | "
                      f"{result['floors'][rows]:.2f} |")
                parity = result["parity"] if runtime != "sklearn" else 0.0
                lines.append(
                    f"RESULT estimator={result['estimator']} runtime={runtime} rows={rows} "
                    f"conns={conns} rps={cell.rps:.0f} mlflow_rps={base.rps:.0f} "
                    f"ratio={ratio:.2f} p50_ms={cell.p50:.2f} p99_ms={cell.p99:.2f} "
                    f"parity_max_abs={parity:.3g}")
    print("\n| estimator | server | cold start to ready s | RSS after warm-up MB "
          "| /health req/s | /health p50 ms |")
    print("|---|---|---:|---:|---:|---:|")
    for result in results:
        theirs = result["mlflow"]
        print(f"| {result['estimator']} | mlflow models serve | {theirs.cold_start_s:.1f} | "
              f"{theirs.rss_mb:.0f} | | |")
        for runtime, served in result["ours"].items():
            health = served.health
            print(f"| {result['estimator']} | this server ({runtime}) | "
                  f"{served.cold_start_s:.1f} | {served.rss_mb:.0f} | "
                  f"{health.rps if health else float('nan'):.0f} | "
                  f"{health.p50 if health else float('nan'):.2f} |")
    print()
    for line in lines + logging_cost(results):
        print(line)


def logging_cost(results: list[dict[str, Any]]) -> list[str]:
    """The prediction log's cost: req/s of the twin with the log on over off."""
    lines = []
    for result in results:
        off, on = result["ours"].get("onnx"), result["ours"].get("onnx+log")
        if off is None or on is None:
            continue
        for cell, measured in on.cells.items():
            base = off.cells[cell]
            ratio = measured.rps / base.rps if base.rps else float("nan")
            lines.append(f"RESULT prediction_log estimator={result['estimator']} "
                         f"rows={cell[0]} conns={cell[1]} rps_off={base.rps:.0f} "
                         f"rps_on={measured.rps:.0f} throughput_ratio={ratio:.3f}")
    return lines


if __name__ == "__main__":
    main()
