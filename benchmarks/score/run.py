"""Benchmark: `mlops score` on its three engines, rows/s and peak memory, one run.

Starts a throwaway MLflow server (SQLite, temporary folder), bootstraps the default
estimator as Production, writes BENCH_ROWS (default 1,000,000) demo-like rows as
Parquet, and scores them with the local engine (this process, bounded batches), the
spark engine (local[2]) and the api engine (the serving API on loopback, on
BENCH_API_ROWS rows, default 200,000: its rate is what counts). Each engine runs as its
own `mlops score` process under /usr/bin/time, which reports its peak resident memory
(for spark: the Python driver; the JVM is reported separately from its own process).

Usage: .venv/bin/python benchmarks/score/run.py   (make bench-score)
Timings on shared machines are noisy: compare the ratios measured in one run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pipeline.localstack.process import ManagedProcess, free_port, venv_bin  # noqa: E402
from pipeline.localstack.sqlite import mlflow_server  # noqa: E402
from pipeline.stages.data import prepare  # noqa: E402
from pipeline.stages.datasets import load_spec  # noqa: E402

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
API_ROWS = int(os.environ.get("BENCH_API_ROWS", "200000"))
BATCH_ROWS = int(os.environ.get("BENCH_BATCH_ROWS", "50000"))


def write_batch(path: Path, rows: int) -> Path:
    data = prepare(load_spec("diamonds"))
    features = pd.concat([data.x_test, data.x_validation, data.x_train]).reset_index(drop=True)
    frame = features.iloc[np.arange(rows) % len(features)].reset_index(drop=True)
    frame.insert(0, "id", np.arange(rows))
    frame.to_parquet(path, index=False)
    return path


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int, dict[str, object]]:
    """(seconds, peak RSS in MB, the command's JSON) of one `mlops score` process."""
    began = time.monotonic()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=REPO, check=False)
    seconds = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command[:3])}: {done.stderr.strip()[-400:]}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return seconds, int(peak.group(1)) // 1024 if peak else -1, json.loads(done.stdout)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        home = Path(tmp)
        port = free_port()
        service, command = mlflow_server(home=home / "mlflow", host="127.0.0.1", port=port)
        service.start(command, wait_seconds=180)
        env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
               "MLOPS_HOME": str(home / "mlops")}
        serving: ManagedProcess | None = None
        try:
            boot = subprocess.run([venv_bin("mlops"), "train", "--register", "--promote",
                                   "--json"], capture_output=True, text=True, cwd=REPO,
                                  env={**os.environ, **env}, check=False)
            if boot.returncode != 0:
                raise SystemExit(f"error: bootstrap failed: {boot.stderr.strip()[-300:]}")
            batch = write_batch(home / "batch.parquet", ROWS)
            api_batch = home / "api.parquet"
            pd.read_parquet(batch).head(API_ROWS).to_parquet(api_batch, index=False)
            results: dict[str, tuple[int, float, int]] = {}
            score = [venv_bin("mlops"), "score"]
            for engine, extra in (("local", ["--batch-rows", str(BATCH_ROWS)]),
                                  ("spark", ["--spark-master", "local[2]"])):
                seconds, peak, out = timed([*score, str(batch), str(home / engine),
                                            "--engine", engine, *extra, "--json"], env)
                results[engine] = (int(out["rows"]), seconds, peak)  # type: ignore[arg-type]
            serving_port = free_port()
            serving = ManagedProcess(name="serving", home=home,
                                     health_url=f"http://127.0.0.1:{serving_port}/health")
            serving.start([sys.executable, "-m", "serving"], wait_seconds=120, env={
                **env, "MODEL_NAME": "diamond-price", "SERVING_PORT": str(serving_port)})
            url = f"http://127.0.0.1:{serving_port}"
            deadline = time.monotonic() + 120
            while requests.get(f"{url}/ready", timeout=5).status_code != 200:
                if time.monotonic() > deadline:
                    raise SystemExit("error: the serving API never became ready")
                time.sleep(0.5)
            seconds, peak, out = timed([*score, str(api_batch), str(home / "api"), "--engine",
                                        "api", "--json"], {**env, "MLOPS_SERVING_URL": url})
            results["api"] = (int(out["rows"]), seconds, peak)  # type: ignore[arg-type]
        finally:
            if serving is not None:
                serving.stop()
            service.stop()
    report(results)


def report(results: dict[str, tuple[int, float, int]]) -> None:
    api_rate = results["api"][0] / results["api"][1]
    print(f"\n{'engine':<8}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'vs api':>9}"
          f"{'peak MB':>9}")
    for engine, (rows, seconds, peak) in results.items():
        rate = rows / seconds
        print(f"{engine:<8}{rows:>12,}{seconds:>10.1f}{rate:>12,.0f}{rate / api_rate:>8.1f}x"
              f"{peak:>9}")
    print(f"\nlocal engine batch size {BATCH_ROWS:,} rows; input {ROWS:,} rows "
          f"({results['local'][0]:,} scored); seconds include process start and model fetch")
    for engine, (rows, seconds, peak) in results.items():
        print(f"RESULT engine={engine} rows={rows} seconds={seconds:.2f} "
              f"rows_per_s={rows / seconds:.0f} ratio_vs_api={rows / seconds / api_rate:.2f} "
              f"peak_rss_mb={peak}")


if __name__ == "__main__":
    main()
