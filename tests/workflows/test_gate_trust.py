"""Who may write the verdict promote believes: only main's code, in the `gate` environment.

On `pull_request` the workflow file itself comes from the pull request, so a PR can give
its own jobs any permission the repository allows, and every job posts as the same bot.
These checks read the workflows as GitHub will run them: no job that runs the PR's code
holds a write token, the signing key or a write environment; the one job that holds the
key runs main's code on `workflow_run` and never checks out the PR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.utils import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
SIGNING_KEY = "MLOPS_VERDICT_SIGNING_KEY"
PR_TRIGGERS = {"pull_request", "pull_request_target", "issue_comment", "pull_request_review",
               "pull_request_review_comment"}


def _load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def _triggers(workflow: dict[Any, Any]) -> set[str]:
    on = workflow.get(True, workflow.get("on"))
    return {on} if isinstance(on, str) else set(on or {})


def _runs_pr_code(workflow: dict[Any, Any]) -> bool:
    """Triggered by a pull request event: its file and code are the PR's."""
    return bool(_triggers(workflow) & PR_TRIGGERS)


def test_no_job_that_runs_the_pull_request_s_code_holds_a_write_token_or_the_key() -> None:
    checked = 0
    for path in WORKFLOWS:
        workflow = _load(path)
        if not _runs_pr_code(workflow):
            continue
        for name, job in workflow["jobs"].items():
            checked += 1
            writes = {scope for scope, level in (job.get("permissions") or {}).items()
                      if level == "write"}
            assert not writes, f"{path.name}:{name} runs the PR's code with write on {writes}"
            assert job.get("environment") not in {"gate", "production"}, (
                f"{path.name}:{name} runs the PR's code in a trusted environment")
            assert SIGNING_KEY not in yaml.safe_dump(job), (
                f"{path.name}:{name} runs the PR's code with the signing key")
    assert checked >= 4  # pr.yml's jobs and gate-request


def test_the_signing_key_is_held_by_one_job_that_runs_main_s_code_only() -> None:
    holders = [(path.name, name, job) for path in WORKFLOWS
               for name, job in _load(path)["jobs"].items()
               if SIGNING_KEY in yaml.safe_dump(job)]
    assert [(workflow, name) for workflow, name, _ in holders] == [("gate.yml", "gate")]
    gate = _load(REPO / ".github" / "workflows" / "gate.yml")
    assert _triggers(gate) == {"workflow_run"}  # GitHub takes this file from main
    job = holders[0][2]
    assert job["environment"] == "gate"  # deployment branches: main only (docs/gate.md)
    for step in job["steps"]:
        if step.get("uses", "").startswith("actions/checkout@"):
            inputs = step.get("with") or {}
            assert not {"ref", "repository"} & set(inputs), (
                "gate.yml checks out something other than the default branch")
        assert "head_sha" not in yaml.safe_dump(step), "a step of gate.yml uses the PR's head"


def test_the_gate_workflow_answers_the_request_workflow_of_pull_requests() -> None:
    gate = _load(REPO / ".github" / "workflows" / "gate.yml")
    request = _load(REPO / ".github" / "workflows" / "gate-request.yml")
    on = gate.get(True, gate.get("on"))
    assert on["workflow_run"]["workflows"] == [request["name"]]
    assert _triggers(request) == {"pull_request"}
    assert "pull_request" in gate["jobs"]["gate"]["if"]


def test_promote_holds_only_the_public_key() -> None:
    promote = _load(REPO / ".github" / "workflows" / "promote.yml")["jobs"]["promote"]
    env = {k: v for step in promote["steps"] for k, v in (step.get("env") or {}).items()}
    assert env["MLOPS_VERDICT_PUBLIC_KEY"] == "${{ vars.MLOPS_VERDICT_PUBLIC_KEY }}"
    assert SIGNING_KEY not in yaml.safe_dump(promote)
