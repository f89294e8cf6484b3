"""Run the Pulumi program under mocks and hand the tests what it registered.

The Pulumi CLI and the AWS provider cannot run here, so `pulumi.runtime.set_mocks` stands in
for the engine: every resource the program creates is recorded with its inputs (plus a few
provider-computed values the program reads back, such as ARNs and DNS names). The tests then
read like policies over that record and name the resource URN when a rule is broken.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pulumi
import pytest

INFRA = Path(__file__).resolve().parents[2] / "infra"
TRACKING_IMAGE = INFRA / "tracking_image"
for folder in (INFRA, TRACKING_IMAGE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from mlops_stack import program  # noqa: E402
from mlops_stack.settings import StackSettings  # noqa: E402

ACCOUNT = "123456789012"
REGION = "us-east-1"
REPO = "acme/mlops-gitops"


class StackMocks(pulumi.runtime.Mocks):
    """Answer resource registrations and invokes the way AWS would, offline."""

    def __init__(self) -> None:
        self.counter = 0

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.counter += 1
        state: dict[str, Any] = dict(args.inputs)
        name = args.name
        typ = args.typ
        service = typ.split(":")[1].split("/")[0]
        state.setdefault("name", name)
        state.setdefault("arn", f"arn:aws:{service}:{REGION}:{ACCOUNT}:{name}")
        if typ == "aws:s3/bucket:Bucket":
            bucket = f"{args.inputs.get('bucketPrefix', name)}mock"
            state.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}")
        elif typ == "aws:lb/loadBalancer:LoadBalancer":
            state["dnsName"] = f"{name}-1234.{REGION}.elb.amazonaws.com"
            state["arnSuffix"] = f"app/{name}/0123456789abcdef"
        elif typ == "aws:rds/instance:Instance":
            ident = args.inputs.get("identifier", name)
            state.update(
                address=f"{ident}.abc.{REGION}.rds.amazonaws.com",
                port=3306,
                masterUserSecrets=[
                    {
                        "secretArn": (
                            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!db-{ident}"
                        )
                    }
                ],
            )
        elif typ == "aws:lb/targetGroup:TargetGroup":
            state["arnSuffix"] = f"targetgroup/{name}/0123456789abcdef"
        elif typ == "aws:ecr/repository:Repository":
            state["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{state['name']}"
        elif typ == "aws:ec2/instance:Instance":
            state["primaryNetworkInterfaceId"] = f"eni-{name}"
        elif typ == "aws:ec2/eip:Eip":
            state["publicIp"] = f"203.0.113.{self.counter % 250}"
        elif typ == "aws:secretsmanager/secret:Secret":
            # AWS ends the ARN with a random suffix: `<namePrefix>AbCdEf`, `<name>-AbCdEf`
            stem = args.inputs.get("namePrefix") or f"{args.inputs.get('name', name)}-"
            state["arn"] = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{stem}AbCdEf"
        elif typ == "aws:iam/role:Role":  # AWS names a role's ID by its name
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{state['name']}"
            return str(state["name"]), state
        elif typ == "aws:iam/policy:Policy":
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:policy/{state['name']}"
        elif typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            state["arn"] = (
                f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
            )
        return f"{name}-id", state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[Any]] | dict[str, Any]:
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": [f"{REGION}a", f"{REGION}b", f"{REGION}c"], "zoneIds": ["a", "b", "c"]}
        if args.token == "aws:index/getRegion:getRegion":
            return {"region": REGION, "name": REGION, "id": REGION}
        if args.token == "aws:ssm/getParameter:getParameter":
            return {"name": args.args.get("name"), "value": "ami-0123456789abcdef0",
                    "type": "String", "arn": "", "id": args.args.get("name"), "version": 1,
                    "insecureValue": "ami-0123456789abcdef0"}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/test", "userId": "x"}
        return {}


@dataclass(frozen=True)
class Res:
    """One registered resource: its URN, type token, logical name and recorded state."""

    urn: str
    id: str
    state: dict[str, Any]
    protect: bool = False  # the resource option, as the engine received it

    @property
    def type(self) -> str:
        return self.urn.split("::")[2].split("$")[-1]

    @property
    def name(self) -> str:
        return self.urn.split("::")[3]

    def policy_args(self) -> Any:
        """What the policy engine hands a rule for this resource: its state and options."""
        from pulumi_policy import (
            PolicyCustomTimeouts,
            PolicyResourceOptions,
            ResourceValidationArgs,
        )

        options = PolicyResourceOptions(
            protect=self.protect, ignore_changes=[], delete_before_replace=None, aliases=[],
            custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[])
        return ResourceValidationArgs(self.type, self.state, self.urn, self.name, options, None)

    def json(self, key: str) -> Any:
        """A property that holds a JSON document (policies, container definitions)."""
        return json.loads(self.state[key])


@dataclass
class Deployment:
    resources: list[Res]
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, token: str) -> list[Res]:
        return [res for res in self.resources if res.type == token]

    def named(self, token: str, name: str) -> Res:
        matches = [res for res in self.of_type(token) if res.name == name]
        assert len(matches) == 1, f"expected one {token} named {name!r}, found {len(matches)}"
        return matches[0]

    def by_id(self, resource_id: str) -> Res:
        matches = [res for res in self.resources if res.id == resource_id]
        assert matches, f"no resource has the id {resource_id!r}"
        return matches[0]


def deploy(settings: StackSettings) -> Deployment:
    """Run the program once under fresh mocks and return what it registered.

    Pulumi's mocks run on the main thread's current event loop; a test that ran
    `asyncio.run` earlier in the session leaves none, so each deployment gets its own.
    """
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(StackMocks(), project="mlops", stack="test", preview=False)
    monitor = pulumi.runtime.settings.get_monitor()
    protected: dict[tuple[str, str], bool] = {}
    register = monitor.RegisterResource

    def recording(request: Any) -> Any:  # the mocks keep no resource options: note `protect`
        protected[(request.type, request.name)] = bool(request.protect)
        return register(request)

    monitor.RegisterResource = recording
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        stack = program.build(settings)
        return pulumi.Output.from_input(stack.outputs).apply(outputs.update)

    run()
    registered = monitor.get_registered_resources()
    resources = []
    for urn, reg in registered.items():
        res = Res(urn, reg.id or "", dict(reg.state or {}))
        resources.append(replace(res, protect=protected.get((res.type, res.name), False)))
    return Deployment(resources=resources, outputs=outputs)


TRACKING_IMAGE_REF = "sha256:" + "1" * 64
SERVING_IMAGE_REF = "3f295fe"  # an immutable tag: the git commit it was built from


def base_settings(**changes: Any) -> StackSettings:
    """The defaults of a stack with HTTPS, as an operator would configure it."""
    settings = StackSettings(
        prefix="mlops-test",
        tracking_image=TRACKING_IMAGE_REF,
        serving_image=SERVING_IMAGE_REF,
        github_repo=REPO,
        state_bucket="acme-pulumi-state",
        certificate_arn=f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/abc",
        tracking_host="mlflow.example.com",
        serving_host="models.example.com",
    )
    return replace(settings, **changes)


@pytest.fixture(scope="session")
def stack() -> Deployment:
    """The stack at its defaults with HTTPS: what most rules are checked against."""
    return deploy(base_settings())


@pytest.fixture(scope="session")
def plain_http_stack() -> Deployment:
    """A stack whose operator explicitly allowed plain HTTP and narrowed the tracking CIDRs."""
    return deploy(
        base_settings(
            certificate_arn=None,
            tracking_host=None,
            serving_host=None,
            allow_plain_http=True,
            tracking_allowed_cidrs=("198.51.100.0/24",),
        )
    )


@pytest.fixture(scope="session")
def ha_stack() -> Deployment:
    return deploy(base_settings(high_availability=True))


@pytest.fixture(scope="session")
def batch_stack() -> Deployment:
    """The stack with Airflow (MWAA) and Spark (EMR Serverless): `mlops:orchestration`."""
    return deploy(base_settings(orchestration=True))


Check = Callable[[Res], str | None]


def violations(resources: list[Res], check: Check) -> list[str]:
    """Run a rule over resources; each failure reads `URN: reason`."""
    found = []
    for res in resources:
        reason = check(res)
        if reason:
            found.append(f"{res.urn}: {reason}")
    return found


def rule_violations(stack: Deployment, validate: Any) -> list[str]:
    """A policy-pack rule (`infra/policy/rules.py`) over every resource: `URN: reason`."""
    found: list[str] = []
    for res in stack.resources:
        validate(res.policy_args(), lambda message, urn: found.append(f"{urn}: {message}"))
    return found


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    """IAM's condition operators this stack writes; a key the request lacks fails."""
    for operator, tests in condition.items():
        for key, wanted in tests.items():
            if key not in context:
                return False
            value = context[key]
            if operator == "StringEquals":
                ok = value in _listed(wanted)
            elif operator == "StringLike":
                ok = any(fnmatch.fnmatchcase(value, pattern) for pattern in _listed(wanted))
            elif operator == "Bool":
                ok = value.lower() in [str(w).lower() for w in _listed(wanted)]
            elif operator == "NumericLessThan":
                ok = any(float(value) < float(w) for w in _listed(wanted))
            else:
                raise ValueError(f"no test reads the condition operator {operator!r}")
            if not ok:
                return False
    return True


def _statement_matches(statement: Mapping[str, Any], action: str, resource: str,
                       context: Mapping[str, str]) -> bool:
    def any_action(patterns: Any) -> bool:
        return any(fnmatch.fnmatchcase(action.lower(), str(p).lower()) for p in _listed(patterns))

    def any_resource(patterns: Any) -> bool:
        return any(fnmatch.fnmatchcase(resource, str(p)) for p in _listed(patterns))

    if "Action" in statement and not any_action(statement["Action"]):
        return False
    if "NotAction" in statement and any_action(statement["NotAction"]):
        return False
    if "Resource" in statement and not any_resource(statement["Resource"]):
        return False
    if "NotResource" in statement and any_resource(statement["NotResource"]):
        return False
    return _condition_holds(statement.get("Condition", {}), context)


def permits(documents: list[Mapping[str, Any]], action: str, resource: str,
            context: Mapping[str, str] | None = None) -> bool:
    """Whether identity policies let a request do `action` on `resource`: an Allow matches
    and no Deny does. IAM's matching, as far as this stack's documents need it: `*` and `?`
    in actions (any case) and resources, NotAction and NotResource, and the operators of
    `_condition_holds` on the request's keys (`context`)."""
    context = context or {}
    statements = [s for document in documents for s in _listed(document["Statement"])]
    if any(s["Effect"] == "Deny" and _statement_matches(s, action, resource, context)
           for s in statements):
        return False
    return any(s["Effect"] == "Allow" and _statement_matches(s, action, resource, context)
               for s in statements)


def role_documents(stack: Deployment, role_name: str) -> list[dict[str, Any]]:
    """The inline policies of one role (by its AWS name)."""
    role = next(r for r in stack.of_type("aws:iam/role:Role") if r.state["name"] == role_name)
    return [p.json("policy") for p in stack.of_type("aws:iam/rolePolicy:RolePolicy")
            if p.state["role"] == role.id]
