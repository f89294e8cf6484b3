"""A Fargate service behind its own application load balancer.

Both the MLflow tracking server and the serving API are this shape. The traffic path is
fixed here and nowhere else: clients -> load balancer (listener ports only, from the given
CIDRs) -> tasks (container port, from the load balancer only). Tasks have no public IP; they
may open HTTPS to the world (ECR, CloudWatch, Secrets Manager, S3 through the NAT gateway)
and whatever `allow_egress` adds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from mlops_stack import documents

HTTPS_PORT = 443
HTTP_PORT = 80
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
EXECUTION_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"


@dataclass
class SharedLoadBalancerArgs:
    prefix: str
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    certificate_arn: str | None = None
    tags: dict[str, str] | None = None


class SharedLoadBalancer(pulumi.ComponentResource):
    """One public load balancer in front of both services (the small-team profile): its
    listeners answer 404 unless a service's rule matches the request's host name. Each
    service adds its own listener rule, ingress ranges and target group."""

    def __init__(self, name: str, args: SharedLoadBalancerArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:infra:SharedLoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args.tags or {}
        self.https = args.certificate_arn is not None
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=args.vpc_id,
            description="shared load balancer: listener ports from allowed networks",
            tags={**tags, "Name": f"{name}-lb"}, opts=child)
        self.load_balancer = aws.lb.LoadBalancer(
            f"{name}-alb", load_balancer_type="application", internal=False,
            subnets=list(args.public_subnet_ids), security_groups=[self.security_group.id],
            drop_invalid_header_fields=True, idle_timeout=120, tags=tags, opts=child)
        not_found = [aws.lb.ListenerDefaultActionArgs(
            type="fixed-response", fixed_response=aws.lb.ListenerDefaultActionFixedResponseArgs(
                content_type="text/plain", message_body="not found", status_code="404"))]
        if self.https:
            self.listener = aws.lb.Listener(
                f"{name}-https", load_balancer_arn=self.load_balancer.arn, port=HTTPS_PORT,
                protocol="HTTPS", ssl_policy=TLS_POLICY, certificate_arn=args.certificate_arn,
                default_actions=not_found, opts=child)
            aws.lb.Listener(
                f"{name}-http-redirect", load_balancer_arn=self.load_balancer.arn,
                port=HTTP_PORT, protocol="HTTP", default_actions=[
                    aws.lb.ListenerDefaultActionArgs(
                        type="redirect", redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                            port=str(HTTPS_PORT), protocol="HTTPS", status_code="HTTP_301"))],
                opts=child)
        else:
            self.listener = aws.lb.Listener(
                f"{name}-http", load_balancer_arn=self.load_balancer.arn, port=HTTP_PORT,
                protocol="HTTP", default_actions=not_found, opts=child)
        self.register_outputs({"dns_name": self.load_balancer.dns_name})


@dataclass
class LoadBalancedServiceArgs:
    prefix: str
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    cluster_arn: pulumi.Input[str]
    region: pulumi.Input[str]
    image: pulumi.Input[str]
    container_port: int
    health_check_path: str
    cpu: int
    memory: int
    ingress_cidrs: Sequence[pulumi.Input[str]]
    internal: bool = False
    host: str | None = None
    certificate_arn: str | None = None
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # environment variable name -> Secrets Manager reference (`arn` or `arn:json-key::`)
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # the whole secrets the execution role may read to fill `secrets`
    secret_arns: Sequence[pulumi.Input[str]] = ()
    # the container's arguments, given the load balancer's DNS name (MLflow's --allowed-hosts)
    command: Callable[[pulumi.Output[str]], pulumi.Input[Sequence[str]]] | None = None
    task_role_arn: pulumi.Input[str] | None = None
    boundary_arn: pulumi.Input[str] | None = None
    desired_count: int = 1
    autoscaled: bool = False
    log_retention_days: int = 30
    # the small-team profile: a listener rule on one shared load balancer (by host name,
    # and from `source_cidrs` only when given), and Fargate Spot
    shared: SharedLoadBalancer | None = None
    rule_priority: int = 100
    source_cidrs: Sequence[pulumi.Input[str]] = ()
    spot: bool = False
    service_depends_on: Sequence[pulumi.Resource] = ()
    # a second, non-essential container of the same image (e.g. a metrics watcher)
    sidecar_command: Sequence[str] | None = None
    tags: dict[str, str] | None = None


def container_definitions(
    *,
    name: str,
    image: str,
    port: int,
    environment: Mapping[str, str],
    secrets: Mapping[str, str],
    command: Sequence[str] | None,
    log_group: str,
    region: str,
    sidecar_command: Sequence[str] | None = None,
) -> str:
    """The task's container (and its sidecar, if any), as the JSON ECS expects."""
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "essential": True,
        "portMappings": [{"containerPort": port, "protocol": "tcp"}],
        "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
        "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(secrets.items())],
        "linuxParameters": {"initProcessEnabled": True},
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": name,
            },
        },
    }
    if command:
        container["command"] = list(command)
    containers = [container]
    if sidecar_command:
        containers.append({
            "name": f"{name}-sidecar", "image": image, "essential": False,
            "command": list(sidecar_command), "environment": [], "secrets": [],
            "linuxParameters": {"initProcessEnabled": True},
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": log_group, "awslogs-region": region,
                "awslogs-stream-prefix": f"{name}-sidecar"}}})
    return json.dumps(containers)


class LoadBalancedService(pulumi.ComponentResource):
    """Security groups, load balancer, listeners, target group, logs, task and service."""

    def __init__(
        self, name: str, args: LoadBalancedServiceArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:infra:LoadBalancedService", name, None, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        self._tags = args.tags or {}
        self._https = args.certificate_arn is not None
        # clients -> load balancer -> tasks, in the order the diagram reads
        self._security_groups(args)
        self._load_balancer(args)
        self._listeners(args)
        self._task(args)
        self._service(args)

        self.dns_name = self.load_balancer.dns_name
        scheme = "https" if self._https else "http"
        self.url = (
            pulumi.Output.from_input(f"{scheme}://{args.host}")
            if args.host
            else self.load_balancer.dns_name.apply(lambda dns: f"{scheme}://{dns}")
        )
        self.register_outputs(
            {
                "url": self.url,
                "dns_name": self.dns_name,
                "service_name": self.service.name,
                "lb_security_group_id": self.lb_security_group.id,
                "task_security_group_id": self.task_security_group.id,
            }
        )


    def _security_groups(self, args: LoadBalancedServiceArgs) -> None:
        """Listener ports from the allowed networks to the load balancer; the container
        port from the load balancer to the tasks; HTTPS out."""
        self.lb_security_group = args.shared.security_group if args.shared else (
            aws.ec2.SecurityGroup(
                f"{self._name}-lb-sg",
                vpc_id=args.vpc_id,
                description=f"{self._name} load balancer: listener ports from allowed networks",
                tags={**self._tags, "Name": f"{self._name}-lb"},
                opts=self._child,
            ))
        self.task_security_group = aws.ec2.SecurityGroup(
            f"{self._name}-task-sg",
            vpc_id=args.vpc_id,
            description=f"{self._name} tasks: container port from its load balancer only",
            tags={**self._tags, "Name": f"{self._name}-task"},
            opts=self._child,
        )
        listener_ports = (HTTPS_PORT, HTTP_PORT) if self._https else (HTTP_PORT,)
        for index, cidr in enumerate(args.ingress_cidrs):
            for port in listener_ports:
                aws.vpc.SecurityGroupIngressRule(
                    f"{self._name}-lb-in-{port}-{index}",
                    security_group_id=self.lb_security_group.id,
                    cidr_ipv4=cidr,
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    description=("redirected to HTTPS" if self._https and port == HTTP_PORT
                                 else "clients"),
                    opts=self._child,
                )
        aws.vpc.SecurityGroupEgressRule(
            f"{self._name}-lb-to-task",
            security_group_id=self.lb_security_group.id,
            referenced_security_group_id=self.task_security_group.id,
            ip_protocol="tcp",
            from_port=args.container_port,
            to_port=args.container_port,
            description="to the tasks",
            opts=self._child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{self._name}-task-from-lb",
            security_group_id=self.task_security_group.id,
            referenced_security_group_id=self.lb_security_group.id,
            ip_protocol="tcp",
            from_port=args.container_port,
            to_port=args.container_port,
            description="from its load balancer",
            opts=self._child,
        )
        self.allow_egress("https", port=HTTPS_PORT, cidr="0.0.0.0/0")


    def _load_balancer(self, args: LoadBalancedServiceArgs) -> None:
        """The application load balancer (or the shared one) and the tasks' target group."""
        self.load_balancer = args.shared.load_balancer if args.shared else aws.lb.LoadBalancer(
            f"{self._name}-alb",
            load_balancer_type="application",
            internal=args.internal,
            subnets=list(args.private_subnet_ids if args.internal else args.public_subnet_ids),
            security_groups=[self.lb_security_group.id],
            drop_invalid_header_fields=True,
            idle_timeout=120,
            tags=self._tags,
            opts=self._child,
        )
        self.target_group = aws.lb.TargetGroup(
            f"{self._name}-tg",
            port=args.container_port,
            protocol="HTTP",
            target_type="ip",
            vpc_id=args.vpc_id,
            deregistration_delay=30,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                path=args.health_check_path,
                matcher="200",
                interval=15,
                timeout=5,
                healthy_threshold=2,
                unhealthy_threshold=3,
            ),
            tags=self._tags,
            opts=self._child,
        )

    def _listeners(self, args: LoadBalancedServiceArgs) -> None:
        """HTTPS (and a redirect from HTTP) with a certificate, else plain HTTP; on a shared
        load balancer, a rule for this service's host name (and source ranges)."""
        forward = [
            aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=self.target_group.arn)
        ]
        self.listeners: list[pulumi.Resource] = []
        if args.shared is not None:
            conditions = [aws.lb.ListenerRuleConditionArgs(
                host_header=aws.lb.ListenerRuleConditionHostHeaderArgs(values=[args.host or ""]))]
            if args.source_cidrs:
                conditions.append(aws.lb.ListenerRuleConditionArgs(
                    source_ip=aws.lb.ListenerRuleConditionSourceIpArgs(
                        values=list(args.source_cidrs))))
            self.listeners.append(aws.lb.ListenerRule(
                f"{self._name}-rule", listener_arn=args.shared.listener.arn,
                priority=args.rule_priority, conditions=conditions,
                actions=[aws.lb.ListenerRuleActionArgs(
                    type="forward", target_group_arn=self.target_group.arn)],
                opts=self._child))
        elif self._https:
            self.listeners.append(
                aws.lb.Listener(
                    f"{self._name}-https",
                    load_balancer_arn=self.load_balancer.arn,
                    port=HTTPS_PORT,
                    protocol="HTTPS",
                    ssl_policy=TLS_POLICY,
                    certificate_arn=args.certificate_arn,
                    default_actions=forward,
                    opts=self._child,
                )
            )
            self.listeners.append(
                aws.lb.Listener(
                    f"{self._name}-http-redirect",
                    load_balancer_arn=self.load_balancer.arn,
                    port=HTTP_PORT,
                    protocol="HTTP",
                    default_actions=[
                        aws.lb.ListenerDefaultActionArgs(
                            type="redirect",
                            redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                                port=str(HTTPS_PORT), protocol="HTTPS", status_code="HTTP_301"
                            ),
                        )
                    ],
                    opts=self._child,
                )
            )
        else:
            self.listeners.append(
                aws.lb.Listener(
                    f"{self._name}-http",
                    load_balancer_arn=self.load_balancer.arn,
                    port=HTTP_PORT,
                    protocol="HTTP",
                    default_actions=forward,
                    opts=self._child,
                )
            )


    def _task(self, args: LoadBalancedServiceArgs) -> None:
        """Logs, the execution role (image, logs, secrets) and the task definition."""
        self.log_group = aws.cloudwatch.LogGroup(
            f"{self._name}-logs",
            name=f"/ecs/{args.prefix}/{self._name}",
            retention_in_days=args.log_retention_days,
            tags=self._tags,
            opts=self._child,
        )
        self.execution_role = aws.iam.Role(
            f"{self._name}-exec-role",
            name=f"{args.prefix}-{self._name}-exec",
            assume_role_policy=json.dumps(documents.ecs_tasks_trust()),
            description=f"ECS pulls the {self._name} image, writes its logs and reads its secrets",
            permissions_boundary=args.boundary_arn,
            tags=self._tags,
            opts=self._child,
        )
        aws.iam.RolePolicyAttachment(
            f"{self._name}-exec-managed",
            role=self.execution_role.name,
            policy_arn=EXECUTION_POLICY_ARN,
            opts=self._child,
        )
        if args.secret_arns:
            aws.iam.RolePolicy(
                f"{self._name}-exec-secrets",
                role=self.execution_role.id,
                policy=pulumi.Output.all(*args.secret_arns).apply(
                    lambda arns: json.dumps(documents.read_secrets_policy(list(arns)))
                ),
                opts=self._child,
            )

        env_keys = sorted(args.environment)
        secret_keys = sorted(args.secrets)
        command = args.command(self.load_balancer.dns_name) if args.command else []
        definitions = pulumi.Output.all(
            image=args.image,
            log_group=self.log_group.name,
            region=args.region,
            environment=pulumi.Output.all(*[args.environment[k] for k in env_keys]),
            secrets=pulumi.Output.all(*[args.secrets[k] for k in secret_keys]),
            command=command,
        ).apply(
            lambda v: container_definitions(
                sidecar_command=args.sidecar_command,
                name=self._name,
                image=v["image"],
                port=args.container_port,
                environment=dict(zip(env_keys, v["environment"], strict=True)),
                secrets=dict(zip(secret_keys, v["secrets"], strict=True)),
                command=v["command"],
                log_group=v["log_group"],
                region=v["region"],
            )
        )
        self.task_definition = aws.ecs.TaskDefinition(
            f"{self._name}-task",
            family=f"{args.prefix}-{self._name}",
            cpu=str(args.cpu),
            memory=str(args.memory),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            execution_role_arn=self.execution_role.arn,
            task_role_arn=args.task_role_arn,
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family="LINUX", cpu_architecture="X86_64"
            ),
            container_definitions=definitions,
            tags=self._tags,
            opts=self._child,
        )

    def _service(self, args: LoadBalancedServiceArgs) -> None:
        """The Fargate service in the private subnets, behind the target group."""
        self.service = aws.ecs.Service(
            f"{self._name}-service",
            cluster=args.cluster_arn,
            task_definition=self.task_definition.arn,
            desired_count=args.desired_count,
            launch_type=None if args.spot else "FARGATE",
            capacity_provider_strategies=[aws.ecs.ServiceCapacityProviderStrategyArgs(
                capacity_provider="FARGATE_SPOT", weight=1)] if args.spot else None,
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=list(args.private_subnet_ids),
                security_groups=[self.task_security_group.id],
                assign_public_ip=False,
            ),
            load_balancers=[
                aws.ecs.ServiceLoadBalancerArgs(
                    target_group_arn=self.target_group.arn,
                    container_name=self._name,
                    container_port=args.container_port,
                )
            ],
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
                enable=True, rollback=True
            ),
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            health_check_grace_period_seconds=120,
            enable_execute_command=False,
            propagate_tags="SERVICE",
            tags=self._tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*self.listeners, *args.service_depends_on],
                # the autoscaler owns the task count once it exists
                ignore_changes=["desiredCount"] if args.autoscaled else None,
            ),
        )


    def allow_egress(
        self,
        purpose: str,
        *,
        port: int,
        cidr: str | None = None,
        security_group_id: pulumi.Input[str] | None = None,
    ) -> aws.vpc.SecurityGroupEgressRule:
        """Let the tasks open TCP `port` to a CIDR or to one security group."""
        return aws.vpc.SecurityGroupEgressRule(
            f"{self._name}-task-out-{purpose}",
            security_group_id=self.task_security_group.id,
            cidr_ipv4=cidr,
            referenced_security_group_id=security_group_id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            description=purpose,
            opts=pulumi.ResourceOptions(parent=self),
        )


def image_reference(repository_url: str, image: str) -> str:
    """`URL@sha256:...` for a digest, `URL:TAG` for a tag (immutable in these repositories)."""
    separator = "@" if image.startswith("sha256:") else ":"
    return f"{repository_url}{separator}{image}"


def image_repository(name: str, *, repo_name: str, tags: Mapping[str, str],
                     opts: pulumi.ResourceOptions) -> aws.ecr.Repository:
    """An ECR repository for one service's image: scanned on push, encrypted."""
    return aws.ecr.Repository(
        name,
        name=repo_name,
        # a pushed tag never moves: the task definition names exactly one image
        image_tag_mutability="IMMUTABLE",
        image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
            scan_on_push=True
        ),
        encryption_configurations=[
            aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")
        ],
        force_delete=False,  # a repository with images is not deleted by `pulumi destroy`
        tags=dict(tags),
        opts=opts,
    )
