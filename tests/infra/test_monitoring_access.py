"""The monitoring loop's access in the cloud, as policies under mocks.

The serving tasks add files to the prediction log (`predictions/` of the artifact bucket)
and may do nothing else in AWS; the MWAA execution role reads that log and the retraining
pull request's GitHub token; nothing else reads the token. Each rule names the resource
that breaks it, and is shown failing on the widening it forbids.

The S3 calls are the ones pyarrow 25 makes, read from the AWS SDK's debug log against
`rclone serve s3` (docs/infra.md, "The prediction log"): the writer creates, fills and
completes one multipart upload per file; the monitor HEADs the prefix's own key, lists
`predictions/` and the day folders, then HEADs and GETs each file.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from policy import rules

from tests.infra.conftest import (
    REPO,
    Deployment,
    Res,
    permits,
    role_documents,
    rule_violations,
)
from tests.infra.test_resources import container, env_of
from tests.utils import REPO as ROOT

ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
SECRET = "aws:secretsmanager/secret:Secret"
KEY = "predictions/date=2026-12-07/20261207T120000-ip-10-40-1-7-12-ab12cd34-00001.parquet"
Call = tuple[str, str, dict[str, str]]
"""(action, key ("" for the bucket itself), condition keys of the request)."""

WRITER_CALLS: list[Call] = [("s3:PutObject", KEY, {}),  # create, upload part, complete
                            ("s3:AbortMultipartUpload", KEY, {})]
NOT_THE_WRITER_S: list[Call] = [
    ("s3:GetObject", KEY, {}), ("s3:GetObjectVersion", KEY, {}),
    ("s3:DeleteObject", KEY, {}), ("s3:DeleteObjectVersion", KEY, {}),
    ("s3:ListBucket", "", {"s3:prefix": "predictions/"}),
    ("s3:ListBucketMultipartUploads", "", {}), ("s3:PutObjectAcl", KEY, {}),
    ("s3:PutObject", "artifacts/1/0123/artifacts/model/model.skops", {}),
    ("s3:PutObject", "predictions", {}), ("s3:PutObject", "predictions-other/x.parquet", {}),
]
READER_CALLS: list[Call] = [
    ("s3:GetObject", "predictions", {}),  # HEAD of the folder's key: 404 with the next
    ("s3:ListBucket", "", {"s3:prefix": "predictions"}),
    ("s3:ListBucket", "", {"s3:prefix": "predictions/"}),
    ("s3:ListBucket", "", {"s3:prefix": "predictions/date=2026-12-07/"}),
    ("s3:GetObject", KEY, {}),
]
NOT_THE_READER_S: list[Call] = [
    ("s3:GetObject", "artifacts/1/0123/artifacts/model/model.skops", {}),
    ("s3:ListBucket", "", {}), ("s3:ListBucket", "", {"s3:prefix": ""}),
    ("s3:ListBucket", "", {"s3:prefix": "artifacts/"}),
    ("s3:ListBucket", "", {"s3:prefix": "predictions-other/"}),
    ("s3:PutObject", KEY, {}), ("s3:DeleteObject", KEY, {}),
]


def _bucket(stack: Deployment) -> str:
    return str(stack.named(rules.S3_BUCKET, "artifacts-bucket").state["arn"])


def _target(bucket: str, key: str) -> str:
    return f"{bucket}/{key}" if key else bucket


def _access_violations(stack: Deployment, role_name: str, *, needs: list[Call],
                       forbidden: list[Call]) -> list[str]:
    """`URN: reason` for each call the role lacks and each it should not have."""
    documents, bucket = role_documents(stack, role_name), _bucket(stack)
    (role,) = [r for r in stack.of_type(rules.IAM_ROLE) if r.state["name"] == role_name]
    found = [f"{role.urn}: may not {action} on {_target(bucket, key)} {context}"
             for action, key, context in needs
             if not permits(documents, action, _target(bucket, key), context)]
    found += [f"{role.urn}: may {action} on {_target(bucket, key)} {context}"
              for action, key, context in forbidden
              if permits(documents, action, _target(bucket, key), context)]
    return found


def _widened(stack: Deployment, policy_name: str, statement: dict[str, Any]) -> Deployment:
    """The stack with one more statement in one inline policy."""
    policy = stack.named(ROLE_POLICY, policy_name)
    document = policy.json("policy")
    document["Statement"] = [*document["Statement"], statement]
    wider = replace(policy, state={**policy.state, "policy": json.dumps(document)})
    return replace(stack, resources=[wider if r is policy else r for r in stack.resources])


# --- the serving tasks: write the log, nothing else ---------------------------------------


def test_the_serving_tasks_may_only_add_files_to_the_prediction_log(stack: Deployment) -> None:
    role = stack.named(rules.IAM_ROLE, "serving-task-role")
    task = stack.named(rules.ECS_TASK_DEFINITION, "serving-task")
    assert task.state["taskRoleArn"] == role.state["arn"], task.urn
    assert role.state["permissionsBoundary"] == stack.outputs["boundaryPolicyArn"], role.urn
    attached = [a for a in stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if a.state["role"] == role.state["name"]]
    assert not attached, f"{role.urn}: managed policies attached"
    (policy,) = [p for p in stack.of_type(ROLE_POLICY) if p.state["role"] == role.id]
    assert policy.json("policy")["Statement"] == [{
        "Sid": "WritePredictionLog", "Effect": "Allow",
        "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
        "Resource": f"{_bucket(stack)}/predictions/*"}], policy.urn
    assert _access_violations(stack, "mlops-test-serving-task", needs=WRITER_CALLS,
                              forbidden=NOT_THE_WRITER_S) == []


def test_a_serving_role_that_could_read_or_erase_the_log_is_named(stack: Deployment) -> None:
    wider = _widened(stack, "serving-task-prediction-log", {
        "Effect": "Allow", "Action": "s3:*", "Resource": f"{_bucket(stack)}/predictions/*"})
    found = _access_violations(wider, "mlops-test-serving-task", needs=WRITER_CALLS,
                               forbidden=NOT_THE_WRITER_S)
    assert any("may s3:GetObject" in reason for reason in found)
    assert any("may s3:DeleteObject" in reason for reason in found)


def test_the_serving_tasks_log_to_s3_not_to_the_image_s_folder(stack: Deployment) -> None:
    """PREDICTION_LOG replaces the image's default (the serving user's home, lost with the
    task) by the bucket's prefix, which the bucket's TLS-only policy covers too."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    (image_default,) = re.findall(r"PREDICTION_LOG=(\S+)", dockerfile)
    bucket = stack.named(rules.S3_BUCKET, "artifacts-bucket").state["bucket"]
    logged_to = env_of(container(stack, "serving"))["PREDICTION_LOG"]
    assert logged_to == f"s3://{bucket}/predictions" != image_default
    (bucket_policy,) = stack.of_type(rules.BUCKET_POLICY)
    # whatever a role allows, the bucket's denials apply to the log's files as well
    anything = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    documents = [anything, bucket_policy.json("policy")]
    write = ("s3:PutObject", f"{_bucket(stack)}/{KEY}")
    assert permits(documents, *write, {"aws:SecureTransport": "true", "s3:TlsVersion": "1.3"})
    for refused in ({"aws:SecureTransport": "false", "s3:TlsVersion": "1.2"},
                    {"aws:SecureTransport": "true", "s3:TlsVersion": "1.1"}):
        assert not permits(documents, *write, refused), f"{bucket_policy.urn}: {refused}"


# --- MWAA: read the log, read the token ---------------------------------------------------


def test_the_airflow_role_reads_the_prediction_log_and_nothing_else_of_the_bucket(
        batch_stack: Deployment) -> None:
    assert _access_violations(batch_stack, "mlops-test-airflow-exec", needs=READER_CALLS,
                              forbidden=NOT_THE_READER_S) == []


def test_an_airflow_role_listing_the_whole_bucket_is_named(batch_stack: Deployment) -> None:
    wider = _widened(batch_stack, "orchestration-airflow-exec-policy", {
        "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [_bucket(batch_stack)]})
    found = _access_violations(wider, "mlops-test-airflow-exec", needs=READER_CALLS,
                               forbidden=NOT_THE_READER_S)
    assert any("may s3:ListBucket" in reason for reason in found)


def _readers(stack: Deployment, secret_arn: str) -> set[str]:
    """The roles whose inline policies may read the secret's value."""
    return {role.state["name"] for role in stack.of_type(rules.IAM_ROLE)
            if permits(role_documents(stack, role.state["name"]),
                       "secretsmanager:GetSecretValue", secret_arn)}


def test_only_the_airflow_role_reads_the_github_token(batch_stack: Deployment) -> None:
    token = batch_stack.named(SECRET, "orchestration-github-token")
    assert token.state["name"] == "mlops-test/airflow/variables/mlops_github_token"
    assert token.protect, f"{token.urn}: the operator's token must survive a destroy"
    assert batch_stack.outputs["githubTokenSecretArn"] == token.state["arn"]
    assert not batch_stack.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    assert _readers(batch_stack, token.state["arn"]) == {"mlops-test-airflow-exec"}


def test_a_second_reader_of_the_token_is_named(batch_stack: Deployment) -> None:
    """The spark job's login statement widened to the stack's every secret: the token then
    has two readers, which the rule reports."""
    token = batch_stack.named(SECRET, "orchestration-github-token").state["arn"]
    every = token.split(":secret:")[0] + ":secret:mlops-test/*"
    wider = _widened(batch_stack, "orchestration-spark-job-policy", {
        "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": [every]})
    assert _readers(wider, token) == {"mlops-test-airflow-exec", "mlops-test-spark-job"}


def test_every_secret_of_the_batch_stack_has_one_reader_at_most(
        batch_stack: Deployment) -> None:
    secrets = [s.state["arn"] for s in batch_stack.of_type(SECRET)]
    secrets.append(batch_stack.named(rules.RDS_INSTANCE, "tracking-db-mysql").state[
        "masterUserSecrets"][0]["secretArn"])
    shared = {arn: readers for arn in secrets if len(readers := _readers(batch_stack, arn)) > 1}
    assert shared == {}


def _options(stack: Deployment) -> dict[str, str]:
    (airflow,) = stack.of_type(rules.MWAA_ENVIRONMENT)
    options = airflow.state["airflowConfigurationOptions"]
    return dict(options.get("value", options))  # the provider marks the options secret


def test_mwaa_looks_up_the_token_variable_in_its_secret_only(batch_stack: Deployment) -> None:
    """The secrets backend finds `mlops_github_token` under the secret's name, and asks
    Secrets Manager for no other variable, connection or setting (calls the role may not
    make). The training DAG reads that variable."""
    options = _options(batch_stack)
    assert options["secrets.backend"] == (
        "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend")
    kwargs = json.loads(options["secrets.backend_kwargs"])
    token = batch_stack.named(SECRET, "orchestration-github-token")
    assert f"{kwargs['variables_prefix']}/mlops_github_token" == token.state["name"]
    assert kwargs["connections_prefix"] is None
    assert kwargs["config_prefix"] is None
    looked_up = [name for name in ("mlops_github_token", "MLOPS_GITHUB_TOKEN",
                                   "mlops_github_token_old", "other", "aws_default")
                 if re.match(kwargs["variables_lookup_pattern"], name, re.IGNORECASE)]
    assert looked_up == ["mlops_github_token", "MLOPS_GITHUB_TOKEN"]
    assert 'Variable.get("mlops_github_token"' in (ROOT / "dags" / "training_dag.py").read_text()


def test_mwaa_knows_the_log_the_reports_and_the_repository(stack: Deployment,
                                                          batch_stack: Deployment) -> None:
    options = _options(batch_stack)
    assert options["mlops.prediction_log"] == env_of(container(batch_stack, "serving"))[
        "PREDICTION_LOG"]
    assert options["mlops.monitor_dir"] == "/tmp/mlops-monitor"
    assert options["mlops.github_repository"] == REPO
    # without MWAA nothing would read a token: the stack makes no secret for it
    assert [s.name for s in stack.of_type(SECRET) if s.name.endswith("github-token")] == []


def test_the_policy_pack_passes_on_the_batch_stack(batch_stack: Deployment) -> None:
    from pulumi_policy import EnforcementLevel

    found = [f"{name}: {reason}" for name, _, validate, level in rules.RULES
             if level != EnforcementLevel.ADVISORY
             for reason in rule_violations(batch_stack, validate)]
    assert found == []


def test_the_token_secret_is_a_stateful_resource_the_pack_protects(
        batch_stack: Deployment) -> None:
    token = batch_stack.named(SECRET, "orchestration-github-token")
    unprotected: Res = replace(token, protect=False)
    assert rule_violations(Deployment([unprotected]), rules.validate_stateful_protected)
