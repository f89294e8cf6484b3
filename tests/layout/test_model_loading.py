"""Every deserialization of a model file happens inside `modelio`, the one way in.

A model read anywhere else could skip the manifest, the format rules or the type
allowlist. This walks the code that ships or runs (`pipeline/`, `serving/`, `dags/`,
`benchmarks/`, the notebook) for the calls that turn a model file into objects: skops'
and pickle's loaders, onnxruntime sessions, MLflow's model loaders, boosters read from
files. Reading YAML, JSON or Parquet is not one of them.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.utils import REPO

DESERIALIZING = {
    "skops": re.compile(r"\bskops\.io\.loads?\(|\bskops_io\(\)\.loads?\(|\bsio\.loads?\("),
    "pickle": re.compile(r"\b(c?pickle|cloudpickle|joblib|dill)\.loads?\("),
    "onnxruntime": re.compile(r"\bInferenceSession\("),
    "mlflow loaders": re.compile(r"\bmlflow\.\w+\.load_model\(|\bload_model\(|"
                                 r"\bpyfunc\.load_model\("),
    "boosters": re.compile(r"\bBooster\(|\.load_model\(|\bmodel_file\s*="),
}
ROOTS = ("pipeline", "serving", "dags", "benchmarks")


def sources() -> list[tuple[str, str]]:
    """(path, code) of every Python file and notebook cell that ships or runs."""
    found = [(str(p.relative_to(REPO)), p.read_text(encoding="utf-8"))
             for root in ROOTS for p in sorted((REPO / root).rglob("*.py"))]
    for notebook in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        found.append((str(notebook.relative_to(REPO)), code))
    return found


def violations(path: str, code: str) -> list[str]:
    found = []
    for number, line in enumerate(code.splitlines(), 1):
        stripped = line.split("#", 1)[0]
        for what, pattern in DESERIALIZING.items():
            if pattern.search(stripped):
                found.append(f"{path}:{number}: {what}: {line.strip()[:100]}")
    return found


def test_every_model_deserialization_is_in_modelio() -> None:
    found = [v for path, code in sources() for v in violations(path, code)]
    assert not found, "load models through modelio: " + "; ".join(found)


def test_modelio_holds_the_deserializations() -> None:
    """The scan looks where the loaders really are: it finds them inside modelio."""
    inside = [v for p in sorted((REPO / "modelio").rglob("*.py"))
              for v in violations(str(p.relative_to(REPO)), p.read_text(encoding="utf-8"))]
    assert any("skops" in v for v in inside)
    assert any("onnxruntime" in v for v in inside)


@pytest.mark.parametrize("planted", [
    "model = mlflow.sklearn.load_model('runs:/x/model')",
    "estimator = skops.io.load(path, trusted=types)",
    "session = ort.InferenceSession(blob)",
    "booster = xgboost.Booster(model_file='m.ubj')",
    "obj = pickle.loads(data)",
])
def test_the_scan_finds_a_planted_loader(planted: str) -> None:
    assert violations("x.py", f"def f():\n    {planted}\n")
