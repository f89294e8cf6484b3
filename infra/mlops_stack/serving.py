"""Serving service: the project's serving image on Fargate behind its own load balancer.

The server follows the registry's `production` alias by itself, so a promotion needs no
redeploy; this component only keeps enough tasks running (CPU target tracking) and points
them at the tracking server with the `serving` login (READ on the model and its
experiment), read from its own secret. The tasks reach models through the tracking
server's proxied artifacts; their one AWS permission is to add files to the prediction
log, under `predictions/` of the artifact bucket (PREDICTION_LOG, replacing the image's
folder in the serving user's home): no read, no list, no delete.

The load balancer checks `/health` (the process is alive), not `/ready` (a verified model
is loaded): on a fresh stack no model is in Production yet, and a `/ready` check would fail
every first deployment, trip the circuit breaker and stop ECS from launching tasks. A task
without a model answers 503 on the prediction routes until the server's poll finds one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from mlops_stack import documents
from mlops_stack.artifacts import PREDICTION_LOG_PREFIX, prediction_log_uri
from mlops_stack.settings import ServingHours
from mlops_stack.web_service import (
    HTTP_PORT,
    LoadBalancedService,
    LoadBalancedServiceArgs,
    SharedLoadBalancer,
    image_reference,
    image_repository,
)

SERVING_PORT = 8000
MODEL_ALIAS = "production"
REGISTRY_WATCH = Path(__file__).with_name("registry_watch.py")
"""The sidecar that reads the serving_behind_registry gauge into the task's log."""


@dataclass
class ServingServiceArgs:
    prefix: str
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    cluster_arn: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    region: pulumi.Input[str]
    tracking_uri: pulumi.Input[str]
    tracking_username: str
    tracking_password_secret_arn: pulumi.Input[str]
    """The login's secret ({"username", "password"}), written by the tracking task."""
    model_name: str
    ingress_cidrs: Sequence[pulumi.Input[str]]
    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    """The artifact bucket: the tasks write the prediction log under PREDICTION_LOG_PREFIX."""
    public: bool = False
    cpu: int = 512
    memory: int = 1024
    min_tasks: int = 1
    max_tasks: int = 3
    cpu_target: float = 60.0
    image: str = ""  # an immutable tag or a digest (sha256:...): settings.image_ref checks it
    host: str | None = None
    certificate_arn: str | None = None
    log_retention_days: int = 30
    boundary_arn: pulumi.Input[str] | None = None
    shared: SharedLoadBalancer | None = None
    source_cidrs: Sequence[pulumi.Input[str]] = ()
    spot: bool = False
    service_depends_on: Sequence[pulumi.Resource] = ()
    hours: ServingHours | None = None
    """When the service runs; outside these hours it is scaled to zero."""
    tags: dict[str, str] | None = None


class ServingService(pulumi.ComponentResource):
    """ECR repository, the serving service behind its ALB, and CPU autoscaling."""

    def __init__(
        self, name: str, args: ServingServiceArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:infra:ServingService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args.tags or {}

        self.repository = image_repository(
            f"{name}-repo", repo_name=f"{args.prefix}/serving", tags=tags, opts=child
        )
        self.task_role = self._task_role(name, args)
        self.prediction_log = pulumi.Output.from_input(args.bucket_name).apply(
            prediction_log_uri)
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
                container_port=SERVING_PORT,
                # Live, not ready: a stack without a Production model must still deploy.
                health_check_path="/health",
                cpu=args.cpu,
                memory=args.memory,
                ingress_cidrs=args.ingress_cidrs,
                internal=not args.public and args.shared is None,
                host=args.host,
                certificate_arn=args.certificate_arn,
                environment={
                    "MLFLOW_TRACKING_URI": args.tracking_uri,
                    "MLFLOW_TRACKING_USERNAME": args.tracking_username,
                    "MODEL_NAME": args.model_name,
                    "MODEL_ALIAS": MODEL_ALIAS,
                    "PREDICTION_LOG": self.prediction_log,
                },
                secrets={"MLFLOW_TRACKING_PASSWORD": pulumi.Output.from_input(
                    args.tracking_password_secret_arn).apply(lambda arn: f"{arn}:password::")},
                secret_arns=[args.tracking_password_secret_arn],
                task_role_arn=self.task_role.arn,
                boundary_arn=args.boundary_arn,
                desired_count=args.min_tasks,
                autoscaled=True,
                log_retention_days=args.log_retention_days,
                shared=args.shared,
                rule_priority=200,
                source_cidrs=args.source_cidrs,
                spot=args.spot,
                service_depends_on=args.service_depends_on,
                sidecar_command=["python", "-c", REGISTRY_WATCH.read_text()],
                tags=tags,
            ),
            opts=child,
        )
        if args.certificate_arn is None:
            # Plain-HTTP stacks (allowPlainHttp) reach the tracking server on port 80.
            self.service.allow_egress("tracking-http", port=HTTP_PORT, cidr="0.0.0.0/0")

        self.scaling_target = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.all(args.cluster_name, self.service.service.name).apply(
                lambda v: f"service/{v[0]}/{v[1]}"
            ),
            min_capacity=args.min_tasks,
            max_capacity=args.max_tasks,
            opts=child,
        )
        aws.appautoscaling.Policy(
            f"{name}-cpu",
            policy_type="TargetTrackingScaling",
            service_namespace=self.scaling_target.service_namespace,
            scalable_dimension=self.scaling_target.scalable_dimension,
            resource_id=self.scaling_target.resource_id,
            target_tracking_scaling_policy_configuration=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
                target_value=args.cpu_target,
                predefined_metric_specification=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                    predefined_metric_type="ECSServiceAverageCPUUtilization"
                ),
                scale_in_cooldown=300,
                scale_out_cooldown=60,
            ),
            opts=child,
        )

        self.scheduled_actions = self._hours(name, args) if args.hours else []

        self.url = self.service.url
        self.log_group_name = self.service.log_group.name
        self.register_outputs({"url": self.url, "repository_url": self.repository.repository_url,
                               "prediction_log": self.prediction_log})

    def _task_role(self, name: str, args: ServingServiceArgs) -> aws.iam.Role:
        """The tasks' role, under the stack's boundary: put files under the prediction
        log's prefix, nothing else (documents.prediction_log_write_policy)."""
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-task-role",
            name=f"{args.prefix}-{name}-task",
            assume_role_policy=json.dumps(documents.ecs_tasks_trust()),
            description="Serving tasks: add files to the prediction log, nothing else",
            permissions_boundary=args.boundary_arn,
            tags=args.tags or {},
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-task-prediction-log",
            role=role.id,
            policy=pulumi.Output.from_input(args.bucket_arn).apply(
                lambda arn: json.dumps(
                    documents.prediction_log_write_policy(arn, PREDICTION_LOG_PREFIX))
            ),
            opts=child,
        )
        return role

    def _hours(self, name: str, args: ServingServiceArgs
               ) -> list[aws.appautoscaling.ScheduledAction]:
        """Zero tasks every evening at the end hour, the configured count again on the
        working days' start hour: the autoscaler's bounds move, and CPU tracking runs
        within them by day."""
        hours = args.hours
        assert hours is not None
        target = self.scaling_target
        child = pulumi.ResourceOptions(parent=self)

        def action(key: str, schedule: str, low: int, high: int
                   ) -> aws.appautoscaling.ScheduledAction:
            return aws.appautoscaling.ScheduledAction(
                f"{name}-{key}", name=f"{args.prefix}-serving-{key}",
                service_namespace=target.service_namespace,
                scalable_dimension=target.scalable_dimension, resource_id=target.resource_id,
                schedule=schedule, timezone=hours.timezone,
                scalable_target_action=aws.appautoscaling.ScheduledActionScalableTargetActionArgs(
                    min_capacity=str(low), max_capacity=str(high)), opts=child)

        return [
            action("off-hours", f"cron(0 {hours.end_hour} * * ? *)", 0, 0),
            action("working-hours",
                   f"cron(0 {hours.start_hour} ? * {hours.first_day}-{hours.last_day} *)",
                   args.min_tasks, args.max_tasks),
        ]
