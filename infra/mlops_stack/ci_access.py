"""CI access: GitHub's OIDC provider, the permissions boundary, one role per AWS workflow.

A role exists only for a workflow that assumes one; each trusts exactly one repository and
one GitHub environment (`StringEquals`, no wildcards; with `oidcWorkflowSubjects`, also the
workflow file on main), so a job elsewhere, or in this repository outside that
environment, cannot assume it. Every environment that holds a role allows deployments
from `main` only (docs/infra.md). No workflow holds a static AWS key.

- infra: runs `pulumi preview|up|refresh|destroy` for this stack (documents.infra_role_policy),
  within the boundary: it cannot change its own permissions nor make a role without it.
- serving-image: pushes the serving image to its ECR repository, nothing else.
- dags (with orchestration): syncs `dags/` to the Airflow bucket's `dags/` prefix, only that.

The registry's workflows (PR gate, promote, rollback, drift) assume no role: each holds
its own MLflow login as a secret of its GitHub environment (logins.py in the image).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mlops_stack import documents

BOUNDARY_SUFFIX = "boundary"
WORKFLOWS = {"infra": "infra.yml", "serving-image": "serving-image.yml", "dags": "dags.yml"}
"""role -> the workflow file that assumes it."""


def boundary_name(prefix: str) -> str:
    return f"{prefix}-{BOUNDARY_SUFFIX}"


class PermissionsBoundary(pulumi.ComponentResource):
    """The managed policy every role of the stack carries as its permissions boundary."""

    def __init__(self, name: str, *, prefix: str, account_id: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:infra:PermissionsBoundary", name, None, opts)
        self.policy = aws.iam.Policy(
            f"{name}-policy", name=boundary_name(prefix),
            description="The most any role of this stack may do; none can change its own",
            policy=pulumi.Output.from_input(account_id).apply(lambda account: json.dumps(
                documents.boundary_policy(prefix=prefix, account_id=account,
                                          deploy_role=f"{prefix}-ci-infra"))),
            opts=pulumi.ResourceOptions(parent=self))
        self.arn = self.policy.arn
        self.register_outputs({"arn": self.arn})


@dataclass
class CiAccessArgs:
    prefix: str
    github_repo: str
    account_id: pulumi.Input[str]
    state_bucket: str
    infra_environment: str
    boundary_arn: pulumi.Input[str]
    serving_repository_arn: pulumi.Input[str]
    serving_image_environment: str = "serving-image"
    existing_provider_arn: str | None = None
    secrets_key_arn: str | None = None
    workflow_subjects: bool = False
    dags_environment: str = "dags"
    dags_bucket_arn: pulumi.Input[str] | None = None
    """The Airflow DAGs bucket, when the stack has orchestration: then a dags role too."""
    dags_prefix: str = "dags"
    tags: dict[str, str] | None = None


class CiAccess(pulumi.ComponentResource):
    """The OIDC provider (or an existing one) and the infra, serving-image and dags roles."""

    def __init__(self, name: str, args: CiAccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:CiAccess", name, None, opts)
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)
        self._provider_arn = self._oidc_provider()

        self.infra_role = self._role("infra", args.infra_environment)
        self._policy("infra-stack", self.infra_role,
                     pulumi.Output.from_input(args.account_id).apply(
                         lambda account: documents.infra_role_policy(
                             prefix=args.prefix, account_id=account,
                             state_bucket=args.state_bucket,
                             secrets_key_arn=args.secrets_key_arn)))
        image_role = self._role("serving-image", args.serving_image_environment)
        self._policy("serving-image-push", image_role,
                     pulumi.Output.from_input(args.serving_repository_arn).apply(
                         documents.image_push_policy))
        self.role_arns: dict[str, pulumi.Output[str]] = {
            "infra": self.infra_role.arn, "servingImage": image_role.arn}
        if args.dags_bucket_arn is not None:
            dags_role = self._role("dags", args.dags_environment)
            self._policy("dags-sync", dags_role,
                         pulumi.Output.from_input(args.dags_bucket_arn).apply(
                             lambda arn: documents.dags_sync_policy(arn, args.dags_prefix)))
            self.role_arns["dags"] = dags_role.arn
        self.register_outputs({"role_arns": self.role_arns, "provider_arn": self._provider_arn})

    def _oidc_provider(self) -> pulumi.Input[str]:
        if self._args.existing_provider_arn:
            return self._args.existing_provider_arn
        return aws.iam.OpenIdConnectProvider(
            f"{self._name}-github-oidc", url=f"https://{documents.GITHUB_OIDC_HOST}",
            client_id_lists=[documents.GITHUB_OIDC_AUDIENCE], tags=self._args.tags or {},
            opts=self._child).arn

    def _role(self, workflow: str, environment: str) -> aws.iam.Role:
        args = self._args
        file = WORKFLOWS[workflow] if args.workflow_subjects else None
        return aws.iam.Role(
            f"{self._name}-{workflow}",
            name=f"{args.prefix}-ci-{workflow}",
            description=f"GitHub Actions: {workflow} workflow of {args.github_repo} "
            f"in environment {environment}",
            assume_role_policy=pulumi.Output.from_input(self._provider_arn).apply(
                lambda arn: json.dumps(documents.github_trust(
                    provider_arn=arn, repo=args.github_repo, environment=environment,
                    workflow=file))),
            permissions_boundary=args.boundary_arn,
            max_session_duration=3600,
            tags=args.tags or {},
            opts=self._child,
        )

    def _policy(self, name: str, role: aws.iam.Role,
                document: pulumi.Output[documents.Document]) -> aws.iam.RolePolicy:
        return aws.iam.RolePolicy(f"{self._name}-{name}", role=role.id,
                                  policy=document.apply(json.dumps), opts=self._child)
