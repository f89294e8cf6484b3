"""Alarms: what an operator must hear about, sent to one SNS topic.

Server errors and unhealthy tasks behind each load balancer, the database running out
of storage, and the serving API behind the registry (Production is a version it does not
serve: a promotion it refused, or a reload that keeps failing). Subscribe people or a pager
to the topic (`alarmTopicArn`, docs/infra.md).

The last one comes from the serving API's own gauge, `serving_behind_registry` on
`/metrics`, which a sidecar of each serving task prints to the task's log once a minute
(registry_watch.py); a metric filter here turns those lines into a CloudWatch metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

FREE_STORAGE_BYTES = 2 * 1024**3
BEHIND_METRIC = "ServingBehindRegistry"
BEHIND_MINUTES = 15
"""A promotion is served within a poll or two; behind for this long means it will not be."""


@dataclass
class AlarmsArgs:
    prefix: str
    load_balancers: Mapping[str, tuple[pulumi.Input[str], pulumi.Input[str]]]
    """service -> (load balancer ARN suffix, target group ARN suffix)"""
    database_identifier: pulumi.Input[str]
    serving_log_group: pulumi.Input[str] | None = None
    """The serving tasks' log group, where the registry watcher prints its readings."""
    tags: dict[str, str] | None = None


class Alarms(pulumi.ComponentResource):
    """The SNS topic and the CloudWatch alarms that notify it."""

    def __init__(self, name: str, args: AlarmsArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:infra:Alarms", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.topic = aws.sns.Topic(f"{name}-topic", name=f"{args.prefix}-alarms",
                                   kms_master_key_id="alias/aws/sns", tags=args.tags, opts=child)
        notify = [self.topic.arn]

        def alarm(key: str, description: str, *,
                  opts_depends_on: list[pulumi.Resource] | None = None,
                  **settings: object) -> aws.cloudwatch.MetricAlarm:
            return aws.cloudwatch.MetricAlarm(
                f"{name}-{key}", name=f"{args.prefix}-{key}", alarm_description=description,
                alarm_actions=notify, ok_actions=notify, treat_missing_data="notBreaching",
                tags=args.tags, opts=pulumi.ResourceOptions(
                    parent=self, depends_on=opts_depends_on or []),
                **settings)  # type: ignore[arg-type]

        for service, (balancer, group) in args.load_balancers.items():
            alarm(f"{service}-5xx", f"{service}: the tasks answered 5xx",
                  namespace="AWS/ApplicationELB", metric_name="HTTPCode_Target_5XX_Count",
                  dimensions={"LoadBalancer": balancer, "TargetGroup": group},
                  statistic="Sum", period=300,
                  evaluation_periods=1, threshold=10, comparison_operator="GreaterThanThreshold")
            alarm(f"{service}-unhealthy", f"{service}: a task fails its health check",
                  namespace="AWS/ApplicationELB", metric_name="UnHealthyHostCount",
                  dimensions={"LoadBalancer": balancer, "TargetGroup": group},
                  statistic="Maximum", period=60, evaluation_periods=5, threshold=0,
                  comparison_operator="GreaterThanThreshold")
        alarm("db-storage", "the tracking database has less than 2 GiB free",
              namespace="AWS/RDS", metric_name="FreeStorageSpace",
              dimensions={"DBInstanceIdentifier": args.database_identifier}, statistic="Minimum",
              period=300, evaluation_periods=1, threshold=FREE_STORAGE_BYTES,
              comparison_operator="LessThanThreshold")
        if args.serving_log_group is not None:
            namespace = f"mlops/{args.prefix}"
            self.behind_filter = aws.cloudwatch.LogMetricFilter(
                f"{name}-serving-behind", name=f"{args.prefix}-serving-behind-registry",
                log_group_name=args.serving_log_group,
                pattern="{ $.serving_behind_registry >= 0 }",
                metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
                    name=BEHIND_METRIC, namespace=namespace,
                    value="$.serving_behind_registry", unit="None"),
                opts=child)
            alarm("serving-behind-registry",
                  "serving: Production in the registry is a version the serving API does not "
                  f"serve, for {BEHIND_MINUTES} minutes (GET /model says why)",
                  namespace=namespace, metric_name=BEHIND_METRIC, statistic="Minimum",
                  period=300, evaluation_periods=BEHIND_MINUTES // 5, threshold=1,
                  comparison_operator="GreaterThanOrEqualToThreshold",
                  opts_depends_on=[self.behind_filter])
        self.register_outputs({"topic_arn": self.topic.arn})
