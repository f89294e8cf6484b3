"""Reproducible deploys, as policies over the program's resources under mocks.

Each rule is the policy pack's own function (infra/policy/rules.py), called here on every
resource the program registers; `pulumi preview --policy-pack infra/policy` runs the same
functions in the engine. A failure names the resource's URN.
"""

from __future__ import annotations

from typing import Any

import pytest
from policy import rules

from tests.infra.conftest import Deployment, base_settings, deploy, rule_violations

DEPLOY_RULES = [rules.validate_ecr_immutable, rules.validate_images_pinned,
                rules.validate_no_force_delete, rules.validate_stateful_protected]


broken = rule_violations


@pytest.mark.parametrize("validate", DEPLOY_RULES, ids=lambda v: v.__name__)
def test_the_stack_keeps_the_deploy_rules(stack: Deployment, validate: Any) -> None:
    assert broken(stack, validate) == []


def test_what_holds_data_is_protected(stack: Deployment) -> None:
    protected = {res.name for res in stack.resources if res.protect}
    assert protected == {"tracking-db-mysql", "artifacts-bucket", "tracking-admin-password",
                         "tracking-flask-secret-key", "tracking-db-app-password",
                         *(f"tracking-login-{name}"
                           for name in ("serving", "gate", "registry-read", "promote"))}


def test_the_rules_see_an_unprotected_database_and_a_moving_tag(stack: Deployment) -> None:
    """The same functions, shown failing on what they forbid."""
    from dataclasses import replace

    db = stack.named(rules.RDS_INSTANCE, "tracking-db-mysql")
    assert broken(Deployment([replace(db, protect=False)]), rules.validate_stateful_protected)
    (task, *_) = stack.of_type(rules.ECS_TASK_DEFINITION)
    latest = task.state["containerDefinitions"].replace(
        f"@{base_settings().tracking_image}", ":latest").replace(
        f":{base_settings().serving_image}", ":latest")
    moved = replace(task, state={**task.state, "containerDefinitions": latest})
    assert broken(Deployment([moved]), rules.validate_images_pinned)
    (repo, *_) = stack.of_type(rules.ECR_REPOSITORY)
    mutable = replace(repo, state={**repo.state, "imageTagMutability": "MUTABLE",
                                   "forceDelete": True})
    assert broken(Deployment([mutable]), rules.validate_ecr_immutable)
    assert broken(Deployment([mutable]), rules.validate_no_force_delete)


def test_an_unconfigured_image_is_refused_by_the_rules() -> None:
    stack = deploy(base_settings(serving_image=""))
    assert any("serving-task" in v for v in broken(stack, rules.validate_images_pinned))
