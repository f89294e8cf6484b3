"""Tracking database: RDS MySQL 8.4 (LTS) in the private subnets.

Never publicly accessible, storage encrypted, TLS required, backups kept, and the master
password created and rotated by RDS in Secrets Manager: it appears in no config and no state.
Only the security groups handed to `allow_client` may connect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

MYSQL_PORT = 3306
ENGINE_VERSION = "8.4"
PARAMETER_FAMILY = "mysql8.4"
DATABASE_NAME = "mlflow"


@dataclass
class TrackingDatabaseArgs:
    identifier: str
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    instance_class: str = "db.t4g.micro"
    allocated_storage_gb: int = 20
    backup_retention_days: int = 7
    deletion_protection: bool = True
    multi_az: bool = False
    tags: dict[str, str] | None = None


def _first_secret_arn(secrets: Sequence[aws.rds.outputs.InstanceMasterUserSecret]) -> str:
    arn = secrets[0].secret_arn if secrets else None
    if not arn:
        raise ValueError("RDS returned no master user secret; is manage_master_user_password on?")
    return arn


class TrackingDatabase(pulumi.ComponentResource):
    """The MLflow backend store; `allow_client` opens port 3306 to one security group."""

    def __init__(
        self, name: str, args: TrackingDatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:infra:TrackingDatabase", name, None, opts)
        self._name = name
        child = pulumi.ResourceOptions(parent=self)

        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description="MLflow backend store: MySQL from the tracking tasks only",
            tags={**(args.tags or {}), "Name": f"{name}-db"},
            opts=child,
        )
        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets", subnet_ids=list(args.subnet_ids), tags=args.tags, opts=child
        )
        parameters = aws.rds.ParameterGroup(
            f"{name}-params",
            family=PARAMETER_FAMILY,
            parameters=[
                aws.rds.ParameterGroupParameterArgs(name="require_secure_transport", value="1"),
            ],
            tags=args.tags,
            opts=child,
        )
        self.instance = aws.rds.Instance(
            f"{name}-mysql",
            identifier=args.identifier,
            engine="mysql",
            engine_version=ENGINE_VERSION,
            instance_class=args.instance_class,
            allocated_storage=args.allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            db_name=DATABASE_NAME,
            username="mlflow",
            manage_master_user_password=True,
            db_subnet_group_name=subnet_group.name,
            parameter_group_name=parameters.name,
            vpc_security_group_ids=[self.security_group.id],
            publicly_accessible=False,
            multi_az=args.multi_az,
            backup_retention_period=args.backup_retention_days,
            copy_tags_to_snapshot=True,
            deletion_protection=args.deletion_protection,
            skip_final_snapshot=False,
            final_snapshot_identifier=f"{args.identifier}-final",
            auto_minor_version_upgrade=True,
            iam_database_authentication_enabled=False,
            tags=args.tags,
            # stateful: `pulumi destroy` stops here until unprotected (docs/infra.md, teardown)
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=True)),
        )

        self.address = self.instance.address
        self.port = self.instance.port
        self.database_name = DATABASE_NAME
        # RDS keeps {"username": ..., "password": ...} in this secret and rotates it.
        self.master_secret_arn: pulumi.Output[str] = self.instance.master_user_secrets.apply(
            _first_secret_arn
        )
        self.register_outputs(
            {
                "address": self.address,
                "port": self.port,
                "security_group_id": self.security_group.id,
                "master_secret_arn": self.master_secret_arn,
            }
        )

    def allow_client(
        self, name: str, security_group_id: pulumi.Input[str]
    ) -> aws.vpc.SecurityGroupIngressRule:
        """Open MySQL to exactly one security group (the tracking tasks)."""
        return aws.vpc.SecurityGroupIngressRule(
            f"{self._name}-from-{name}",
            security_group_id=self.security_group.id,
            referenced_security_group_id=security_group_id,
            ip_protocol="tcp",
            from_port=MYSQL_PORT,
            to_port=MYSQL_PORT,
            description=f"MySQL from {name}",
            opts=pulumi.ResourceOptions(parent=self),
        )
