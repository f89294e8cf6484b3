"""CI access: GitHub's OIDC provider and one role per workflow.

Each role trusts exactly one repository and one GitHub environment (`StringEquals`, no
wildcards), so a job elsewhere, or in this repository outside that environment, cannot
assume it. No workflow holds a static AWS key.

- pr: reads the tracking server's credentials (the gate compares against Production).
- promote: the same (it moves the registry alias over the tracking server's API).
- infra: runs `pulumi preview|up|refresh|destroy` for this stack (documents.infra_role_policy).
- dags (with orchestration): syncs `dags/` to the Airflow bucket's `dags/` prefix, only that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mlops_stack import documents


@dataclass
class CiAccessArgs:
    prefix: str
    github_repo: str
    account_id: pulumi.Input[str]
    tracking_secret_arn: pulumi.Input[str]
    state_bucket: str
    pr_environment: str
    promote_environment: str
    infra_environment: str
    existing_provider_arn: str | None = None
    secrets_key_arn: str | None = None
    dags_environment: str = "dags"
    dags_bucket_arn: pulumi.Input[str] | None = None
    """The Airflow DAGs bucket, when the stack has orchestration: then a dags role too."""
    dags_prefix: str = "dags"
    tags: dict[str, str] | None = None


class CiAccess(pulumi.ComponentResource):
    """The OIDC provider (or an existing one) and the pr, promote and infra roles."""

    def __init__(self, name: str, args: CiAccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:CiAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args.tags or {}

        if args.existing_provider_arn:
            provider_arn: pulumi.Input[str] = args.existing_provider_arn
        else:
            provider = aws.iam.OpenIdConnectProvider(
                f"{name}-github-oidc",
                url=f"https://{documents.GITHUB_OIDC_HOST}",
                client_id_lists=[documents.GITHUB_OIDC_AUDIENCE],
                tags=tags,
                opts=child,
            )
            provider_arn = provider.arn

        def role(workflow: str, environment: str) -> aws.iam.Role:
            return aws.iam.Role(
                f"{name}-{workflow}",
                name=f"{args.prefix}-ci-{workflow}",
                description=f"GitHub Actions: {workflow} workflow of {args.github_repo} "
                f"in environment {environment}",
                assume_role_policy=pulumi.Output.from_input(provider_arn).apply(
                    lambda arn: json.dumps(
                        documents.github_trust(
                            provider_arn=arn, repo=args.github_repo, environment=environment
                        )
                    )
                ),
                max_session_duration=3600,
                tags=tags,
                opts=child,
            )

        self.pr_role = role("pr", args.pr_environment)
        self.promote_role = role("promote", args.promote_environment)
        self.infra_role = role("infra", args.infra_environment)

        tracking_credentials = pulumi.Output.from_input(args.tracking_secret_arn).apply(
            lambda arn: json.dumps(documents.read_secrets_policy([arn]))
        )
        for workflow, workflow_role in (("pr", self.pr_role), ("promote", self.promote_role)):
            aws.iam.RolePolicy(
                f"{name}-{workflow}-tracking-credentials",
                role=workflow_role.id,
                policy=tracking_credentials,
                opts=child,
            )
        aws.iam.RolePolicy(
            f"{name}-infra-stack",
            role=self.infra_role.id,
            policy=pulumi.Output.from_input(args.account_id).apply(
                lambda account: json.dumps(
                    documents.infra_role_policy(
                        prefix=args.prefix,
                        account_id=account,
                        state_bucket=args.state_bucket,
                        secrets_key_arn=args.secrets_key_arn,
                    )
                )
            ),
            opts=child,
        )

        self.role_arns = {
            "pr": self.pr_role.arn,
            "promote": self.promote_role.arn,
            "infra": self.infra_role.arn,
        }
        if args.dags_bucket_arn is not None:
            dags_role = role("dags", args.dags_environment)
            aws.iam.RolePolicy(
                f"{name}-dags-sync",
                role=dags_role.id,
                policy=pulumi.Output.from_input(args.dags_bucket_arn).apply(
                    lambda arn: json.dumps(documents.dags_sync_policy(arn, args.dags_prefix))
                ),
                opts=child,
            )
            self.role_arns["dags"] = dags_role.arn
        self.register_outputs({"role_arns": self.role_arns, "provider_arn": provider_arn})
