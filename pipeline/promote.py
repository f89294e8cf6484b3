"""Promotion and rollback on the registry: compare-and-set, audited, idempotent.

Where the verdict comes from: `mlops gate` tags the candidate run with a compact
verdict (`mlops.gate.verdict`: passed, the Production version it compared against,
the hash of the card's policy). On main after the merge, `mlops promote` reads the
card, then that tag from the candidate run: nothing is carried between workflows,
and a run that was never gated, failed, or was gated under another policy is refused.

Compare-and-set: the promotion proceeds only while `production` still points at the
version the gate compared against (or there is still none). MLflow has no atomic
alias swap, so the check runs right before the move and the promote workflow runs in
one constant concurrency group: promotions never overlap.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from pipeline import registry
from pipeline.card import ModelCard, policy_hash
from pipeline.errors import RegistryError
from pipeline.gate import read_verdict_tag
from pipeline.train import git_commit


@dataclass(frozen=True)
class Audit:
    """Who and what moved Production: written as tags on the promoted version."""

    git_sha: str
    pr_number: str
    workflow_run_url: str
    actor: str

    def tags(self) -> dict[str, str]:
        return {"git_sha": self.git_sha, "pr_number": self.pr_number,
                "workflow_run_url": self.workflow_run_url, "actor": self.actor}


_MERGE_MESSAGE = re.compile(r"Merge pull request #(\d+)|\(#(\d+)\)\s*$", re.MULTILINE)


def pr_number_from_event(event: Mapping[str, Any]) -> str | None:
    """The pull request of a GitHub event: the PR itself, or the one a push merged.

    A push to main carries no PR number; GitHub's merge commit says "Merge pull request
    #N" and a squash merge ends its title with "(#N)".
    """
    pull = event.get("pull_request")
    if isinstance(pull, Mapping) and pull.get("number") is not None:
        return str(pull["number"])
    if event.get("number") is not None:
        return str(event["number"])
    head = event.get("head_commit")
    message = head.get("message") if isinstance(head, Mapping) else None
    if isinstance(message, str):
        match = _MERGE_MESSAGE.search(message.splitlines()[0] if message else "")
        if match:
            return match.group(1) or match.group(2)
    return None


def read_event(env: Mapping[str, str]) -> dict[str, Any]:
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def audit_from_env(env: Mapping[str, str], *, git_sha: str | None = None,
                   pr_number: str | None = None, run_url: str | None = None,
                   actor: str | None = None) -> Audit:
    """Options win, then GitHub Actions' variables, then local defaults (the demo)."""
    url = run_url
    if url is None and env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        url = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    local_user = env.get("USER") or _login()
    return Audit(
        git_sha=git_sha or env.get("GITHUB_SHA") or git_commit(),
        pr_number=pr_number or pr_number_from_event(read_event(env)) or "none",
        workflow_run_url=url or "local",
        actor=actor or env.get("GITHUB_ACTOR") or local_user or "unknown",
    )


def _login() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


@dataclass(frozen=True)
class PromoteResult:
    changed: bool
    version: str
    previous: str | None
    message: str


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def promote(mlflow_client: MlflowClient, card: ModelCard, *, audit: Audit,
            verdict_file: dict[str, Any] | None = None) -> PromoteResult:
    """Make the card's candidate Production if its passing verdict is still current.

    The verdict is the one the gate tagged on the run, or `verdict_file` (the gate's
    --json output) when given; either way it must be for this run and this policy.
    """
    name = card.model.name
    run_id = card.model.candidate_run_id
    current = registry.production_version(mlflow_client, name)
    if run_id is None:
        return PromoteResult(changed=False, version=current.version if current else "none",
                             previous=None,
                             message=f"the card names no candidate run for {name}: "
                                     "nothing to promote")
    run = mlflow_client.get_run(run_id)
    if current is not None and current.run_id == run_id:
        return PromoteResult(changed=False, version=current.version, previous=None,
                             message=f"{name} version {current.version} (run {run_id}) is "
                                     "already Production: nothing to do")
    verdict = read_verdict_tag(run) if verdict_file is None else verdict_file
    if verdict_file is not None and verdict_file.get("candidate_run_id") != run_id:
        raise RegistryError(f"the verdict file is for run {verdict_file.get('candidate_run_id')}, "
                            f"not the card's candidate {run_id}; re-run the gate")
    _check_verdict(verdict, card=card, run_id=run_id)
    assert verdict is not None
    baseline = verdict.get("production_version")
    _compare(current.version if current else None, baseline, name=name)
    version = registry.register_run(mlflow_client, name, run_id)
    current = registry.production_version(mlflow_client, name)
    _compare(current.version if current else None, baseline, name=name)
    tags = {**audit.tags(), "gate_verdict": _verdict_summary(verdict),
            "baseline_version": baseline or "none", "promoted_at": _now(),
            "promoted_by": "mlops promote"}
    after = registry.set_production(mlflow_client, name, version.version, tags=tags)
    _read_back(mlflow_client, name, after.version, run_id)
    return PromoteResult(changed=True, version=after.version, previous=baseline,
                         message=f"{name} version {after.version} (run {run_id}) is now "
                                 f"Production (was {_v(baseline)})")


def _v(version: str | None) -> str:
    return f"version {version}" if version else "none"


def _check_verdict(verdict: dict[str, Any] | None, *, card: ModelCard, run_id: str) -> None:
    if verdict is None:
        raise RegistryError(f"run {run_id} has no gate verdict; run `mlops gate` on this card "
                            "first")
    if verdict.get("passed") is not True:
        raise RegistryError(f"run {run_id} did not pass the gate; fix the candidate and re-run "
                            "the gate")
    if verdict.get("model_name") != card.model.name:
        raise RegistryError(f"run {run_id} was gated for model {verdict.get('model_name')}, "
                            f"not {card.model.name}; re-run the gate")
    if verdict.get("policy_hash") != policy_hash(card):
        raise RegistryError(f"run {run_id} was gated under a different card policy; re-run "
                            "the gate")


def _compare(current: str | None, baseline: Any, *, name: str) -> None:
    """The compare of compare-and-set."""
    if current != baseline:
        raise RegistryError(
            f"{name}: Production is {_v(current)} but the gate compared against "
            f"{_v(baseline)}; re-run the gate"
        )


def _verdict_summary(verdict: dict[str, Any]) -> str:
    bound = verdict.get("improvement_bound")
    text = f"pass ({verdict.get('mode')}, {verdict.get('metric')}"
    if isinstance(bound, int | float):
        text += f", improvement bound {bound:.6g}"
    return text + f", gated at {verdict.get('gated_at')})"


def _read_back(mlflow_client: MlflowClient, name: str, version: str, run_id: str) -> None:
    after = registry.production_version(mlflow_client, name)
    if after is None or after.version != version or after.run_id != run_id:
        raise RegistryError(f"{name}: read-back shows Production is "
                            f"{_v(after.version if after else None)}, expected version {version}")


def rollback(mlflow_client: MlflowClient, name: str, *, audit: Audit,
             to_version: str | None = None) -> PromoteResult:
    """Break glass: point Production at `previous-production` (or `to_version`) now.

    The GitOps way is a card with `mode: rollback`, gated and merged; this is for when
    Production is on fire. Afterwards `mlops drift` flags the card until it is updated.
    """
    current = registry.production_version(mlflow_client, name)
    if to_version is None:
        target = registry.version_by_alias(mlflow_client, name, registry.PREVIOUS)
        if target is None:
            raise RegistryError(f"{name}: no {registry.PREVIOUS} version to roll back to")
    else:
        target = mlflow_client.get_model_version(name, to_version)
    if current is not None and current.version == target.version:
        return PromoteResult(changed=False, version=target.version, previous=None,
                             message=f"{name} version {target.version} is already Production")
    tags = {**audit.tags(), "gate_verdict": "rollback (no gate)",
            "baseline_version": current.version if current else "none",
            "rolled_back_from": current.version if current else "none",
            "promoted_at": _now(), "promoted_by": "mlops rollback"}
    after = registry.set_production(mlflow_client, name, target.version, tags=tags)
    _read_back(mlflow_client, name, after.version, str(target.run_id))
    return PromoteResult(changed=True, version=after.version,
                         previous=current.version if current else None,
                         message=f"{name} rolled back to version {after.version} "
                                 f"(was {_v(current.version if current else None)})")


def environment() -> dict[str, str]:
    return dict(os.environ)
