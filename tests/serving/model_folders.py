"""Model folders as `mlops train` logs them, loaded the way the server loads them.

MLflow writes the folder (skops file, the signature training writes, the input
example); the twin training compiles goes next to the skops file; the server's own
`_check` + `_assemble` load it against a manifest of its files (no registry), and
finish what a twin-first load leaves pending, as the store does (unless asked not to).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mlflow.sklearn
from sklearn.pipeline import Pipeline

from modelio import files as modelfiles
from modelio.identity import ModelIdentity
from modelio.source import Source
from pipeline.stages.data import PreparedData, prepare
from pipeline.stages.datasets import load_spec
from pipeline.stages.train import input_example, model_signature, trusted_types
from pipeline.stages.twin import Twin, compile_twin
from serving import scoring
from serving.loader import _assemble, _check


def sampled(dataset: str, *, train: int, validation: int) -> PreparedData:
    """A built-in dataset prepared as training does, with fewer rows: quick to fit."""
    full = prepare(load_spec(dataset))
    return dataclasses.replace(full, train=full.train.sample(train, random_state=0),
                               validation=full.validation.head(validation))


def own_twin(model: Pipeline, data: PreparedData) -> bytes:
    """The twin training would log for `model`: verified on the validation rows."""
    twin = compile_twin(model, data.spec, data.x_validation, data.y_validation,
                        example=input_example(data))
    assert isinstance(twin, Twin), twin
    return twin.onnx_bytes


def save_like_training(root: Path, model: Pipeline, data: PreparedData,
                       twin_bytes: bytes | None) -> Path:
    folder = root / "model"
    mlflow.sklearn.save_model(model, str(folder), serialization_format="skops",
                              signature=model_signature(model, data.x_train),
                              input_example=input_example(data), pip_requirements=["sklearn"],
                              skops_trusted_types=trusted_types(model))
    if twin_bytes is not None:
        (folder / modelfiles.TWIN_FILE).write_bytes(twin_bytes)
    return folder


def load_folder(folder: Path, *, name: str = "m", manifest: dict[str, str] | None = None,
                runtime: str = "auto", max_rows: int = 100, finish: bool = True,
                twin_first: bool = True) -> scoring.LoadedModel:
    source = Source(identity=ModelIdentity(name=name, version="1", run_id="r",
                                           uri=f"models:/{name}/1"),
                    manifest=manifest or modelfiles.manifest(folder), registered=True)
    loaded, _ = _assemble(_check(source, folder), max_rows=max_rows, runtime=runtime,
                          twin_first=twin_first)
    if finish and loaded.pending is not None:
        return loaded.pending()
    return loaded
