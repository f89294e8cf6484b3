"""Does the registry match the card: is Production the run the card on main names?

GitOps means the card in git is the desired state. Production moved by hand (an alias
set in the UI, a break-glass `mlops rollback`) or a promotion that never ran leaves the
registry out of step; the scheduled `registry-check` workflow turns that into a red
check. (Drift of the data itself is `pipeline.monitoring`'s, `mlops monitor`.)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.gitops import registry
from pipeline.gitops.card import ModelCard

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


@dataclass(frozen=True)
class RegistryCheck:
    in_sync: bool
    findings: tuple[str, ...]
    production_version: str | None
    production_run_id: str | None


def check_registry(mlflow_client: MlflowClient, card: ModelCard) -> RegistryCheck:
    """Compare the card's candidate run with the Production alias and the stage mirror."""
    name = card.model.name
    wanted = card.model.candidate_run_id
    current = registry.production_version(mlflow_client, name)
    findings: list[str] = []
    if current is None:
        if wanted is not None:
            findings.append(f"the card names run {wanted} but {name} has no Production version")
    elif wanted is None:
        findings.append(f"{name} Production is version {current.version} (run {current.run_id}) "
                        "but the card names no candidate run")
    elif current.run_id != wanted:
        findings.append(f"{name} Production is version {current.version} (run {current.run_id}) "
                        f"but the card names run {wanted}")
    if current is not None:
        staged = _versions_in_stage(mlflow_client, name)
        if staged != [current.version]:
            shown = ", ".join(staged) or "none"
            findings.append(f"stage {registry.STAGE} is on version(s) {shown}, "
                            f"but alias {registry.PRODUCTION} is on version {current.version}")
    return RegistryCheck(in_sync=not findings, findings=tuple(findings),
                       production_version=current.version if current else None,
                       production_run_id=current.run_id if current else None)


def _versions_in_stage(mlflow_client: MlflowClient, name: str) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        versions = mlflow_client.search_model_versions(f"name='{name}'")
    return sorted((v.version for v in versions if v.current_stage == registry.STAGE), key=int)
