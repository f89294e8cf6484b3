"""Benchmark: 16 MB bodies of every input format against a real `python -m serving`.

For each format (CSV, MLflow JSON in each shape, `/predict` records, Open Inference
Protocol v2 tensors as JSON and binary) three clients send a body just under the 16 MiB
body limit at once, holding millions of tiny rows (the cheapest rows to send and the
dearest to parse), while one more client keeps sending one-row `/predict` requests.
Each format gets a fresh server process (memory a parse leaves behind would otherwise
count against the next format). Recorded per format: each big request's status and
seconds to its answer, the server's peak resident memory (VmHWM from /proc, which
includes start-up), its resident memory afterwards (`process_resident_memory_bytes` on
/metrics), and the one-row requests answered and failed during the attack.

The model is the demo's (diamonds, ridge, fitted on a sample), saved as training saves
it (skops file, signature, input example, compiled twin) and served from its folder by
MODEL_URI, so no tracking server is needed.

The last lines are machine-readable, one per format:
RESULT format=<name> statuses=<s,s,s> slowest_s=<x> peak_mb=<m> predict_ok=<n> predict_failed=<k>

Usage: .venv/bin/python benchmarks/serving/limits.py   (make bench-serving-limits)
Environment: LIMITS_FORMATS (comma-separated, default all), LIMITS_CLIENTS (default 3),
LIMITS_SERVER_REPO (the checkout whose `serving` package is started, default this one:
point it at an export of an older commit to measure the server before a change).
"""

from __future__ import annotations

import dataclasses
import os
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

BODY_BYTES = 16 * 1024 * 1024 - 4096
"""Just under the server's default body limit (SERVING_MAX_BODY_BYTES, 16 MiB)."""
CLIENTS = int(os.environ.get("LIMITS_CLIENTS", "3"))
SERVER_REPO = Path(os.environ.get("LIMITS_SERVER_REPO", str(REPO)))


@dataclass(frozen=True)
class Request:
    """One big request: where it goes, its headers and its body."""

    path: str
    headers: dict[str, str]
    body: bytes


def _repeat(head: bytes, item: bytes, tail: bytes, *, separator: bytes = b",") -> bytes:
    """`head item,item,...,item tail`, as many items as fit in BODY_BYTES."""
    count = (BODY_BYTES - len(head) - len(tail)) // (len(item) + len(separator))
    return head + separator.join([item] * count) + tail


def requests_by_format(model: str, column: str) -> dict[str, Request]:
    """Every format the server reads, each a body of millions of one-column rows."""
    json = {"content-type": "application/json"}
    name = column.encode()
    v2 = f"/v2/models/{model}/infer"
    binary_rows = (BODY_BYTES - 256) // 8
    binary_header = orjson.dumps({"inputs": [{
        "name": column, "datatype": "FP64", "shape": [binary_rows],
        "parameters": {"binary_data_size": binary_rows * 8}}]})
    v2_rows = (BODY_BYTES - 200) // 2
    return {
        "csv": Request("/invocations", {"content-type": "text/csv"},
                       _repeat(name + b"\n", b"1", b"\n", separator=b"\n")),
        "dataframe_records": Request("/invocations", json, _repeat(
            b'{"dataframe_records": [', b"{}", b"]}")),
        "instances": Request("/invocations", json, _repeat(
            b'{"instances": [', b'{"' + name + b'": 1}', b"]}")),
        "inputs_columns": Request("/invocations", json, _repeat(
            b'{"inputs": {"' + name + b'": [', b"1", b"]}}")),
        "dataframe_split": Request("/invocations", json, _repeat(
            b'{"dataframe_split": {"columns": ["' + name + b'"], "data": [', b"[1]", b"]}}")),
        "predict_records": Request("/predict", json, _repeat(b'{"records": [', b"{}", b"]}")),
        "v2_json": Request(v2, json, orjson.dumps({"inputs": [{
            "name": column, "datatype": "FP64", "shape": [v2_rows],
            "data": "DATA"}]}).replace(b'"DATA"', b"[" + b",".join([b"1"] * v2_rows) + b"]")),
        "v2_binary": Request(v2, {**json, "inference-header-content-length":
                                  str(len(binary_header))},
                             binary_header + struct.pack("<d", 1.0) * binary_rows),
    }


@dataclass
class Attack:
    """What one format did to the server."""

    statuses: list[int | str]
    seconds: list[float]
    peak_mb: float
    metrics_mb: float
    predict_ok: int
    predict_failed: list[str]


def peak_mb(pid: int) -> float:
    """The process's resident high-water mark (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def metrics_resident_mb(url: str) -> float:
    """The server's own `process_resident_memory_bytes`, in MB."""
    for line in requests.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return float(line.split()[1]) / 2**20
    raise RuntimeError("no process_resident_memory_bytes on /metrics")


@contextmanager
def one_row_client(url: str, record: dict[str, object]) -> Iterator[tuple[list[int], list[str]]]:
    """One client sending one-row /predict requests in a loop until the block ends."""
    ok: list[int] = []
    failed: list[str] = []
    stop = threading.Event()

    def run() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                answer = session.post(url + "/predict", json={"records": [record]}, timeout=60)
                (ok.append(1) if answer.status_code == 200
                 else failed.append(str(answer.status_code)))
            except requests.RequestException as err:
                failed.append(type(err).__name__)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield ok, failed
    finally:
        stop.set()
        thread.join(90)


def attack(url: str, pid: int, request: Request, record: dict[str, object],
           clients: int = CLIENTS) -> Attack:
    """`clients` concurrent copies of `request`, one-row /predict requests meanwhile."""
    statuses: list[int | str] = [""] * clients
    seconds = [0.0] * clients

    def send(index: int) -> None:
        began = time.monotonic()
        try:
            answer = requests.post(url + request.path, data=request.body,
                                   headers=request.headers, timeout=300)
            statuses[index] = answer.status_code
        except requests.RequestException as err:
            statuses[index] = type(err).__name__
        seconds[index] = time.monotonic() - began

    with one_row_client(url, record) as (ok, failed):
        time.sleep(0.2)
        threads = [threading.Thread(target=send, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        time.sleep(0.2)
    return Attack(statuses=statuses, seconds=seconds, peak_mb=peak_mb(pid),
                  metrics_mb=metrics_resident_mb(url), predict_ok=len(ok),
                  predict_failed=failed)


def save_demo_model(root: Path) -> tuple[Path, dict[str, object]]:
    """The demo's model as training saves it, and one of its validation rows."""
    import mlflow.sklearn

    from modelio import files as modelfiles
    from pipeline.stages.data import prepare
    from pipeline.stages.datasets import load_spec
    from pipeline.stages.train import (
        fit,
        input_example,
        make_estimator,
        model_signature,
        trusted_types,
    )
    from pipeline.stages.twin import Twin, compile_twin

    full = prepare(load_spec("diamonds"))
    data = dataclasses.replace(full, train=full.train.sample(2000, random_state=0),
                               validation=full.validation.head(400))
    model = fit(data, make_estimator(data.spec.task, "ridge", {}))
    folder = root / "model"
    mlflow.sklearn.save_model(model, str(folder), serialization_format="skops",
                              signature=model_signature(model, data.x_train),
                              input_example=input_example(data), pip_requirements=["sklearn"],
                              skops_trusted_types=trusted_types(model))
    twin = compile_twin(model, data.spec, data.x_validation, data.y_validation,
                        example=input_example(data))
    if isinstance(twin, Twin):
        (folder / modelfiles.TWIN_FILE).write_bytes(twin.onnx_bytes)
    row = data.x_validation.dropna().head(1)
    record = {k: (v.item() if hasattr(v, "item") else v)
              for k, v in row.to_dict(orient="records")[0].items()}
    return folder, record


@contextmanager
def served(folder: Path, home: Path, **env: str) -> Iterator[tuple[str, int]]:
    """`python -m serving` on the model folder, on a free loopback port: (url, pid)."""
    from pipeline.localstack.process import ManagedProcess
    from tests.utils import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ManagedProcess(name="serving-limits", home=home, health_url=f"{url}/ready")
    process.start([sys.executable, "-m", "serving"], wait_seconds=120, env={
        "MODEL_URI": str(folder), "MODEL_NAME": "demo", "SERVING_HOST": "127.0.0.1",
        "SERVING_PORT": str(port), "SERVING_LOG_LEVEL": "warning",
        "PYTHONPATH": str(SERVER_REPO), **env})
    try:
        pid = process.pid()
        assert pid is not None, "the server is running"
        yield url, pid
    finally:
        process.stop()


def main(formats: Callable[[str, str], dict[str, Request]] = requests_by_format) -> None:
    chosen = [f for f in os.environ.get("LIMITS_FORMATS", "").split(",") if f]
    with tempfile.TemporaryDirectory(prefix="bench-limits-") as tmp:
        home = Path(tmp)
        print("saving the demo model ...", file=sys.stderr)
        folder, record = save_demo_model(home)
        results = {}
        for name, request in formats("demo", next(iter(record))).items():
            if chosen and name not in chosen:
                continue
            with served(folder, home) as (url, pid):
                print(f"{name}: {CLIENTS} x {len(request.body) / 1e6:.1f} MB, server idle at "
                      f"{metrics_resident_mb(url):.0f} MB ...", file=sys.stderr)
                results[name] = attack(url, pid, request, record)
    print(f"\n{CLIENTS} concurrent bodies of {BODY_BYTES / 2**20:.1f} MiB per format, "
          "one-row /predict requests meanwhile")
    print("| format | statuses | slowest answer s | peak resident MB (VmHWM) | "
          "resident after MB (/metrics) | one-row answered | one-row failed |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, result in results.items():
        print(f"| {name} | {' '.join(map(str, result.statuses))} | "
              f"{max(result.seconds):.1f} | {result.peak_mb:.0f} | {result.metrics_mb:.0f} | "
              f"{result.predict_ok} | {_failures(result.predict_failed)} |")
    print()
    for name, result in results.items():
        print(f"RESULT format={name} statuses={','.join(map(str, result.statuses))} "
              f"slowest_s={max(result.seconds):.2f} peak_mb={result.peak_mb:.0f} "
              f"predict_ok={result.predict_ok} predict_failed={len(result.predict_failed)}")


def _failures(failed: list[str]) -> str:
    """How many failed, and how (status or exception), e.g. `2 (503, ReadError)`."""
    return f"{len(failed)} ({', '.join(sorted(set(failed)))})" if failed else "0"


if __name__ == "__main__":
    main()
