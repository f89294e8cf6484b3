"""Each rule of the policy pack, called directly on a compliant and a violating resource."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from policy import rules
from pulumi_policy import EnforcementLevel, ResourceValidationArgs

URN = "urn:pulumi:prod::mlops::{type}::subject"
GITHUB = "token.actions.githubusercontent.com"


def run(validate, resource_type: str, props: dict[str, Any]) -> list[tuple[str, str | None]]:
    args = ResourceValidationArgs(
        resource_type, props, URN.format(type=resource_type), "subject", None, None
    )
    reported: list[tuple[str, str | None]] = []
    validate(args, lambda message, urn: reported.append((message, urn)))
    return reported


def assert_ok(validate, resource_type: str, props: dict[str, Any]) -> None:
    assert run(validate, resource_type, props) == []


def assert_violation(validate, resource_type: str, props: dict[str, Any], fragment: str) -> None:
    reported = run(validate, resource_type, props)
    assert reported, "expected a violation"
    message, urn = reported[0]
    assert fragment in message
    assert urn == URN.format(type=resource_type), "a violation names the resource"


RDS_OK = {
    "publiclyAccessible": False,
    "storageEncrypted": True,
    "manageMasterUserPassword": True,
    "backupRetentionPeriod": 7,
}


def test_rds_not_public():
    assert_ok(rules.validate_rds_private, rules.RDS_INSTANCE, RDS_OK)
    assert_violation(
        rules.validate_rds_private, rules.RDS_INSTANCE, {**RDS_OK, "publiclyAccessible": True},
        "publicly accessible",
    )  # fmt: skip


def test_rds_encrypted():
    assert_ok(rules.validate_rds_encrypted, rules.RDS_INSTANCE, RDS_OK)
    assert_violation(
        rules.validate_rds_encrypted, rules.RDS_INSTANCE, {**RDS_OK, "storageEncrypted": False},
        "encrypted",
    )  # fmt: skip


@pytest.mark.parametrize(
    "props",
    [
        {**RDS_OK, "manageMasterUserPassword": False, "password": "hunter2hunter2"},
        {**RDS_OK, "manageMasterUserPassword": None},
    ],
)
def test_rds_managed_password(props):
    assert_ok(rules.validate_rds_managed_password, rules.RDS_INSTANCE, RDS_OK)
    assert_violation(rules.validate_rds_managed_password, rules.RDS_INSTANCE, props, "password")


def test_rds_backups():
    assert_ok(rules.validate_rds_backups, rules.RDS_INSTANCE, RDS_OK)
    assert_violation(
        rules.validate_rds_backups, rules.RDS_INSTANCE, {**RDS_OK, "backupRetentionPeriod": 0},
        "backups",
    )  # fmt: skip


BLOCK_ALL = {
    "blockPublicAcls": True,
    "blockPublicPolicy": True,
    "ignorePublicAcls": True,
    "restrictPublicBuckets": True,
}


def test_bucket_public_access_blocked():
    validate = rules.validate_bucket_public_access_blocked
    assert_ok(validate, rules.PUBLIC_ACCESS_BLOCK, BLOCK_ALL)
    assert_violation(
        validate, rules.PUBLIC_ACCESS_BLOCK, {**BLOCK_ALL, "restrictPublicBuckets": False},
        "restrictPublicBuckets",
    )  # fmt: skip


def test_bucket_encrypted():
    def props(algorithm: str | None) -> dict[str, Any]:
        return {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": algorithm}}]}

    assert_ok(rules.validate_bucket_encrypted, rules.BUCKET_ENCRYPTION, props("AES256"))
    assert_ok(rules.validate_bucket_encrypted, rules.BUCKET_ENCRYPTION, props("aws:kms"))
    assert_violation(
        rules.validate_bucket_encrypted, rules.BUCKET_ENCRYPTION, {"rules": []}, "encrypt"
    )


def test_bucket_tls_only():
    deny = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    allow = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}
    policy = {"Version": "2012-10-17", "Statement": [deny]}
    assert_ok(rules.validate_bucket_tls_only, rules.BUCKET_POLICY, {"policy": json.dumps(policy)})
    assert_violation(
        rules.validate_bucket_tls_only, rules.BUCKET_POLICY,
        {"policy": json.dumps({"Statement": [allow]})}, "TLS",
    )  # fmt: skip


def ingress(cidr: str, port: int, protocol: str = "tcp") -> dict[str, Any]:
    return {"cidrIpv4": cidr, "fromPort": port, "toPort": port, "ipProtocol": protocol}


def test_no_open_ingress_on_rules():
    validate = rules.validate_no_open_ingress
    assert_ok(validate, rules.INGRESS_RULE, ingress("0.0.0.0/0", 443))
    assert_ok(validate, rules.INGRESS_RULE, ingress("10.0.0.0/16", 3306))
    assert_ok(
        validate,
        rules.INGRESS_RULE,
        {
            "referencedSecurityGroupId": "sg-1",
            "fromPort": 3306,
            "toPort": 3306,
            "ipProtocol": "tcp",
        },
    )
    assert_violation(validate, rules.INGRESS_RULE, ingress("0.0.0.0/0", 3306), "80 and 443")
    assert_violation(validate, rules.INGRESS_RULE, ingress("0.0.0.0/0", 0, "-1"), "80 and 443")
    assert_violation(
        validate, rules.INGRESS_RULE,
        {"cidrIpv6": "::/0", "fromPort": 0, "toPort": 65535, "ipProtocol": "tcp"}, "80 and 443",
    )  # fmt: skip


def test_no_open_ingress_on_inline_security_group_rules():
    validate = rules.validate_no_open_ingress
    open_db = {"ingress": [{"cidrBlocks": ["0.0.0.0/0"], "fromPort": 3306, "toPort": 3306,
                            "protocol": "tcp"}]}  # fmt: skip
    assert_ok(validate, rules.SECURITY_GROUP, {"ingress": []})
    assert_violation(validate, rules.SECURITY_GROUP, open_db, "80 and 443")


def trust(condition: dict[str, Any]) -> dict[str, Any]:
    statement = {
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::1:oidc-provider/{GITHUB}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": condition,
    }
    return {"assumeRolePolicy": json.dumps({"Statement": [statement]})}


PINNED = {
    "StringEquals": {
        f"{GITHUB}:aud": "sts.amazonaws.com",
        f"{GITHUB}:sub": "repo:acme/mlops:environment:production",
    }
}


@pytest.mark.parametrize(
    "condition",
    [
        {"StringLike": {f"{GITHUB}:aud": "sts.amazonaws.com", f"{GITHUB}:sub": "repo:acme/*"}},
        {
            "StringEquals": {
                f"{GITHUB}:aud": "sts.amazonaws.com",
                f"{GITHUB}:sub": "repo:acme/mlops:*",
            }
        },
        {
            "StringEquals": {
                f"{GITHUB}:aud": "sts.amazonaws.com",
                f"{GITHUB}:sub": "repo:acme/mlops:ref:refs/heads/main",
            }
        },
        {"StringEquals": {f"{GITHUB}:sub": "repo:acme/mlops:environment:production"}},
    ],
    ids=["string-like", "wildcard", "branch-not-environment", "no-audience"],
)
def test_github_trust_pinned(condition):
    assert_ok(rules.validate_github_trust_pinned, rules.IAM_ROLE, trust(PINNED))
    assert_violation(rules.validate_github_trust_pinned, rules.IAM_ROLE, trust(condition), "GitHub")


def test_github_trust_rule_ignores_other_roles():
    ecs = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                          "Action": "sts:AssumeRole"}]}  # fmt: skip
    assert_ok(
        rules.validate_github_trust_pinned, rules.IAM_ROLE, {"assumeRolePolicy": json.dumps(ecs)}
    )


@pytest.mark.parametrize("action", ["*", "iam:*", ["s3:GetObject", "*:*"]])
def test_no_admin_policy(action):
    def policy(act: Any) -> dict[str, Any]:
        return {
            "policy": json.dumps(
                {"Statement": [{"Effect": "Allow", "Action": act, "Resource": "*"}]}
            )
        }

    assert_ok(rules.validate_no_admin_policy, rules.IAM_ROLE_POLICY, policy("s3:GetObject"))
    assert_violation(
        rules.validate_no_admin_policy, rules.IAM_ROLE_POLICY, policy(action), "may not allow"
    )


def test_tasks_private():
    assert_ok(rules.validate_tasks_private, rules.ECS_SERVICE,
              {"networkConfiguration": {"assignPublicIp": False}})  # fmt: skip
    assert_violation(
        rules.validate_tasks_private, rules.ECS_SERVICE,
        {"networkConfiguration": {"assignPublicIp": True}}, "public IP",
    )  # fmt: skip


def test_https_listeners():
    redirect = {"protocol": "HTTP", "defaultActions": [{"type": "redirect"}]}
    forward = {"protocol": "HTTP", "defaultActions": [{"type": "forward"}]}
    assert_ok(rules.validate_https_listeners, rules.LB_LISTENER, redirect)
    assert_ok(rules.validate_https_listeners, rules.LB_LISTENER,
              {"protocol": "HTTPS", "defaultActions": [{"type": "forward"}]})  # fmt: skip
    assert_violation(rules.validate_https_listeners, rules.LB_LISTENER, forward, "redirect")


def test_every_rule_is_in_the_pack_once():
    names = [policy.name for policy in rules.POLICIES]
    assert names == [name for name, *_ in rules.RULES]
    assert len(names) == len(set(names)) == 21
    validators = [validate for _, _, validate, _ in rules.RULES]
    defined = {getattr(rules, n) for n in dir(rules) if n.startswith("validate_")}
    assert len(validators) == len(defined)
    assert set(validators) == defined
    advisory = [p.name for p in rules.POLICIES if p.enforcement_level == EnforcementLevel.ADVISORY]
    assert advisory == ["lb-https-only"], "plain HTTP is an explicit opt-in, so only advised"


def test_pack_entry_point_only_assembles_the_rules():
    main = (Path(rules.__file__).parent / "__main__.py").read_text()
    assert "PolicyPack(" in main
    assert "def validate" not in main


def test_ecr_immutable():
    assert_ok(rules.validate_ecr_immutable, rules.ECR_REPOSITORY,
              {"imageTagMutability": "IMMUTABLE"})  # fmt: skip
    assert_violation(rules.validate_ecr_immutable, rules.ECR_REPOSITORY,
                     {"imageTagMutability": "MUTABLE"}, "immutable")  # fmt: skip


@pytest.mark.parametrize("image", ["repo/x:latest", "repo/x", "", "host:5000/repo/x"])
def test_images_pinned(image):
    def task(img: str) -> dict[str, Any]:
        return {"containerDefinitions": json.dumps([{"name": "c", "image": img}])}

    digest = "repo/x@sha256:" + "0" * 64
    assert_ok(rules.validate_images_pinned, rules.ECS_TASK_DEFINITION, task(digest))
    assert_ok(rules.validate_images_pinned, rules.ECS_TASK_DEFINITION, task("repo/x:3f295fe"))
    assert_violation(rules.validate_images_pinned, rules.ECS_TASK_DEFINITION, task(image),
                     "digest or a fixed tag")  # fmt: skip


def test_no_force_delete():
    assert_ok(rules.validate_no_force_delete, rules.S3_BUCKET, {"forceDestroy": False})
    assert_violation(rules.validate_no_force_delete, rules.S3_BUCKET, {"forceDestroy": True},
                     "forceDestroy")  # fmt: skip
    assert_violation(rules.validate_no_force_delete, rules.ECR_REPOSITORY, {"forceDelete": True},
                     "forceDelete")  # fmt: skip
