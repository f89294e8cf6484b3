"""The infra workflow: dispatched by hand, one stack at a time, OIDC only, pinned actions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "infra.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_dispatched_by_hand_with_stack_and_command(workflow):
    trigger = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert list(trigger) == ["workflow_dispatch"]
    inputs = trigger["workflow_dispatch"]["inputs"]
    assert inputs["command"]["options"] == ["preview", "up", "refresh", "destroy"]
    assert inputs["stack"]["required"] is True


def test_one_run_per_stack_at_a_time(workflow):
    assert workflow["concurrency"] == {
        "group": "infra-${{ inputs.stack }}",
        "cancel-in-progress": False,
    }


def test_permissions_are_empty_except_the_job_that_needs_oidc(workflow):
    assert workflow["permissions"] == {}
    (job,) = workflow["jobs"].values()
    assert job["environment"] == "infra"
    assert job["permissions"] == {"contents": "read", "id-token": "write"}


def test_every_action_is_pinned_to_a_commit_with_its_version(workflow):
    lines = [line.strip() for line in WORKFLOW.read_text().splitlines() if "uses:" in line]
    assert lines
    for line in lines:
        assert re.search(r"@[0-9a-f]{40} # v\d", line), line


def test_checkout_keeps_no_credentials(workflow):
    checkout = [s for s in steps(workflow) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkout[0]["with"]["persist-credentials"] is False


def test_no_static_aws_keys(workflow):
    text = WORKFLOW.read_text()
    assert "aws-access-key-id" not in text
    assert "AWS_SECRET_ACCESS_KEY" not in text


def test_run_steps_call_existing_make_targets_without_expressions(workflow):
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+):", makefile, flags=re.MULTILINE))
    runs = [s["run"] for s in steps(workflow) if "run" in s]
    assert runs
    for run in runs:
        assert "${{" not in run, run
        match = re.fullmatch(r"make ([A-Za-z0-9_.-]+)", run.strip())
        assert match, f"a run step calls one make target: {run!r}"
        assert match.group(1) in targets, f"no make target {match.group(1)!r}"


def test_the_program_is_tested_and_previewed_before_it_runs(workflow):
    """Mocks and the policy rules first; an `up` shows its preview before applying."""
    runs = [s.get("run", "").strip() for s in steps(workflow)]
    assert runs.index("make infra-test") < runs.index("make infra-run")
    (preview,) = [s for s in steps(workflow) if s.get("run", "").strip() == "make infra-preview"]
    assert runs.index("make infra-preview") < runs.index("make infra-run")
    assert preview["if"] == "${{ inputs.command == 'up' }}"
