"""The child process that measures what serving one model costs: `python -m` this module.

`pipeline.gitops.budgets` starts one per model and run, so the load time and the memory
are that model's alone. A fresh interpreter imports what every runtime shares (numpy,
pandas, `modelio`), checks the model's folder through `modelio` and notes its resident
memory; then it loads the model on the runtime it would be served with, through
`modelio` (the compiled twin with `modelio.twin`, else the model itself through its
kind), which imports the runtime's own libraries as a server's cold start does, and
answers one row. A twin the runtime refuses is not served by the server either: the
model's own runtime is measured then, as the server would fall back to it. After a
warm-up it times one-row calls, with one thread as the server runs them, and prints one
JSON line:

    {"runtime": "onnx", "model_mb": ..., "load_s": ..., "memory_mb": ...,
     "p50_ms": ..., "p99_ms": ..., "calls": ...}

`model_mb` is the size of the file the runtime reads (the ONNX graph, or the model
file); `load_s` runs from the start of loading to the first answer; `memory_mb` is the
growth of the resident set from before loading to its peak (Linux `VmHWM`): the
runtime and the model, not the interpreter. Any failure is one line on stderr and exit
status 1: the parent reports it, and fails closed when a budget needs the figure.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MB = 1024 * 1024
THREADS = 1
"""The serving API's default for both runtimes (`SERVING_ONNX_THREADS`,
`SERVING_SKLEARN_THREADS`)."""
WARM_UP_CALLS = 5


def _status_mb(field: str) -> float | None:
    """A `/proc/self/status` figure in MB (Linux), or None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024 / MB
    except (OSError, ValueError, IndexError):
        return None
    return None


def resident_mb() -> float:
    found = _status_mb("VmRSS")
    return found if found is not None else peak_mb()


def peak_mb() -> float:
    found = _status_mb("VmHWM")
    if found is not None:
        return found
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, B on macOS
    return float(peak) / (MB if sys.platform == "darwin" else 1024)


def _opened(spec: dict[str, Any]) -> Any:
    """The model's folder checked by `modelio` (bytes against the manifest the gate
    verified, format rules): nothing deserialized yet."""
    import modelio
    from modelio.identity import ModelIdentity
    from modelio.source import Source

    folder = Path(spec["folder"])
    source = Source(identity=ModelIdentity(name=spec["name"], version=spec.get("version"),
                                           run_id=spec.get("run_id"), uri=str(folder)),
                    manifest=spec.get("manifest"))
    return modelio.open_folder(folder, source, require_manifest=False)


def _load(spec: dict[str, Any], opened: Any) -> tuple[str, Callable[[Any], Any], float]:
    """(runtime, predict, model size in MB): the twin when one is given, else the model
    through its kind; the runtime's libraries are imported here, as on a cold start."""
    twin = spec.get("twin")
    if twin is not None:
        from modelio.twin import OnnxPredictor

        try:
            predictor = OnnxPredictor.from_file(Path(twin), threads=THREADS)
        except Exception:  # refused or unreadable: the server serves the model instead
            predictor = None
        if predictor is not None:
            return "onnx", predictor.predict, Path(twin).stat().st_size / MB
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=THREADS)
    estimator = opened.estimator()

    def predict(frame: Any) -> Any:
        import sklearn

        with sklearn.config_context(skip_parameter_validation=True):
            return estimator.predict(frame)

    return "sklearn", predict, opened.files.model_file.stat().st_size / MB


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Load, answer once (the load time ends there), warm up, then time one-row calls."""
    import numpy as np
    import pandas as pd

    row = pd.DataFrame.from_records(spec["row"], columns=spec["columns"])
    opened = _opened(spec)
    before = resident_mb()
    start = time.perf_counter()
    runtime, predict, size = _load(spec, opened)
    predict(row)
    load_s = time.perf_counter() - start
    for _ in range(WARM_UP_CALLS):
        predict(row)
    timings: list[float] = []
    began = time.perf_counter()
    while len(timings) < spec["max_calls"] and (
            len(timings) < spec["min_calls"] or time.perf_counter() - began < spec["seconds"]):
        tick = time.perf_counter()
        predict(row)
        timings.append(time.perf_counter() - tick)
    p50, p99 = np.percentile(np.asarray(timings) * 1000.0, [50, 99])
    return {"runtime": runtime, "model_mb": size, "load_s": load_s,
            "memory_mb": max(0.0, peak_mb() - before), "p50_ms": float(p50),
            "p99_ms": float(p99), "calls": len(timings)}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m pipeline.gitops.budget_probe SPEC.json", file=sys.stderr)
        return 2
    try:
        spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
        figures = measure(spec)
    except Exception as err:  # one line for the parent, whatever it was
        text = " ".join(str(err).split()) or type(err).__name__
        print(f"{type(err).__name__}: {text}"[:300], file=sys.stderr)
        return 1
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
