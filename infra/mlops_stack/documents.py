"""IAM and bucket policy documents as pure functions of ARNs and names.

Kept apart from the components so the tests, the policy pack and a reviewer can read each
permission without a Pulumi runtime.
"""

from __future__ import annotations

from typing import Any

Document = dict[str, Any]
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
GITHUB_OIDC_AUDIENCE = "sts.amazonaws.com"


def _doc(*statements: dict[str, Any]) -> Document:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def tls_only_bucket_policy(bucket_arn: str) -> Document:
    """Refuse every request to the bucket that does not arrive over TLS 1.2 or newer."""
    resources = [bucket_arn, f"{bucket_arn}/*"]
    return _doc(
        {
            "Sid": "DenyPlainHttp",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": resources,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        {
            "Sid": "DenyOldTls",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": resources,
            "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
        },
    )


def ecs_tasks_trust() -> Document:
    return _doc(
        {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    )


def tracking_task_policy(bucket_arn: str) -> Document:
    """The MLflow server's only AWS permissions: its own artifact bucket, nothing else."""
    return _doc(
        {
            "Sid": "ListOwnBucket",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
            "Resource": bucket_arn,
        },
        {
            "Sid": "ReadWriteOwnArtifacts",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": f"{bucket_arn}/*",
        },
    )


def read_secrets_policy(secret_arns: list[str]) -> Document:
    """Let ECS (or a workflow) read exactly these secrets at start-up."""
    return _doc(
        {
            "Sid": "ReadNamedSecrets",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": sorted(set(secret_arns)),
        }
    )


def dags_sync_policy(bucket_arn: str, prefix: str) -> Document:
    """`make dags-sync`: list, write and delete under the DAGs prefix of one bucket, no more."""
    return _doc(
        {
            "Sid": "ListDags",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [bucket_arn],
            "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}},
        },
        {
            "Sid": "WriteDags",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": [f"{bucket_arn}/{prefix}/*"],
        },
    )


def github_trust(*, provider_arn: str, repo: str, environment: str) -> Document:
    """Trust one GitHub repository's jobs that run in one environment, nothing wider."""
    return _doc(
        {
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    f"{GITHUB_OIDC_HOST}:aud": GITHUB_OIDC_AUDIENCE,
                    f"{GITHUB_OIDC_HOST}:sub": f"repo:{repo}:environment:{environment}",
                }
            },
        }
    )


# Services whose resources get their IDs from AWS (VPC, subnets, route tables, security
# groups and their rules, load balancers, listeners, target groups, scalable targets) and
# whose create calls this program does not all tag: no ARN prefix or tag condition covers
# them, so they stay account-wide (docs/infra.md, "What has to stay broad").
BROAD_SERVICES = ("ec2", "elasticloadbalancing", "application-autoscaling")
# Actions AWS authorizes on no narrower resource than "*".
UNSCOPED_ACTIONS = (
    "ecr:GetAuthorizationToken",
    "ecs:RegisterTaskDefinition",
    "ecs:DeregisterTaskDefinition",
    "ecs:DescribeTaskDefinition",
    "ecs:ListTaskDefinitions",
    "ecs:ListClusters",
    "rds:Describe*",
    "cloudwatch:DescribeAlarms",
)


def _stack_resources(prefix: str, account: str) -> dict[str, list[str]]:
    """ARN patterns of what the stack names itself (ECR, ECS, RDS, the scaling alarms)."""
    return {
        "ecr": [f"arn:aws:ecr:*:{account}:repository/{prefix}/*"],
        "ecs": [
            f"arn:aws:ecs:*:{account}:cluster/{prefix}",
            f"arn:aws:ecs:*:{account}:service/{prefix}/*",
            f"arn:aws:ecs:*:{account}:task-definition/{prefix}-*:*",
            f"arn:aws:ecs:*:{account}:task/{prefix}/*",
        ],
        "rds": [
            f"arn:aws:rds:*:{account}:db:{prefix}-*",
            f"arn:aws:rds:*:{account}:snapshot:{prefix}-*",
            # Pulumi names these from the component's logical name plus a random suffix
            f"arn:aws:rds:*:{account}:subgrp:tracking-db-subnets-*",
            f"arn:aws:rds:*:{account}:pg:tracking-db-params-*",
            f"arn:aws:rds:*:{account}:og:default:*",
        ],
        # Target tracking makes its alarms in the caller's name: TargetTracking-service/...
        "cloudwatch": [f"arn:aws:cloudwatch:*:{account}:alarm:TargetTracking-service/{prefix}/*"],
    }


def infra_role_policy(
    *,
    prefix: str,
    account_id: str,
    state_bucket: str,
    secrets_key_arn: str | None,
) -> Document:
    """What `pulumi preview|up|refresh|destroy` of this stack needs, scoped where AWS allows."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "PulumiState",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
            "Resource": f"arn:aws:s3:::{state_bucket}",
        },
        {
            "Sid": "PulumiStateObjects",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": f"arn:aws:s3:::{state_bucket}/*",
        },
        {
            "Sid": "AccountWideServices",
            "Effect": "Allow",
            "Action": [f"{service}:*" for service in BROAD_SERVICES],
            "Resource": "*",
        },
        {
            "Sid": "UnscopedActions",
            "Effect": "Allow",
            "Action": list(UNSCOPED_ACTIONS),
            "Resource": "*",
        },
        *(
            {
                "Sid": f"Stack{service.capitalize()}",
                "Effect": "Allow",
                "Action": f"{service}:*",
                "Resource": resources,
            }
            for service, resources in _stack_resources(prefix, account_id).items()
        ),
        {
            "Sid": "ArtifactBucket",
            "Effect": "Allow",
            "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{prefix}-*", f"arn:aws:s3:::{prefix}-*/*"],
        },
        {
            "Sid": "StackSecrets",
            "Effect": "Allow",
            "Action": "secretsmanager:*",
            "Resource": f"arn:aws:secretsmanager:*:{account_id}:secret:{prefix}/*",
        },
        {
            "Sid": "RdsManagedSecret",
            "Effect": "Allow",
            "Action": [
                "secretsmanager:DescribeSecret",
                "secretsmanager:CreateSecret",
                "secretsmanager:TagResource",
                "secretsmanager:RotateSecret",
                "secretsmanager:DeleteSecret",
            ],
            "Resource": f"arn:aws:secretsmanager:*:{account_id}:secret:rds!*",
        },
        {
            "Sid": "StackLogs",
            "Effect": "Allow",
            "Action": "logs:*",
            "Resource": f"arn:aws:logs:*:{account_id}:log-group:/ecs/{prefix}/*",
        },
        {
            "Sid": "DescribeLogs",
            "Effect": "Allow",
            "Action": ["logs:DescribeLogGroups", "logs:ListTagsForResource"],
            "Resource": "*",
        },
        {
            "Sid": "StackRoles",
            "Effect": "Allow",
            "Action": [
                "iam:GetRole",
                "iam:CreateRole",
                "iam:DeleteRole",
                "iam:UpdateRole",
                "iam:UpdateAssumeRolePolicy",
                "iam:TagRole",
                "iam:UntagRole",
                "iam:GetRolePolicy",
                "iam:PutRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:ListRolePolicies",
                "iam:ListAttachedRolePolicies",
                "iam:AttachRolePolicy",
                "iam:DetachRolePolicy",
                "iam:ListInstanceProfilesForRole",
                "iam:PassRole",
            ],
            "Resource": f"arn:aws:iam::{account_id}:role/{prefix}-*",
        },
        {
            "Sid": "GithubOidcProvider",
            "Effect": "Allow",
            "Action": [
                "iam:GetOpenIDConnectProvider",
                "iam:CreateOpenIDConnectProvider",
                "iam:DeleteOpenIDConnectProvider",
                "iam:TagOpenIDConnectProvider",
                "iam:UpdateOpenIDConnectProviderThumbprint",
                "iam:AddClientIDToOpenIDConnectProvider",
            ],
            "Resource": f"arn:aws:iam::{account_id}:oidc-provider/{GITHUB_OIDC_HOST}",
        },
        {
            "Sid": "ServiceLinkedRoles",
            "Effect": "Allow",
            "Action": "iam:CreateServiceLinkedRole",
            "Resource": "*",
            "Condition": {
                "StringEquals": {
                    "iam:AWSServiceName": [
                        "ecs.amazonaws.com",
                        "elasticloadbalancing.amazonaws.com",
                        "rds.amazonaws.com",
                        "ecs.application-autoscaling.amazonaws.com",
                    ]
                }
            },
        },
        {
            "Sid": "ReadOnlyLookups",
            "Effect": "Allow",
            "Action": ["sts:GetCallerIdentity", "acm:DescribeCertificate", "kms:DescribeKey"],
            "Resource": "*",
        },
        {
            # Encrypted RDS storage and the RDS-managed master secret use AWS managed keys.
            "Sid": "ManagedKeysThroughServices",
            "Effect": "Allow",
            "Action": ["kms:CreateGrant", "kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": "*",
            "Condition": {
                "StringLike": {
                    "kms:ViaService": ["rds.*.amazonaws.com", "secretsmanager.*.amazonaws.com"]
                }
            },
        },
    ]
    if secrets_key_arn:
        statements.append(
            {
                "Sid": "PulumiSecretsProvider",
                "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": secrets_key_arn,
            }
        )
    return _doc(*statements)
