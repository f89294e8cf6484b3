"""The stack's security rules as pulumi-policy validations.

Each `validate_*` function takes the resource (`ResourceValidationArgs`) and a
`report_violation` callback, so tests call it directly on a compliant and a violating
resource; `__main__.py` only assembles them into the pack. Property names are the engine's
(camelCase), as the policy engine hands them over.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

RDS_INSTANCE = "aws:rds/instance:Instance"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
IAM_ROLE = "aws:iam/role:Role"
IAM_ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
IAM_POLICY = "aws:iam/policy:Policy"
ECS_SERVICE = "aws:ecs/service:Service"
LB_LISTENER = "aws:lb/listener:Listener"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
ECS_TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
S3_BUCKET = "aws:s3/bucket:Bucket"
SECRETS_MANAGER_SECRET = "aws:secretsmanager/secret:Secret"  # noqa: S105 - a type token
MWAA_ENVIRONMENT = "aws:mwaa/environment:Environment"
DEPLOY_ROLE = "mlops:infra:CiAccess"  # the component of the CI deploy roles
BOUNDARY = "mlops:infra:PermissionsBoundary"  # caps every role; grants nothing itself
# IAM actions that change a role's own permissions: allowed on itself, a role is admin.
ESCALATION_ACTIONS = {
    "iam:putrolepolicy", "iam:deleterolepolicy", "iam:attachrolepolicy",
    "iam:detachrolepolicy", "iam:putrolepermissionsboundary",
    "iam:deleterolepermissionsboundary", "iam:updateassumerolepolicy",
}
EMR_SERVERLESS_APPLICATION = "aws:emrserverless/application:Application"
# What holds data no deploy can recreate: runs and the registry, artifacts, the secrets.
STATEFUL = {RDS_INSTANCE, S3_BUCKET, SECRETS_MANAGER_SECRET}
# The property that would let `pulumi destroy` delete a non-empty one anyway.
FORCE_DELETE = {ECR_REPOSITORY: "forceDelete", S3_BUCKET: "forceDestroy"}

OPEN_CIDRS = {"0.0.0.0/0", "::/0"}
LISTENER_PORTS = {80, 443}
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"


def _statements(document: Any) -> list[Mapping[str, Any]]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return []
    if not isinstance(document, Mapping):
        return []
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, Mapping) else list(statements)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def validate_rds_private(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type == RDS_INSTANCE and args.props.get("publiclyAccessible"):
        report_violation("the database must not be publicly accessible", args.urn)


def validate_rds_encrypted(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type == RDS_INSTANCE and not args.props.get("storageEncrypted"):
        report_violation("database storage must be encrypted (storageEncrypted)", args.urn)


def validate_rds_managed_password(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    if args.resource_type != RDS_INSTANCE:
        return
    if args.props.get("password") or args.props.get("passwordWo"):
        report_violation("no database password in code, config or state", args.urn)
    if not args.props.get("manageMasterUserPassword"):
        report_violation(
            "the master password must be managed by RDS in Secrets Manager "
            "(manageMasterUserPassword)",
            args.urn,
        )


def validate_rds_backups(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type == RDS_INSTANCE and int(args.props.get("backupRetentionPeriod") or 0) < 1:
        report_violation("database backups must be kept (backupRetentionPeriod >= 1)", args.urn)


def validate_bucket_public_access_blocked(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    if args.resource_type != PUBLIC_ACCESS_BLOCK:
        return
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    off = [flag for flag in flags if args.props.get(flag) is not True]
    if off:
        report_violation(
            f"public access must be blocked entirely; not set: {', '.join(off)}", args.urn
        )


def validate_bucket_encrypted(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    if args.resource_type != BUCKET_ENCRYPTION:
        return
    rules = _as_list(args.props.get("rules"))
    algorithms = [
        (rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
        for rule in rules
        if isinstance(rule, Mapping)
    ]
    if not algorithms or any(a not in {"AES256", "aws:kms", "aws:kms:dsse"} for a in algorithms):
        report_violation("the bucket must encrypt objects by default (AES256 or aws:kms)", args.urn)


def _denies_plain_http(statement: Mapping[str, Any]) -> bool:
    condition = statement.get("Condition") or {}
    secure = (condition.get("Bool") or {}).get("aws:SecureTransport")
    return statement.get("Effect") == "Deny" and str(secure).lower() == "false"


def validate_bucket_tls_only(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    if args.resource_type != BUCKET_POLICY:
        return
    if not any(_denies_plain_http(s) for s in _statements(args.props.get("policy"))):
        report_violation(
            "the bucket policy must deny requests without TLS (aws:SecureTransport false)", args.urn
        )


def _open_ingress(cidrs: Iterable[Any], from_port: Any, to_port: Any, protocol: Any) -> bool:
    if not OPEN_CIDRS.intersection(str(c) for c in cidrs if c):
        return False
    if str(protocol) == "-1":
        return True
    ports = set(range(int(from_port or 0), int(to_port or 0) + 1))
    return not ports <= LISTENER_PORTS


def validate_no_open_ingress(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """Only load balancer listener ports (80, 443) may be open to the internet."""
    props = args.props
    if args.resource_type == INGRESS_RULE:
        cidrs = [props.get("cidrIpv4"), props.get("cidrIpv6")]
        if _open_ingress(
            cidrs, props.get("fromPort"), props.get("toPort"), props.get("ipProtocol")
        ):
            report_violation("only ports 80 and 443 may be open to the internet", args.urn)
    elif args.resource_type == SECURITY_GROUP:
        for rule in _as_list(props.get("ingress")):
            cidrs = [*_as_list(rule.get("cidrBlocks")), *_as_list(rule.get("ipv6CidrBlocks"))]
            if _open_ingress(cidrs, rule.get("fromPort"), rule.get("toPort"), rule.get("protocol")):
                report_violation("only ports 80 and 443 may be open to the internet", args.urn)


def validate_github_trust_pinned(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """A role GitHub can assume names one repository and one environment, with no wildcard."""
    if args.resource_type != IAM_ROLE:
        return
    for statement in _statements(args.props.get("assumeRolePolicy")):
        federated = _as_list((statement.get("Principal") or {}).get("Federated"))
        if not any(GITHUB_OIDC_HOST in str(p) for p in federated):
            continue
        condition = statement.get("Condition") or {}
        equals = condition.get("StringEquals") or {}
        subjects = _as_list(equals.get(f"{GITHUB_OIDC_HOST}:sub"))
        audiences = _as_list(equals.get(f"{GITHUB_OIDC_HOST}:aud"))
        if set(condition) - {"StringEquals"}:
            report_violation("GitHub trust may only use StringEquals conditions", args.urn)
        if audiences != ["sts.amazonaws.com"]:
            report_violation("GitHub trust must require the sts.amazonaws.com audience", args.urn)
        if not subjects or any(
            "*" in str(s) or "?" in str(s) or ":environment:" not in str(s) for s in subjects
        ):
            report_violation(
                "GitHub trust must pin repo:OWNER/REPO:environment:NAME without wildcards", args.urn
            )


def validate_no_admin_policy(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    if args.resource_type not in {IAM_ROLE_POLICY, IAM_POLICY}:
        return
    for statement in _statements(args.props.get("policy")):
        if statement.get("Effect") != "Allow":
            continue
        actions = [str(a) for a in _as_list(statement.get("Action"))]
        if any(a in {"*", "*:*"} or a == "iam:*" for a in actions):
            report_violation(f"a policy may not allow {', '.join(actions)}", args.urn)


def validate_tasks_private(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != ECS_SERVICE:
        return
    network = args.props.get("networkConfiguration") or {}
    if network.get("assignPublicIp"):
        report_violation("tasks must not get a public IP; they sit in private subnets", args.urn)


def validate_https_listeners(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """A plain HTTP listener may only redirect to HTTPS (advisory: allowPlainHttp stacks)."""
    if args.resource_type != LB_LISTENER or args.props.get("protocol") != "HTTP":
        return
    actions = _as_list(args.props.get("defaultActions"))
    if any(isinstance(a, Mapping) and a.get("type") != "redirect" for a in actions):
        report_violation(
            "plain HTTP listener serves traffic instead of redirecting to HTTPS", args.urn
        )


def validate_ecr_immutable(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A tag, once pushed, names one image: the task definition then says what runs."""
    if args.resource_type == ECR_REPOSITORY and args.props.get("imageTagMutability") != "IMMUTABLE":
        report_violation("image tags must be immutable (imageTagMutability IMMUTABLE)", args.urn)


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in {"", "latest"}


def validate_images_pinned(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Each container runs a digest or an immutable tag, never `latest` or no tag."""
    if args.resource_type != ECS_TASK_DEFINITION:
        return
    definitions = args.props.get("containerDefinitions")
    if isinstance(definitions, str):
        try:
            definitions = json.loads(definitions)
        except ValueError:
            definitions = []
    for container in _as_list(definitions):
        image = str((container or {}).get("image", "")) if isinstance(container, Mapping) else ""
        if not _pinned(image):
            report_violation(f"container image {image!r} is not a digest or a fixed tag", args.urn)


def validate_no_force_delete(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    key = FORCE_DELETE.get(args.resource_type)
    if key and args.props.get(key):
        report_violation(f"{key} would let a destroy delete what it holds", args.urn)


def validate_stateful_protected(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """The database, buckets and secrets need `pulumi state unprotect` before a delete."""
    if args.resource_type in STATEFUL and not (args.opts is not None and args.opts.protect):
        report_violation("stateful resources must be protected (protect=True)", args.urn)


def validate_airflow_private(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """MWAA's web server is reachable only from inside the VPC."""
    if args.resource_type != MWAA_ENVIRONMENT:
        return
    if args.props.get("webserverAccessMode") != "PRIVATE_ONLY":
        report_violation("the Airflow web server must be PRIVATE_ONLY", args.urn)
    network = args.props.get("networkConfiguration") or {}
    if not network.get("subnetIds") or not network.get("securityGroupIds"):
        report_violation("Airflow must run in the stack's subnets with its security group",
                         args.urn)


def validate_spark_in_the_vpc(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """EMR Serverless runs in the private subnets, reaching out only through the NAT."""
    if args.resource_type != EMR_SERVERLESS_APPLICATION:
        return
    network = args.props.get("networkConfiguration") or {}
    if not network.get("subnetIds"):
        report_violation("the Spark application must run in the stack's private subnets",
                         args.urn)


def validate_no_wildcard_actions(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """Execution, task and job roles name each action (`s3:*`, `emr-serverless:*` are out).

    The deploy role (CiAccess) is the one exception: it creates the stack's resources, and
    what it keeps account-wide is a fixed, documented list (docs/infra.md) a test holds.
    """
    if (args.resource_type not in {IAM_ROLE_POLICY, IAM_POLICY} or DEPLOY_ROLE in args.urn
            or BOUNDARY in args.urn):
        return
    for statement in _statements(args.props.get("policy")):
        if statement.get("Effect") != "Allow":
            continue
        wild = [str(a) for a in _as_list(statement.get("Action")) if "*" in str(a)]
        if wild:
            report_violation(f"a policy may not allow wildcard actions ({', '.join(wild)})",
                             args.urn)


def _escalating(actions: Iterable[Any]) -> bool:
    for action in (str(a).lower() for a in actions):
        if action in {"*", "iam:*"} or action in ESCALATION_ACTIONS:
            return True
        if "*" in action and any(fnmatch.fnmatchcase(e, action) for e in ESCALATION_ACTIONS):
            return True
    return False


def _names_role(resources: Iterable[Any], role: str) -> bool:
    for resource in (str(r) for r in resources):
        if resource == "*" or (":role/" in resource and fnmatch.fnmatchcase(
                role, resource.split(":role/", 1)[1])):
            return True
    return False


def validate_no_self_escalation(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """A role's own policy may not let it change its own permissions (put, attach or detach
    policies, its boundary or its trust on itself) unless the same policy denies it."""
    if args.resource_type != IAM_ROLE_POLICY:
        return
    role = str(args.props.get("role") or "")
    statements = _statements(args.props.get("policy"))
    denied = any(s.get("Effect") == "Deny" and _names_role(_as_list(s.get("Resource")), role)
                 and {str(a).lower() for a in _as_list(s.get("Action"))} >= ESCALATION_ACTIONS
                 for s in statements)
    for statement in statements:
        if (statement.get("Effect") == "Allow" and not denied
                and _escalating(_as_list(statement.get("Action")))
                and _names_role(_as_list(statement.get("Resource")), role)):
            report_violation(f"role {role} may change its own permissions", args.urn)


def validate_roles_bounded(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """Every role carries the stack's permissions boundary."""
    if args.resource_type == IAM_ROLE and not args.props.get("permissionsBoundary"):
        report_violation("the role has no permissions boundary", args.urn)


# (name, description, validate, enforcement level)
RULES: list[tuple[str, str, Any, EnforcementLevel]] = [
    ("rds-not-public", "The database is not publicly accessible.", validate_rds_private,
     EnforcementLevel.MANDATORY),
    ("rds-encrypted", "Database storage is encrypted.", validate_rds_encrypted,
     EnforcementLevel.MANDATORY),
    ("rds-managed-password", "The master password is managed by RDS in Secrets Manager.",
     validate_rds_managed_password, EnforcementLevel.MANDATORY),
    ("rds-backups", "Database backups are kept.", validate_rds_backups,
     EnforcementLevel.MANDATORY),
    ("s3-public-access-blocked", "Bucket public access is blocked entirely.",
     validate_bucket_public_access_blocked, EnforcementLevel.MANDATORY),
    ("s3-encrypted", "Buckets encrypt objects by default.", validate_bucket_encrypted,
     EnforcementLevel.MANDATORY),
    ("s3-tls-only", "Bucket policies refuse plain HTTP.", validate_bucket_tls_only,
     EnforcementLevel.MANDATORY),
    ("sg-no-open-ingress", "Only load balancer listener ports are open to the internet.",
     validate_no_open_ingress, EnforcementLevel.MANDATORY),
    ("github-trust-pinned",
     "GitHub OIDC roles trust one repository and environment, without wildcards.",
     validate_github_trust_pinned, EnforcementLevel.MANDATORY),
    ("iam-no-admin", "No policy grants * or iam:*.", validate_no_admin_policy,
     EnforcementLevel.MANDATORY),
    ("iam-no-self-escalation", "No role may change its own permissions.",
     validate_no_self_escalation, EnforcementLevel.MANDATORY),
    ("iam-roles-bounded", "Every role carries the permissions boundary.",
     validate_roles_bounded, EnforcementLevel.MANDATORY),
    ("ecs-no-public-ip", "Tasks get no public IP.", validate_tasks_private,
     EnforcementLevel.MANDATORY),
    ("ecr-immutable-tags", "Image tags cannot be overwritten.", validate_ecr_immutable,
     EnforcementLevel.MANDATORY),
    ("ecs-images-pinned", "Task definitions name images by digest or fixed tag.",
     validate_images_pinned, EnforcementLevel.MANDATORY),
    ("no-force-delete", "No repository or bucket is deleted with its contents.",
     validate_no_force_delete, EnforcementLevel.MANDATORY),
    ("stateful-protected", "The database, buckets and secrets are protected.",
     validate_stateful_protected, EnforcementLevel.MANDATORY),
    ("airflow-private", "Airflow's web server is private, in the stack's subnets.",
     validate_airflow_private, EnforcementLevel.MANDATORY),
    ("spark-in-vpc", "EMR Serverless runs in the private subnets.",
     validate_spark_in_the_vpc, EnforcementLevel.MANDATORY),
    ("iam-no-wildcard-actions", "Policies name their actions.",
     validate_no_wildcard_actions, EnforcementLevel.MANDATORY),
    # advisory: plain HTTP is an explicit opt-in of the stack config (allowPlainHttp)
    ("lb-https-only", "Plain HTTP listeners only redirect to HTTPS.", validate_https_listeners,
     EnforcementLevel.ADVISORY),
]  # fmt: skip

POLICIES = [
    ResourceValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=level
    )
    for name, description, validate, level in RULES
]
