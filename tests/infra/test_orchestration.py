"""Airflow (MWAA) and Spark (EMR Serverless) in the stack, as policies under mocks.

The rules are the policy pack's own functions; each is also shown failing on what it
forbids. The roles are read statement by statement: the Spark job may read the input
prefix and write the output prefix of the batch bucket, and nothing else of it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from policy import rules

from tests.infra.conftest import Deployment
from tests.infra.test_deploys import broken

ORCHESTRATION_RULES = [rules.validate_airflow_private, rules.validate_spark_in_the_vpc,
                       rules.validate_no_wildcard_actions, rules.validate_bucket_encrypted,
                       rules.validate_bucket_public_access_blocked,
                       rules.validate_bucket_tls_only, rules.validate_stateful_protected]


def _policy(stack: Deployment, name: str) -> dict[str, Any]:
    return dict(json.loads(stack.named(rules.IAM_ROLE_POLICY, name).state["policy"]))


@pytest.mark.parametrize("validate", ORCHESTRATION_RULES, ids=lambda v: v.__name__)
def test_the_batch_stack_keeps_the_rules(batch_stack: Deployment, validate: Any) -> None:
    assert broken(batch_stack, validate) == []


def test_orchestration_is_opt_in(stack: Deployment, batch_stack: Deployment) -> None:
    assert stack.of_type(rules.MWAA_ENVIRONMENT) == []
    (airflow,) = batch_stack.of_type(rules.MWAA_ENVIRONMENT)
    assert airflow.state["webserverAccessMode"] == "PRIVATE_ONLY"
    assert airflow.state["dagS3Path"] == "dags"
    private = set(batch_stack.outputs["privateSubnetIds"]) if "privateSubnetIds" in \
        batch_stack.outputs else None
    subnets = airflow.state["networkConfiguration"]["subnetIds"]
    assert len(subnets) == 2
    if private is not None:
        assert set(subnets) <= private


def test_the_dag_bucket_is_private_encrypted_and_versioned(batch_stack: Deployment) -> None:
    versioning = batch_stack.named(
        "aws:s3/bucketVersioning:BucketVersioning", "orchestration-dags-versioning")
    assert versioning.state["versioningConfiguration"]["status"] == "Enabled"
    assert batch_stack.named(rules.PUBLIC_ACCESS_BLOCK, "orchestration-dags-public-access")
    bucket = batch_stack.named(rules.S3_BUCKET, "orchestration-dags-bucket")
    assert bucket.protect


def test_the_spark_job_role_reads_input_and_writes_scores_only(batch_stack: Deployment) -> None:
    statements = {s["Sid"]: s for s in
                  _policy(batch_stack, "orchestration-spark-job-policy")["Statement"]}
    assert statements["ReadInput"]["Action"] == ["s3:GetObject"]
    assert all(r.endswith("/input/*") for r in statements["ReadInput"]["Resource"])
    assert all(r.endswith("/scores/*") for r in statements["WriteScores"]["Resource"])
    batch = [r for sid, s in statements.items() if sid not in {"ReadJobCode", "ListBatchPrefixes"}
             for r in s["Resource"] if r.startswith("arn:aws:s3")]
    assert batch
    assert all(r.endswith(("/input/*", "/scores/*")) for r in batch)
    assert statements["ListBatchPrefixes"]["Condition"]["StringLike"]["s3:prefix"] == [
        "input/*", "scores/*"]
    # Its own code, read-only: the entry point the DAGs sync uploads and its environment.
    code = statements["ReadJobCode"]
    assert code["Action"] == ["s3:GetObject"]
    assert [r.split(":::", 1)[1].split("/", 1)[1] for r in code["Resource"]] == [
        "dags/emr/mlops_entry.py", "emr/*"]


def test_the_training_job_role_reads_the_training_prefix_only(batch_stack: Deployment) -> None:
    """The training DAG's emr-serverless engine: its job reads training/ and writes no
    object at all (the run and the model go to the tracking server)."""
    statements = {s["Sid"]: s for s in
                  _policy(batch_stack, "orchestration-train-job-policy")["Statement"]}
    assert set(statements) == {"ReadJobCode", "ListTrainingData", "ReadTrainingData",
                               "TrackingLogin"}
    assert statements["ReadTrainingData"]["Action"] == ["s3:GetObject"]
    bucket = batch_stack.named(rules.S3_BUCKET, "orchestration-batch-bucket").state["arn"]
    assert statements["ReadTrainingData"]["Resource"] == [f"{bucket}/training/*"]
    assert statements["ListTrainingData"]["Condition"]["StringLike"]["s3:prefix"] == [
        "training/*"]
    actions = {a for s in statements.values() for a in s["Action"]}
    assert actions == {"s3:GetObject", "s3:ListBucket", "secretsmanager:GetSecretValue"}


def test_airflow_knows_where_to_submit_the_scoring_job(batch_stack: Deployment) -> None:
    """The inference DAG's emr-serverless engine reads these (AIRFLOW__MLOPS__*)."""
    (airflow,) = batch_stack.of_type(rules.MWAA_ENVIRONMENT)
    options = airflow.state["airflowConfigurationOptions"]
    options = options.get("value", options)  # the provider marks the options secret
    (spark,) = batch_stack.of_type(rules.EMR_SERVERLESS_APPLICATION)
    job_role = batch_stack.named(rules.IAM_ROLE, "orchestration-spark-job")
    assert options["mlops.emr_application_id"] == spark.id
    assert options["mlops.emr_job_role_arn"] == job_role.state["arn"]
    assert options["mlops.emr_train_job_role_arn"] == batch_stack.named(
        rules.IAM_ROLE, "orchestration-train-job").state["arn"]
    assert options["mlops.emr_entry_point"].endswith("/dags/emr/mlops_entry.py")
    assert "spark.archives=s3://" in options["mlops.emr_spark_parameters"]


def test_airflow_may_submit_the_job_and_pass_only_its_role(batch_stack: Deployment) -> None:
    statements = {s["Sid"]: s for s in
                  _policy(batch_stack, "orchestration-airflow-exec-policy")["Statement"]}
    roles = [batch_stack.named(rules.IAM_ROLE, name).state["arn"]
             for name in ("orchestration-spark-job", "orchestration-train-job")]
    assert statements["PassJobRoles"]["Resource"] == roles
    assert "emr-serverless:StartJobRun" in statements["SubmitJobs"]["Action"]
    assert not any("*" in a for s in statements.values() for a in s["Action"])


def test_the_rules_fail_on_what_they_forbid(batch_stack: Deployment) -> None:
    (airflow,) = batch_stack.of_type(rules.MWAA_ENVIRONMENT)
    public = replace(airflow, state={**airflow.state, "webserverAccessMode": "PUBLIC_ONLY"})
    assert broken(Deployment([public]), rules.validate_airflow_private)
    role_policy = batch_stack.named(rules.IAM_ROLE_POLICY, "orchestration-spark-job-policy")
    document = json.loads(role_policy.state["policy"])
    document["Statement"][1]["Action"] = ["s3:*"]
    widened = replace(role_policy, state={**role_policy.state, "policy": json.dumps(document)})
    assert broken(Deployment([widened]), rules.validate_no_wildcard_actions)
    (spark,) = batch_stack.of_type(rules.EMR_SERVERLESS_APPLICATION)
    outside = replace(spark, state={**spark.state, "networkConfiguration": {}})
    assert broken(Deployment([outside]), rules.validate_spark_in_the_vpc)


def test_the_dags_workflow_role_writes_the_dags_prefix_only(stack: Deployment,
                                                            batch_stack: Deployment) -> None:
    """dags.yml's role: trusted only from the `dags` environment, and it may list, write
    and delete under `dags/` of the Airflow bucket, nothing else; no role without MWAA."""
    assert "dags" not in stack.outputs["ciRoleArns"]
    role = batch_stack.named(rules.IAM_ROLE, "ci-dags")
    trust = json.loads(role.state["assumeRolePolicy"])["Statement"][0]["Condition"]
    assert trust["StringEquals"]["token.actions.githubusercontent.com:sub"].endswith(
        ":environment:dags")
    statements = {s["Sid"]: s for s in _policy(batch_stack, "ci-dags-sync")["Statement"]}
    bucket = batch_stack.named(rules.S3_BUCKET, "orchestration-dags-bucket").state["arn"]
    assert statements["WriteDags"]["Resource"] == [f"{bucket}/dags/*"]
    assert statements["ListDags"]["Resource"] == [bucket]
    assert statements["ListDags"]["Condition"]["StringLike"]["s3:prefix"] == ["dags/*"]
    assert batch_stack.outputs["ciRoleArns"]["dags"] == role.state["arn"]


def test_airflow_and_each_job_are_told_their_own_login_by_name(batch_stack: Deployment) -> None:
    """MWAA's configuration names the secret of each login (never a value: the stack has
    none), and each is the one secret its role may read: the tasks read `airflow`, the
    scoring job `emr-score`, the training job `emr-train` (dags/_tracking_login.py,
    dags/emr/mlops_entry.py)."""
    (airflow,) = batch_stack.of_type(rules.MWAA_ENVIRONMENT)
    options = airflow.state["airflowConfigurationOptions"]
    options = options.get("value", options)
    secrets = batch_stack.outputs["loginSecretArns"]
    assert options["mlops.tracking_login_secret_arn"] == secrets["airflow"]
    assert options["mlops.emr_login_secret_arn"] == secrets["emr-score"]
    assert options["mlops.emr_train_login_secret_arn"] == secrets["emr-train"]
    readable = {name: {s["Sid"]: s for s in _policy(batch_stack, name)["Statement"]}[
        "TrackingLogin"]["Resource"] for name in (
        "orchestration-airflow-exec-policy", "orchestration-spark-job-policy",
        "orchestration-train-job-policy")}
    assert readable == {"orchestration-airflow-exec-policy": [secrets["airflow"]],
                        "orchestration-spark-job-policy": [secrets["emr-score"]],
                        "orchestration-train-job-policy": [secrets["emr-train"]]}
    assert options["mlops.tracking_uri"] == batch_stack.outputs["trackingUri"]
    assert options["mlops.serving_url"] == batch_stack.outputs["servingUrl"]
