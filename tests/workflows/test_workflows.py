"""The workflows: valid, secure by the linters' standards, and thin (each step a make target)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.utils import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def _load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def _steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


@cache
def make_targets() -> frozenset[str]:
    """Every target GNU make knows from the Makefile, read from its database (`make -qp`)."""
    done = subprocess.run(["make", "-qp", "-f", "Makefile"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    targets: set[str] = set()
    not_a_target = False
    for line in done.stdout.splitlines():
        if line.startswith("# Not a target:"):
            not_a_target = True
            continue
        match = re.match(r"^([A-Za-z0-9_.\-]+):(?!=)", line)
        if match and not not_a_target:
            targets.add(match.group(1))
        not_a_target = False
    return frozenset(targets)


def test_the_gate_workflows_exist() -> None:
    names = {path.name for path in WORKFLOWS}
    assert {"pr.yml", "promote.yml", "registry-check.yml"} <= names


def test_make_targets_are_read_from_the_makefile() -> None:
    assert {"gate", "promote", "rollback", "registry-check", "test-unit"} <= make_targets()
    assert "no-such-target" not in make_targets()


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_run_step_calls_an_existing_make_target(path: Path) -> None:
    for step in _steps(_load(path)):
        if "run" not in step:
            continue
        command = step["run"].strip()
        match = re.fullmatch(r"make ([A-Za-z0-9_.\-]+)", command)
        assert match, f"{path.name}: step {step.get('name')!r} runs {command!r}, not `make TARGET`"
        assert match.group(1) in make_targets(), (
            f"{path.name}: step {step.get('name')!r} calls `make {match.group(1)}`, "
            "which the Makefile does not define")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_and_pinned_actions(path: Path) -> None:
    workflow = _load(path)
    triggers = workflow.get(True, workflow.get("on"))  # YAML 1.1 reads `on` as True
    assert "pull_request_target" not in (triggers or {})
    assert workflow["permissions"] == {}, f"{path.name}: top-level permissions must be {{}}"
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, f"{path.name}: job {name} must declare its permissions"
    text = path.read_text()
    for step in _steps(workflow):
        if "uses" in step:
            assert PINNED.match(step["uses"]), f"{path.name}: {step['uses']} is not SHA-pinned"
            assert re.search(re.escape(step["uses"]) + r" # v\d", text), \
                f"{path.name}: {step['uses']} lacks its `# vX.Y.Z` comment"
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False
        assert "${{" not in step.get("run", ""), f"{path.name}: expression inside run:"


def test_promote_runs_one_at_a_time_in_the_production_environment() -> None:
    workflow = _load(REPO / ".github" / "workflows" / "promote.yml")
    assert workflow["concurrency"] == {"group": "registry-production",
                                       "cancel-in-progress": False}
    triggers = workflow.get(True, workflow.get("on"))
    assert triggers["push"] == {"branches": ["main"], "paths": ["model_card.yaml"]}
    assert {job["environment"] for job in workflow["jobs"].values()} == {"production"}


def test_promote_and_rollback_share_one_concurrency_group() -> None:
    """Two registry writers never overlap: a rollback waits for a promotion, and back."""
    groups = {name: _load(REPO / ".github" / "workflows" / name)["concurrency"]
              for name in ("promote.yml", "rollback.yml")}
    assert groups["promote.yml"] == groups["rollback.yml"]
    assert groups["rollback.yml"]["cancel-in-progress"] is False
    rollback = _load(REPO / ".github" / "workflows" / "rollback.yml")
    assert {job["environment"] for job in rollback["jobs"].values()} == {"production"}


def _secret_users() -> dict[tuple[str, str], str | None]:
    """(workflow, job) -> its environment, for every job that reads a secret."""
    found: dict[tuple[str, str], str | None] = {}
    for path in WORKFLOWS:
        for name, job in _load(path)["jobs"].items():
            if "secrets." in yaml.safe_dump(job):
                found[(path.name, name)] = job.get("environment")
    return found


def test_write_credentials_exist_only_where_the_registry_is_written() -> None:
    """The PR's code (the image test) and the registry check get the read-only environment,
    the gate workflow its own (read-only user and signing key); the `production`
    environment, with the write credentials, serves promote and rollback alone."""
    users = _secret_users()
    assert users[("gate.yml", "gate")] == "gate"
    assert users[("pr.yml", "image")] == "registry-read"
    assert users[("registry-check.yml", "registry-check")] == "registry-read"
    production = {job for job, environment in users.items() if environment == "production"}
    assert production == {("promote.yml", "promote"), ("rollback.yml", "rollback")}
    assert all(environment for environment in users.values()), users


def test_the_gate_job_keeps_report_and_plot_as_an_artifact() -> None:
    gate = _load(REPO / ".github" / "workflows" / "gate.yml")["jobs"]["gate"]
    uploads = [step for step in gate["steps"]
               if step.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads
    assert uploads[0]["with"]["path"] == ".mlops/gate/"
    assert gate["permissions"] == {"contents": "read", "pull-requests": "write",
                                   "statuses": "write"}


def test_zizmor_auditor_finds_no_secret_outside_an_environment() -> None:
    done = subprocess.run([str(BIN / "zizmor"), "--offline", "--persona", "auditor",
                           "--format", "json", *map(str, WORKFLOWS)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    findings = json.loads(done.stdout or "[]")
    assert [f["ident"] for f in findings] == [], done.stdout[:2000]


def test_the_registry_check_runs_on_a_schedule() -> None:
    workflow = _load(REPO / ".github" / "workflows" / "registry-check.yml")
    triggers = workflow.get(True, workflow.get("on"))
    assert triggers["schedule"][0]["cron"]


def test_the_workflows_match_github_s_schema() -> None:
    done = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema",
                           "vendor.github-workflows", *map(str, WORKFLOWS)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_finds_nothing() -> None:
    done = subprocess.run([str(BIN / "actionlint"), *map(str, WORKFLOWS)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_finds_nothing_of_medium_severity_or_higher() -> None:
    done = subprocess.run([str(BIN / "zizmor"), "--offline", "--format", "json",
                           *map(str, WORKFLOWS)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    findings = json.loads(done.stdout or "[]")
    serious = [f"{f['ident']} ({f['determinations']['severity']}): {f['desc']}"
               for f in findings
               if f["determinations"]["severity"] in {"Medium", "High"}]
    assert not serious, "\n".join(serious)
    assert done.returncode in {0, 11, 12, 13}, done.stderr  # 1x: findings below medium


def test_pull_requests_run_the_whole_suite() -> None:
    """The suite in parallel parts by marker, each with every service it needs and none
    left out (MLOPS_REQUIRE_ALL), the Airflow part in its own environment."""
    job = _load(REPO / ".github" / "workflows" / "pr.yml")["jobs"]["tests"]
    assert job["strategy"]["matrix"]["part"] == list(PARTS)
    assert job["strategy"]["fail-fast"] is False
    runs = [step.get("run", "").strip() for step in job["steps"]]
    assert runs.index("make setup") < runs.index("make services") < runs.index("make test-part")
    assert runs.index("make dags-venv") < runs.index("make test-part")
    (suite,) = [step for step in job["steps"] if step.get("run", "").strip() == "make test-part"]
    assert suite["env"] == {"MLOPS_TEST_PART": "${{ matrix.part }}", "MLOPS_REQUIRE_ALL": "1"}
    assert job["permissions"] == {"contents": "read"}
    services = next(step for step in job["steps"] if step.get("run") == "make services")
    assert services["if"] == "matrix.part != 'unit'", "every part but unit needs the services"


PARTS = ("unit", "integration", "e2e", "airflow")
ITEM_MARKERS = """
import json, os
def pytest_collection_finish(session):
    with open(os.environ["ITEM_MARKERS"], "w") as out:
        json.dump({i.nodeid: sorted({m.name for m in i.iter_markers()}) for i in session.items},
                  out)
"""


def _collected_markers(tmp_path: Path) -> dict[str, list[str]]:
    """Every test of the main environment with its markers, as pytest collects them."""
    (tmp_path / "item_markers.py").write_text(ITEM_MARKERS)
    out = tmp_path / "items.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "item_markers",
         "-p", "no:cacheprovider"], cwd=REPO, capture_output=True, text=True, timeout=600,
        check=False, env={**os.environ, "ITEM_MARKERS": str(out),
                          "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return dict(json.loads(out.read_text()))


@pytest.mark.slow
def test_the_parts_select_every_test_once(tmp_path: Path) -> None:
    """What the PR workflow's parts select, by the markers pytest gives each test: every
    test of the main environment in exactly one part (the Airflow part is tests/dags,
    which the main environment does not collect), so no test is run twice or never."""
    from _pytest.mark.expression import Expression

    expressions = {}
    for part in PARTS:
        printed = subprocess.run(["scripts/test-part.sh", "--markers", part], cwd=REPO,
                                 capture_output=True, text=True, timeout=30, check=True)
        expressions[part] = Expression.compile(printed.stdout.strip())
    items = _collected_markers(tmp_path)
    assert len(items) >= 650
    for nodeid, markers in items.items():
        def has(name: str, **_: object) -> bool:
            return name in markers  # noqa: B023 (evaluated right here)

        chosen = [part for part, expression in expressions.items() if expression.evaluate(has)]
        assert len(chosen) == 1, f"{nodeid} ({markers}) is in the parts {chosen}"
    assert any("unit" in markers for markers in items.values())
    assert any("e2e" in markers for markers in items.values())


def test_the_image_test_serves_the_card_s_candidate_with_read_only_credentials() -> None:
    """The PR's image check runs the model the PR proposes, not a throwaway one."""
    job = _load(REPO / ".github" / "workflows" / "pr.yml")["jobs"]["image"]
    (curl,) = [step for step in job["steps"] if step.get("run", "").strip() == "make image-test"]
    assert curl["env"]["IMAGE_TEST_TRACKING_URI"] == "${{ vars.MLFLOW_TRACKING_URI }}"
    assert job["environment"] == "registry-read"
    assert job["permissions"] == {"contents": "read"}
    script = (REPO / "scripts" / "image-test.sh").read_text()
    assert 'MODEL_URI=runs:/$candidate/model' in script


def test_pull_requests_audit_every_pin() -> None:
    """pip-audit needs the advisory database online, so it runs on GitHub, on every pin,
    and `--strict` makes a package it cannot look up a failure, not a pass."""
    job = _load(REPO / ".github" / "workflows" / "pr.yml")["jobs"]["audit"]
    assert "make audit" in [step.get("run", "").strip() for step in job["steps"]]
    assert job["permissions"] == {"contents": "read"}
    recipe = next(line for line in (REPO / "Makefile").read_text().splitlines()
                  if line.startswith("\t") and "pip-audit" in line)
    assert "--strict" in recipe
    assert "-r constraints.txt" in recipe


def test_merged_dags_are_synced_by_a_role_for_that_alone() -> None:
    """On a push to main that changes dags/, one job in the `dags` environment uploads them
    with the stack's dags role (OIDC), which may write only the DAGs prefix."""
    workflow = _load(REPO / ".github" / "workflows" / "dags.yml")
    triggers = workflow.get(True, workflow.get("on"))
    assert triggers["push"] == {"branches": ["main"], "paths": ["dags/**"]}
    (job,) = workflow["jobs"].values()
    assert job["environment"] == "dags"
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    (sync,) = [step for step in job["steps"] if step.get("run", "").strip() == "make dags-sync"]
    assert sync["env"] == {"AIRFLOW_DAGS_BUCKET": "${{ vars.AIRFLOW_DAGS_BUCKET }}"}
    credentials = next(step for step in job["steps"]
                       if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_DAGS_ROLE_ARN }}"


def test_the_serving_image_is_built_once_pushed_by_digest_and_rolled_by_the_stack() -> None:
    """A push to main that changes the image: one job pushes it with a role that may only
    push to its repository, the next rolls it out with `pulumi up` under the infra role."""
    workflow = _load(REPO / ".github" / "workflows" / "serving-image.yml")
    triggers = workflow.get(True, workflow.get("on"))
    assert triggers["push"]["branches"] == ["main"]
    assert {"serving/**", "Dockerfile"} <= set(triggers["push"]["paths"])
    push, deploy = workflow["jobs"]["push"], workflow["jobs"]["deploy"]
    assert push["environment"] == "serving-image"
    assert push["permissions"] == {"contents": "read", "id-token": "write"}
    (pushed,) = [s for s in push["steps"] if s.get("run", "").strip() == "make serving-image-push"]
    assert push["outputs"]["digest"] == "${{ steps." + pushed["id"] + ".outputs.digest }}"
    assert deploy["needs"] == "push"
    assert deploy["environment"] == "infra"
    (up,) = [s for s in deploy["steps"] if s.get("run", "").strip() == "make infra-run"]
    assert up["env"]["COMMAND"] == "up"
    assert up["env"]["SERVING_IMAGE"] == "${{ needs.push.outputs.digest }}"
    roles = [step["with"]["role-to-assume"] for job in (push, deploy) for step in job["steps"]
             if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
    assert roles == ["${{ vars.AWS_SERVING_IMAGE_ROLE_ARN }}", "${{ vars.AWS_INFRA_ROLE_ARN }}"]
    script = (REPO / "scripts" / "push-serving-image.sh").read_text()
    assert "docker push" in script
    assert 'digest=$digest" >> "$GITHUB_OUTPUT"' in script


def test_the_serving_image_is_rebuilt_when_anything_it_copies_changes() -> None:
    """Every file the Dockerfile copies from the repository is under a `paths` filter:
    a change to modelio/ (the loader the server runs) must roll a new image too."""
    workflow = _load(REPO / ".github" / "workflows" / "serving-image.yml")
    paths = workflow.get(True, workflow.get("on"))["push"]["paths"]
    copied = [source for line in (REPO / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ") and "--from=" not in line
              for source in line.split()[1:-1]]
    assert copied, "the Dockerfile copies files from the repository"
    for source in copied:
        file = source.rstrip("/") + ("/__init__.py" if source.endswith("/") else "")
        assert any(fnmatch.fnmatch(file, pattern) for pattern in paths), \
            f"{source} is copied into the image but no paths filter matches it"
