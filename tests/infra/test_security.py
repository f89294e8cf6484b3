"""The stack's security rules, one test each. A failure names the resource's URN."""

from __future__ import annotations

import json

import pytest
from mlops_stack import documents
from policy import rules

from tests.infra.conftest import ACCOUNT, REPO, Deployment, Res, rule_violations, violations

INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SG = "aws:ec2/securityGroup:SecurityGroup"
RDS = "aws:rds/instance:Instance"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
LISTENER = "aws:lb/listener:Listener"
GITHUB = "token.actions.githubusercontent.com"


def sg_id(stack: Deployment, name: str) -> str:
    return stack.named(SG, name).id


def rules_of(stack: Deployment, token: str, group: str) -> list[tuple]:
    """(port range, protocol, source) of every rule on one security group, sorted."""
    group_id = sg_id(stack, group)
    found = []
    for rule in stack.of_type(token):
        state = rule.state
        if state["securityGroupId"] != group_id:
            continue
        peer = state.get("cidrIpv4") or stack.by_id(state["referencedSecurityGroupId"]).name
        found.append((int(state["fromPort"]), int(state["toPort"]), state["ipProtocol"], peer))
    return sorted(found)


def statements(res: Res, key: str = "policy") -> list[dict]:
    return res.json(key)["Statement"]


def actions_of(statement: dict) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else action


# --- database -----------------------------------------------------------------------------


@pytest.mark.parametrize("validate", [
    rules.validate_rds_private, rules.validate_rds_encrypted,
    rules.validate_rds_managed_password, rules.validate_rds_backups,
    rules.validate_bucket_public_access_blocked, rules.validate_bucket_encrypted,
    rules.validate_bucket_tls_only, rules.validate_no_open_ingress,
    rules.validate_github_trust_pinned, rules.validate_no_admin_policy,
    rules.validate_tasks_private,
], ids=lambda v: v.__name__)
def test_the_stack_keeps_the_policy_pack_s_rules(stack, plain_http_stack, validate):
    """The pack's own functions (infra/policy/rules.py), over every resource: the rules
    live in one place, and `pulumi preview --policy-pack` runs the same ones."""
    for deployment in (stack, plain_http_stack):
        assert rule_violations(deployment, validate) == []


def test_the_database_keeps_a_week_of_backups(stack):
    assert all(r.state["backupRetentionPeriod"] >= 7 for r in stack.of_type(RDS))


def test_database_requires_tls(stack):
    (group,) = stack.of_type("aws:rds/parameterGroup:ParameterGroup")
    params = {p["name"]: p["value"] for p in group.state["parameters"]}
    assert params.get("require_secure_transport") == "1", group.urn


def test_database_deletion_protection_is_on_by_default_and_configurable(stack):
    from tests.infra.conftest import base_settings, deploy

    assert stack.named(RDS, "tracking-db-mysql").state["deletionProtection"] is True
    relaxed = deploy(base_settings(db_deletion_protection=False))
    assert relaxed.named(RDS, "tracking-db-mysql").state["deletionProtection"] is False


# --- artifact bucket ----------------------------------------------------------------------


def test_every_bucket_has_its_public_access_block(stack):
    blocks = stack.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert len(blocks) == len(stack.of_type("aws:s3/bucket:Bucket")) == 1


def test_bucket_is_versioned(stack):
    (versioning,) = stack.of_type("aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.state["versioningConfiguration"]["status"] == "Enabled", versioning.urn


def test_bucket_policy_refuses_plain_http(stack):
    (policy,) = stack.of_type("aws:s3/bucketPolicy:BucketPolicy")
    bucket = stack.named("aws:s3/bucket:Bucket", "artifacts-bucket").state["arn"]
    denies = [
        s
        for s in statements(policy)
        if s["Effect"] == "Deny"
        and s["Condition"].get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert denies, f"{policy.urn}: no statement denies aws:SecureTransport false"
    assert denies[0]["Principal"] == "*"
    assert denies[0]["Action"] == "s3:*"
    assert sorted(denies[0]["Resource"]) == [bucket, f"{bucket}/*"]


# --- security groups: load balancer -> task -> database, nothing else ------------------------


def test_database_accepts_only_the_tracking_tasks(stack):
    assert rules_of(stack, INGRESS, "tracking-db-sg") == [(3306, 3306, "tcp", "tracking-task-sg")]
    assert rules_of(stack, EGRESS, "tracking-db-sg") == []


def test_tracking_tasks_accept_only_their_load_balancer(stack):
    assert rules_of(stack, INGRESS, "tracking-task-sg") == [(5000, 5000, "tcp", "tracking-lb-sg")]


def test_serving_tasks_accept_only_their_load_balancer(stack):
    assert rules_of(stack, INGRESS, "serving-task-sg") == [(8000, 8000, "tcp", "serving-lb-sg")]


def test_load_balancers_open_only_listener_ports(stack):
    # closed by default: only the stack's NAT address (its own serving tasks) until the
    # operator lists who may come in (trackingAllowedCidrs)
    nat = [f"{eip.state['publicIp']}/32" for eip in stack.of_type("aws:ec2/eip:Eip")]
    assert rules_of(stack, INGRESS, "tracking-lb-sg") == sorted(
        (port, port, "tcp", cidr) for port in (80, 443) for cidr in nat
    )
    # internal by default: reachable from inside the VPC only
    assert rules_of(stack, INGRESS, "serving-lb-sg") == [
        (80, 80, "tcp", "10.40.0.0/16"),
        (443, 443, "tcp", "10.40.0.0/16"),
    ]


def test_load_balancers_send_only_to_their_tasks(stack):
    assert rules_of(stack, EGRESS, "tracking-lb-sg") == [(5000, 5000, "tcp", "tracking-task-sg")]
    assert rules_of(stack, EGRESS, "serving-lb-sg") == [(8000, 8000, "tcp", "serving-task-sg")]


def test_task_egress_is_https_and_the_database_only(stack):
    assert rules_of(stack, EGRESS, "tracking-task-sg") == [
        (443, 443, "tcp", "0.0.0.0/0"),
        (3306, 3306, "tcp", "tracking-db-sg"),
    ]
    assert rules_of(stack, EGRESS, "serving-task-sg") == [(443, 443, "tcp", "0.0.0.0/0")]


def test_narrowed_tracking_access_still_lets_serving_in_through_nat(plain_http_stack):
    stack = plain_http_stack
    nat_ip = stack.of_type("aws:ec2/eip:Eip")[0].state["publicIp"]
    assert rules_of(stack, INGRESS, "tracking-lb-sg") == sorted(
        [(80, 80, "tcp", "198.51.100.0/24"), (80, 80, "tcp", f"{nat_ip}/32")]
    )
    # plain HTTP to the tracking server is the one extra way out for serving tasks
    assert (80, 80, "tcp", "0.0.0.0/0") in rules_of(stack, EGRESS, "serving-task-sg")


def test_security_groups_carry_no_inline_rules(stack):
    def check(res: Res) -> str | None:
        inline = [key for key in ("ingress", "egress") if res.state.get(key)]
        return f"inline {inline} hide rules from review" if inline else None

    assert not violations(stack.of_type(SG), check)


def test_no_rule_opens_all_protocols(stack):
    rules = stack.of_type(INGRESS) + stack.of_type(EGRESS)
    assert not violations(
        rules, lambda r: "all protocols" if r.state["ipProtocol"] == "-1" else None
    )


def test_internet_reaches_only_load_balancer_listeners(stack, plain_http_stack):
    for deployment in (stack, plain_http_stack):
        lb_groups = {sg_id(deployment, "tracking-lb-sg"), sg_id(deployment, "serving-lb-sg")}

        def check(res: Res, lb_groups=lb_groups) -> str | None:
            if "cidrIpv4" not in res.state:
                return None
            if res.state["securityGroupId"] not in lb_groups:
                return "a CIDR may only reach a load balancer"
            if int(res.state["fromPort"]) not in {80, 443}:
                return "only listener ports may be open"
            return None

        assert not violations(deployment.of_type(INGRESS), check)


def test_default_security_group_is_emptied(stack):
    (default,) = stack.of_type("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert not default.state.get("ingress"), default.urn
    assert not default.state.get("egress"), default.urn


# --- tasks --------------------------------------------------------------------------------


def test_tasks_run_in_private_subnets_without_public_ip(stack):
    private = {s.id for s in stack.of_type("aws:ec2/subnet:Subnet") if "private" in s.name}

    def check(res: Res) -> str | None:
        network = res.state["networkConfiguration"]
        if network.get("assignPublicIp"):
            return "tasks get a public IP"
        if set(network["subnets"]) != private:
            return "tasks run outside the private subnets"
        return None

    assert not violations(stack.of_type("aws:ecs/service:Service"), check)


def test_subnets_never_hand_out_public_ips(stack):
    subnets = stack.of_type("aws:ec2/subnet:Subnet")
    assert not violations(
        subnets, lambda r: "maps public IPs" if r.state["mapPublicIpOnLaunch"] else None
    )


def test_serving_load_balancer_is_internal_by_default(stack):
    alb = stack.named("aws:lb/loadBalancer:LoadBalancer", "serving-alb")
    assert alb.state["internal"] is True, alb.urn


def test_load_balancers_drop_invalid_headers(stack):
    albs = stack.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert not violations(
        albs, lambda r: None if r.state.get("dropInvalidHeaderFields") else "keeps invalid headers"
    )


def test_tracking_task_role_reaches_only_its_own_bucket(stack):
    bucket = stack.named("aws:s3/bucket:Bucket", "artifacts-bucket").state["arn"]
    policy = stack.named(ROLE_POLICY, "tracking-task-bucket")
    role = stack.named(ROLE, "tracking-task-role")
    assert policy.state["role"] == role.id
    for statement in statements(policy):
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        assert set(resources) <= {bucket, f"{bucket}/*"}, f"{policy.urn}: {resources}"
        assert all(a.startswith("s3:") and "*" not in a for a in actions_of(statement)), policy.urn
    attached = [
        a for a in stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.state["role"] == role.state["name"]
    ]  # fmt: skip
    assert not attached, f"{role.urn}: managed policies attached"


def test_execution_roles_read_only_their_own_secrets(stack):
    db_secret = stack.named(RDS, "tracking-db-mysql").state["masterUserSecrets"][0]["secretArn"]
    admin = stack.outputs["trackingAdminSecretArn"]
    flask = stack.outputs["trackingFlaskSecretArn"]
    app = stack.outputs["trackingDbAppSecretArn"]
    serving_login = stack.outputs["loginSecretArns"]["serving"]
    expected = {"tracking": sorted([db_secret, app, admin, flask]), "serving": [serving_login]}
    for name, arns in expected.items():
        policy = stack.named(ROLE_POLICY, f"{name}-exec-secrets")
        (statement,) = statements(policy)
        assert statement["Action"] == "secretsmanager:GetSecretValue", policy.urn
        assert statement["Resource"] == arns, policy.urn


def test_no_secret_value_is_part_of_the_program(stack):
    assert not stack.of_type("aws:secretsmanager/secretVersion:SecretVersion")

    def check(res: Res) -> str | None:
        text = json.dumps(res.state).lower()
        return "carries a password value" if '"password":' in text else None

    assert not violations(stack.resources, check)


def test_images_are_scanned_on_push(stack):
    repos = stack.of_type("aws:ecr/repository:Repository")
    assert len(repos) == 2
    assert not violations(
        repos,
        lambda r: (
            None if r.state["imageScanningConfiguration"]["scanOnPush"] else "no scan on push"
        ),
    )


# --- TLS on the load balancers --------------------------------------------------------------


def test_http_only_redirects_to_https_when_a_certificate_is_set(stack):
    def check(res: Res) -> str | None:
        if res.state["protocol"] != "HTTP":
            return None
        (action,) = res.state["defaultActions"]
        redirect = action.get("redirect", {})
        if action["type"] != "redirect" or redirect.get("protocol") != "HTTPS":
            return "plain HTTP listener does not redirect to HTTPS"
        return None

    assert not violations(stack.of_type(LISTENER), check)


def test_https_listeners_use_the_certificate_and_a_modern_tls_policy(stack):
    https = [r for r in stack.of_type(LISTENER) if r.state["protocol"] == "HTTPS"]
    assert len(https) == 2
    assert not violations(
        https,
        lambda r: (
            None
            if r.state["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")
            and r.state["certificateArn"].startswith("arn:aws:acm:")
            else "weak TLS policy or no certificate"
        ),
    )


# --- CI roles -------------------------------------------------------------------------------


def ci_roles(stack: Deployment) -> list[Res]:
    return [r for r in stack.of_type(ROLE) if r.name.startswith("ci-")]


def test_github_trust_is_pinned_to_repository_and_environment(stack):
    expected = {"ci-infra": "infra", "ci-serving-image": "serving-image"}

    def check(res: Res) -> str | None:
        (statement,) = statements(res, "assumeRolePolicy")
        condition = statement["Condition"]
        if set(condition) != {"StringEquals"}:
            return f"conditions other than StringEquals: {sorted(condition)}"
        equals = condition["StringEquals"]
        want = f"repo:{REPO}:environment:{expected[res.name]}"
        if equals.get(f"{GITHUB}:sub") != want:
            return f"subject {equals.get(f'{GITHUB}:sub')!r}, expected {want!r}"
        if equals.get(f"{GITHUB}:aud") != "sts.amazonaws.com":
            return "audience is not sts.amazonaws.com"
        if statement["Action"] != "sts:AssumeRoleWithWebIdentity":
            return "not a web identity trust"
        return None

    roles = ci_roles(stack)
    assert sorted(r.name for r in roles) == sorted(expected)
    assert not violations(roles, check)


def _readers(stack: Deployment) -> dict[str, set[str]]:
    """secret ARN -> the roles whose policies may read its value (GetSecretValue)."""
    names = {r.id: r.state["name"] for r in stack.of_type(ROLE)}
    found: dict[str, set[str]] = {}
    for policy in stack.of_type(ROLE_POLICY):
        for statement in statements(policy):
            reads = [a for a in actions_of(statement)
                     if a.lower() in {"secretsmanager:getsecretvalue", "secretsmanager:*", "*"}]
            if statement["Effect"] != "Allow" or not reads:
                continue
            resources = statement["Resource"]
            for arn in [resources] if isinstance(resources, str) else resources:
                found.setdefault(arn, set()).add(names[policy.state["role"]])
    return found


def test_each_secret_is_read_by_one_role_at_most(stack):
    """One secret per login, one reader per secret; the GitHub-held logins (gate,
    registry-read, promote) and the admin's are read by no consumer, and the deploy role
    reads no secret at all."""
    readers = _readers(stack)
    secrets_ = [s.state["arn"] for s in stack.of_type("aws:secretsmanager/secret:Secret")]
    for arn, roles in readers.items():
        assert "*" not in arn, f"{sorted(roles)} may read every secret matching {arn}"
        assert len(roles) == 1, f"{arn} is read by {sorted(roles)}"
    logins = stack.outputs["loginSecretArns"]
    assert readers[logins["serving"]] == {"mlops-test-serving-exec"}
    for github in ("gate", "registry-read", "promote"):
        assert logins[github] not in readers, f"the {github} login lives in GitHub"
    assert readers[stack.outputs["trackingAdminSecretArn"]] == {"mlops-test-tracking-exec"}
    assert not any("mlops-test-ci-infra" in roles for roles in readers.values())
    assert set(readers) <= set(secrets_) | {
        stack.named(RDS, "tracking-db-mysql").state["masterUserSecrets"][0]["secretArn"]}


def test_the_tracking_task_writes_the_logins_it_creates_and_reads_none(stack):
    policy = stack.named(ROLE_POLICY, "tracking-task-logins")
    (statement,) = statements(policy)
    assert statement["Action"] == "secretsmanager:PutSecretValue"
    assert statement["Resource"] == sorted(stack.outputs["loginSecretArns"].values())


def test_no_dormant_oidc_trust(stack):
    """Every role GitHub may assume trusts an environment that a workflow job assuming it
    runs in; the registry's workflows assume none (their logins are environment secrets)."""
    import yaml

    from tests.utils import REPO as ROOT

    assuming: dict[str, set[str]] = {}
    for path in (ROOT / ".github" / "workflows").glob("*.yml"):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            if (job.get("permissions") or {}).get("id-token") == "write":
                assuming.setdefault(str(job.get("environment")), set()).add(path.name)
    for role in ci_roles(stack):
        (statement,) = statements(role, "assumeRolePolicy")
        subject = statement["Condition"]["StringEquals"][f"{GITHUB}:sub"]
        environment = subject.split(":environment:", 1)[1].split(":", 1)[0]
        assert environment in assuming, f"{role.urn}: no workflow job in {environment!r}"
    assert not {"pr", "production", "gate", "registry-read"} & set(assuming)


def test_roles_can_trust_one_workflow_file_on_main():
    from tests.infra.conftest import base_settings, deploy

    narrowed = deploy(base_settings(oidc_workflow_subjects=True))
    (statement,) = statements(narrowed.named(ROLE, "ci-infra"), "assumeRolePolicy")
    assert statement["Condition"]["StringEquals"][f"{GITHUB}:sub"] == (
        f"repo:{REPO}:environment:infra:job_workflow_ref:{REPO}/.github/workflows/infra.yml"
        "@refs/heads/main")
    assert rule_violations(narrowed, rules.validate_github_trust_pinned) == []


def test_every_role_carries_the_boundary(stack):
    boundary = stack.outputs["boundaryPolicyArn"]
    assert not violations(stack.of_type(ROLE), lambda r: None if r.state.get(
        "permissionsBoundary") == boundary else "no permissions boundary")
    assert rule_violations(stack, rules.validate_roles_bounded) == []


def test_no_role_can_change_its_own_permissions(stack):
    """The deploy role writes the stack's role policies but is denied its own; the rule
    sees the old policy (without that denial) as the self-escalation it was."""
    from dataclasses import replace

    assert rule_violations(stack, rules.validate_no_self_escalation) == []
    policy = stack.named(ROLE_POLICY, "ci-infra-stack")
    document = policy.json("policy")
    document["Statement"] = [s for s in document["Statement"]
                             if s.get("Sid") != "NotItsOwnPermissions"]
    old = replace(policy, state={**policy.state, "policy": json.dumps(document)})
    assert rule_violations(Deployment([old]), rules.validate_no_self_escalation)
    boundary = {s["Sid"]: s for s in stack.named(
        "aws:iam/policy:Policy", "boundary-policy").json("policy")["Statement"]}
    assert boundary["NoSelfEscalation"]["Resource"].endswith(":role/mlops-test-ci-infra")
    assert boundary["NoRoleWithoutTheBoundary"]["Condition"]["StringNotEquals"][
        "iam:PermissionsBoundary"] == stack.outputs["boundaryPolicyArn"]


def test_the_tracking_load_balancer_rate_limits_each_address(stack):
    (acl,) = stack.of_type("aws:wafv2/webAcl:WebAcl")
    (rule,) = acl.state["rules"]
    rate = rule["statement"]["rateBasedStatement"]
    assert (rate["limit"], rate["aggregateKeyType"], rate["evaluationWindowSec"]) == (
        1000, "IP", 300)
    assert "block" in rule["action"]
    (association,) = stack.of_type("aws:wafv2/webAclAssociation:WebAclAssociation")
    alb = stack.named("aws:lb/loadBalancer:LoadBalancer", "tracking-alb")
    assert association.state["resourceArn"] == alb.state["arn"]
    assert association.state["webAclArn"] == acl.state["arn"]


EC2_DESCRIPTION = __import__("re").compile(r"^[A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]*$")
"""What EC2 accepts in a security group's or a rule's description."""


def test_descriptions_are_what_ec2_accepts(stack):
    from dataclasses import replace

    from tests.infra.conftest import base_settings, deploy

    def check(res: Res) -> str | None:
        text = str(res.state.get("description", ""))
        return None if EC2_DESCRIPTION.match(text) else f"EC2 refuses {text!r}"

    for deployment in (stack, deploy(base_settings(orchestration=True))):
        groups = deployment.of_type(SG) + deployment.of_type(INGRESS) + deployment.of_type(EGRESS)
        assert not violations(groups, check)
    rule = stack.of_type(INGRESS)[0]
    assert violations([replace(rule, state={**rule.state, "description": "MWAA's"})], check)


def test_infra_role_manages_only_this_stack_where_aws_allows(stack):
    policy = stack.named(ROLE_POLICY, "ci-infra-stack")
    by_sid = {s["Sid"]: s for s in statements(policy)}
    for statement in by_sid.values():
        for action in actions_of(statement):
            assert action not in {"*", "*:*", "iam:*"}, f"{policy.urn}: allows {action}"
    assert by_sid["StackRoles"]["Resource"].endswith(":role/mlops-test-*")
    assert by_sid["StackSecrets"]["Resource"].endswith(":secret:mlops-test/*")
    assert by_sid["PulumiState"]["Resource"] == "arn:aws:s3:::acme-pulumi-state"
    assert by_sid["ArtifactBucket"]["Resource"][0] == "arn:aws:s3:::mlops-test-*"


# What the infra role may do on "*": a new entry here is a decision, made in review.
ACCOUNT_WIDE = {
    "AccountWideServices": set(documents.BROAD_ACTIONS),
    "UnscopedActions": {
        "ecr:GetAuthorizationToken", "ecs:RegisterTaskDefinition",
        "ecs:DeregisterTaskDefinition", "ecs:DescribeTaskDefinition", "ecs:ListTaskDefinitions",
        "ecs:ListClusters", "rds:Describe*", "cloudwatch:DescribeAlarms",
    },
    "DescribeLogs": {"logs:DescribeLogGroups", "logs:ListTagsForResource"},
    "ReadOnlyLookups": {"sts:GetCallerIdentity", "acm:DescribeCertificate", "kms:DescribeKey"},
}
CONDITIONED = {"ServiceLinkedRoles", "ManagedKeysThroughServices"}  # "*" under a Condition


def test_infra_role_has_no_new_wildcard(stack):
    policy = stack.named(ROLE_POLICY, "ci-infra-stack")
    for statement in statements(policy):
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        if "*" not in resources:
            assert all(r.count(":") >= 5 and "::*" not in r for r in resources), statement
            continue
        sid = statement["Sid"]
        if sid in CONDITIONED:
            assert statement.get("Condition"), f"{policy.urn}: {sid} lost its condition"
            continue
        assert sid in ACCOUNT_WIDE, f"{policy.urn}: new statement {sid} on Resource *"
        assert set(actions_of(statement)) == ACCOUNT_WIDE[sid], f"{policy.urn}: {sid} changed"


def test_infra_role_scopes_ecr_ecs_rds_and_alarms_to_the_stack(stack):
    policy = stack.named(ROLE_POLICY, "ci-infra-stack")
    by_sid = {s["Sid"]: s for s in statements(policy)}
    assert by_sid["StackEcr"]["Resource"] == [f"arn:aws:ecr:*:{ACCOUNT}:repository/mlops-test/*"]
    assert f"arn:aws:ecs:*:{ACCOUNT}:cluster/mlops-test" in by_sid["StackEcs"]["Resource"]
    assert f"arn:aws:rds:*:{ACCOUNT}:db:mlops-test-*" in by_sid["StackRds"]["Resource"]
    assert by_sid["StackCloudwatch"]["Resource"] == [
        f"arn:aws:cloudwatch:*:{ACCOUNT}:alarm:TargetTracking-service/mlops-test/*",
        f"arn:aws:cloudwatch:*:{ACCOUNT}:alarm:mlops-test-*"]


def test_the_policy_pack_passes_on_the_stack(stack, plain_http_stack):
    from policy.rules import RULES
    from pulumi_policy import EnforcementLevel

    found: list[str] = []
    for deployment in (stack, plain_http_stack):
        for res in deployment.resources:
            args = res.policy_args()
            for name, _, validate, level in RULES:
                if level == EnforcementLevel.ADVISORY:
                    continue
                validate(
                    args, lambda message, urn, rule=name: found.append(f"{rule}: {urn}: {message}")
                )
    assert not found
