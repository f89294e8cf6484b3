"""Models as data, part one: the bytes and the format, checked before anything is read.

A model in the registry is a folder of files (MLmodel, the model file, requirements,
the input example, the compiled twin). Before anything is deserialized, every reader
(the server, the gate, promote, batch scoring, the DAGs):

1. hashes every file and compares with the manifest recorded at promotion (`manifest`,
   `verify_manifest`): a file replaced after the gate is refused by name;
2. reads MLmodel as plain YAML and refuses anything but the flavors we load, saved as
   data, without code paths or a custom loader (`check_mlmodel`), and every path MLmodel
   names must stay inside the folder (`check_paths`).

Then the model's kind checks what its own file needs before reading it
(`modelio.sklearn_kind`: skops' types against our allowlist) and the twin is checked as a
graph (`modelio.twin`). A model logged with pickle or cloudpickle is refused at step 2,
so its code never runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MANIFEST_TAG = "mlops.manifest"
"""Model version tag: the SHA-256 of every file of the version, as JSON {path: digest}."""

ALLOWED_FLAVORS = frozenset({"python_function", "sklearn"})
ALLOWED_LOADER = "mlflow.sklearn"
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
        hint = (": XGBoost and LightGBM load as (the last step of) a scikit-learn model "
                "saved with skops, as `mlops train` and `pipeline.api` log them"
                if others[0] in ("xgboost", "lightgbm") else "")
        raise ModelRefused("flavor", f"flavor {others[0]} is refused: only sklearn models "
                           f"saved with skops are loaded{hint}")
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


# --- 3. the bytes and the format, before any kind reads its file ------------------------------


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


