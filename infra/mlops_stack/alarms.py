"""Alarms: what an operator must hear about, sent to one SNS topic.

Server errors and unhealthy tasks behind each load balancer, and the database running out
of storage. Subscribe people or a pager to the topic (`alarmTopicArn`, docs/infra.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

FREE_STORAGE_BYTES = 2 * 1024**3


@dataclass
class AlarmsArgs:
    prefix: str
    load_balancers: Mapping[str, tuple[pulumi.Input[str], pulumi.Input[str]]]
    """service -> (load balancer ARN suffix, target group ARN suffix)"""
    database_identifier: pulumi.Input[str]
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

        def alarm(key: str, description: str, **settings: object) -> aws.cloudwatch.MetricAlarm:
            return aws.cloudwatch.MetricAlarm(
                f"{name}-{key}", name=f"{args.prefix}-{key}", alarm_description=description,
                alarm_actions=notify, ok_actions=notify, treat_missing_data="notBreaching",
                tags=args.tags, opts=child, **settings)  # type: ignore[arg-type]

        for service, (balancer, group) in args.load_balancers.items():
            alarm(f"{service}-5xx", f"{service}: the tasks answered 5xx",
                  namespace="AWS/ApplicationELB", metric_name="HTTPCode_Target_5XX_Count",
                  dimensions={"LoadBalancer": balancer}, statistic="Sum", period=300,
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
        self.register_outputs({"topic_arn": self.topic.arn})
