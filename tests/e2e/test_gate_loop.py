"""The loop as the workflows run it: PR gate, merge, promote, stale verdict, rollback,
the registry check.

Everything goes through the installed `mlops` command against a real MLflow server,
in a temporary git repository where the card is committed, changed on branches and
merged, as a data scientist and the workflows would do it.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
import warnings
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline.gitops import registry
from pipeline.gitops.card import load_card, write_candidate_run_id
from tests.conftest import TrackingServer
from tests.utils import run_mlops
from tests.utils.cards import write_card

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Data Scientist", "GIT_COMMITTER_NAME": "CI",
           "GIT_AUTHOR_EMAIL": "ds@example.org", "GIT_COMMITTER_EMAIL": "ci@example.org"}
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=env,
                          check=True, timeout=30)
    return done.stdout.strip()


class Loop:
    """A repository with a card, the tracking server's environment, and the CLI."""

    def __init__(self, repo: Path, server: TrackingServer, model: str) -> None:
        self.repo, self.server, self.model = repo, server, model
        self.card = repo / "model_card.yaml"
        self.env = {**server.env, "MLOPS_EXPERIMENT": "e2e-gate-loop"}
        self.client = MlflowClient(server.uri, registry_uri=server.uri)

    def mlops(self, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
        return run_mlops(*args, "--card", str(self.card), env={**self.env, **(env or {})},
                         cwd=self.repo)

    def train(self, estimator: str, *extra: str) -> str:
        done = self.mlops("train", "--estimator", estimator, "--json", *extra)
        assert done.returncode == 0, done.stderr
        return str(json.loads(done.stdout)["run_id"])

    def propose(self, branch: str, run_id: str) -> None:
        """What a data scientist's pull request is: a branch that changes the card."""
        git(self.repo, "checkout", "-q", "-b", branch, "main")
        write_candidate_run_id(self.card, run_id)
        git(self.repo, "commit", "-q", "-am", f"Propose {branch}")

    def gate(self, tmp: Path, name: str) -> tuple[subprocess.CompletedProcess[str], str, dict]:
        summary = tmp / f"{name}-summary.md"
        done = self.mlops("gate", "--report", str(tmp / f"{name}.md"),
                          "--json", str(tmp / f"{name}.json"),
                          "--plot", str(tmp / f"{name}.png"),
                          env={"GITHUB_STEP_SUMMARY": str(summary)})
        report = (tmp / f"{name}.md").read_text() if (tmp / f"{name}.md").exists() else ""
        verdict = json.loads((tmp / f"{name}.json").read_text()) \
            if (tmp / f"{name}.json").exists() else {}
        if report:
            assert summary.read_text().strip() == report.strip()
        return done, report, verdict

    def production(self) -> tuple[str, str]:
        version = self.client.get_model_version_by_alias(self.model, "production")
        return str(version.version), str(version.run_id)

    def stage_of(self, version: str) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return str(self.client.get_model_version(self.model, version).current_stage)


@pytest.fixture
def loop(tracking_server: TrackingServer, tmp_path: Path) -> Loop:
    repo = tmp_path / "repo"
    repo.mkdir()
    model = f"e2e-loop-{uuid.uuid4().hex[:8]}"
    git(repo, "init", "-q", "-b", "main")
    write_card(repo, model)
    git(repo, "add", "model_card.yaml")
    git(repo, "commit", "-q", "-m", "The model card")
    return Loop(repo, tracking_server, model)


def test_the_gitops_loop(loop: Loop, tmp_path: Path) -> None:
    # Production starts as a decent model.
    boot = loop.mlops("train", "--estimator", "ridge", "--register", "--promote", "--json")
    assert boot.returncode == 0, boot.stderr
    ridge = json.loads(boot.stdout)["run_id"]
    assert loop.production() == ("1", ridge)

    # A worse candidate: the gate says no, and says why.
    dummy = loop.train("dummy")
    loop.propose("worse", dummy)
    done, report, verdict = loop.gate(tmp_path, "worse")
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: gate failed: floor: r2 is")
    assert "FAIL" in report.splitlines()[1]
    assert "**Why it failed:**" in report
    assert "misses the floor (at least 0.9)" in report
    assert "the whole interval is on the worse side: worse than Production by" in report
    assert verdict["passed"] is False
    # The terminal gets the verdict and its reasons; the report (Mermaid, the plot) the file.
    assert done.stdout.splitlines()[0].startswith(f"gate FAILED: {loop.model} run {dummy}")
    assert "- floor: r2 is" in done.stdout
    assert "```mermaid" not in done.stdout
    assert "```mermaid" in report
    assert verdict["production_version"] == "1"

    # A better candidate passes, against the same Production version.
    git(loop.repo, "checkout", "-q", "main")
    hgb = loop.train("hist_gradient_boosting")
    loop.propose("better", hgb)
    done, report, verdict = loop.gate(tmp_path, "better")
    assert done.returncode == 0, done.stderr
    assert "PASS" in report.splitlines()[1]
    assert verdict["passed"] is True
    assert verdict["production_version"] == "1"
    assert verdict["candidate_run_id"] == hgb
    assert verdict["interval"]["high"] < 0  # rmse: lower is better
    assert f"/#/runs/{hgb}" in report
    assert f"/#/runs/{ridge}" in report
    assert (tmp_path / "better.png").read_bytes().startswith(b"\x89PNG")
    # The PR's gate is read-only: it leaves nothing on the run that promote could trust.
    assert "mlops.gate.verdict" not in loop.client.get_run(hgb).data.tags
    assert not loop.client.list_artifacts(hgb, "gate")
    reviewed = str(tmp_path / "better.json")  # what the reviewer saw (the sticky comment)

    # Before the merge, someone points Production elsewhere by hand: the verdict is
    # stale, and promote refuses to act on it.
    by_hand = registry.register_run(loop.client, loop.model, dummy).version
    assert by_hand == "2"
    loop.client.set_registered_model_alias(loop.model, "production", by_hand)
    stale = loop.mlops("promote", "--verdict", reviewed)
    assert stale.returncode == 2
    assert stale.stderr.strip().splitlines()[-1] == (
        f"error: {loop.model}: Production is version 2 but the gate compared against "
        "version 1; re-run the gate")
    assert loop.production() == ("2", dummy)
    loop.client.set_registered_model_alias(loop.model, "production", "1")

    # Merge the better PR; the promote workflow runs on main.
    git(loop.repo, "checkout", "-q", "main")
    git(loop.repo, "merge", "-q", "--no-ff", "better", "-m",
        "Merge pull request #7 from team/better")
    sha = git(loop.repo, "rev-parse", "HEAD")
    event = tmp_path / "push.json"
    event.write_text(json.dumps({"head_commit": {
        "message": "Merge pull request #7 from team/better\n\nBetter model"}}))
    workflow = {"GITHUB_SHA": sha, "GITHUB_EVENT_PATH": str(event), "GITHUB_ACTOR": "octocat",
                "GITHUB_REPOSITORY": "team/models", "GITHUB_RUN_ID": "4242",
                "GITHUB_SERVER_URL": "https://github.com"}
    done = loop.mlops("promote", "--verdict", reviewed, env=workflow)
    assert done.returncode == 0, done.stderr
    assert "re-computing the gate" in done.stderr
    assert "the PR's verdict agrees" in done.stdout
    assert loop.production() == ("3", hgb)
    assert loop.stage_of("3") == "Production"
    assert loop.stage_of("1") == "Archived"
    previous = loop.client.get_model_version_by_alias(loop.model, "previous-production")
    assert previous.version == "1"
    tags = loop.client.get_model_version(loop.model, "3").tags
    assert tags["git_sha"] == sha
    assert tags["pr_number"] == "7"
    assert tags["workflow_run_url"] == "https://github.com/team/models/actions/runs/4242"
    assert tags["actor"] == "octocat"
    assert tags["baseline_version"] == "1"
    assert tags["gate_verdict"].startswith("pass (improve, rmse")
    assert tags["promoted_at"]
    manifest = json.loads(tags["mlops.manifest"])
    assert set(manifest) >= {"MLmodel", "model.skops", "model.onnx"}
    evaluated = json.loads((tmp_path / "better.json").read_text())["manifest"]
    # What was gated, plus the twin promotion compiled from it (derived, not supplied).
    assert {k: v for k, v in manifest.items() if k != "model.onnx"} == evaluated
    assert "model.onnx" not in evaluated
    recomputed = json.loads(tags["mlops.promote.verdict"])
    assert (recomputed["passed"], recomputed["candidate_run_id"]) == (True, hgb)

    # The same merge promoted again (a re-run of the workflow): nothing happens.
    again = loop.mlops("promote", env=workflow)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    assert loop.production() == ("3", hgb)
    assert loop.client.get_model_version(loop.model, "3").tags["promoted_at"] == \
        tags["promoted_at"]

    # The card on main and the registry agree (and the former name of the check still works).
    assert loop.mlops("registry-check").returncode == 0
    former = loop.mlops("drift")
    assert former.returncode == 0
    assert "`mlops drift` is now `mlops registry-check`" in former.stderr

    # Break glass: roll back; the previous version is Production again, and the check sees it.
    done = loop.mlops("rollback", env=workflow)
    assert done.returncode == 0, done.stderr
    assert loop.production() == ("1", ridge)
    assert loop.stage_of("1") == "Production"
    assert loop.stage_of("3") == "Archived"
    assert loop.client.get_model_version(loop.model, "1").tags["rolled_back_from"] == "3"
    check = loop.mlops("registry-check")
    assert check.returncode == 1
    assert f"but the card names run {hgb}" in check.stdout

    # The GitOps way back to the better model: a card in rollback mode, gated and merged.
    git(loop.repo, "checkout", "-q", "-b", "restore", "main")
    loop.card.write_text(loop.card.read_text().replace("mode: improve", "mode: rollback"))
    write_candidate_run_id(loop.card, dummy)
    done, report, _ = loop.gate(tmp_path, "restore-never")
    assert done.returncode == 1  # an alias set by hand is not a promotion
    assert "never Production" in report
    write_candidate_run_id(loop.card, hgb)
    done, report, _ = loop.gate(tmp_path, "restore")
    assert done.returncode == 0, done.stderr  # hgb was Production before: no improvement test
    assert "the candidate was Production before" in report
    git(loop.repo, "commit", "-q", "-am", "Roll forward to the better model again")
    git(loop.repo, "checkout", "-q", "main")
    git(loop.repo, "merge", "-q", "--ff-only", "restore")
    assert loop.mlops("promote").returncode == 0
    assert loop.production() == ("3", hgb)
    assert loop.mlops("registry-check").returncode == 0

    # Someone moves the alias by hand in the UI: the registry check finds it.
    loop.client.set_registered_model_alias(loop.model, "production", "1")
    check = loop.mlops("registry-check")
    assert check.returncode == 1
    assert "Production is version 1" in check.stdout
    assert "stage Production is on version(s) 3, but alias production is on version 1" \
        in check.stdout
    assert load_card(loop.card).model.candidate_run_id == hgb
