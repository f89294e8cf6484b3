"""A model for batch scoring, loaded as data and verified where it is loaded.

The same rules as the server (`modelio`): the files must match the manifest
promotion recorded (when the model is a registry version), MLmodel must describe a
skops sklearn model, and its types must be on our allowlist; only then is it read.
The Spark engine builds one of these in every executor process from the shipped files.

Like the server, it scores with the version's compiled twin (onnxruntime) when it has
one that agrees with sklearn on the input example (`modelio.twin.checked_twin`), so a
batch's predictions are the ones `/predict` answers, and sklearn otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import modelio
from modelio.identity import ModelIdentity
from modelio.twin import OnnxPredictor, checked_twin
from pipeline.errors import DataError, RegistryError
from pipeline.stages.batch_files import InputColumn
from pipeline.stages.data import as_categories

PROBABILITY_PREFIX = "probability_"
"""A classifier's score columns: `probability_<label>` per class, from every engine."""


@dataclass
class BatchModel:
    folder: Path
    identity: ModelIdentity
    columns: tuple[InputColumn, ...]
    manifest: dict[str, str] | None = None
    estimator: Any = field(default=None, repr=False)
    twin: OnnxPredictor | None = field(default=None, repr=False)
    why_no_twin: str | None = None
    """Why sklearn scores (no twin, turned off, or the twin refused), in one line."""

    @classmethod
    def load(cls, folder: Path, *, identity: ModelIdentity, manifest: dict[str, str] | None,
             runtime: str = "auto", threads: int = 1) -> BatchModel:
        """Verify the folder (`modelio`), then read the model (and its twin); a refusal
        is one line (exit 2). `threads` is the twin's intra-op pool: one where batches
        are scored a core each (the local engine's workers, Spark's tasks)."""
        source = modelio.Source(identity=identity, manifest=manifest,
                                registered=manifest is not None)
        try:
            return cls.of(modelio.open_folder(folder, source), runtime=runtime,
                          threads=threads)
        except modelio.ModelRefused as err:
            raise RegistryError(f"model {identity.name} version {identity.version} refused: "
                                f"{err}") from err

    @classmethod
    def of(cls, opened: modelio.OpenedModel, *, runtime: str = "auto",
           threads: int = 1) -> BatchModel:
        """A verified model ready to score batches: its estimator, and its twin when the
        manifest names one that agrees with it on the input example."""
        signature = opened.signature
        if signature is None or signature.inputs is None:
            raise RegistryError(f"model {opened.identity.name}: no signature, so no input "
                                "columns")
        columns = tuple(InputColumn(name=str(spec.name), type=str(getattr(spec.type, "name",
                                                                          spec.type)))
                        for spec in signature.inputs.inputs)
        estimator = opened.estimator()
        twin: OnnxPredictor | None = None
        why_not: str | None = "turned off (--runtime sklearn)"
        if runtime != "sklearn":
            example = opened.input_example()
            if example is not None:
                example = model_inputs(example, columns)
            twin, why_not = checked_twin(opened.files.twin_file, estimator, example,
                                         threads=threads)
        return cls(folder=opened.folder, identity=opened.identity, columns=columns,
                   manifest=opened.source.manifest, estimator=estimator, twin=twin,
                   why_no_twin=why_not)

    @property
    def version(self) -> str:
        """The version written beside each score: `run` for a run's model (no version)."""
        return self.identity.version or "run"

    @property
    def feature_names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def runtime(self) -> str:
        return "sklearn" if self.twin is None else self.twin.runtime

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Prediction (and one probability column per class) for each row, same index."""
        x = model_inputs(frame, self.columns)
        scorer = self.twin if self.twin is not None else self.estimator
        try:
            out = pd.DataFrame({"prediction": scorer.predict(x)}, index=frame.index)
            if hasattr(self.estimator, "predict_proba"):
                proba = np.asarray(scorer.predict_proba(x))
                for index, label in enumerate(self.estimator.classes_):
                    out[f"{PROBABILITY_PREFIX}{label}"] = proba[:, index]
        except (ValueError, TypeError) as err:
            raise DataError(f"score: the model cannot score these rows: "
                            f"{str(err).splitlines()[0][:200]}") from err
        out["model_name"] = self.identity.name
        out["model_version"] = self.version
        out["model_run_id"] = self.identity.run_id
        return out


def model_inputs(frame: pd.DataFrame, columns: Sequence[InputColumn]) -> pd.DataFrame:
    """The model's columns as training gave them to it: numbers as floats, the rest as
    text (`data.as_categories`), whatever types the file had."""
    x = frame[[column.name for column in columns]].copy()
    for column in columns:
        if column.type in {"double", "float"}:
            x[column.name] = pd.to_numeric(x[column.name], errors="coerce").astype(float)
        elif column.type == "string":
            x[column.name] = as_categories(x[column.name])
    return x
