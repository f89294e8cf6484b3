"""The server prefers a version's compiled twin, verified like every file, else sklearn.

Real model folders written by MLflow (skops) with the twin `mlops train` would log next
to the skops file; loaded by the server's own `_check` + `_assemble` (no registry). A
twin carrying the answers training recorded is served first, before scikit-learn is
loaded; the store then loads the skops model and re-checks the twin against it.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.pipeline import Pipeline

from modelio import allowlist
from modelio import files as modelfiles
from modelio.source import Source
from modelio.twin import Recorded, check_graph, recorded_twin
from pipeline.stages.data import PreparedData
from pipeline.stages.train import fit, input_example, make_estimator
from pipeline.stages.twin import convert, with_metadata
from serving import scoring
from serving.app import create_app
from serving.loader import Refused
from serving.schema import ColumnBatch
from serving.store import ModelStore
from tests.serving.helpers import ready_store
from tests.serving.model_folders import load_folder, own_twin, sampled, save_like_training
from tests.utils import REPO, onnx_attacks, wait_for

pytestmark = pytest.mark.usefixtures("one_sklearn_thread")


@pytest.fixture(scope="module")
def data() -> PreparedData:
    return sampled("diamonds", train=2000, validation=500)


def _fit(data: PreparedData, **params: object) -> Pipeline:
    return fit(data, make_estimator("regression", "hist_gradient_boosting",
                                    {"max_iter": 30, **params}))


@pytest.fixture(scope="module")
def model(data: PreparedData) -> Pipeline:
    return _fit(data)


def test_a_verified_twin_serves_and_predicts_like_the_model(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    folder = save_like_training(tmp_path, model, data, own_twin(model, data))
    loaded = load_folder(folder)
    assert (loaded.runtime, loaded.twin) == ("onnx", None)
    head = data.x_validation.head(100)
    rows = head.astype(object).where(head.notna(), None)
    frame = scoring.inputs_from_records(rows.to_dict(orient="records"), loaded)
    assert isinstance(frame, ColumnBatch)  # the twin takes column arrays, not a frame
    served = scoring.run(loaded, frame)
    limit = 1e-6 * max(1.0, float(data.y_validation.abs().max()))
    assert np.max(np.abs(served - model.predict(data.x_validation.head(100)))) <= limit

    app = create_app(ready_store(loaded), manage_store=False)
    with TestClient(app) as client:
        status = client.get("/model").json()
        assert (status["runtime"], status["twin"]) == ("onnx", None)
        assert 'runtime="onnx"' in client.get("/metrics").text


def test_a_twin_that_disagrees_is_not_served_and_model_says_why(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    other = convert(_fit(data, max_depth=2, max_iter=10), data.spec)
    loaded = load_folder(save_like_training(tmp_path, model, data, other))
    assert loaded.runtime == "sklearn"
    assert loaded.twin is not None
    assert loaded.twin.startswith(
        "refused: the twin disagrees with the model on the input example: max abs difference")
    app = create_app(ready_store(loaded), manage_store=False)
    with TestClient(app) as client:
        assert client.get("/model").json()["runtime"] == "sklearn"
        assert 'runtime="sklearn"' in client.get("/metrics").text


def test_a_version_without_twin_or_with_the_runtime_turned_off_serves_sklearn(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    without = load_folder(save_like_training(tmp_path / "a", model, data, None))
    assert without.runtime == "sklearn"
    assert without.twin == (
        "this version has no compiled twin: promotion records one only when "
        "HistGradientBoostingRegressor has a converter and its twin's parity is proven; "
        "HistGradientBoostingRegressor serves on its own runtime (scikit-learn)")
    off = load_folder(save_like_training(tmp_path / "b", model, data, own_twin(model, data)),
                      runtime="sklearn")
    assert (off.runtime, off.twin) == ("sklearn", "turned off (SERVING_RUNTIME=sklearn)")


def test_a_twin_the_manifest_does_not_cover_is_refused_before_loading(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    folder = save_like_training(tmp_path, model, data, None)
    gated = modelfiles.manifest(folder)
    (folder / modelfiles.TWIN_FILE).write_bytes(own_twin(model, data))  # added after the gate
    with pytest.raises(Refused) as refused:
        load_folder(folder, manifest=gated)
    assert (refused.value.rule, refused.value.file) == ("manifest", modelfiles.TWIN_FILE)

    swapped = tmp_path / "swapped"
    folder = save_like_training(swapped, model, data, own_twin(model, data))
    gated = modelfiles.manifest(folder)
    (folder / modelfiles.TWIN_FILE).write_bytes(convert(_fit(data, max_iter=5), data.spec))
    with pytest.raises(Refused) as refused:
        load_folder(folder, manifest=gated)
    assert refused.value.file == modelfiles.TWIN_FILE


# --- twin first: served on the answers training recorded, before scikit-learn loads ---

FIRST_LOAD = """
import json, sys
from pathlib import Path
from modelio import files as modelfiles
from modelio.identity import ModelIdentity
from modelio.source import Source
from serving.loader import _assemble, _check
folder = Path(sys.argv[1])
source = Source(identity=ModelIdentity(name="m", version="1", run_id="r", uri="models:/m/1"),
                manifest=modelfiles.manifest(folder), registered=True)
first, _ = _assemble(_check(source, folder), max_rows=100)
imported = sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "skops"))
final = first.pending()
print(json.dumps({"first": [first.runtime, first.pending is not None, imported],
                  "final": [final.runtime, final.pending is not None,
                            type(final.predictor.estimator).__name__, final.twin]}))
"""


def _store_of(first: scoring.LoadedModel) -> ModelStore:
    """A store whose first (and only) version is `first`, finished in its own thread."""
    source = Source(identity=first.info)
    store = ModelStore(resolve=lambda: source, load=lambda _: first, poll_seconds=60)
    assert store.refresh()
    assert store.current is first
    return store


def test_a_twin_with_recorded_answers_serves_before_scikit_learn_is_imported(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    folder = save_like_training(tmp_path, model, data, own_twin(model, data))
    done = subprocess.run([sys.executable, "-c", FIRST_LOAD, str(folder)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["first"] == ["onnx", True, []], "ready before sklearn or skops is imported"
    assert result["final"] == ["onnx", False, "Pipeline", None], \
        "then the skops model is loaded and the twin re-checked against it"


def test_with_twin_first_turned_off_the_first_version_loads_whole(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    folder = save_like_training(tmp_path, model, data, own_twin(model, data))
    whole = load_folder(folder, finish=False, twin_first=False)
    assert (whole.runtime, whole.twin, whole.pending) == ("onnx", None, None)
    assert whole.predictor.estimator is not None, "checked against the loaded sklearn model"


def test_a_twin_that_disagrees_with_its_recorded_answers_is_not_served_first(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    other = convert(_fit(data, max_depth=2, max_iter=10), data.spec)
    forged = with_metadata(other, 1e-3, Recorded.of(model, input_example(data)))
    folder = save_like_training(tmp_path, model, data, forged)
    twin, why_not = recorded_twin(folder / modelfiles.TWIN_FILE, input_example(data))
    assert twin is None
    assert why_not is not None
    assert why_not.startswith(
        "refused: the twin disagrees with the answers recorded at training on the input "
        "example: max abs difference")
    loaded = load_folder(folder, finish=False)
    assert loaded.pending is None, "loaded whole: the twin is checked against sklearn"
    assert loaded.runtime == "sklearn"


def test_a_twin_with_forged_answers_serves_only_until_its_model_is_loaded(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    other = _fit(data, max_depth=2, max_iter=10)  # a twin consistent with its own answers
    folder = save_like_training(tmp_path, model, data, own_twin(other, data))
    first = load_folder(folder, finish=False)
    assert (first.runtime, first.pending is not None) == ("onnx", True)
    store = _store_of(first)
    wait_for(lambda: store.current is not first,
             what="the store to finish the twin-first version", seconds=20, interval=0.02)
    final = store.current
    assert final is not None
    assert final.pending is None
    assert final.runtime == "sklearn"
    assert final.twin is not None
    assert final.twin.startswith(
        "refused: the twin disagrees with the model on the input example")
    assert store.status()["sklearn"] == "loaded"


def test_a_skops_file_the_allowlist_refuses_drops_the_version_its_twin_served(
        tmp_path: Path, model: Pipeline, data: PreparedData,
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = save_like_training(tmp_path, model, data, own_twin(model, data))
    first = load_folder(folder, finish=False)
    assert first.pending is not None
    strict = dataclasses.replace(allowlist.current(), sklearn_estimators=False)
    monkeypatch.setattr(allowlist, "current", lambda: strict)  # HGB no longer admitted
    store = _store_of(first)
    wait_for(lambda: store.current is None,
             what="the store to finish the twin-first version", seconds=20, interval=0.02)
    assert store.refusals == 1
    assert store.last_refusal is not None
    assert store.last_refusal["rule"] == "types"
    assert not store.ready


# --- hostile graphs: what the operator allowlist refuses, and what it cannot see ---------

TRIGGER = 0.123456  # a carat no real stone has


def _trigger_row(data: PreparedData) -> dict[str, object]:
    row = data.x_validation.head(1).copy()
    row["carat"] = TRIGGER
    return {k: (None if v != v else v) for k, v in row.iloc[0].to_dict().items()}


def _score_in_subprocess(onnx_bytes: bytes, row: dict[str, object], cwd: Path,
                         timeout: float) -> float | None:
    """The raw graph scored by onnxruntime in a child process (no allowlist), as a server
    without one would: its answer, or None when it did not answer within `timeout`."""
    (cwd / "twin.onnx").write_bytes(onnx_bytes)
    script = (
        "import json, sys, numpy as np, onnxruntime as ort\n"
        "s = ort.InferenceSession(open('twin.onnx', 'rb').read())\n"
        "row = json.loads(sys.argv[1])\n"
        "feeds = {i.name: np.array([[row[i.name]]], dtype=object if i.type == "
        "'tensor(string)' else np.float64) for i in s.get_inputs()}\n"
        "print(float(np.ravel(s.run(None, feeds)[0])[0]))\n")
    try:
        done = subprocess.run([sys.executable, "-c", script, json.dumps(row)], cwd=cwd,
                              capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    return float(done.stdout)


def test_a_loop_twin_is_refused_and_its_version_serves_through_sklearn(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    """A `Loop` whose trip count is 2**40 for one input value: scored raw it never
    answers; the server refuses the graph and serves the verified sklearn model."""
    looping = onnx_attacks.with_loop(own_twin(model, data), column="carat", value=TRIGGER)
    row = _trigger_row(data)
    assert _score_in_subprocess(looping, row, tmp_path, timeout=5) is None  # the attack
    with pytest.raises(modelfiles.ModelRefused, match="operator Loop, which is not") as refused:
        check_graph(looping)
    assert refused.value.rule == "graph"

    loaded = load_folder(save_like_training(tmp_path / "v", model, data, looping))
    assert loaded.runtime == "sklearn"
    assert loaded.twin is not None
    assert "uses operator Loop" in loaded.twin
    answer = scoring.run(loaded, scoring.inputs_from_records([row], loaded))
    assert float(answer[0]) == pytest.approx(float(model.predict(
        pd.DataFrame([row])[data.x_validation.columns])[0]))


def test_a_twin_that_reads_a_file_outside_its_folder_is_refused(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    """External tensor data with a relative location is read from the working directory:
    raw, the file's bytes change the answer; the server refuses the graph."""
    secret = b"a secret from the server's working directory"
    (tmp_path / "secret.bin").write_bytes(secret)
    stealing = onnx_attacks.with_external_data(own_twin(model, data), location="secret.bin",
                                               length=len(secret))
    row = _trigger_row(data)
    honest = float(model.predict(pd.DataFrame([row])[data.x_validation.columns])[0])
    raw = _score_in_subprocess(stealing, row, tmp_path, timeout=60)
    assert raw == pytest.approx(honest + sum(secret))  # the attack: the file was read
    with pytest.raises(modelfiles.ModelRefused, match="external file") as refused:
        check_graph(stealing)
    assert refused.value.rule == "graph"
    loaded = load_folder(save_like_training(tmp_path / "v", model, data, stealing))
    assert loaded.runtime == "sklearn"
    assert loaded.twin is not None
    assert "external file" in loaded.twin


@pytest.mark.parametrize("edit", ["custom_domain", "function", "not_onnx"])
def test_graphs_outside_the_standard_domains_are_refused(
        model: Pipeline, data: PreparedData, edit: str) -> None:
    import onnx

    graph = onnx.load_from_string(own_twin(model, data))
    if edit == "custom_domain":
        graph.opset_import.add(domain="com.evil", version=1)
    elif edit == "function":
        graph.functions.add(name="f", domain="local")
    raw = b"not a protobuf at all" if edit == "not_onnx" else graph.SerializeToString()
    with pytest.raises(modelfiles.ModelRefused) as refused:
        check_graph(raw)
    assert refused.value.rule == "graph"


def test_the_twins_our_converters_emit_pass_the_allowlist(model: Pipeline,
                                                          data: PreparedData) -> None:
    check_graph(own_twin(model, data))  # raises if not


def test_a_backdoored_twin_agrees_everywhere_but_on_its_trigger(
        tmp_path: Path, model: Pipeline, data: PreparedData) -> None:
    """Why twins are derived, not supplied: a trigger made of `Equal` and `Where` passes the
    allowlist, the recorded answers and parity on every real row, and still answers 1.0
    for one input. Only compiling the twin from the verified model keeps it out (the
    trust tests show promote doing so); here, that the attack is real."""
    backdoored = onnx_attacks.with_trigger(own_twin(model, data), column="carat",
                                           value=TRIGGER, answer=1.0)
    check_graph(backdoored)
    loaded = load_folder(save_like_training(tmp_path, model, data, backdoored))
    assert (loaded.runtime, loaded.twin) == ("onnx", None)
    row = _trigger_row(data)
    assert float(scoring.run(loaded, scoring.inputs_from_records([row], loaded))[0]) == 1.0
