"""Tracking service: the MLflow server on Fargate, from the project's own image.

MLflow runs with the basic-auth app (the admin password comes from Secrets Manager, so the
server never starts with a default one), proxies artifacts to the bucket (clients need no
S3 credentials), keeps runs and the registry in RDS MySQL, and answers only to its own
host names (`--allowed-hosts`). The task role can reach its own bucket and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mlops_stack import documents
from mlops_stack.database import MYSQL_PORT
from mlops_stack.web_service import (
    LoadBalancedService,
    LoadBalancedServiceArgs,
    SharedLoadBalancer,
    image_reference,
    image_repository,
)

MLFLOW_PORT = 5000
ARTIFACTS_PATH = "artifacts"
DB_APP_USERNAME = "mlflow_app"
LOCAL_HOST = f"localhost:{MLFLOW_PORT}"
"""The Host the task's own login keeper sends (loopback): no browser can be made to send it
to the load balancer, so accepting it opens nothing to DNS rebinding."""


@dataclass(frozen=True)
class LoginSpec:
    """One MLflow login: its username and role (logins.ROLES in the image)."""

    username: str
    role: str


def workers_for(cpu_units: int, memory_mib: int) -> int:
    """One uvicorn worker per half vCPU, and no more than one per 512 MiB of memory."""
    return max(1, min(cpu_units // 512, memory_mib // 512))


def server_arguments(*, workers: int, bucket: str, allowed_hosts: Sequence[str]) -> list[str]:
    """The `mlflow server` arguments; the backend store URI comes from the environment."""
    return [
        "--host", "0.0.0.0",  # noqa: S104 - inside the task; the security group guards it
        "--port", str(MLFLOW_PORT),
        "--workers", str(workers),
        "--app-name", "basic-auth",
        "--serve-artifacts",
        "--artifacts-destination", f"s3://{bucket}/{ARTIFACTS_PATH}",
        "--allowed-hosts", ",".join(allowed_hosts),
    ]  # fmt: skip


@dataclass
class TrackingServerArgs:
    prefix: str
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    cluster_arn: pulumi.Input[str]
    region: pulumi.Input[str]
    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    database_address: pulumi.Input[str]
    database_port: pulumi.Input[int]
    database_name: str
    database_secret_arn: pulumi.Input[str]
    database_security_group_id: pulumi.Input[str]
    ingress_cidrs: Sequence[pulumi.Input[str]]
    cpu: int = 512
    memory: int = 1024
    image: str = ""  # an immutable tag or a digest (sha256:...): settings.image_ref checks it
    admin_username: str = "admin"
    experiment: str = "mlops-gitops"
    model_name: str = "diamond-price"
    logins: Sequence[LoginSpec] = ()
    boundary_arn: pulumi.Input[str] | None = None
    rate_limit: int = 1000
    host: str | None = None
    certificate_arn: str | None = None
    log_retention_days: int = 30
    shared: SharedLoadBalancer | None = None
    spot: bool = False
    service_depends_on: Sequence[pulumi.Resource] = ()
    tags: dict[str, str] | None = None


class TrackingServer(pulumi.ComponentResource):
    """ECR repository, admin secret, task role, and the MLflow service behind its ALB."""

    def __init__(
        self, name: str, args: TrackingServerArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:infra:TrackingServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # the secrets hold what the operator put: `pulumi destroy` stops until unprotected
        protected = pulumi.ResourceOptions(parent=self, protect=True)
        tags = args.tags or {}

        self.repository = image_repository(
            f"{name}-repo", repo_name=f"{args.prefix}/mlflow", tags=tags, opts=child
        )
        # The value is put by the operator (docs/infra.md, bootstrap); it never enters the state.
        self.admin_secret = aws.secretsmanager.Secret(
            f"{name}-admin-password",
            name_prefix=f"{args.prefix}/mlflow-admin-",
            description="Password of the MLflow basic-auth admin user (set by the operator)",
            recovery_window_in_days=7,
            tags=tags,
            opts=protected,
        )
        # Signs the UI's CSRF tokens: one value for every task, so a form served by one task
        # is accepted by another, and not the random per-process key MLflow falls back to.
        self.flask_secret = aws.secretsmanager.Secret(
            f"{name}-flask-secret-key",
            name_prefix=f"{args.prefix}/mlflow-flask-secret-key-",
            description="MLflow's Flask secret key (set by the operator)",
            recovery_window_in_days=7,
            tags=tags,
            opts=protected,
        )
        # The application's MySQL password (db_user.py): put by the operator, like the admin's.
        self.db_app_secret = aws.secretsmanager.Secret(
            f"{name}-db-app-password",
            name_prefix=f"{args.prefix}/mlflow-db-app-",
            description="Password of MLflow's own MySQL user (set by the operator)",
            recovery_window_in_days=7, tags=tags, opts=protected)
        # One per login: the tracking task writes it when it creates the login, the
        # login's one consumer reads it, nobody else does.
        self.login_secrets = {
            login.username: aws.secretsmanager.Secret(
                f"{name}-login-{login.username}",
                name_prefix=f"{args.prefix}/mlflow-login-{login.username}-",
                description=f"MLflow login {login.username} ({login.role}), written by the "
                            "tracking task", recovery_window_in_days=7, tags=tags, opts=protected)
            for login in args.logins}
        self.task_role = aws.iam.Role(
            f"{name}-task-role",
            name=f"{args.prefix}-{name}-task",
            assume_role_policy=json.dumps(documents.ecs_tasks_trust()),
            description="MLflow server: its own artifact bucket, and writing its logins",
            permissions_boundary=args.boundary_arn,
            tags=tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-task-bucket",
            role=self.task_role.id,
            policy=pulumi.Output.from_input(args.bucket_arn).apply(
                lambda arn: json.dumps(documents.tracking_task_policy(arn))
            ),
            opts=child,
        )
        if self.login_secrets:
            aws.iam.RolePolicy(
                f"{name}-task-logins", role=self.task_role.id,
                policy=pulumi.Output.all(*[s.arn for s in self.login_secrets.values()]).apply(
                    lambda arns: json.dumps(documents.write_secrets_policy(list(arns)))),
                opts=child)

        workers = workers_for(args.cpu, args.memory)
        extra_hosts = [args.host] if args.host else []
        extra_hosts.append(LOCAL_HOST)
        logins = pulumi.Output.all(*[s.arn for s in self.login_secrets.values()]).apply(
            lambda arns: json.dumps([
                {"username": login.username, "role": login.role, "secret": arn}
                for login, arn in zip(args.logins, arns, strict=True)]))

        def command(dns_name: pulumi.Output[str]) -> pulumi.Output[list[str]]:
            return pulumi.Output.all(args.bucket_name, dns_name).apply(
                lambda v: server_arguments(
                    workers=workers, bucket=v[0], allowed_hosts=[v[1], *extra_hosts]
                )
            )

        secret_arn = pulumi.Output.from_input(args.database_secret_arn)
        self.service = LoadBalancedService(
            name,
            LoadBalancedServiceArgs(
                prefix=args.prefix,
                vpc_id=args.vpc_id,
                public_subnet_ids=args.public_subnet_ids,
                private_subnet_ids=args.private_subnet_ids,
                cluster_arn=args.cluster_arn,
                region=args.region,
                image=self.repository.repository_url.apply(
                    lambda url: image_reference(url, args.image)
                ),
                container_port=MLFLOW_PORT,
                health_check_path="/health",
                cpu=args.cpu,
                memory=args.memory,
                ingress_cidrs=args.ingress_cidrs,
                internal=False,
                host=args.host,
                certificate_arn=args.certificate_arn,
                environment={
                    "DB_HOST": args.database_address,
                    "DB_PORT": pulumi.Output.from_input(args.database_port).apply(str),
                    "DB_NAME": args.database_name,
                    "DB_APP_USERNAME": DB_APP_USERNAME,
                    "MLFLOW_AUTH_ADMIN_USERNAME": args.admin_username,
                    "MLOPS_EXPERIMENT": args.experiment,
                    "MLOPS_MODEL_NAME": args.model_name,
                    "MLOPS_LOGINS": logins,
                },
                secrets={
                    "DB_USERNAME": secret_arn.apply(lambda arn: f"{arn}:username::"),
                    "DB_PASSWORD": secret_arn.apply(lambda arn: f"{arn}:password::"),
                    "DB_APP_PASSWORD": self.db_app_secret.arn,
                    "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin_secret.arn,
                    "MLFLOW_FLASK_SERVER_SECRET_KEY": self.flask_secret.arn,
                },
                secret_arns=[secret_arn, self.db_app_secret.arn, self.admin_secret.arn,
                             self.flask_secret.arn],
                boundary_arn=args.boundary_arn,
                command=command,
                task_role_arn=self.task_role.arn,
                log_retention_days=args.log_retention_days,
                shared=args.shared,
                rule_priority=100,
                spot=args.spot,
                service_depends_on=args.service_depends_on,
                tags=tags,
            ),
            opts=child,
        )
        self.service.allow_egress(
            "mysql", port=MYSQL_PORT, security_group_id=args.database_security_group_id
        )

        self.web_acl = self._rate_limit(name, args)

        self.url = self.service.url
        self.task_security_group_id = self.service.task_security_group.id
        self.register_outputs(
            {
                "url": self.url,
                "repository_url": self.repository.repository_url,
                "admin_secret_arn": self.admin_secret.arn,
                "flask_secret_arn": self.flask_secret.arn,
                "task_role_arn": self.task_role.arn,
            }
        )

    def _rate_limit(self, name: str, args: TrackingServerArgs) -> aws.wafv2.WebAcl:
        """AWS WAF in front of the load balancer: one address sending more than
        `rate_limit` requests in 5 minutes is blocked, so failed logins (a slow password
        hash each, on half a vCPU) cannot starve the server from one source."""
        metrics = aws.wafv2.WebAclVisibilityConfigArgs(
            cloudwatch_metrics_enabled=True, metric_name=f"{args.prefix}-tracking",
            sampled_requests_enabled=True)
        acl = aws.wafv2.WebAcl(
            f"{name}-waf", name=f"{args.prefix}-tracking", scope="REGIONAL",
            description="Rate limit per source address in front of the tracking server",
            default_action=aws.wafv2.WebAclDefaultActionArgs(
                allow=aws.wafv2.WebAclDefaultActionAllowArgs()),
            rules=[aws.wafv2.WebAclRuleArgs(
                name="rate-per-address", priority=1,
                action=aws.wafv2.WebAclRuleActionArgs(block=aws.wafv2.WebAclRuleActionBlockArgs()),
                statement=aws.wafv2.WebAclRuleStatementArgs(
                    rate_based_statement=aws.wafv2.WebAclRuleStatementRateBasedStatementArgs(
                        limit=args.rate_limit, aggregate_key_type="IP",
                        evaluation_window_sec=300)),
                visibility_config=aws.wafv2.WebAclRuleVisibilityConfigArgs(
                    cloudwatch_metrics_enabled=True, metric_name=f"{args.prefix}-rate",
                    sampled_requests_enabled=True))],
            visibility_config=metrics, tags=args.tags or {},
            opts=pulumi.ResourceOptions(parent=self))
        aws.wafv2.WebAclAssociation(
            f"{name}-waf-alb", resource_arn=self.service.load_balancer.arn,
            web_acl_arn=acl.arn, opts=pulumi.ResourceOptions(parent=self))
        return acl
