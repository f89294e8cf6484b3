"""The small-team profile under mocks, and the "serving behind the registry" alarm.

`mlops:profile: small-team` makes one public load balancer route by host name to both
services (serving answers its own sources only), a NAT instance instead of the NAT
gateway, both services on Fargate Spot, and serving scaled to zero out of hours; every
policy of the pack still holds. The alarm's input, the registry watcher, runs here as the
sidecar runs it (`python -c`), against a loopback server that speaks Prometheus text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from mlops_stack.serving import REGISTRY_WATCH
from mlops_stack.settings import ConfigError, ServingHours, settings_from
from policy import rules

from tests.infra.conftest import Deployment, base_settings, deploy, rule_violations

TRACKING_OFFICE = "198.51.100.0/24"
LB = "aws:lb/loadBalancer:LoadBalancer"
RULE = "aws:lb/listenerRule:ListenerRule"
SERVICE = "aws:ecs/service:Service"


@pytest.fixture(scope="module")
def small() -> Deployment:
    return deploy(base_settings(profile="small-team", shared_load_balancer=True,
                                nat_instance=True, fargate_spot=True,
                                serving_hours=ServingHours(timezone="Europe/Berlin"),
                                tracking_allowed_cidrs=(TRACKING_OFFICE,)))


def _config(**values: str) -> dict[str, str]:
    return {"githubRepo": "acme/mlops", "stateBucket": "b", "trackingImage": "abc1234",
            "servingImage": "abc1234", "certificateArn": "arn:aws:acm:us-east-1:1:certificate/x",
            "trackingHost": "mlflow.example.com", "servingHost": "models.example.com", **values}


# --- settings ------------------------------------------------------------------------------


def test_the_profile_turns_each_saving_on_and_each_can_be_turned_off() -> None:
    small = settings_from(_config(profile="small-team").get, project="mlops", stack="t")
    assert (small.shared_load_balancer, small.nat_instance, small.fargate_spot) == (
        True, True, True)
    assert small.serving_hours == ServingHours("MON", "FRI", 7, 19, "UTC")
    custom = settings_from(_config(profile="small-team", fargateSpot="false",
                                   servingHours="MON-SAT 6-22", servingTimezone="Asia/Tokyo"
                                   ).get, project="mlops", stack="t")
    assert not custom.fargate_spot
    assert custom.serving_hours == ServingHours("MON", "SAT", 6, 22, "Asia/Tokyo")
    always = settings_from(_config(profile="small-team", servingHours="always").get,
                           project="mlops", stack="t")
    assert always.serving_hours is None
    default = settings_from(_config().get, project="mlops", stack="t")
    assert (default.shared_load_balancer, default.nat_instance, default.fargate_spot) == (
        False, False, False)
    assert default.serving_hours is None


@pytest.mark.parametrize(("values", "message"), [
    ({"profile": "tiny"}, "mlops:profile must be one of default, small-team"),
    ({"profile": "small-team", "servingHours": "weekdays"}, "must look like MON-FRI 7-19"),
    ({"profile": "small-team", "servingHours": "MON-FRI 19-7"}, "start hour must come before"),
    ({"profile": "small-team", "highAvailability": "true"}, "turn mlops:highAvailability off"),
    ({"sharedLoadBalancer": "true", "certificateArn": "", "allowPlainHttp": "true",
      "trackingHost": ""}, "routes by host name"),
    ({"sharedLoadBalancer": "true",
      "servingAllowedCidrs": "10.0.0.0/24,10.0.1.0/24,10.0.2.0/24,10.0.3.0/24"},
     "at most 3 ranges"),
])
def test_contradictions_stop_the_program_in_one_line(values: dict[str, str],
                                                     message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from(_config(**values).get, project="mlops", stack="t")


# --- one load balancer ---------------------------------------------------------------------


def test_one_load_balancer_routes_by_host_and_answers_nothing_else(small: Deployment) -> None:
    (balancer,) = small.of_type(LB)
    assert balancer.state["internal"] is False
    listeners = {res.state["port"]: res for res in small.of_type("aws:lb/listener:Listener")}
    assert listeners[443].state["defaultActions"][0]["fixedResponse"]["statusCode"] == "404"
    assert listeners[80].state["defaultActions"][0]["type"] == "redirect"
    groups = {res.name: res.id for res in small.of_type("aws:lb/targetGroup:TargetGroup")}
    routes = {}
    for rule in small.of_type(RULE):
        assert rule.state["listenerArn"] == listeners[443].state["arn"]
        hosts = [c["hostHeader"]["values"] for c in rule.state["conditions"] if
                 c.get("hostHeader")]
        sources = [c["sourceIp"]["values"] for c in rule.state["conditions"] if
                   c.get("sourceIp")]
        routes[tuple(hosts[0])] = (rule.state["actions"][0]["targetGroupArn"], sources)
    assert set(routes) == {("mlflow.example.com",), ("models.example.com",)}
    assert routes[("mlflow.example.com",)] == (
        small.named("aws:lb/targetGroup:TargetGroup", "tracking-tg").state["arn"], [])
    serving_group, serving_sources = routes[("models.example.com",)]
    assert serving_group == small.named("aws:lb/targetGroup:TargetGroup",
                                        "serving-tg").state["arn"]
    assert groups
    nat_ip = small.named("aws:ec2/eip:Eip", "network-nat-0").state["publicIp"]
    (sources,) = serving_sources
    assert sources == ["10.40.0.0/16", f"{nat_ip}/32"]
    assert TRACKING_OFFICE not in sources, "the tracking allow-list does not reach serving"
    assert small.outputs["trackingLoadBalancerDns"] == small.outputs["servingLoadBalancerDns"]


# --- NAT instance --------------------------------------------------------------------------


def test_a_nat_instance_replaces_the_nat_gateway(small: Deployment) -> None:
    assert small.of_type("aws:ec2/natGateway:NatGateway") == []
    (instance,) = small.of_type("aws:ec2/instance:Instance")
    assert instance.state["instanceType"] == "t4g.nano"
    assert instance.state["sourceDestCheck"] is False
    assert instance.state["metadataOptions"]["httpTokens"] == "required"
    assert instance.state["rootBlockDevice"]["encrypted"] is True
    assert "MASQUERADE" in instance.state["userData"]
    assert "keyName" not in instance.state
    ingress = [r for r in small.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
               if r.name == "network-nat-instance-in"]
    assert [r.state["cidrIpv4"] for r in ingress] == ["10.40.0.0/16"]
    eip = small.named("aws:ec2/eip:Eip", "network-nat-0")
    assert eip.state["instance"] == instance.id
    private = [res for res in small.of_type("aws:ec2/routeTable:RouteTable")
               if res.name.startswith("network-private-rt-")]
    assert len(private) == 2
    for table in private:
        (route,) = table.state["routes"]
        assert route["networkInterfaceId"] == instance.state["primaryNetworkInterfaceId"]


# --- Fargate Spot and hours ----------------------------------------------------------------


def test_both_services_run_on_fargate_spot(small: Deployment) -> None:
    (capacity,) = small.of_type("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders")
    assert capacity.state["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    for service in small.of_type(SERVICE):
        assert "launchType" not in service.state
        assert service.state["capacityProviderStrategies"] == [
            {"capacityProvider": "FARGATE_SPOT", "weight": 1}]


def test_serving_is_scaled_to_zero_out_of_hours(small: Deployment, stack: Deployment) -> None:
    actions = {res.name: res.state for res in
               small.of_type("aws:appautoscaling/scheduledAction:ScheduledAction")}
    assert set(actions) == {"serving-off-hours", "serving-working-hours"}
    off, on = actions["serving-off-hours"], actions["serving-working-hours"]
    assert off["schedule"] == "cron(0 19 * * ? *)"
    assert off["scalableTargetAction"] == {"minCapacity": "0", "maxCapacity": "0"}
    assert on["schedule"] == "cron(0 7 ? * MON-FRI *)"
    assert on["scalableTargetAction"] == {"minCapacity": "1", "maxCapacity": "3"}
    assert off["timezone"] == on["timezone"] == "Europe/Berlin"
    target = small.named("aws:appautoscaling/target:Target", "serving-scaling")
    assert off["resourceId"] == on["resourceId"] == target.state["resourceId"]
    assert stack.of_type("aws:appautoscaling/scheduledAction:ScheduledAction") == []


def test_the_small_team_stack_keeps_every_policy(small: Deployment) -> None:
    for _, _, validate, _ in rules.RULES:
        assert rule_violations(small, validate) == [], validate.__name__


# --- serving behind the registry -----------------------------------------------------------


def test_a_sidecar_reads_the_gauge_into_the_serving_log(stack: Deployment) -> None:
    definitions = stack.named("aws:ecs/taskDefinition:TaskDefinition",
                              "serving-task").json("containerDefinitions")
    serving, sidecar = definitions
    assert (serving["essential"], sidecar["essential"]) == (True, False)
    assert sidecar["image"] == serving["image"], "the serving image's own Python"
    assert sidecar["command"] == ["python", "-c", REGISTRY_WATCH.read_text()]
    assert sidecar["secrets"] == []
    assert sidecar["environment"] == []
    options = sidecar["logConfiguration"]["options"]
    assert options["awslogs-group"] == serving["logConfiguration"]["options"]["awslogs-group"]


def test_the_alarm_counts_the_sidecars_lines_and_notifies_the_topic(stack: Deployment) -> None:
    (metric_filter,) = stack.of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter")
    log_group = stack.named("aws:cloudwatch/logGroup:LogGroup", "serving-logs")
    assert metric_filter.state["logGroupName"] == log_group.state["name"]
    assert metric_filter.state["pattern"] == "{ $.serving_behind_registry >= 0 }"
    transform = metric_filter.state["metricTransformation"]
    assert transform["value"] == "$.serving_behind_registry"
    alarm = stack.named("aws:cloudwatch/metricAlarm:MetricAlarm", "alarms-serving-behind-registry")
    assert (alarm.state["namespace"], alarm.state["metricName"]) == (
        transform["namespace"], transform["name"])
    assert alarm.state["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm.state["threshold"] == 1
    assert alarm.state["period"] * alarm.state["evaluationPeriods"] == 15 * 60
    topic = stack.named("aws:sns/topic:Topic", "alarms-topic").state["arn"]
    assert alarm.state["alarmActions"] == [topic]


@contextmanager
def _metrics_server(body: str | None) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            data = (body or "").encode()
            self.send_response(200 if body is not None else 500)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def _watch(url: str, count: int = 2) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-c", REGISTRY_WATCH.read_text()], env={
        **os.environ, "REGISTRY_WATCH_URL": url, "REGISTRY_WATCH_SECONDS": "0.05",
        "REGISTRY_WATCH_COUNT": str(count)}, capture_output=True, text=True, timeout=60,
        check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


PROMETHEUS = """# HELP serving_behind_registry 1 when Production is a version not served
# TYPE serving_behind_registry gauge
serving_behind_registry {value}
# HELP serving_requests_total requests
serving_requests_total{{route="/predict"}} 12.0
"""


@pytest.mark.parametrize("value", ["1.0", "0.0"])
def test_the_watcher_prints_the_gauge_a_line_a_reading(value: str) -> None:
    with _metrics_server(PROMETHEUS.format(value=value)) as url:
        assert _watch(url) == [{"serving_behind_registry": float(value)}] * 2


def test_the_watcher_names_what_it_cannot_read_and_counts_nothing() -> None:
    """A line without the gauge's field: the metric filter matches no such line."""
    with _metrics_server("serving_requests_total 3.0\n") as url:
        (line,) = _watch(url, count=1)
    assert "serving_behind_registry" not in line
    assert "no serving_behind_registry gauge" in line["registry_watch_error"]
    with _metrics_server(None) as url:
        (line,) = _watch(url, count=1)
    assert line["registry_watch_error"].endswith("HTTPError")
