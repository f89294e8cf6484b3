"""Models as data: check the bytes, check the format, and only then let skops read them.

A model in the registry is a folder of files (MLmodel, model.skops, requirements, the
input example). Before anything is deserialized, the server, the gate and promote:

1. hash every file and compare with the manifest recorded at promotion (`manifest`,
   `verify_manifest`): a file replaced after the gate is refused by name;
2. read MLmodel as plain YAML and refuse anything but the sklearn flavor saved with
   skops, without code paths or a custom loader (`check_mlmodel`);
3. ask skops which types the file needs, without building any object, and refuse
   types outside `ALLOWED_TYPES`, a list held here, never the one in the model's own
   MLmodel (`check_types`); skops' own default trust in every scikit-learn estimator
   is turned off (`skops_io`), so each estimator and transformer is named here too;
4. load with skops, trusting exactly those types (`load_sklearn`).

A compiled twin (`model.onnx`, see `serving.twin`) is one more file of the folder: the
manifest covers it like the others, and it is a graph of standard ONNX operators that
onnxruntime reads as data (no custom operator library is ever registered). Steps 1 and 2
(`check_files`) are enough to read it: the server does so, at start-up, before skops is
imported; step 3 then always comes before the skops file is read (`load_sklearn`).

A model logged with pickle or cloudpickle is refused at step 2, so its code never runs.
This module imports nothing of the project: the serving image ships it, and the
pipeline (training, the gate, promote) imports it so all of them apply the same rules.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

MANIFEST_TAG = "mlops.manifest"
"""Model version tag: the SHA-256 of every file of the version, as JSON {path: digest}."""

ALLOWED_FLAVORS = frozenset({"python_function", "sklearn"})
ALLOWED_LOADER = "mlflow.sklearn"
ALLOWED_TYPES = frozenset({
    "numpy.dtype",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.dummy.DummyClassifier",
    "sklearn.dummy.DummyRegressor",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._tree.Tree",
})
"""Every type the estimators of `pipeline.stages.train` need beyond skops' safe
primitives, containers, numpy and scikit-learn's internal loss and binning types (a test
checks every estimator against this list). Add a type only after reading what it can do
when loaded."""

TWIN_FILE = "model.onnx"
"""The model's compiled twin (ONNX, data only), next to the skops file. Derived, never
supplied: promotion compiles it from the verified model and records it in the manifest;
a twin that only the run carries is never used (`check_files`)."""
DERIVED_FILES = frozenset({TWIN_FILE})

PROBABILITIES_PARAM = "probabilities"
"""The signature parameter training declares for a classifier (boolean, default false):
true asks the server for each row's class probabilities."""

LOCAL_ONLY_FILES = frozenset({"registered_model_meta"})
"""Written by MLflow's client into a downloaded `models:/` folder, never stored."""

DIGEST_PREFIX = 12


class ModelRefused(Exception):
    """A model that must not be loaded; `rule` names the check, the message says why."""

    def __init__(self, rule: str, message: str, *, file: str | None = None,
                 expected: str | None = None, found: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.file = file
        self.expected = expected
        self.found = found


@dataclass(frozen=True)
class CheckedModel:
    """A folder that passed every check: where its skops file is, which types it needs."""

    folder: Path
    model_file: Path
    types: tuple[str, ...] | None
    """None: not asked yet (`check_files`); `load_sklearn` checks them before loading."""
    manifest: dict[str, str]
    twin_file: Path | None = None
    """The compiled twin (`model.onnx`), when the folder has one: its bytes are covered by
    the same manifest as every other file, so a twin added after the gate is refused."""


# --- 1. the bytes --------------------------------------------------------------------------


def manifest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under `folder`, by its relative POSIX path."""
    digests: dict[str, str] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative in LOCAL_ONLY_FILES:
            continue
        sha = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        digests[relative] = sha.hexdigest()
    return digests


def parse_manifest(text: str | None) -> dict[str, str] | None:
    """The manifest tag's JSON, or None when it is absent or not a manifest."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return None
    return value


def without_derived(digests: Mapping[str, str]) -> dict[str, str]:
    """The files that make the model as trained: what a gate evaluates and compares."""
    return {name: digest for name, digest in digests.items() if name not in DERIVED_FILES}


def dump_manifest(digests: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(digests.items())), separators=(",", ":"))


def first_difference(expected: Mapping[str, str], found: Mapping[str, str]
                     ) -> tuple[str, str | None, str | None] | None:
    """(file, expected digest, found digest) of the first file that differs, or None."""
    for name in sorted(set(expected) | set(found)):
        if expected.get(name) != found.get(name):
            return name, expected.get(name), found.get(name)
    return None


def verify_manifest(folder: Path, expected: Mapping[str, str]) -> dict[str, str]:
    """The folder's manifest, if it equals `expected`; else refuse naming the file."""
    found = manifest(folder)
    difference = first_difference(expected, found)
    if difference is not None:
        name, want, got = difference
        raise ModelRefused(
            "manifest", f"{name}: expected sha256 {_short(want)}, found {_short(got)} "
            "(the files differ from what was gated)",
            file=name, expected=_short(want), found=_short(got))
    return found


def _short(digest: str | None) -> str:
    return digest[:DIGEST_PREFIX] if digest else "no file"


# --- 2. the format ---------------------------------------------------------------------------


def read_mlmodel(folder: Path) -> dict[str, Any]:
    """MLmodel as plain YAML (safe_load: no tags, no objects)."""
    path = folder / "MLmodel"
    try:
        value = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelRefused("format", "no MLmodel file: not an MLflow model") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ModelRefused("format", f"MLmodel is not readable YAML ({type(err).__name__})"
                           ) from None
    if not isinstance(value, dict) or not isinstance(value.get("flavors"), dict):
        raise ModelRefused("format", "MLmodel has no flavors")
    return value


def check_mlmodel(folder: Path) -> Path:
    """The sklearn model file, if MLmodel describes a data-only sklearn model."""
    mlmodel = read_mlmodel(folder)
    flavors: dict[str, Any] = mlmodel["flavors"]
    others = sorted(set(flavors) - ALLOWED_FLAVORS)
    if others:
        raise ModelRefused("flavor", f"flavor {others[0]} is refused: only sklearn models "
                           "saved with skops are loaded")
    sklearn = flavors.get("sklearn")
    if not isinstance(sklearn, dict):
        raise ModelRefused("flavor", "no sklearn flavor: only sklearn models saved with skops "
                           "are loaded")
    serialization = sklearn.get("serialization_format")
    if serialization != "skops":
        raise ModelRefused("serialization", f"serialization format {serialization} is refused: "
                           "models load as data (skops), never as pickle")
    pyfunc = flavors.get("python_function") or {}
    if not isinstance(pyfunc, dict):
        raise ModelRefused("format", "the python_function flavor is not a mapping")
    if sklearn.get("code") or pyfunc.get("code"):
        raise ModelRefused("code", "models with code paths are refused: a model is data")
    loader = pyfunc.get("loader_module", ALLOWED_LOADER)
    if loader != ALLOWED_LOADER:
        raise ModelRefused("loader", f"loader module {loader} is refused (only {ALLOWED_LOADER})")
    check_paths(folder, mlmodel)
    return inside(folder, sklearn.get("pickled_model"), what="the sklearn flavor's model file")


def named_paths(mlmodel: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(where, value) of every field of MLmodel that names a file MLflow may read."""
    flavors = mlmodel.get("flavors") or {}
    found: list[tuple[str, Any]] = []
    for flavor, conf in flavors.items():
        if not isinstance(conf, dict):
            continue
        for key in ("pickled_model", "model_path", "data", "model_data"):
            if key in conf:
                found.append((f"flavors.{flavor}.{key}", conf[key]))
        env = conf.get("env")
        if isinstance(env, dict):
            found += [(f"flavors.{flavor}.env.{k}", v) for k, v in env.items()]
        elif env is not None:
            found.append((f"flavors.{flavor}.env", env))
    example = mlmodel.get("saved_input_example_info")
    if isinstance(example, dict) and "artifact_path" in example:
        found.append(("saved_input_example_info.artifact_path", example["artifact_path"]))
    return found


def check_paths(folder: Path, mlmodel: Mapping[str, Any]) -> None:
    """Every file MLmodel names lies inside the model folder: MLflow would otherwise read
    (and the server publish, as its input example) a file from elsewhere on the disk."""
    for where, value in named_paths(mlmodel):
        inside(folder, value, what=where, must_exist=False)


def inside(folder: Path, name: Any, *, what: str, must_exist: bool = True) -> Path:
    """`folder/name`, if `name` is a relative path that stays inside `folder` (symbolic
    links resolved); else the model is refused, naming the field."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise ModelRefused("path", f"{what}: not a file name inside the model folder")
    root = folder.resolve()
    path = (folder / name).resolve()
    if name.startswith("/") or ".." in name.split("/") or not path.is_relative_to(root):
        raise ModelRefused("path", f"{what}: the path leaves the model folder: refused")
    if must_exist and not path.is_file():
        raise ModelRefused("format", f"{what} {name[:80]} is missing")
    return path


# --- 3. the types ------------------------------------------------------------------------------


def check_types(types: Iterable[str]) -> tuple[str, ...]:
    """The types, if every one is on our allowlist."""
    needed = tuple(sorted(set(types)))
    refused = [name for name in needed if name not in ALLOWED_TYPES]
    if refused:
        more = f" and {len(refused) - 1} more" if len(refused) > 1 else ""
        raise ModelRefused("types", f"type {refused[0]}{more} is not on the loading allowlist "
                           "(serving/modelfiles.py ALLOWED_TYPES)")
    return needed


def skops_io() -> ModuleType:
    """`skops.io`, with none of scikit-learn's estimators trusted by default.

    Unless told which types to trust, skops trusts every scikit-learn estimator, and
    builds that list when it is imported by importing all of scikit-learn
    (`sklearn.utils.all_estimators`): importing skops after scikit-learn took 0.8 s
    with that list and takes 0.4 s without, on the server's cold start and in every
    `mlops` command that reads or writes a model. The list is emptied, so only the types
    named in `ALLOWED_TYPES` load (narrower than skops' default), and when skops is first
    imported here it is never built. For the whole process: MLflow, which loads a model
    back when it saves one with skops, then needs the types named (`skops_trusted_types`,
    as `mlops train` does).
    """
    if "skops.io" not in sys.modules:
        import sklearn.utils

        listed = sklearn.utils.all_estimators
        sklearn.utils.all_estimators = _no_estimators
        try:
            importlib.import_module("skops.io")
        finally:
            sklearn.utils.all_estimators = listed
    from skops.io import _trusted_types

    _trusted_types.SKLEARN_ESTIMATOR_TYPE_NAMES.clear()  # shared by every skops node type
    module: ModuleType = sys.modules["skops.io"]
    return module


def _no_estimators(*_args: Any, **_kwargs: Any) -> list[tuple[str, type]]:
    return []


def untrusted_types(model_file: Path) -> list[str]:
    """What skops would need to trust; reads the file's schema, builds no object."""
    try:
        return list(skops_io().get_untrusted_types(file=model_file))
    except Exception as err:  # any failure to read the schema is a refusal
        raise ModelRefused("format", f"{model_file.name} is not a skops file "
                           f"({type(err).__name__})") from None


# --- 4. all of it, then load ---------------------------------------------------------------------


def check_model(folder: Path, *, expected_manifest: Mapping[str, str] | None = None
                ) -> CheckedModel:
    """Every check, in order, without deserializing anything."""
    checked = check_files(folder, expected_manifest=expected_manifest)
    return dataclasses.replace(checked, types=check_types(untrusted_types(checked.model_file)))


def check_files(folder: Path, *, expected_manifest: Mapping[str, str] | None = None
                ) -> CheckedModel:
    """Steps 1 and 2 (the bytes, the format), which need no skops: enough to serve the
    compiled twin, a graph onnxruntime reads as data. The skops file's types (step 3)
    are checked by `load_sklearn` before it is read.

    The twin is offered only when the recorded manifest names it (promotion compiled
    it): a `model.onnx` in a run's folder, or in a folder checked without a manifest,
    is someone's upload, and is ignored."""
    digests = (verify_manifest(folder, expected_manifest) if expected_manifest is not None
               else manifest(folder))
    model_file = check_mlmodel(folder)
    twin = folder / TWIN_FILE
    recorded = expected_manifest is not None and TWIN_FILE in expected_manifest
    return CheckedModel(folder=folder, model_file=model_file, types=None, manifest=digests,
                        twin_file=twin if recorded and twin.is_file() else None)


def load_sklearn(checked: CheckedModel) -> Any:
    """The estimator, loaded by skops trusting exactly the checked, allowed types (checked
    here first when they were not yet)."""
    types = checked.types
    if types is None:
        types = check_types(untrusted_types(checked.model_file))
    return skops_io().load(checked.model_file, trusted=list(types))
