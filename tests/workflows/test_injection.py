"""No workflow input or event field reaches a shell: the values a person or a pull request
can type travel as environment variables that the CLI reads and validates, never pasted
into a make recipe or a `run:` line.

The static test finds every such variable in the workflows; the dynamic one runs each
make target those steps call with shell payloads in those variables and checks that
nothing ran.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.utils import REPO, free_port

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
UNTRUSTED = re.compile(r"\$\{\{[^}]*\b(inputs\.|github\.event\.|github\.head_ref)")
"""What a dispatcher or a pull request's author controls."""


def _untrusted_env(workflow: dict[str, Any]) -> list[tuple[str, str]]:
    """(make target, variable) for each step that calls make with an untrusted variable."""
    found = []
    for job in workflow["jobs"].values():
        job_env = job.get("env") or {}
        for step in job.get("steps", []):
            env = {**job_env, **(step.get("env") or {})}
            run = str(step.get("run", "")).strip()
            match = re.fullmatch(r"make ([A-Za-z0-9_.\-]+)", run)
            for name, value in env.items():
                if UNTRUSTED.search(str(value)):
                    found.append((match.group(1) if match else run, name))
    return found


def untrusted_variables() -> list[tuple[str, str, str]]:
    """(workflow, target, variable) over every workflow."""
    return [(path.name, target, name) for path in WORKFLOWS
            for target, name in _untrusted_env(yaml.safe_load(path.read_text()))]


def recipe_lines() -> list[str]:
    """The Makefile's recipe lines (those make hands to the shell)."""
    return [line for line in (REPO / "Makefile").read_text().splitlines()
            if line.startswith("\t")]


def test_the_scan_finds_the_workflow_inputs_it_must_guard() -> None:
    found = {(workflow, name) for workflow, _, name in untrusted_variables()}
    assert ("rollback.yml", "ROLLBACK_TO") in found
    assert ("infra.yml", "STACK") in found


def test_run_lines_hold_no_expression() -> None:
    """A `${{ }}` in a `run:` line is pasted into the shell script before it runs."""
    for path in WORKFLOWS:
        workflow = yaml.safe_load(path.read_text())
        for job in workflow["jobs"].values():
            for step in job.get("steps", []):
                assert "${{" not in str(step.get("run", "")), (
                    f"{path.name}: step {step.get('name')!r} pastes an expression into "
                    "its shell")


@pytest.mark.parametrize(("workflow", "target", "variable"), untrusted_variables(),
                         ids=lambda value: str(value))
def test_no_recipe_expands_an_untrusted_variable(workflow: str, target: str,
                                                 variable: str) -> None:
    pasted = re.compile(rf"\$[({{]{re.escape(variable)}[)}}]|\$\$\{{?{re.escape(variable)}\b")
    offending = [line.strip() for line in recipe_lines() if pasted.search(line)]
    assert not offending, (f"{workflow}: {variable} (a workflow input) is expanded by a make "
                           f"recipe: {offending[0]}; let the command read it from the "
                           "environment instead")


PAYLOADS = ("1; touch {canary} #", "$(touch {canary})", "`touch {canary}`",
            "'; touch {canary}; '", '"; touch {canary}; "', "1\ntouch {canary}")


@pytest.mark.parametrize(("workflow", "target", "variable"), untrusted_variables(),
                         ids=lambda value: str(value))
def test_a_shell_payload_in_a_workflow_input_runs_nothing(tmp_path: Path, workflow: str,
                                                          target: str, variable: str) -> None:
    """Each target, run as its workflow step runs it, with payloads in the variable.

    The registry is a closed port: whatever the command would do fails early, which is
    fine; what must not happen is the payload running.
    """
    closed = f"http://127.0.0.1:{free_port()}"
    for index, payload in enumerate(PAYLOADS):
        canary = tmp_path / f"ran-{index}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": closed, "STACK": os.environ.get("STACK", "dev"),
               "COMMAND": os.environ.get("COMMAND", "preview")}
        env[variable] = payload.format(canary=canary)  # after the defaults: it may be one
        done = subprocess.run(["make", "--no-print-directory", target], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        assert not canary.exists(), (f"{workflow}: `make {target}` ran a payload from "
                                     f"{variable}: {done.stderr[-300:]}")
        assert done.returncode != 0, f"`make {target}` accepted {variable}={payload!r}"
