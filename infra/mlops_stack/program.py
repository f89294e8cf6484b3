"""Wire the components into the stack and export what the workflows and people need."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mlops_stack.alarms import Alarms, AlarmsArgs
from mlops_stack.artifacts import ArtifactStore, ArtifactStoreArgs
from mlops_stack.ci_access import CiAccess, CiAccessArgs, PermissionsBoundary
from mlops_stack.database import TrackingDatabase, TrackingDatabaseArgs
from mlops_stack.network import Network, NetworkArgs
from mlops_stack.orchestration import DAGS_PREFIX, Orchestration, OrchestrationArgs
from mlops_stack.serving import ServingService, ServingServiceArgs
from mlops_stack.settings import NAMESPACE, ConfigError, StackSettings, settings_from
from mlops_stack.tracking import LoginSpec, TrackingServer, TrackingServerArgs
from mlops_stack.web_service import SharedLoadBalancer, SharedLoadBalancerArgs

OPEN_TO_ALL = "0.0.0.0/0"
LOGINS = (
    LoginSpec("serving", "reader"),        # the serving tasks (their execution role reads it)
    LoginSpec("gate", "reader"),           # GitHub environment `gate`: the gate on main's code
    LoginSpec("registry-read", "reader"),  # GitHub environment `registry-read`: image test, drift
    LoginSpec("promote", "promoter"),      # GitHub environment `production`: promote, rollback
)
ORCHESTRATION_LOGINS = (
    LoginSpec("airflow", "trainer"),    # MWAA's execution role
    LoginSpec("emr-train", "trainer"),  # the EMR training job's role
    LoginSpec("emr-score", "reader"),   # the EMR scoring job's role
)


@dataclass
class Stack:
    network: Network
    artifacts: ArtifactStore
    database: TrackingDatabase
    tracking: TrackingServer
    serving: ServingService
    ci: CiAccess
    outputs: dict[str, pulumi.Input[object]]
    orchestration: Orchestration | None = None
    alarms: Alarms | None = None


def build(settings: StackSettings) -> Stack:
    """Create every resource of the stack from validated settings."""
    tags = {"project": "mlops", "stack": settings.prefix}
    zones = aws.get_availability_zones(state="available").names
    region = aws.get_region().region
    account_id = aws.get_caller_identity().account_id

    network = Network(
        "network",
        NetworkArgs(
            cidr=settings.vpc_cidr,
            availability_zones=zones,
            region=region,
            nat_gateways=2 if settings.high_availability else 1,
            nat_instance=settings.nat_instance,
            tags=tags,
        ),
    )
    artifacts = ArtifactStore(
        "artifacts", ArtifactStoreArgs(bucket_prefix=f"{settings.prefix}-artifacts-", tags=tags)
    )
    database = TrackingDatabase(
        "tracking-db",
        TrackingDatabaseArgs(
            identifier=f"{settings.prefix}-tracking",
            vpc_id=network.vpc_id,
            subnet_ids=network.private_subnet_ids,
            instance_class=settings.db_instance_class,
            allocated_storage_gb=settings.db_allocated_storage_gb,
            backup_retention_days=settings.db_backup_retention_days,
            deletion_protection=settings.db_deletion_protection,
            multi_az=settings.high_availability,
            tags=tags,
        ),
    )
    boundary = PermissionsBoundary("boundary", prefix=settings.prefix, account_id=account_id)
    logins = LOGINS + (ORCHESTRATION_LOGINS if settings.orchestration else ())
    cluster = aws.ecs.Cluster(
        "cluster",
        name=settings.prefix,
        settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="disabled")],
        tags=tags,
    )
    spot_ready: list[pulumi.Resource] = []
    if settings.fargate_spot:
        spot_ready.append(aws.ecs.ClusterCapacityProviders(
            "cluster-capacity", cluster_name=cluster.name,
            capacity_providers=["FARGATE", "FARGATE_SPOT"]))
    shared = None
    if settings.shared_load_balancer:
        shared = SharedLoadBalancer("edge", SharedLoadBalancerArgs(
            prefix=settings.prefix, vpc_id=network.vpc_id,
            public_subnet_ids=network.public_subnet_ids,
            certificate_arn=settings.certificate_arn, tags=tags))

    # The serving tasks reach the tracking load balancer through the NAT gateway, so its
    # addresses are let in even when the tracking server is open to a narrow list only.
    tracking_cidrs: list[pulumi.Input[str]] = list(settings.tracking_allowed_cidrs)
    if OPEN_TO_ALL not in settings.tracking_allowed_cidrs:
        tracking_cidrs += [ip.apply(lambda addr: f"{addr}/32") for ip in network.nat_public_ips]

    tracking = TrackingServer(
        "tracking",
        TrackingServerArgs(
            prefix=settings.prefix,
            vpc_id=network.vpc_id,
            public_subnet_ids=network.public_subnet_ids,
            private_subnet_ids=network.private_subnet_ids,
            cluster_arn=cluster.arn,
            region=region,
            bucket_name=artifacts.bucket_name,
            bucket_arn=artifacts.bucket_arn,
            database_address=database.address,
            database_port=database.port,
            database_name=database.database_name,
            database_secret_arn=database.master_secret_arn,
            database_security_group_id=database.security_group.id,
            ingress_cidrs=tracking_cidrs,
            cpu=settings.tracking_cpu,
            memory=settings.tracking_memory,
            image=settings.tracking_image,
            admin_username=settings.admin_username,
            experiment=settings.experiment,
            model_name=settings.model_name,
            logins=logins,
            boundary_arn=boundary.arn,
            rate_limit=settings.tracking_rate_limit,
            host=settings.tracking_host,
            certificate_arn=settings.certificate_arn,
            log_retention_days=settings.log_retention_days,
            shared=shared,
            spot=settings.fargate_spot,
            service_depends_on=spot_ready,
            tags=tags,
        ),
    )
    database.allow_client("tracking", tracking.task_security_group_id)
    # On a shared load balancer the serving host answers only its own clients: the VPC's
    # ranges and, since they come through it, the NAT address (a listener rule condition).
    serving_sources: list[pulumi.Input[str]] = []
    if shared is not None:
        serving_sources = [*settings.effective_serving_cidrs,
                           *[ip.apply(lambda addr: f"{addr}/32") for ip in network.nat_public_ips]]

    serving = ServingService(
        "serving",
        ServingServiceArgs(
            prefix=settings.prefix,
            vpc_id=network.vpc_id,
            public_subnet_ids=network.public_subnet_ids,
            private_subnet_ids=network.private_subnet_ids,
            cluster_arn=cluster.arn,
            cluster_name=cluster.name,
            region=region,
            tracking_uri=tracking.url,
            tracking_username="serving",
            tracking_password_secret_arn=tracking.login_secrets["serving"].arn,
            boundary_arn=boundary.arn,
            model_name=settings.model_name,
            ingress_cidrs=list(settings.effective_serving_cidrs),
            bucket_name=artifacts.bucket_name,
            bucket_arn=artifacts.bucket_arn,
            public=settings.serving_public,
            cpu=settings.serving_cpu,
            memory=settings.serving_memory,
            min_tasks=settings.serving_min_tasks,
            max_tasks=settings.serving_max_tasks,
            cpu_target=settings.serving_cpu_target,
            image=settings.serving_image,
            host=settings.serving_host,
            certificate_arn=settings.certificate_arn,
            log_retention_days=settings.log_retention_days,
            shared=shared,
            source_cidrs=serving_sources,
            spot=settings.fargate_spot,
            service_depends_on=spot_ready,
            hours=settings.serving_hours,
            tags=tags,
        ),
    )
    orchestration = None
    if settings.orchestration:
        orchestration = Orchestration("orchestration", OrchestrationArgs(
            prefix=settings.prefix, region=region, account_id=account_id,
            vpc_id=network.vpc_id, private_subnet_ids=network.private_subnet_ids,
            airflow_login_secret_arn=tracking.login_secrets["airflow"].arn,
            train_login_secret_arn=tracking.login_secrets["emr-train"].arn,
            score_login_secret_arn=tracking.login_secrets["emr-score"].arn,
            github_repository=settings.github_repo,
            prediction_log=serving.prediction_log, prediction_log_bucket_arn=artifacts.bucket_arn,
            tracking_uri=tracking.url, serving_url=serving.url,
            spark_image=settings.spark_image, boundary_arn=boundary.arn, tags=tags))
    ci = CiAccess(
        "ci",
        CiAccessArgs(
            prefix=settings.prefix,
            github_repo=settings.github_repo,
            account_id=account_id,
            state_bucket=settings.state_bucket,
            infra_environment=settings.ci_environments.infra,
            boundary_arn=boundary.arn,
            serving_repository_arn=serving.repository.arn,
            serving_image_environment=settings.ci_environments.serving_image,
            workflow_subjects=settings.oidc_workflow_subjects,
            existing_provider_arn=settings.github_oidc_provider_arn,
            secrets_key_arn=settings.pulumi_secrets_key_arn,
            dags_environment=settings.ci_environments.dags,
            dags_bucket_arn=orchestration.dags.bucket_arn if orchestration else None,
            dags_prefix=DAGS_PREFIX,
            tags=tags,
        ),
    )

    alarms = Alarms("alarms", AlarmsArgs(
        prefix=settings.prefix,
        load_balancers={
            name: (service.service.load_balancer.arn_suffix,
                   service.service.target_group.arn_suffix)
            for name, service in (("tracking", tracking), ("serving", serving))},
        database_identifier=database.instance.identifier,
        serving_log_group=serving.log_group_name, tags=tags))

    outputs: dict[str, pulumi.Input[object]] = {
        "trackingUri": tracking.url,
        "servingUrl": serving.url,
        "trackingLoadBalancerDns": tracking.service.dns_name,
        "servingLoadBalancerDns": serving.service.dns_name,
        "artifactBucket": artifacts.bucket_name,
        "trackingAdminSecretArn": tracking.admin_secret.arn,
        "trackingFlaskSecretArn": tracking.flask_secret.arn,
        "trackingDbAppSecretArn": tracking.db_app_secret.arn,
        "loginSecretArns": {name: secret.arn for name, secret in tracking.login_secrets.items()},
        "alarmTopicArn": alarms.topic.arn,
        "boundaryPolicyArn": boundary.arn,
        "trackingRepositoryUrl": tracking.repository.repository_url,
        "servingRepositoryUrl": serving.repository.repository_url,
        "ciRoleArns": ci.role_arns,
        "clusterName": cluster.name,
        "trackingServiceName": tracking.service.service.name,
        "servingServiceName": serving.service.service.name,
        # what this deployment runs: infra/pulumi_command.py refuses an up that would roll
        # the serving-image workflow's digest back to an older config value
        "servingImage": settings.serving_image,
    }
    if orchestration is not None:
        outputs.update({
            "airflowDagsBucket": orchestration.dags.bucket_name,
            "batchBucket": orchestration.batch.bucket_name,
            "sparkApplicationId": orchestration.spark.id,
            "sparkJobRoleArn": orchestration.job_role.arn,
            "trainJobRoleArn": orchestration.train_job_role.arn,
            "airflowWebserverUrl": orchestration.airflow.webserver_url,
            "sparkRepositoryUrl": orchestration.spark_repository.repository_url,
            "githubTokenSecretArn": orchestration.github_token.arn,
        })
    return Stack(network, artifacts, database, tracking, serving, ci, outputs, orchestration,
                 alarms)


def main() -> None:
    """Entry point of `pulumi up`: read and check the config, build, export."""
    config = pulumi.Config(NAMESPACE)
    try:
        settings = settings_from(config.get, project=pulumi.get_project(), stack=pulumi.get_stack())
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None
    stack = build(settings)
    for key, value in stack.outputs.items():
        pulumi.export(key, value)
