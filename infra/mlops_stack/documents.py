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


def prediction_log_write_policy(bucket_arn: str, prefix: str) -> Document:
    """The serving tasks' only AWS permission: add files to the prediction log.

    pyarrow writes each file as one multipart upload (create, parts, complete: all
    `s3:PutObject`) and aborts an upload it gives up. Nothing to read, list or delete: a
    task taken over can add rows to the log, not read what was served or erase it."""
    return _doc(
        {
            "Sid": "WritePredictionLog",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": f"{bucket_arn}/{prefix}/*",
        }
    )


def prediction_log_read_statements(bucket_arn: str, prefix: str) -> list[dict[str, Any]]:
    """What the monitor needs to read the prediction log, and no other key of the bucket.

    pyarrow first asks for the prefix itself (HEAD `<prefix>`) to learn that it is a
    folder; S3 answers that 404, not 403, only to a caller that may get that key and list
    with it as `s3:prefix`. Then it lists `<prefix>/` and the day folders and reads files."""
    return [
        {
            "Sid": "ListPredictionLog",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [bucket_arn],
            "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}},
        },
        {
            "Sid": "ReadPredictionLog",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"{bucket_arn}/{prefix}", f"{bucket_arn}/{prefix}/*"],
        },
    ]


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


def github_subject(*, repo: str, environment: str, workflow: str | None = None,
                   branch: str = "main") -> str:
    """The `sub` claim a job of `environment` presents. With `workflow` it is the claim
    GitHub issues once the repository's OIDC subject template includes `job_workflow_ref`
    (docs/infra.md): then only that workflow file, run from `branch`, matches."""
    subject = f"repo:{repo}:environment:{environment}"
    if workflow:
        subject += f":job_workflow_ref:{repo}/.github/workflows/{workflow}@refs/heads/{branch}"
    return subject


def github_trust(*, provider_arn: str, repo: str, environment: str,
                 workflow: str | None = None) -> Document:
    """Trust one GitHub repository's jobs that run in one environment (and, when the
    subject template names it, one workflow on main), nothing wider."""
    return _doc(
        {
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    f"{GITHUB_OIDC_HOST}:aud": GITHUB_OIDC_AUDIENCE,
                    f"{GITHUB_OIDC_HOST}:sub": github_subject(
                        repo=repo, environment=environment, workflow=workflow),
                }
            },
        }
    )


def image_push_policy(repository_arn: str) -> Document:
    """The serving image workflow: log in to ECR and push to one repository, nothing else."""
    return _doc(
        {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken",
         "Resource": "*"},
        {"Sid": "PushServingImage", "Effect": "Allow",
         "Action": ["ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload",
                    "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage",
                    "ecr:BatchGetImage", "ecr:DescribeImages"],
         "Resource": repository_arn},
    )


def write_secrets_policy(secret_arns: list[str]) -> Document:
    """The tracking task writes the logins it creates (a new version of each secret) and
    reads none of them."""
    return _doc(
        {
            "Sid": "WriteLoginSecrets",
            "Effect": "Allow",
            "Action": "secretsmanager:PutSecretValue",
            "Resource": sorted(set(secret_arns)),
        }
    )


# IAM actions that change what a role may do. A role that can call one of them on itself
# can make itself administrator; the boundary denies them on the deploy role and on any
# role created without the boundary (policy rule `iam-no-self-escalation`).
ESCALATION_ACTIONS = (
    "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:AttachRolePolicy",
    "iam:DetachRolePolicy", "iam:PutRolePermissionsBoundary",
    "iam:DeleteRolePermissionsBoundary", "iam:UpdateAssumeRolePolicy",
)
# What the stack's roles may ever do, whatever their own policies say (the permissions
# boundary): the services the stack uses, and IAM only as the deploy role needs it.
BOUNDARY_SERVICES = (
    "acm", "airflow", "application-autoscaling", "cloudwatch", "ec2", "ecr", "ecs",
    "elasticloadbalancing", "emr-serverless", "kms", "logs", "rds", "s3", "secretsmanager",
    "sns", "sqs", "sts", "wafv2",
)


def boundary_policy(*, prefix: str, account_id: str, deploy_role: str) -> Document:
    """The permissions boundary of every role the stack creates, the deploy role included.

    It caps, it grants nothing: a role's effective permissions are its own policy's within
    this. Inside it no role can create or change a role without this boundary, change the
    boundary, or change the deploy role's own permissions: changing those takes an
    administrator."""
    roles = f"arn:aws:iam::{account_id}:role/{prefix}-*"
    boundary = f"arn:aws:iam::{account_id}:policy/{prefix}-boundary"
    return _doc(
        {"Sid": "StackServices", "Effect": "Allow",
         "Action": [f"{service}:*" for service in BOUNDARY_SERVICES], "Resource": "*"},
        {"Sid": "StackIam", "Effect": "Allow",
         "Action": ["iam:GetRole", "iam:CreateRole", "iam:DeleteRole", "iam:UpdateRole",
                    "iam:TagRole", "iam:UntagRole", "iam:GetRolePolicy", "iam:ListRolePolicies",
                    "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole",
                    "iam:PassRole", "iam:GetPolicy", "iam:GetPolicyVersion",
                    "iam:ListPolicyVersions", "iam:CreateServiceLinkedRole",
                    "iam:GetOpenIDConnectProvider", "iam:CreateOpenIDConnectProvider",
                    "iam:DeleteOpenIDConnectProvider", "iam:TagOpenIDConnectProvider",
                    "iam:UpdateOpenIDConnectProviderThumbprint",
                    "iam:AddClientIDToOpenIDConnectProvider", *ESCALATION_ACTIONS],
         "Resource": "*"},
        {"Sid": "NoRoleWithoutTheBoundary", "Effect": "Deny",
         "Action": ["iam:CreateRole", "iam:PutRolePermissionsBoundary"], "Resource": roles,
         "Condition": {"StringNotEquals": {"iam:PermissionsBoundary": boundary}}},
        {"Sid": "NoBoundaryRemoval", "Effect": "Deny",
         "Action": ["iam:DeleteRolePermissionsBoundary"], "Resource": "*"},
        {"Sid": "NoBoundaryChange", "Effect": "Deny",
         "Action": ["iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion",
                    "iam:SetDefaultPolicyVersion"], "Resource": boundary},
        {"Sid": "NoSelfEscalation", "Effect": "Deny", "Action": list(ESCALATION_ACTIONS),
         "Resource": f"arn:aws:iam::{account_id}:role/{deploy_role}"},
    )


# The API calls of each resource type the program creates on `Resource: "*"` (their IDs
# come from AWS, so no ARN prefix names them); docs/infra.md says how the list was made.
EC2_ACTIONS = (
    "ec2:CreateVpc", "ec2:DeleteVpc", "ec2:DescribeVpcs", "ec2:DescribeVpcAttribute",
    "ec2:ModifyVpcAttribute", "ec2:CreateSubnet", "ec2:DeleteSubnet", "ec2:DescribeSubnets",
    "ec2:ModifySubnetAttribute", "ec2:CreateInternetGateway", "ec2:DeleteInternetGateway",
    "ec2:AttachInternetGateway", "ec2:DetachInternetGateway", "ec2:DescribeInternetGateways",
    "ec2:CreateRouteTable", "ec2:DeleteRouteTable", "ec2:DescribeRouteTables",
    "ec2:CreateRoute", "ec2:DeleteRoute", "ec2:ReplaceRoute", "ec2:AssociateRouteTable",
    "ec2:DisassociateRouteTable", "ec2:AllocateAddress", "ec2:ReleaseAddress",
    "ec2:DescribeAddresses", "ec2:DescribeAddressesAttribute", "ec2:DisassociateAddress",
    "ec2:CreateNatGateway", "ec2:DeleteNatGateway", "ec2:DescribeNatGateways",
    "ec2:CreateSecurityGroup", "ec2:DeleteSecurityGroup", "ec2:DescribeSecurityGroups",
    "ec2:DescribeSecurityGroupRules", "ec2:AuthorizeSecurityGroupIngress",
    "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress",
    "ec2:RevokeSecurityGroupEgress", "ec2:ModifySecurityGroupRules",
    "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
    "ec2:UpdateSecurityGroupRuleDescriptionsEgress", "ec2:CreateVpcEndpoint",
    "ec2:DeleteVpcEndpoints", "ec2:DescribeVpcEndpoints", "ec2:ModifyVpcEndpoint",
    "ec2:DescribePrefixLists", "ec2:DescribeAvailabilityZones",
    "ec2:DescribeAccountAttributes", "ec2:DescribeNetworkInterfaces", "ec2:CreateTags",
    "ec2:DeleteTags", "ec2:DescribeTags",
)
ELB_ACTIONS = (
    "elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:DeleteLoadBalancer",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeLoadBalancerAttributes",
    "elasticloadbalancing:ModifyLoadBalancerAttributes",
    "elasticloadbalancing:SetSecurityGroups", "elasticloadbalancing:SetSubnets",
    "elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:DeleteTargetGroup",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetGroupAttributes",
    "elasticloadbalancing:ModifyTargetGroup", "elasticloadbalancing:ModifyTargetGroupAttributes",
    "elasticloadbalancing:CreateListener", "elasticloadbalancing:DeleteListener",
    "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:ModifyListener",
    "elasticloadbalancing:DescribeListenerAttributes",
    "elasticloadbalancing:ModifyListenerAttributes", "elasticloadbalancing:AddTags",
    "elasticloadbalancing:RemoveTags", "elasticloadbalancing:DescribeTags",
    "elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:SetWebAcl",
)
AUTOSCALING_ACTIONS = (
    "application-autoscaling:RegisterScalableTarget",
    "application-autoscaling:DeregisterScalableTarget",
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:PutScalingPolicy", "application-autoscaling:DeleteScalingPolicy",
    "application-autoscaling:DescribeScalingPolicies",
    "application-autoscaling:PutScheduledAction",
    "application-autoscaling:DeleteScheduledAction",
    "application-autoscaling:DescribeScheduledActions",
    "application-autoscaling:TagResource", "application-autoscaling:UntagResource",
    "application-autoscaling:ListTagsForResource",
)
BROAD_ACTIONS = (*EC2_ACTIONS, *ELB_ACTIONS, *AUTOSCALING_ACTIONS)
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
        "cloudwatch": [f"arn:aws:cloudwatch:*:{account}:alarm:TargetTracking-service/{prefix}/*",
                       f"arn:aws:cloudwatch:*:{account}:alarm:{prefix}-*"],
        "airflow": [f"arn:aws:airflow:*:{account}:environment/{prefix}-*"],
        # EMR Serverless gives applications IDs, not names
        "emr-serverless": [f"arn:aws:emr-serverless:*:{account}:/applications/*"],
        "wafv2": [f"arn:aws:wafv2:*:{account}:regional/webacl/{prefix}-*/*",
                  f"arn:aws:elasticloadbalancing:*:{account}:loadbalancer/app/*"],
        "sns": [f"arn:aws:sns:*:{account}:{prefix}-*"],
    }


# Secrets Manager for the stack's secrets: manage them, never read their values.
SECRET_ACTIONS = (
    "secretsmanager:CreateSecret", "secretsmanager:DeleteSecret",
    "secretsmanager:DescribeSecret", "secretsmanager:GetResourcePolicy",
    "secretsmanager:UpdateSecret", "secretsmanager:TagResource",
    "secretsmanager:UntagResource", "secretsmanager:RestoreSecret",
)


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
            "Action": list(BROAD_ACTIONS),
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
                "Sid": "Stack" + service.title().replace("-", ""),
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
            "Action": list(SECRET_ACTIONS),
            "Resource": f"arn:aws:secretsmanager:*:{account_id}:secret:{prefix}/*",
        },
        {
            "Sid": "ReadTheBoundary",
            "Effect": "Allow",
            "Action": ["iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions"],
            "Resource": f"arn:aws:iam::{account_id}:policy/{prefix}-boundary",
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
            # its own permissions are an administrator's to change (the boundary says so too)
            "Sid": "NotItsOwnPermissions",
            "Effect": "Deny",
            "Action": list(ESCALATION_ACTIONS),
            "Resource": f"arn:aws:iam::{account_id}:role/{prefix}-ci-infra",
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
                        "airflow.amazonaws.com",
                        "ops.emr-serverless.amazonaws.com",
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
