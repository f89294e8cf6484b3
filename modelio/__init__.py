"""Models as data: the one way a model is resolved, verified and loaded.

Every reader of a model (the server, the gate, promote, batch scoring on every engine,
the DAGs, the notebook) goes through this package, and every deserialization of a
model file happens inside it:

1. **resolve** a URI to a `Source` (`modelio.source`): who the model is and, for a
   registry version, the manifest promotion recorded;
2. **fetch and verify** its files (`open_folder`, `fetch`; rules in `modelio.files`): the
   manifest, the MLmodel (flavors, no code paths or custom loaders, every named path
   inside the folder); nothing is deserialized yet;
3. **load a runtime** when asked: the model itself through its kind (`modelio.sklearn`:
   skops, trusting only allowlisted types checked first) and, for a promoted version,
   its compiled twin (`modelio.twin`: an ONNX graph of allowlisted operators).

A model kind is one module here. The package imports nothing of `pipeline` or
`serving`: the serving image ships it, and the pipeline imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelio.files import CheckedModel, ModelRefused, check_files
from modelio.identity import ModelIdentity
from modelio.source import Source, UnknownModel, download

__all__ = ["ModelIdentity", "ModelRefused", "OpenedModel", "Source", "UnknownModel",
           "fetch", "open_folder"]


@dataclass
class OpenedModel:
    """A model whose files passed the byte and format checks; nothing deserialized until a
    runtime is asked for (`estimator`, or `modelio.twin` on `files.twin_file`)."""

    source: Source
    files: CheckedModel
    _info: Any = field(default=None, repr=False)
    _estimator: Any = field(default=None, repr=False)

    @property
    def identity(self) -> ModelIdentity:
        return self.source.identity

    @property
    def folder(self) -> Path:
        return self.files.folder

    @property
    def info(self) -> Any:
        """MLmodel as MLflow reads it (YAML: flavors, signature), read once."""
        if self._info is None:
            from mlflow.models import Model

            self._info = Model.load(str(self.folder))
        return self._info

    @property
    def signature(self) -> Any:
        return self.info.signature

    def input_example(self) -> Any:
        """The input example (JSON; its path was checked to lie inside the folder), as a
        pandas frame, or None."""
        import pandas as pd

        example = self.info.load_input_example(str(self.folder))
        if example is None or isinstance(example, pd.DataFrame):
            return example
        return pd.DataFrame(example)

    def estimator(self) -> Any:
        """The model itself, loaded as data by its kind (types checked first), once."""
        if self._estimator is None:
            from modelio.sklearn_kind import load_sklearn

            self._estimator = load_sklearn(self.files)
        return self._estimator


def open_folder(folder: Path, source: Source, *, require_manifest: bool | None = None
                ) -> OpenedModel:
    """Verify a folder of a model's files; `ModelRefused` names the rule that failed.

    A registry version must carry the manifest promotion recorded (`require_manifest`,
    by default for registered sources); a run's model is checked by the format rules.
    """
    if require_manifest is None:
        require_manifest = source.registered
    if require_manifest and source.manifest is None:
        raise ModelRefused("manifest", f"{source.identity.label} has no recorded manifest: only "
                           "versions recorded by `mlops promote` are loaded")
    return OpenedModel(source=source,
                       files=check_files(folder, expected_manifest=source.manifest))


def fetch(source: Source, workdir: Path, *, tracking_uri: str,
          require_manifest: bool | None = None) -> OpenedModel:
    """Download the source's files into `workdir` and verify them (`open_folder`)."""
    folder = download(source, workdir, tracking_uri=tracking_uri)
    return open_folder(folder, source, require_manifest=require_manifest)
