"""Promotion and rollback on the registry: reviewed code decides, compare-and-set, audited.

Who decides: `mlops promote` runs on main, with main's (reviewed) code, in the only job
that holds write credentials. It re-computes the gate's verdict for the card's
candidate against the current Production (`evaluation.run_gate`: same seeded
bootstrap, same rows) and promotes only if that verdict passes. The verdict of the pull
request (its --json file, or the one embedded in the sticky comment) is what the
reviewer saw: promote compares the two and says which figure changed, and refuses when
the candidate's files are no longer the ones the PR's gate evaluated. Nothing a run's
tags say is trusted.

The bytes: the verdict carries the SHA-256 of every file of the candidate's model as
evaluated; after registering, the version's files must hash the same, and that
manifest is written on the version before the alias moves, so the server can verify it
before loading. The audit tags (and the verdict promote computed) are written after the
move: a version carries them only once it really was Production.

Compare-and-set: the promotion proceeds only while `production` still points at the
version the verdict compared against (or there is still none). MLflow has no atomic
alias swap, so the check runs right before the move, and promote and rollback share one
concurrency group in the workflows: registry writes never overlap.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from modelio import files as modelfiles
from pipeline.errors import NegativeVerdict, RegistryError
from pipeline.gitops import deployed, registry
from pipeline.gitops.budgets import FIGURES
from pipeline.gitops.card import ModelCard
from pipeline.gitops.evaluation import run_gate
from pipeline.gitops.github import Audit
from pipeline.gitops.review import Review
from pipeline.gitops.verdict import Verdict
from pipeline.stages.twin import Twin


@dataclass(frozen=True)
class PromoteResult:
    changed: bool
    version: str
    previous: str | None
    message: str
    verdict: Verdict | None = None
    differences: tuple[str, ...] = ()
    movements: tuple[str, ...] = ()
    """Serving figures re-measured on main beside the PR's (`serving_movements`)."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def differences(reviewed: Verdict, recomputed: Verdict) -> tuple[str, ...]:
    """What changed between the PR's verdict and main's, in words (empty: they agree)."""
    found: list[str] = []

    def differ(what: str, before: object, after: object) -> None:
        same = (math.isclose(before, after, rel_tol=1e-9, abs_tol=1e-12)
                if isinstance(before, float) and isinstance(after, float) else before == after)
        if not same:
            found.append(f"{what}: {before} on the PR, {after} on main")

    differ("candidate run", reviewed.candidate_run_id, recomputed.candidate_run_id)
    differ("verdict", "pass" if reviewed.passed else "fail",
           "pass" if recomputed.passed else "fail")
    differ("Production version compared with", reviewed.production_version,
           recomputed.production_version)
    differ("policy hash", reviewed.policy_hash, recomputed.policy_hash)
    differ("evaluated rows", reviewed.evaluated_rows, recomputed.evaluated_rows)
    differ("evaluation data hash", reviewed.data_hashes.get("evaluation"),
           recomputed.data_hashes.get("evaluation"))
    differ("test rows hash", reviewed.data_hashes.get("test_rows"),
           recomputed.data_hashes.get("test_rows"))
    for metric in sorted(set(reviewed.metrics) | set(recomputed.metrics)):
        before, after = reviewed.metrics.get(metric), recomputed.metrics.get(metric)
        if before is None or after is None:
            differ(f"metric {metric}", before is not None, after is not None)
            continue
        differ(f"{metric} of the candidate", before.candidate, after.candidate)
        differ(f"{metric} of Production", before.production, after.production)
        differ(f"{metric} interval low", before.low, after.low)
        differ(f"{metric} interval high", before.high, after.high)
    _slice_differences(reviewed, recomputed, differ)
    held = {check.name: check.ok for check in reviewed.budgets}
    for check in recomputed.budgets:  # a budget's state is compared; its figure is noise
        differ(f"budget {check.name}", _state(held.get(check.name)), _state(check.ok))
    changed = modelfiles.first_difference(reviewed.manifest, recomputed.manifest)
    if changed is not None:
        found.append(f"model file {changed[0]}: sha256 {(changed[1] or 'none')[:12]} on the "
                     f"PR, {(changed[2] or 'none')[:12]} on main")
    return tuple(found)


def _state(ok: bool | None) -> str:
    return "unchecked" if ok is None else "holds" if ok else "fails"


def _slice_differences(reviewed: Verdict, recomputed: Verdict,
                       differ: Callable[[str, object, object], None]) -> None:
    """The slice table is deterministic (seeded, same rows): compared by its digest."""
    before, after = reviewed.slices, recomputed.slices
    if before is None or after is None:
        differ("slices", before is not None, after is not None)
        return
    differ("failed slices", ", ".join(before.failed) or "none",
           ", ".join(after.failed) or "none")
    differ("slice table sha256", before.digest[:12], after.digest[:12])


def serving_movements(reviewed: Verdict, recomputed: Verdict) -> tuple[str, ...]:
    """How far each serving figure moved between the PR's measurement and main's: printed
    for the record, never compared strictly (timings on two machines are noise). Only a
    budget that held on the PR and fails now blocks, through main's verdict."""
    if reviewed.serving is None or recomputed.serving is None:
        return ()
    lines = []
    for role in ("candidate", "production"):
        was = getattr(reviewed.serving, role)
        now = getattr(recomputed.serving, role)
        if was is None or now is None:
            continue
        moved = [f"{name} {was.figure(name):.4g} -> {now.figure(name):.4g}"
                 + (f" ({now.figure(name) / was.figure(name):.2f}x)"
                    if was.figure(name) > 0 else "")
                 for name in FIGURES]
        lines.append(f"{'the candidate' if role == 'candidate' else 'Production'} "
                     f"({now.runtime}), PR -> main: {'; '.join(moved)}")
    return tuple(lines)


def promote(mlflow_client: MlflowClient, card: ModelCard, *, audit: Audit, tracking_uri: str,
            review: Review | None = None, serving_url: str | None = None) -> PromoteResult:
    """Make the card's candidate Production if main's own verdict passes, compare-and-set.

    `review` is the PR's verdict as far as it can be believed (`gitops.review`): when a
    signed one is required and none was found, promote refuses (after the no-op cases).
    With `serving_url` (the deployed server), promote refuses a candidate that server
    cannot load, and after moving the alias waits until it serves the new version,
    moving the alias back on a refusal (`gitops.deployed`).
    """
    name = card.model.name
    run_id = card.model.candidate_run_id
    current = registry.production_version(mlflow_client, name)
    if run_id is None:
        return PromoteResult(changed=False, version=current.version if current else "none",
                             previous=None,
                             message=f"the card names no candidate run for {name}: "
                                     "nothing to promote")
    if current is not None and current.run_id == run_id:
        return PromoteResult(changed=False, version=current.version, previous=None,
                             message=f"{name} version {current.version} (run {run_id}) is "
                                     "already Production: nothing to do")
    if review is not None and review.required and review.verdict is None:
        raise RegistryError(f"promote refuses: {review.source}")
    reviewed = review.verdict if review is not None else None
    if reviewed is not None:  # compare-and-set against what the reviewer saw
        _compare(current.version if current else None, reviewed.production_version, name=name)
    if reviewed is not None and reviewed.candidate_run_id != run_id:
        raise RegistryError(f"the PR's verdict is for run {reviewed.candidate_run_id}, not the "
                            f"card's candidate {run_id}; re-run the gate")
    outcome = run_gate(card, mlflow_client=mlflow_client, tracking_uri=tracking_uri)
    verdict = outcome.verdict
    changed = differences(reviewed, verdict) if reviewed is not None else ()
    if not verdict.passed:
        flipped = [c for c in changed if c.startswith("budget ")]
        suffix = (f" (the PR's verdict differs: {(flipped or changed)[0]})" if changed else "")
        raise NegativeVerdict(f"promote: the gate re-computed on main fails: "
                              f"{verdict.reasons[0]}{suffix}")
    movements = serving_movements(reviewed, verdict) if reviewed is not None else ()
    if reviewed is not None and reviewed.manifest != verdict.manifest:
        raise RegistryError(f"run {run_id}: its model files changed after the PR's gate "
                            f"({_first_file(changed)}); promote refuses: gate it again")
    baseline = verdict.production_version
    _compare(current.version if current else None, baseline, name=name)
    # the deployed server must be able to load it (gitops.deployed)
    deployed.refuse_unloadable(serving_url, outcome.candidate.estimator())
    version = registry.register_run(mlflow_client, name, run_id)
    twin = outcome.twin.onnx_bytes if isinstance(outcome.twin, Twin) else None
    manifest = registry.attach_twin(mlflow_client, run_id, twin, verdict.manifest)
    registry.check_version_files(name, version.version, manifest, tracking_uri=tracking_uri)
    current = registry.production_version(mlflow_client, name)
    _compare(current.version if current else None, baseline, name=name)
    tags = {**audit.tags(), "gate_verdict": verdict.summary(),
            "baseline_version": baseline or "none",
            registry.PROMOTE_VERDICT_TAG: verdict.to_tag(),
            "promoted_at": _now(), "promoted_by": "mlops promote"}
    previous = registry.version_by_alias(mlflow_client, name, registry.PREVIOUS)
    after = registry.set_production(mlflow_client, name, version.version,
                                    manifest=manifest, tags=tags)
    _read_back(mlflow_client, name, after.version, run_id)
    # the deployed server serves it, or the alias moves back (gitops.deployed)
    deployed.confirm_served(mlflow_client, name, after.version, url=serving_url,
                            baseline=baseline, previous=previous.version if previous else None,
                            tags=audit.tags())
    note = ("" if reviewed is None else
            "; the PR's verdict agrees" if not changed else
            f"; the PR's verdict differs in {len(changed)} figure(s), first: {changed[0]}")
    return PromoteResult(changed=True, version=after.version, previous=baseline,
                         message=f"{name} version {after.version} (run {run_id}) is now "
                                 f"Production (was {_v(baseline)}){note}",
                         verdict=verdict, differences=changed, movements=movements)


def _first_file(changed: tuple[str, ...]) -> str:
    return next((c for c in changed if c.startswith("model file")), "model files differ")


def _v(version: str | None) -> str:
    return f"version {version}" if version else "none"


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
    manifest = registry.recorded_manifest(target)
    if manifest is None:
        raise RegistryError(f"{name} version {target.version} has no recorded manifest: it was "
                            "never promoted by `mlops promote`, so it cannot be rolled back to")
    tags = {**audit.tags(), "gate_verdict": "rollback (no gate)",
            "baseline_version": current.version if current else "none",
            "rolled_back_from": current.version if current else "none",
            "promoted_at": _now(), "promoted_by": "mlops rollback"}
    after = registry.set_production(mlflow_client, name, target.version, manifest=manifest,
                                    tags=tags)
    _read_back(mlflow_client, name, after.version, str(target.run_id))
    return PromoteResult(changed=True, version=after.version,
                         previous=current.version if current else None,
                         message=f"{name} rolled back to version {after.version} "
                                 f"(was {_v(current.version if current else None)})")

