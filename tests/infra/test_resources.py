"""Every resource of the stack exists and is wired to the right neighbour."""

from __future__ import annotations

import json

from tests.infra.conftest import ACCOUNT, REPO, SERVING_IMAGE_REF, TRACKING_IMAGE_REF, Deployment

TASK_DEF = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"


def container(stack: Deployment, name: str) -> dict:
    """The service's essential container (the serving task also has a non-essential
    sidecar, the registry watcher: tests/infra/test_small_team.py)."""
    definitions = stack.named(TASK_DEF, f"{name}-task").json("containerDefinitions")
    (essential,) = [d for d in definitions if d["essential"]]
    assert essential["name"] == name
    return dict(essential)


def env_of(spec: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in spec["environment"]}


def secrets_of(spec: dict) -> dict[str, str]:
    return {item["name"]: item["valueFrom"] for item in spec["secrets"]}


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_components_are_one_per_concern(stack):
    components = {res.type for res in stack.resources if res.type.startswith("mlops:infra:")}
    assert components == {
        "mlops:infra:Network",
        "mlops:infra:ArtifactStore",
        "mlops:infra:TrackingDatabase",
        "mlops:infra:TrackingServer",
        "mlops:infra:ServingService",
        "mlops:infra:LoadBalancedService",
        "mlops:infra:CiAccess",
        "mlops:infra:PermissionsBoundary",
        "mlops:infra:Alarms",
    }


def test_resources_are_children_of_their_component(stack):
    def parent_type(urn: str) -> str:
        return urn.split("::")[2].split("$")[-2]

    loose = [
        res.name
        for res in stack.resources
        if res.type.startswith("aws:") and not parent_type(res.urn).startswith("mlops:infra:")
    ]
    # Only the shared ECS cluster sits at the top of the stack.
    assert loose == ["cluster"]


def test_network_spans_two_zones_with_public_and_private_subnets(stack):
    subnets = stack.of_type("aws:ec2/subnet:Subnet")
    tiers = sorted((s.state["tags"]["tier"], s.state["availabilityZone"]) for s in subnets)
    assert tiers == [
        ("private", "us-east-1a"), ("private", "us-east-1b"),
        ("public", "us-east-1a"), ("public", "us-east-1b"),
    ]  # fmt: skip
    assert len(stack.of_type("aws:ec2/natGateway:NatGateway")) == 1


def test_high_availability_adds_a_nat_gateway_and_a_standby_database(ha_stack):
    assert len(ha_stack.of_type("aws:ec2/natGateway:NatGateway")) == 2
    assert ha_stack.named("aws:rds/instance:Instance", "tracking-db-mysql").state["multiAz"]


def test_private_subnets_route_out_through_nat_only(stack):
    for table in stack.of_type("aws:ec2/routeTable:RouteTable"):
        routes = table.state["routes"]
        assert len(routes) == 1, table.urn
        if "private" in table.name:
            assert "natGatewayId" in routes[0], table.urn
            assert "gatewayId" not in routes[0], table.urn


def test_artifact_traffic_skips_the_nat_gateway(stack):
    (endpoint,) = stack.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint.state["serviceName"] == "com.amazonaws.us-east-1.s3"
    assert endpoint.state["vpcEndpointType"] == "Gateway"
    private_tables = {
        t.id for t in stack.of_type("aws:ec2/routeTable:RouteTable") if "private" in t.name
    }
    assert set(endpoint.state["routeTableIds"]) == private_tables


def test_database_lives_in_the_private_subnets(stack):
    group = stack.of_type("aws:rds/subnetGroup:SubnetGroup")[0]
    private = {s.id for s in stack.of_type("aws:ec2/subnet:Subnet") if "private" in s.name}
    assert set(group.state["subnetIds"]) == private
    db = stack.named("aws:rds/instance:Instance", "tracking-db-mysql")
    assert db.state["engine"] == "mysql"
    assert db.state["engineVersion"].startswith("8.")


def test_tracking_task_points_at_bucket_database_and_secrets(stack):
    spec = container(stack, "tracking")
    bucket = stack.outputs["artifactBucket"]
    db = stack.named("aws:rds/instance:Instance", "tracking-db-mysql").state
    db_secret = db["masterUserSecrets"][0]["secretArn"]
    admin_secret = stack.outputs["trackingAdminSecretArn"]

    assert flag(spec["command"], "--artifacts-destination") == f"s3://{bucket}/artifacts"
    assert "--serve-artifacts" in spec["command"]
    assert env_of(spec)["DB_HOST"] == db["address"]
    assert env_of(spec)["DB_NAME"] == "mlflow"
    assert secrets_of(spec) == {
        "DB_USERNAME": f"{db_secret}:username::",
        "DB_PASSWORD": f"{db_secret}:password::",
        "DB_APP_PASSWORD": stack.outputs["trackingDbAppSecretArn"],
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin_secret,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": stack.outputs["trackingFlaskSecretArn"],
    }


def test_tracking_server_runs_basic_auth_for_its_own_host_names(stack):
    command = container(stack, "tracking")["command"]
    assert flag(command, "--app-name") == "basic-auth"
    hosts = flag(command, "--allowed-hosts").split(",")
    # and the task's own loopback name, for its login keeper
    assert hosts == [stack.outputs["trackingLoadBalancerDns"], "mlflow.example.com",
                     "localhost:5000"]
    assert flag(command, "--workers") == "1"  # 0.5 vCPU, 1 GiB


def test_images_come_from_their_ecr_repositories_as_configured(stack):
    tracking = f"{stack.outputs['trackingRepositoryUrl']}@{TRACKING_IMAGE_REF}"  # a digest
    assert container(stack, "tracking")["image"] == tracking
    serving = f"{stack.outputs['servingRepositoryUrl']}:{SERVING_IMAGE_REF}"  # an immutable tag
    assert container(stack, "serving")["image"] == serving


def test_target_groups_feed_their_services(stack):
    # both live checks: a serving task without a Production model yet must stay up
    for name, port, path in (("tracking", 5000, "/health"), ("serving", 8000, "/health")):
        group = stack.named("aws:lb/targetGroup:TargetGroup", f"{name}-tg")
        service = stack.named(SERVICE, f"{name}-service")
        assert group.state["targetType"] == "ip"
        assert group.state["healthCheck"]["path"] == path, group.urn
        (binding,) = service.state["loadBalancers"]
        assert binding["targetGroupArn"] == group.state["arn"], service.urn
        assert binding["containerName"] == name
        assert binding["containerPort"] == port
        task = stack.named(TASK_DEF, f"{name}-task")
        assert service.state["taskDefinition"] == task.state["arn"]


def test_listeners_forward_to_their_own_target_group(stack):
    for name in ("tracking", "serving"):
        alb = stack.named("aws:lb/loadBalancer:LoadBalancer", f"{name}-alb")
        https = stack.named("aws:lb/listener:Listener", f"{name}-https")
        assert https.state["loadBalancerArn"] == alb.state["arn"]
        (action,) = https.state["defaultActions"]
        tg = stack.named("aws:lb/targetGroup:TargetGroup", f"{name}-tg")
        assert action == {"type": "forward", "targetGroupArn": tg.state["arn"]}


def test_serving_points_at_the_tracking_server_and_production_alias(stack):
    spec = container(stack, "serving")
    assert env_of(spec) == {
        "MLFLOW_TRACKING_URI": stack.outputs["trackingUri"],
        "MLFLOW_TRACKING_USERNAME": "serving",
        "MODEL_NAME": "diamond-price",
        "MODEL_ALIAS": "production",
        "PREDICTION_LOG": f"s3://{stack.outputs['artifactBucket']}/predictions",
    }
    login = stack.outputs["loginSecretArns"]["serving"]
    assert secrets_of(spec) == {"MLFLOW_TRACKING_PASSWORD": f"{login}:password::"}
    assert spec["portMappings"] == [{"containerPort": 8000, "protocol": "tcp"}]


def test_serving_autoscales_on_cpu(stack):
    target = stack.named("aws:appautoscaling/target:Target", "serving-scaling").state
    assert target["resourceId"] == "service/mlops-test/serving-service"
    assert (target["minCapacity"], target["maxCapacity"]) == (1, 3)
    policy = stack.named("aws:appautoscaling/policy:Policy", "serving-cpu").state
    config = policy["targetTrackingScalingPolicyConfiguration"]
    assert config["predefinedMetricSpecification"]["predefinedMetricType"] == (
        "ECSServiceAverageCPUUtilization"
    )
    assert config["targetValue"] == 60


def test_logs_go_to_cloudwatch_with_retention(stack):
    for name in ("tracking", "serving"):
        group = stack.named("aws:cloudwatch/logGroup:LogGroup", f"{name}-logs")
        assert group.state["retentionInDays"] == 30
        options = container(stack, name)["logConfiguration"]["options"]
        assert options["awslogs-group"] == group.state["name"]


def test_ci_has_one_role_per_workflow(stack):
    roles = {
        r.state["name"]
        for r in stack.of_type("aws:iam/role:Role")
        if "-ci-" in r.name or r.name.startswith("ci-")
    }
    assert roles == {"mlops-test-ci-infra", "mlops-test-ci-serving-image"}
    provider = stack.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")[0]
    assert provider.state["url"] == "https://token.actions.githubusercontent.com"
    assert provider.state["clientIdLists"] == ["sts.amazonaws.com"]


def test_outputs_name_what_workflows_and_people_need(stack):
    outputs = stack.outputs
    assert outputs["trackingUri"] == "https://mlflow.example.com"
    assert outputs["servingUrl"] == "https://models.example.com"
    assert outputs["artifactBucket"].startswith("mlops-test-artifacts-")
    assert outputs["clusterName"] == "mlops-test"
    assert outputs["trackingServiceName"] == "tracking-service"  # for --force-new-deployment
    assert outputs["ciRoleArns"] == {
        "infra": f"arn:aws:iam::{ACCOUNT}:role/mlops-test-ci-infra",
        "servingImage": f"arn:aws:iam::{ACCOUNT}:role/mlops-test-ci-serving-image",
    }
    assert sorted(outputs["loginSecretArns"]) == ["gate", "promote", "registry-read", "serving"]


def test_plain_http_stack_uses_the_load_balancer_address(plain_http_stack):
    dns = plain_http_stack.outputs["trackingLoadBalancerDns"]
    assert plain_http_stack.outputs["trackingUri"] == f"http://{dns}"
    listeners = plain_http_stack.of_type("aws:lb/listener:Listener")
    assert sorted(listener.name for listener in listeners) == ["serving-http", "tracking-http"]


def test_trust_names_the_configured_repository(stack):
    role = stack.named("aws:iam/role:Role", "ci-infra")
    trust = json.loads(role.state["assumeRolePolicy"])
    sub = trust["Statement"][0]["Condition"]["StringEquals"][
        "token.actions.githubusercontent.com:sub"
    ]
    assert sub == f"repo:{REPO}:environment:infra"


def test_the_tracking_task_gives_the_entrypoint_everything_it_requires(stack):
    """The image refuses to start without these; the task definition must pass each one."""
    import entrypoint

    spec = container(stack, "tracking")
    given = set(env_of(spec)) | set(secrets_of(spec))
    assert set(entrypoint.REQUIRED) <= given, set(entrypoint.REQUIRED) - given
