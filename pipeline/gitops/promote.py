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
from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from pipeline.errors import RegistryError
from pipeline.gitops import registry
from pipeline.gitops.card import ModelCard, policy_hash
from pipeline.gitops.github import Audit
from pipeline.gitops.verdict import Verdict


@dataclass(frozen=True)
class PromoteResult:
    changed: bool
    version: str
    previous: str | None
    message: str


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def read_verdict_tag(run: Run) -> Verdict | None:
    """The verdict the gate left on a run, or None when it was never gated (or it is junk)."""
    raw = run.data.tags.get(registry.VERDICT_TAG)
    if raw is None:
        return None
    try:
        return Verdict.from_tag(raw)
    except (ValueError, TypeError, KeyError):
        return None


def promote(mlflow_client: MlflowClient, card: ModelCard, *, audit: Audit,
            verdict_file: Verdict | None = None) -> PromoteResult:
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
    if verdict_file is not None and verdict_file.candidate_run_id != run_id:
        raise RegistryError(f"the verdict file is for run {verdict_file.candidate_run_id}, "
                            f"not the card's candidate {run_id}; re-run the gate")
    _check_verdict(verdict, card=card, run_id=run_id)
    assert verdict is not None
    baseline = verdict.production_version
    _compare(current.version if current else None, baseline, name=name)
    version = registry.register_run(mlflow_client, name, run_id)
    current = registry.production_version(mlflow_client, name)
    _compare(current.version if current else None, baseline, name=name)
    tags = {**audit.tags(), "gate_verdict": verdict.summary(),
            "baseline_version": baseline or "none", "promoted_at": _now(),
            "promoted_by": "mlops promote"}
    after = registry.set_production(mlflow_client, name, version.version, tags=tags)
    _read_back(mlflow_client, name, after.version, run_id)
    return PromoteResult(changed=True, version=after.version, previous=baseline,
                         message=f"{name} version {after.version} (run {run_id}) is now "
                                 f"Production (was {_v(baseline)})")


def _v(version: str | None) -> str:
    return f"version {version}" if version else "none"


def _check_verdict(verdict: Verdict | None, *, card: ModelCard, run_id: str) -> None:
    if verdict is None:
        raise RegistryError(f"run {run_id} has no gate verdict; run `mlops gate` on this card "
                            "first")
    if verdict.passed is not True:
        raise RegistryError(f"run {run_id} did not pass the gate; fix the candidate and re-run "
                            "the gate")
    if verdict.model_name != card.model.name:
        raise RegistryError(f"run {run_id} was gated for model {verdict.model_name}, "
                            f"not {card.model.name}; re-run the gate")
    if verdict.policy_hash != policy_hash(card):
        raise RegistryError(f"run {run_id} was gated under a different card policy; re-run "
                            "the gate")


def _compare(current: str | None, baseline: str | None, *, name: str) -> None:
    """The compare of compare-and-set."""
    if current != baseline:
        raise RegistryError(
            f"{name}: Production is {_v(current)} but the gate compared against "
            f"{_v(baseline)}; re-run the gate"
        )


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

