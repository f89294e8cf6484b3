"""The path to production cannot be forged: each attack of docs/gate.md's threat model.

Real MLflow servers on both backends, the installed `mlops` command, a real serving
process. The attacks on the stored files, the loader and the logins run on both; those on
the verdict and the twin's graph (`one_backend`) do not depend on the registry's
database and run on the first selected backend. Every test shows the attack failing and
would fail without the check it names: promote recomputing the verdict (forge), the
manifest (tamper), the data-only loader (pickle), the read-only user (least privilege).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.exceptions import MlflowException, RestException
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from pipeline.gitops import registry
from pipeline.gitops.card import write_candidate_run_id
from pipeline.gitops.github import BOT_LOGIN
from pipeline.gitops.report import MARKER
from tests.conftest import TrackingServer
from tests.serving.conftest import Clients, Server, serving_process, wait_for
from tests.utils import run_mlops
from tests.utils.cards import unique_name, write_card
from tests.utils.fake_github import FakeGitHub, by, github, github_env
from tests.utils.registry import move_production

__all__ = ["github"]  # the fixture

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

GOOD = ("hist_gradient_boosting", "max_iter=40")  # clearly better than ridge, and quick


class Payload:
    """Unpickling this runs `touch MARKER`: the proof that a model ran code when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@dataclass
class Registry:
    """One model on one backend: Production bootstrapped (ridge), the CLI as the admin."""

    server: TrackingServer
    name: str
    card: Path
    client: MlflowClient
    tmp: Path

    def mlops(self, *args: str, env: dict[str, str] | None = None,
              card: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run_mlops(*args, "--card", str(card or self.card),
                         env={**self.server.env, "MLOPS_EXPERIMENT": "e2e-trust", **(env or {})})

    def train(self, estimator: str, *params: str) -> str:
        done = self.mlops("train", "--estimator", estimator, "--json",
                          *(arg for param in params for arg in ("--param", param)))
        assert done.returncode == 0, done.stderr
        return str(json.loads(done.stdout)["run_id"])

    def propose(self, run_id: str) -> None:
        write_candidate_run_id(self.card, run_id)

    def production(self) -> str:
        return str(self.client.get_model_version_by_alias(self.name, "production").version)

    def gate(self, name: str, *extra: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
        return self.mlops("gate", "--report", str(self.tmp / f"{name}.md"),
                          "--json", str(self.tmp / f"{name}.json"),
                          "--plot", str(self.tmp / f"{name}.png"), *extra, env=env)

    def model_id(self, run_id: str) -> str:
        return registry.logged_model_id(self.client, run_id)

    def replace_model_file(self, victim_run: str, donor_run: str,
                           files: tuple[str, ...] = ("model.skops",)) -> None:
        """A write to the artifact store: the victim's `files` become the donor's."""
        with tempfile.TemporaryDirectory() as tmp:
            donor = Path(mlflow.artifacts.download_artifacts(
                artifact_uri=f"runs:/{donor_run}/model", dst_path=tmp,
                tracking_uri=self.server.uri))
            for name in files:
                self.client.log_model_artifact(self.model_id(victim_run), str(donor / name))


@pytest.fixture
def reg(tracking_server: TrackingServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Registry:
    for key, value in tracking_server.env.items():
        monkeypatch.setenv(key, value)
    name = unique_name("e2e-trust")
    state = Registry(server=tracking_server, name=name, card=write_card(tmp_path, name),
                     client=MlflowClient(tracking_server.uri, registry_uri=tracking_server.uri),
                     tmp=tmp_path)
    boot = state.mlops("train", "--estimator", "ridge", "--register", "--promote")
    assert boot.returncode == 0, boot.stderr
    return state


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.mark.one_backend
def test_a_verdict_copied_onto_a_worse_run_promotes_nothing(reg: Registry) -> None:
    good, dummy = reg.train(*GOOD), reg.train("dummy")
    reg.propose(good)
    assert reg.gate("good", "--record").returncode == 0  # a genuine passing verdict, tagged
    genuine = reg.client.get_run(good).data.tags
    forged = json.loads(genuine[registry.VERDICT_TAG])
    forged["candidate_run_id"] = dummy
    reg.client.set_tag(dummy, registry.VERDICT_TAG, json.dumps(forged))
    reg.client.set_tag(dummy, registry.PASSED_TAG, "true")
    forged_file = reg.tmp / "forged.json"
    forged_file.write_text(json.dumps(forged))

    reg.propose(dummy)
    for extra in ((), ("--verdict", str(forged_file))):
        done = reg.mlops("promote", *extra)
        assert done.returncode == 1, done.stderr
        assert _one_error_line(done).startswith(
            "error: promote: the gate re-computed on main fails: floor: r2 is")
        assert reg.production() == "1"
    assert "the PR's verdict differs" in done.stderr


def test_a_model_file_replaced_after_the_gate_is_refused_by_promote(reg: Registry) -> None:
    good, other = reg.train(*GOOD), reg.train("hist_gradient_boosting", "max_iter=25")
    reg.propose(good)
    assert reg.gate("good").returncode == 0
    # Valid skops, same schema: it would pass a gate and serve fine; only the manifest
    # the PR's gate recorded tells the files apart.
    reg.replace_model_file(good, other)
    done = reg.mlops("promote", "--verdict", str(reg.tmp / "good.json"))
    assert done.returncode == 2, done.stderr
    line = _one_error_line(done)
    assert line.startswith(f"error: run {good}: its model files changed after the PR's gate "
                           "(model file model.skops: sha256 ")
    assert reg.production() == "1"


@pytest.fixture
def serving(reg: Registry, tmp_path: Path) -> Iterator[Server]:
    """The real server on Production, with the read-only user (as deployed)."""
    with serving_process(tmp_path / "serving", reg.server.reader_env, reg.name) as running:
        yield running


def _record(reg: Registry) -> dict[str, object]:
    """One row of Production's input example, as /predict takes it."""
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{reg.name}/1",
                                                tracking_uri=reg.server.uri)
    frame = pd.DataFrame(Model.load(local).load_input_example(local)).head(1)
    return {k: (None if pd.isna(v) else v) for k, v in frame.iloc[0].to_dict().items()}


def test_a_promoted_version_whose_file_was_replaced_is_refused_under_load(
        reg: Registry, serving: Server) -> None:
    good, other = reg.train(*GOOD), reg.train("dummy")
    reg.propose(good)
    assert reg.gate("good").returncode == 0
    done = reg.mlops("promote", "--verdict", str(reg.tmp / "good.json"))
    assert done.returncode == 0, done.stderr
    wait_for(lambda: serving.get("/model")["version"] == "2", what="version 2")
    assert reg.mlops("rollback").returncode == 0  # back to version 1 for now
    wait_for(lambda: serving.get("/model")["version"] == "1", what="version 1 again")

    reg.replace_model_file(good, other)  # version 2 was promoted: its manifest is recorded
    with Clients(serving.url, _record(reg)) as clients:
        wait_for(lambda: clients.count() >= 40, what="the clients to get going")
        assert reg.mlops("rollback", "--to", "2").returncode == 0  # the alias moves to it
        wait_for(lambda: (serving.get("/model")["last_refusal"] or {}).get("version") == "2",
                 what="the refusal of version 2")
        seen = clients.count()
        wait_for(lambda: clients.count() >= seen + 40, what="requests after the refusal")
    status = serving.get("/model")
    assert status["version"] == "1"
    assert status["last_refusal"]["rule"] == "manifest"
    assert status["last_refusal"]["file"] == "model.skops"
    assert len(status["last_refusal"]["expected"]) == len(status["last_refusal"]["found"]) == 12
    assert clients.errors == []
    assert {status for answers in clients.answers for status, _ in answers} == {200}
    assert {version for answers in clients.answers for _, version in answers} == {"1"}
    assert requests.get(serving.url + "/ready", timeout=5).status_code == 200
    metrics = requests.get(serving.url + "/metrics", timeout=5).text
    assert "serving_model_refusals_total 1.0" in metrics


def _log_pickle(reg: Registry, marker: Path, serialization: str) -> tuple[str, str]:
    """A run whose model is a pickle with a payload, registered as a new version."""
    signature = Model.load(mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{reg.name}/1", tracking_uri=reg.server.uri)).signature
    mlflow.set_tracking_uri(reg.server.uri)
    mlflow.set_experiment("e2e-trust-attacker")
    with mlflow.start_run() as run:
        mlflow.set_tag("task", "regression")
        mlflow.sklearn.log_model(Payload(marker), name="model", signature=signature,
                                 serialization_format=serialization,
                                 pip_requirements=["scikit-learn"])
    version = registry.register_run(reg.client, reg.name, run.info.run_id)
    return run.info.run_id, str(version.version)


@pytest.mark.parametrize("serialization", ["pickle", "cloudpickle"])
def test_a_pickle_behind_the_alias_never_runs(reg: Registry, serving: Server, tmp_path: Path,
                                              serialization: str) -> None:
    marker = tmp_path / "pwned"
    run_id, version = _log_pickle(reg, marker, serialization)
    # A compromised registry write: the pickle's own manifest recorded, the alias moved.
    move_production(reg.client, reg.name, version, tracking_uri=reg.server.uri)
    wait_for(lambda: (serving.get("/model")["last_refusal"] or {}).get("version") == version,
             what="the refusal of the pickle")
    status = serving.get("/model")
    assert status["version"] == "1"
    assert status["last_refusal"]["rule"] == "serialization"
    answer = requests.post(serving.url + "/predict", json={"records": [_record(reg)]},
                           timeout=30)
    assert answer.status_code == 200
    assert answer.json()["model"]["version"] == "1"

    reg.propose(run_id)
    done = reg.gate("pickle")
    assert done.returncode == 2, done.stderr
    assert _one_error_line(done) == (
        f"error: candidate run {run_id}: model refused: serialization format {serialization} "
        "is refused: models load as data (skops), never as pickle")
    assert not marker.exists(), "the pickle's code ran"


@pytest.mark.one_backend
def test_a_half_done_promotion_leaves_no_former_production(reg: Registry,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """Registered, manifest written, then the alias move fails: nothing looks promoted."""
    from pipeline.gitops import evaluation, promote
    from pipeline.gitops.card import load_card
    from pipeline.gitops.github import Audit

    good = reg.train(*GOOD)
    reg.propose(good)
    card = load_card(reg.card)

    class AliasDown(MlflowClient):
        def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
            raise RestException({"error_code": "INTERNAL_ERROR", "message": "registry down"})

    broken = AliasDown(reg.server.uri, registry_uri=reg.server.uri)
    audit = Audit(git_sha="abc", pr_number="7", workflow_run_url="local", actor="ci")
    with pytest.raises(RestException, match="registry down"):
        promote.promote(broken, card, audit=audit, tracking_uri=reg.server.uri)
    assert reg.production() == "1"
    registered = registry.find_version_of_run(reg.client, reg.name, good)
    assert registered is not None
    assert not set(registry.AUDIT_MARKERS) & set(registered.tags)
    assert not evaluation.was_production(reg.client, reg.name, good)


def test_the_read_only_user_runs_the_pr_gate_and_cannot_promote(
        secured_server: TrackingServer, github: FakeGitHub, tmp_path: Path) -> None:
    name = unique_name("e2e-reader")
    card = write_card(tmp_path, name)
    admin = {**secured_server.env, "MLOPS_EXPERIMENT": "e2e-trust"}
    for args in (("--estimator", "ridge", "--register", "--promote"),
                 ("--estimator", "hist_gradient_boosting", "--json")):
        trained = run_mlops("train", *args, "--card", str(card), env=admin)
        assert trained.returncode == 0, trained.stderr
    write_candidate_run_id(card, json.loads(trained.stdout)["run_id"])

    gate_dir, summary = tmp_path / "gate", tmp_path / "summary.md"
    reader = {**secured_server.reader_env, "GITHUB_STEP_SUMMARY": str(summary),
              **github_env(github)}
    gate = run_mlops("gate", "--card", str(card), "--report", str(gate_dir / "report.md"),
                     "--json", str(gate_dir / "verdict.json"),
                     "--plot", str(gate_dir / "plot.png"), env=reader)
    assert gate.returncode == 0, gate.stderr
    assert {p.name for p in gate_dir.iterdir()} == {"report.md", "verdict.json", "plot.png"}
    assert "PASS" in summary.read_text()
    comment = run_mlops("pr-comment", "--report", str(gate_dir / "report.md"), "--pr", "7",
                        env=reader)
    assert comment.returncode == 0, comment.stderr
    assert "mlops-verdict:" in github.comments[0]["body"]

    client = MlflowClient(secured_server.uri, registry_uri=secured_server.uri)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in secured_server.reader_env.items():
            patch.setenv(key, value)
        with pytest.raises(MlflowException, match="Permission denied") as refused:
            client.set_registered_model_alias(name, "production", "1")
    assert "Permission denied" in str(refused.value)
    promote = run_mlops("promote", "--card", str(card), "--pr", "7", env=reader)
    assert promote.returncode == 2
    assert "PERMISSION_DENIED" in _one_error_line(promote) or "403" in promote.stderr
    admin_client = MlflowClient(secured_server.uri, registry_uri=secured_server.uri)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in secured_server.env.items():
            patch.setenv(key, value)
        assert admin_client.get_model_version_by_alias(name, "production").version == "1"


@pytest.mark.one_backend
def test_promote_compares_with_the_verdict_in_the_sticky_comment(
        reg: Registry, github: FakeGitHub) -> None:
    good = reg.train(*GOOD)
    reg.propose(good)
    assert reg.gate("good").returncode == 0
    comment = run_mlops("pr-comment", "--report", str(reg.tmp / "good.md"), "--pr", "7",
                        env={**reg.server.env, **github_env(github)})
    assert comment.returncode == 0, comment.stderr
    forged = {"id": 1, "user": {"login": "mallory"},
              "body": github.comments[0]["body"].replace("mlops-verdict:", "mlops-verdict:x")}
    github.comments.insert(0, forged)  # someone else's comment is never read
    event = reg.tmp / "push.json"
    event.write_text(json.dumps({"head_commit": {"message": "Merge pull request #7 from x/y"}}))
    done = reg.mlops("promote", env={**github_env(github), "GITHUB_EVENT_PATH": str(event)})
    assert done.returncode == 0, done.stderr
    assert "the PR's verdict agrees" in done.stdout
    assert reg.production() == "2"


def test_bootstrap_records_a_manifest_the_server_checks(reg: Registry) -> None:
    version = reg.client.get_model_version(reg.name, "1")
    manifest = json.loads(version.tags[registry.MANIFEST_TAG])
    assert manifest == registry.version_manifest(reg.name, "1", tracking_uri=reg.server.uri)
    assert np.all([len(digest) == 64 for digest in manifest.values()])


TRIGGER = 0.123456  # a carat no real stone has


def _twin_of_version(reg: Registry, version: str) -> bytes:
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{reg.name}/{version}",
                                                tracking_uri=reg.server.uri)
    return (Path(local) / "model.onnx").read_bytes()


def _plant_twin(reg: Registry, run_id: str, onnx_bytes: bytes) -> None:
    """The run's owner (or anyone who can write its artifacts) puts a model.onnx beside
    the model, as training used to."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(onnx_bytes)
        reg.client.log_model_artifact(reg.model_id(run_id), str(path))


@pytest.mark.one_backend
def test_a_backdoored_twin_that_came_with_the_run_is_never_served(
        reg: Registry, serving: Server) -> None:
    """The twin is derived, not supplied: the run carries a twin that answers 1.0 for one
    input and agrees everywhere else; the gate ignores it, promote compiles its own from
    the verified model, and the server answers the trigger like the model does."""
    from tests.utils import onnx_attacks

    good = reg.train(*GOOD)
    honest = _twin_of_version(reg, "1")  # Production's derived twin: the same columns
    _plant_twin(reg, good, onnx_attacks.with_trigger(honest, column="carat", value=TRIGGER,
                                                     answer=1.0))
    reg.propose(good)
    gated = reg.gate("good")
    assert gated.returncode == 0, gated.stderr
    verdict = json.loads((reg.tmp / "good.json").read_text())
    assert "model.onnx" not in verdict["manifest"]
    assert any("carries a model.onnx: it is ignored" in note for note in verdict["notes"])
    done = reg.mlops("promote", "--verdict", str(reg.tmp / "good.json"))
    assert done.returncode == 0, done.stderr
    version = reg.production()
    recorded = json.loads(reg.client.get_model_version(reg.name, version).tags[
        registry.MANIFEST_TAG])
    assert recorded["model.onnx"] == hashlib.sha256(_twin_of_version(reg, version)).hexdigest()

    wait_for(lambda: serving.get("/model")["version"] == version, what=f"version {version}")
    wait_for(lambda: serving.get("/model")["sklearn"] == "loaded", what="the sklearn model")
    assert serving.get("/model")["runtime"] == "onnx"
    row = {**_record(reg), "carat": TRIGGER}
    served = requests.post(serving.url + "/predict", json={"records": [row]}, timeout=30)
    assert served.status_code == 200
    model = mlflow.sklearn.load_model(f"runs:/{good}/model")
    expected = float(model.predict(pd.DataFrame([row]))[0])
    assert served.json()["predictions"][0] == pytest.approx(expected, rel=1e-6)
    assert served.json()["predictions"][0] != 1.0


@pytest.mark.one_backend
def test_a_twin_with_a_loop_behind_the_alias_never_freezes_the_server(
        reg: Registry, serving: Server) -> None:
    """A compromised registry write: a version whose twin runs a 2**40-step Loop for one
    input, with its manifest recorded. The graph is refused, the version serves through
    its verified sklearn model, and the server answers /health throughout."""
    from tests.utils import onnx_attacks

    good = reg.train(*GOOD)
    looping = onnx_attacks.with_loop(_twin_of_version(reg, "1"), column="carat",
                                     value=TRIGGER)
    version = str(registry.register_run(reg.client, reg.name, good).version)
    _plant_twin(reg, good, looping)
    move_production(reg.client, reg.name, version, tracking_uri=reg.server.uri)
    wait_for(lambda: serving.get("/model")["version"] == version, what=f"version {version}")
    status = serving.get("/model")
    assert status["runtime"] == "sklearn"
    assert "uses operator Loop" in status["twin"]
    row = {**_record(reg), "carat": TRIGGER}
    for _ in range(3):
        served = requests.post(serving.url + "/predict", json={"records": [row]}, timeout=30)
        assert served.status_code == 200
        assert requests.get(serving.url + "/health", timeout=2).status_code == 200


# --- signed verdicts: the gate workflow's word, and nothing else ------------------------

HEAD = "a1" * 20  # the pull request's head commit


@dataclass
class PullRequest:
    """PR #7 on the fake GitHub, its card at HEAD, and the two keys of the trust chain."""

    github: FakeGitHub
    private: str
    public: str
    merged_event: Path

    def gate(self, reg: Registry) -> subprocess.CompletedProcess[str]:
        """gate.yml's step: main's code, the read-only user, the signing key."""
        self.github.blobs[(HEAD, "model_card.yaml")] = reg.card.read_bytes()
        event = reg.tmp / "workflow_run.json"
        event.write_text(json.dumps(self.github.workflow_run_event(7)))
        env = {**reg.server.reader_env, **github_env(self.github),
               "GITHUB_EVENT_PATH": str(event), "MLOPS_VERDICT_SIGNING_KEY": self.private,
               "MLOPS_EXPERIMENT": "e2e-trust"}
        return run_mlops("gate-pr", "--card", "model_card.yaml", "--out",
                         str(reg.tmp / "gate-pr"), env=env)

    def promote(self, reg: Registry) -> subprocess.CompletedProcess[str]:
        """promote.yml's step: the merge of PR #7, the public key only."""
        return reg.mlops("promote", env={**github_env(self.github), "GITHUB_ACTIONS": "true",
                                         "GITHUB_EVENT_PATH": str(self.merged_event),
                                         "MLOPS_VERDICT_PUBLIC_KEY": self.public})


@pytest.fixture
def pull(github: FakeGitHub, tmp_path: Path) -> PullRequest:
    from pipeline.gitops import signing

    github.open_pull(7, sha=HEAD)
    merged = tmp_path / "push.json"
    merged.write_text(json.dumps({"head_commit": {"message": "Merge pull request #7 from o/f"}}))
    private, public = signing.new_key_pair()
    return PullRequest(github=github, private=private, public=public, merged_event=merged)


def test_the_signed_verdict_of_the_gate_workflow_promotes(reg: Registry,
                                                          pull: PullRequest) -> None:
    good = reg.train(*GOOD)
    reg.propose(good)
    gated = pull.gate(reg)
    assert gated.returncode == 0, gated.stderr
    assert len(pull.github.comments) == 1
    assert pull.github.comments[0]["body"].count("<!-- mlops-verdict-signed:") == 1
    assert pull.github.statuses[-1]["state"] == "success"
    assert pull.github.statuses[-1]["sha"] == HEAD
    assert {p.name for p in (reg.tmp / "gate-pr").iterdir()} == {"report.md", "verdict.json",
                                                                  "plot.png"}
    done = pull.promote(reg)
    assert done.returncode == 0, done.stderr
    assert "compared with the verdict the gate workflow signed for PR #7" in done.stderr
    assert reg.production() == "2"


def _forged_markers(reg: Registry, pull: PullRequest, good: str, donor: str) -> str:
    """A verdict for `good` whose manifest is `donor`'s files: unsigned, and signed by a
    key that is not the gate workflow's."""
    from pipeline.gitops import signing
    from pipeline.gitops.report import embed_signed, embed_verdict
    from pipeline.gitops.verdict import Verdict

    reg.propose(donor)
    assert reg.gate("donor").returncode == 0
    donor_manifest = json.loads((reg.tmp / "donor.json").read_text())["manifest"]
    reg.propose(good)
    assert reg.gate("good").returncode == 0
    verdict = Verdict.from_json(json.loads((reg.tmp / "good.json").read_text()))
    forged = dataclasses.replace(verdict, manifest=donor_manifest)
    stranger, _ = signing.new_key_pair()
    evidence = signing.Evidence(verdict=forged, repository="o/r", pr_number="7",
                                head_sha=HEAD)
    return f"{embed_verdict(forged)} {embed_signed(signing.sign(evidence, stranger))}"


@pytest.mark.one_backend
def test_a_run_tag_cannot_forge_the_reviewed_verdict(reg: Registry, pull: PullRequest) -> None:
    """The attack: the candidate's owner writes a tag that the report shows, holding a
    verdict marker whose manifest is that of a file swapped in after review. The gate
    workflow's comment shows it as text, promote believes only the signed verdict, and
    the swap is refused."""
    good, donor = reg.train(*GOOD), reg.train("hist_gradient_boosting", "max_iter=25")
    markers = _forged_markers(reg, pull, good, donor)
    reg.client.set_tag(good, "data_hash", f"x --> {markers} <!-- @octocat | y")
    gated = pull.gate(reg)
    assert gated.returncode == 0, gated.stderr
    body = pull.github.comments[0]["body"]
    assert body.count("<!--") == 2  # the report's marker and the one signed verdict
    assert body.count("<!-- mlops-verdict-signed:") == 1
    assert "<!-- mlops-verdict:" not in body
    assert "@octocat" not in body

    reg.replace_model_file(good, donor)  # the swap, after review
    done = pull.promote(reg)
    assert done.returncode == 2, done.stderr
    assert _one_error_line(done).startswith(
        f"error: run {good}: its model files changed after the PR's gate (model file "
        "model.skops: sha256 ")
    assert reg.production() == "1"


@pytest.mark.one_backend
def test_a_comment_written_by_the_pull_request_s_code_is_not_believed(
        reg: Registry, pull: PullRequest) -> None:
    """Same bot identity, the markers unsigned or signed by another key: not evidence."""
    good, donor = reg.train(*GOOD), reg.train("hist_gradient_boosting", "max_iter=25")
    markers = _forged_markers(reg, pull, good, donor)
    reg.replace_model_file(good, donor)
    pull.github.comments.append(by(BOT_LOGIN, 99, f"{MARKER}\n## Promotion gate: PASS\n{markers}"))
    done = pull.promote(reg)
    assert done.returncode == 2, done.stderr
    assert _one_error_line(done) == (
        f"error: promote refuses: PR #7 has no verdict signed by the gate workflow for its "
        f"head commit {HEAD[:12]} (a comment without a valid signature is not believed); "
        "re-run gate.yml on the PR")
    assert reg.production() == "1"


@pytest.mark.one_backend
def test_a_signed_verdict_for_an_older_commit_is_not_believed(reg: Registry,
                                                              pull: PullRequest) -> None:
    good = reg.train(*GOOD)
    reg.propose(good)
    assert pull.gate(reg).returncode == 0
    pull.github.pull(7)["head"]["sha"] = "b2" * 20  # pushed to after the gate ran
    done = pull.promote(reg)
    assert done.returncode == 2, done.stderr
    assert "has no verdict signed by the gate workflow for its head commit b2b2b2b2b2b2" \
        in _one_error_line(done)
    assert reg.production() == "1"
