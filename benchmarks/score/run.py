"""Benchmark: `mlops score` on its three engines, rows/s and peak memory, one run.

Starts a throwaway MLflow server (SQLite, temporary folder), bootstraps the default
estimator as Production, writes BENCH_ROWS (default 1,000,000) demo-like rows as
Parquet, and scores them with the local engine (this process, bounded batches), the
spark engine (local[2]) and the api engine (the serving API on loopback, on
BENCH_API_ROWS rows, default 200,000: its rate is what counts). Each engine runs as its
own `mlops score` process under /usr/bin/time, which reports its peak resident memory
(for spark: the Python driver; the JVM is reported separately from its own process).

Every engine also scores BENCH_SMALL_ROWS (default 10,000) rows, which takes about its
fixed cost (process start, imports, model fetch and verification, Spark's session and
workers). The marginal rate, (large - small rows) / (large - small seconds), is what a
file of hundreds of millions of rows would see; the end-to-end rate includes the fixed
cost once. The local engine also scores BENCH_BOUND_ROWS (default 4 x BENCH_ROWS) rows
with the same batch size: its peak memory should stay that of the smaller file.
Each measurement is the median of BENCH_REPEATS (default 3) processes: Spark's
fixed cost alone varies by seconds from one process to the next, which one run of each
would read as a rate.

The large file is written in row groups of BENCH_ROW_GROUP_ROWS (default 100,000), as a
file or folder of that size arrives from most writers: Spark splits such an input by
itself. An input of a single row group is shuffled across the cores first
(docs/orchestration.md), about doubling Spark's scoring time on 1,000,000 rows here.

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
SMALL_ROWS = int(os.environ.get("BENCH_SMALL_ROWS", "10000"))
ROW_GROUP_ROWS = int(os.environ.get("BENCH_ROW_GROUP_ROWS", "100000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
BOUND_ROWS = int(os.environ.get("BENCH_BOUND_ROWS", str(4 * ROWS)))

Run = tuple[int, float, int]
"""(rows, median seconds, largest peak RSS in MB) of BENCH_REPEATS `mlops score` processes."""


def write_batch(path: Path, rows: int) -> Path:
    data = prepare(load_spec("diamonds"))
    features = pd.concat([data.x_test, data.x_validation, data.x_train]).reset_index(drop=True)
    frame = features.iloc[np.arange(rows) % len(features)].reset_index(drop=True)
    frame.insert(0, "id", np.arange(rows))
    frame.to_parquet(path, index=False, row_group_size=ROW_GROUP_ROWS)
    return path


def write_head(batch: Path, path: Path, rows: int) -> Path:
    """The first `rows` of the batch, in as many row groups as the batch: every input
    takes the same path through an engine (Spark shuffles none of them), so the small
    run's time is the fixed cost of the large one's."""
    groups = -(-ROWS // ROW_GROUP_ROWS)
    pd.read_parquet(batch).head(rows).to_parquet(path, index=False,
                                                 row_group_size=max(1, -(-rows // groups)))
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
            api_batch = write_head(batch, home / "api.parquet", API_ROWS)
            small = write_head(batch, home / "small.parquet", SMALL_ROWS)
            results: dict[str, tuple[Run, Run]] = {}
            score = [venv_bin("mlops"), "score"]

            def measure(source: Path, engine: str, extra: list[str],
                        env_extra: dict[str, str]) -> Run:
                runs = [timed([*score, str(source), str(home / engine / f"{source.stem}-{n}"),
                               "--engine", engine, *extra, "--json"], {**env, **env_extra})
                        for n in range(REPEATS)]
                rows = {int(out["rows"]) for _, _, out in runs}  # type: ignore[call-overload]
                if len(rows) != 1:
                    raise SystemExit(f"error: {engine} scored {sorted(rows)} rows of {source}")
                return (rows.pop(), float(np.median([seconds for seconds, _, _ in runs])),
                        max(peak for _, peak, _ in runs))

            for engine, extra in (("local", ["--batch-rows", str(BATCH_ROWS)]),
                                  ("spark", ["--spark-master", "local[2]"])):
                results[engine] = (measure(small, engine, extra, {}),
                                   measure(batch, engine, extra, {}))
            larger = write_batch(home / "larger.parquet", BOUND_ROWS)
            bound = measure(larger, "local", ["--batch-rows", str(BATCH_ROWS)], {})
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
            on_api = {"MLOPS_SERVING_URL": url}
            results["api"] = (measure(small, "api", [], on_api),
                              measure(api_batch, "api", [], on_api))
        finally:
            if serving is not None:
                serving.stop()
            service.stop()
    report(results, bound)


def marginal_rate(small: Run, large: Run) -> float:
    """Rows per second beyond the fixed cost: what a much larger input would see."""
    return (large[0] - small[0]) / max(large[1] - small[1], 1e-9)


def report(results: dict[str, tuple[Run, Run]], bound: Run) -> None:
    api_rate = results["api"][1][0] / results["api"][1][1]
    api_marginal = marginal_rate(*results["api"])
    print(f"\n{'engine':<8}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'vs api':>9}"
          f"{'fixed s':>9}{'marginal rows/s':>17}{'vs api':>9}{'peak MB':>9}")
    for engine, (small, (rows, seconds, peak)) in results.items():
        rate, marginal = rows / seconds, marginal_rate(small, (rows, seconds, peak))
        print(f"{engine:<8}{rows:>12,}{seconds:>10.1f}{rate:>12,.0f}{rate / api_rate:>8.1f}x"
              f"{small[1]:>9.1f}{marginal:>17,.0f}{marginal / api_marginal:>8.1f}x{peak:>9}")
    print(f"\nlocal engine batch size {BATCH_ROWS:,} rows; input {ROWS:,} rows "
          f"({results['local'][1][0]:,} scored); seconds include process start and model "
          f"fetch; fixed s is the time to score {SMALL_ROWS:,} rows; median of {REPEATS} runs each")
    local_peak = results["local"][1][2]
    print(f"local engine peak memory, batches of {BATCH_ROWS:,}: {local_peak} MB for "
          f"{ROWS:,} rows, {bound[2]} MB for {bound[0]:,} rows")
    for engine, (small, (rows, seconds, peak)) in results.items():
        marginal = marginal_rate(small, (rows, seconds, peak))
        print(f"RESULT engine={engine} rows={rows} seconds={seconds:.2f} "
              f"rows_per_s={rows / seconds:.0f} ratio_vs_api={rows / seconds / api_rate:.2f} "
              f"fixed_s={small[1]:.2f} marginal_rows_per_s={marginal:.0f} "
              f"marginal_ratio_vs_api={marginal / api_marginal:.2f} peak_rss_mb={peak}")
    print(f"RESULT engine=local rows={bound[0]} seconds={bound[1]:.2f} "
          f"rows_per_s={bound[0] / bound[1]:.0f} batch_rows={BATCH_ROWS} peak_rss_mb={bound[2]}")


if __name__ == "__main__":
    main()
