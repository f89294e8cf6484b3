"""Benchmark: how long `mlops --help` and `mlops status` take to answer, warm.

Starts a throwaway MLflow server (SQLite, temporary folder) holding one registered
model with a Production version and a few metrics, so `status` does its real work (the
card, the alias, the version, the run's metrics). Each command runs BENCH_REPEATS
times (default 7) after one warm-up run (the operating system's file cache), as the
console script a person types; the figure is the median wall time. The peer measured in
the same run is the bare interpreter (`python -c pass`): the ratio says how much of a
start is ours. The goal (issue 33): at most 1 s for both on this machine.

Usage: .venv/bin/python benchmarks/cli/startup.py   (make bench-cli)
Timings on shared machines are noisy: compare the figures of one run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pipeline.localstack.process import free_port, venv_bin  # noqa: E402
from pipeline.localstack.sqlite import mlflow_server  # noqa: E402

REPEATS = int(os.environ.get("BENCH_REPEATS", "7"))
MODEL = "bench-startup"


def seconds_of(command: list[str], env: dict[str, str], cwd: Path) -> float:
    """Median wall time of `command` over REPEATS runs, after one warm-up."""
    times = []
    for attempt in range(REPEATS + 1):
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                              check=False, timeout=120)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr}")
        if attempt:
            times.append(elapsed)
    return statistics.median(times)


def seed_registry(uri: str) -> None:
    """One model whose Production version is a run with metrics: what status shows."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("bench-startup")
    run = client.create_run(experiment)
    for name, value in {"val_rmse": 540.0, "val_mae": 280.0, "val_r2": 0.98}.items():
        client.log_metric(run.info.run_id, name, value)
    client.set_terminated(run.info.run_id)
    client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model",
                                          run_id=run.info.run_id)
    client.set_registered_model_alias(MODEL, "production", version.version)


def main() -> None:
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # only the figures on stdout
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        home = Path(tmp)
        port = free_port()
        service, command = mlflow_server(home=home / "mlflow", host="127.0.0.1", port=port)
        service.start(command, wait_seconds=180)
        try:
            uri = f"http://127.0.0.1:{port}"
            seed_registry(uri)
            card = (REPO / "model_card.yaml").read_text().replace(
                "name: diamond-price", f"name: {MODEL}")
            (home / "model_card.yaml").write_text(card)
            env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLOPS_HOME": str(home / ".mlops")}
            mlops = venv_bin("mlops")
            figures = {
                "python -c pass": seconds_of([sys.executable, "-c", "pass"], env, home),
                "mlops --help": seconds_of([mlops, "--help"], env, home),
                "mlops status": seconds_of([mlops, "status"], env, home),
            }
        finally:
            service.stop()
    interpreter = figures["python -c pass"]
    for name, seconds in figures.items():
        print(f"{name:16} median {seconds:.3f} s of {REPEATS} runs "
              f"({seconds / interpreter:.1f}x the bare interpreter)")
    for name in ("mlops --help", "mlops status"):
        seconds = figures[name]
        print(f"RESULT command={name.split()[1].lstrip('-')} median_seconds={seconds:.3f} "
              f"repeats={REPEATS} goal_seconds=1.0 within_goal={seconds <= 1.0} "
              f"ratio_to_interpreter={seconds / interpreter:.1f}")


if __name__ == "__main__":
    main()
