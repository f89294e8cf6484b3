"""Orchestration: Airflow on Amazon MWAA and Spark on EMR Serverless, for batch work.

MWAA runs the repository's DAGs (training on a schedule, batch inference) in the private
subnets with a private web server; its DAGs and requirements come from a private,
encrypted, versioned bucket. EMR Serverless runs `mlops score --engine spark` on big
batches: its job role reads only the input prefix and writes only the output prefix of
the batch bucket. It also runs `mlops train` where the training data is, under a role
of its own that reads only the training prefix. Each role names the actions it needs,
on the resources it needs.

The monitoring DAG reads the prediction log (`predictions/` of the artifact bucket) and,
on drift, the training DAG opens a pull request with a GitHub token: the Airflow variable
`mlops_github_token`, which MWAA's secrets backend reads from one Secrets Manager secret
whose value an operator puts. The execution role reads that secret and that prefix, no
other secret and no other key of the artifact bucket.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import pulumi
import pulumi_aws as aws

from mlops_stack import documents, versions
from mlops_stack.artifacts import PREDICTION_LOG_PREFIX, ArtifactStore, ArtifactStoreArgs
from mlops_stack.web_service import image_reference, image_repository

BATCH_INPUT_PREFIX = "input/"
BATCH_OUTPUT_PREFIX = "scores/"
TRAINING_PREFIX = "training/"
"""Where the training data lies in the batch bucket (a card's `data.source` under it)."""
DAGS_PREFIX = "dags"
REQUIREMENTS_KEY = "requirements.txt"
EMR_PREFIX = "emr/"
"""Where the Spark job's packed environment lives in the DAGs bucket (docs/orchestration.md)."""
ENTRY_POINT_KEY = f"{DAGS_PREFIX}/emr/mlops_entry.py"
"""The job's entry point, as the DAGs sync uploads dags/emr/mlops_entry.py."""
AIRFLOW_VERSION = versions.airflow_version()
"""What MWAA runs: the apache-airflow pin of dags/requirements.txt, which the DAG tests'
environment installs (versions.py)."""
DAG_REQUIREMENTS = versions.DAG_REQUIREMENTS
JOB_PYTHON = "/opt/mlops/bin/python"
"""The Python environment of the EMR jobs' image (infra/spark_image/Dockerfile)."""
GITHUB_TOKEN_VARIABLE = "mlops_github_token"  # noqa: S105 - a variable name, no value
"""The Airflow variable the training DAG reads the pull request's token from."""
SECRETS_BACKEND = "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"
MONITOR_DIR = "/tmp/mlops-monitor"  # noqa: S108 - the worker's own scratch space
"""Where the monitoring DAG leaves each run's report on the worker that ran it: writable
wherever a task lands, and gone with the worker (the summary travels by XCom and in the
pull request; reports that outlive a worker need an S3 folder, docs/monitoring.md)."""
NOT_ON_MWAA = re.compile(r"^(apache-airflow|pytest|moto|flask|flask-cors)==", re.IGNORECASE)
"""Lines of dags/requirements.txt MWAA must not get: Airflow itself (MWAA installs it) and
the DAG tests' own tools."""


def mwaa_requirements(text: str) -> str:
    """MWAA's requirements.txt: the DAGs' pins, less Airflow and the test tools."""
    keep = [line for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#") and not NOT_ON_MWAA.match(line)]
    return "\n".join(keep) + "\n"


class JobPolicy(Protocol):
    """Writes a job role's policy document from the bucket, its login's secret and the DAGs
    bucket ARNs."""

    def __call__(self, bucket_arn: str, tracking_secret_arn: str, *,
                 dags_bucket_arn: str) -> dict[str, object]: ...


@dataclass
class OrchestrationArgs:
    prefix: str
    region: str
    account_id: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    airflow_login_secret_arn: pulumi.Input[str]
    train_login_secret_arn: pulumi.Input[str]
    score_login_secret_arn: pulumi.Input[str]
    github_repository: str
    """owner/name: the repository the retraining pull request is opened on."""
    prediction_log: pulumi.Input[str]
    """`s3://<artifact bucket>/predictions`, where the serving tasks write the log."""
    prediction_log_bucket_arn: pulumi.Input[str]
    """The artifact bucket, whose PREDICTION_LOG_PREFIX the monitoring DAG reads."""
    tracking_uri: pulumi.Input[str] = ""
    serving_url: pulumi.Input[str] = ""
    spark_image: str | None = None
    """The jobs' image in the spark-job repository (a tag or digest); None: the release's."""
    boundary_arn: pulumi.Input[str] | None = None
    airflow_version: str = AIRFLOW_VERSION
    environment_class: str = "mw1.small"
    max_workers: int = 2
    emr_release: str = versions.EMR_RELEASE
    spark_max_vcpu: int = 16
    spark_max_memory_gb: int = 64
    tags: dict[str, str] | None = None


class Orchestration(pulumi.ComponentResource):
    """The Airflow environment, the Spark application, their buckets and their roles."""

    def __init__(self, name: str, args: OrchestrationArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:infra:Orchestration", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self)
        self._name, self._args = name, args
        self.dags = ArtifactStore(f"{name}-dags", ArtifactStoreArgs(
            bucket_prefix=f"{args.prefix}-airflow-", tags=args.tags), opts=self._child)
        self.batch = ArtifactStore(f"{name}-batch", ArtifactStoreArgs(
            bucket_prefix=f"{args.prefix}-batch-", tags=args.tags), opts=self._child)
        self.security_group = self._security_group()
        self.spark_repository, self.spark_repository_policy = self._spark_repository()
        self.spark = self._spark_application()
        self.job_role = self._job_role()
        self.train_job_role = self._train_job_role()
        self.github_token = self._github_token()
        self.execution_role, self.execution_policy = self._execution_role()
        self.requirements = aws.s3.BucketObjectv2(
            f"{name}-requirements", bucket=self.dags.bucket.id, key=REQUIREMENTS_KEY,
            content=mwaa_requirements(DAG_REQUIREMENTS.read_text()), content_type="text/plain",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.dags.versioning]))
        self.airflow = self._airflow()
        self.register_outputs({
            "dags_bucket": self.dags.bucket_name, "batch_bucket": self.batch.bucket_name,
            "spark_application_id": self.spark.id, "job_role_arn": self.job_role.arn,
            "train_job_role_arn": self.train_job_role.arn,
            "airflow_webserver_url": self.airflow.webserver_url,
            "spark_repository_url": self.spark_repository.repository_url,
            "github_token_secret_arn": self.github_token.arn,
        })

    def _security_group(self) -> aws.ec2.SecurityGroup:
        """MWAA's workers talk to each other (self), and out over HTTPS through the NAT."""
        group = aws.ec2.SecurityGroup(
            f"{self._name}-sg", vpc_id=self._args.vpc_id,
            description="MWAA and EMR Serverless: each other, and HTTPS out",
            tags=self._args.tags, opts=self._child)
        aws.vpc.SecurityGroupIngressRule(
            f"{self._name}-sg-self", security_group_id=group.id,
            referenced_security_group_id=group.id, ip_protocol="-1",
            description="MWAA components talk to each other", opts=self._child)
        aws.vpc.SecurityGroupEgressRule(
            f"{self._name}-sg-self-out", security_group_id=group.id,
            referenced_security_group_id=group.id, ip_protocol="-1",
            description="to each other", opts=self._child)
        aws.vpc.SecurityGroupEgressRule(
            f"{self._name}-sg-https-out", security_group_id=group.id, cidr_ipv4="0.0.0.0/0",
            ip_protocol="tcp", from_port=443, to_port=443,
            description="AWS APIs, the tracking and serving load balancers", opts=self._child)
        return group

    def _spark_repository(self) -> tuple[aws.ecr.Repository, aws.ecr.RepositoryPolicy]:
        """The jobs' image repository, which EMR Serverless may pull from for the stack's
        applications only (the policy AWS documents for custom images)."""
        args = self._args
        repository = image_repository(f"{self._name}-spark-repo",
                                      repo_name=f"{args.prefix}/spark-job",
                                      tags=args.tags or {}, opts=self._child)
        policy = aws.ecr.RepositoryPolicy(
            f"{self._name}-spark-repo-policy", repository=repository.name,
            policy=json.dumps(emr_pull_policy(region=args.region, account_id=args.account_id)),
            opts=self._child)
        return repository, policy

    def _spark_application(self) -> aws.emrserverless.Application:
        """Spark in the private subnets; on the jobs' image once one is configured (EMR
        pulls it when the application is created or updated, so after the pull policy)."""
        args = self._args
        image = None
        if args.spark_image:
            image = aws.emrserverless.ApplicationImageConfigurationArgs(
                image_uri=self.spark_repository.repository_url.apply(
                    lambda url: image_reference(url, args.spark_image or "")))
        return aws.emrserverless.Application(
            f"{self._name}-spark", name=f"{args.prefix}-spark", release_label=args.emr_release,
            type="spark", image_configuration=image,
            maximum_capacity=aws.emrserverless.ApplicationMaximumCapacityArgs(
                cpu=f"{args.spark_max_vcpu} vCPU", memory=f"{args.spark_max_memory_gb} GB"),
            auto_stop_configuration=aws.emrserverless.ApplicationAutoStopConfigurationArgs(
                enabled=True, idle_timeout_minutes=15),
            network_configuration=aws.emrserverless.ApplicationNetworkConfigurationArgs(
                subnet_ids=list(args.private_subnet_ids),
                security_group_ids=[self.security_group.id]),
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.spark_repository_policy]))

    def _job_role(self) -> aws.iam.Role:
        """The Spark job: the input prefix read, the output prefix written, its login."""
        return self._emr_role("spark-job", spark_job_policy, self._args.score_login_secret_arn)

    def _train_job_role(self) -> aws.iam.Role:
        """The training job: the training prefix read, its login, nothing else."""
        return self._emr_role("train-job", train_job_policy, self._args.train_login_secret_arn)

    def _emr_role(self, kind: str, policy_for: JobPolicy,
                  login_secret_arn: pulumi.Input[str]) -> aws.iam.Role:
        """A role EMR Serverless jobs assume, with the one inline policy `policy_for` writes
        from the batch bucket, the job's own tracking login and the DAGs bucket."""
        role = aws.iam.Role(
            f"{self._name}-{kind}", name=f"{self._args.prefix}-{kind}",
            assume_role_policy=json.dumps(_assumed_by("emr-serverless.amazonaws.com")),
            permissions_boundary=self._args.boundary_arn,
            tags=self._args.tags, opts=self._child)
        policy = pulumi.Output.all(bucket=self.batch.bucket_arn, dags=self.dags.bucket_arn,
                                   secret=login_secret_arn).apply(
            lambda a: json.dumps(policy_for(a["bucket"], a["secret"],
                                            dags_bucket_arn=a["dags"])))
        aws.iam.RolePolicy(f"{self._name}-{kind}-policy", role=role.id, policy=policy,
                           opts=self._child)
        return role

    def _github_token(self) -> aws.secretsmanager.Secret:
        """The retraining pull request's GitHub token, under the name the secrets backend
        looks the variable up by; its value is put by an operator (docs/infra.md), never by
        the stack."""
        args = self._args
        return aws.secretsmanager.Secret(
            f"{self._name}-github-token",
            name=f"{variables_prefix(args.prefix)}/{GITHUB_TOKEN_VARIABLE}",
            description=f"GitHub token of the retraining pull requests on "
                        f"{args.github_repository} (put by the operator)",
            recovery_window_in_days=7, tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, protect=True))

    def _execution_role(self) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        args = self._args
        environment = f"{args.prefix}-airflow"
        role = aws.iam.Role(
            f"{self._name}-airflow-exec", name=f"{args.prefix}-airflow-exec",
            assume_role_policy=json.dumps(_assumed_by("airflow.amazonaws.com",
                                                      "airflow-env.amazonaws.com")),
            permissions_boundary=args.boundary_arn,
            tags=args.tags, opts=self._child)
        policy = pulumi.Output.all(
            dags=self.dags.bucket_arn, app=self.spark.arn, job_role=self.job_role.arn,
            train_role=self.train_job_role.arn, secret=args.airflow_login_secret_arn,
            token=self.github_token.arn, log_bucket=args.prediction_log_bucket_arn,
        ).apply(lambda a: json.dumps(airflow_policy(
                region=args.region, account_id=args.account_id, environment=environment,
                dags_bucket_arn=a["dags"], application_arn=a["app"],
                job_role_arns=[a["job_role"], a["train_role"]],
                tracking_secret_arn=a["secret"], github_token_secret_arn=a["token"],
                prediction_log_bucket_arn=a["log_bucket"])))
        attached = aws.iam.RolePolicy(f"{self._name}-airflow-exec-policy", role=role.id,
                                      policy=policy, opts=self._child)
        return role, attached

    def _airflow(self) -> aws.mwaa.Environment:
        """The environment, created only once its role may act and its bucket is ready
        (MWAA checks both when it is created, and fails otherwise)."""
        args = self._args
        ready = [self.execution_policy, self.dags.versioning, self.dags.public_access_block,
                 self.requirements]
        return aws.mwaa.Environment(
            f"{self._name}-airflow", name=f"{args.prefix}-airflow",
            airflow_version=args.airflow_version, environment_class=args.environment_class,
            max_workers=args.max_workers, source_bucket_arn=self.dags.bucket_arn,
            dag_s3_path=DAGS_PREFIX, requirements_s3_path=REQUIREMENTS_KEY,
            requirements_s3_object_version=self.requirements.version_id,
            execution_role_arn=self.execution_role.arn, webserver_access_mode="PRIVATE_ONLY",
            airflow_configuration_options=self._emr_settings(),
            network_configuration=aws.mwaa.EnvironmentNetworkConfigurationArgs(
                subnet_ids=list(args.private_subnet_ids)[:2],
                security_group_ids=[self.security_group.id]),
            logging_configuration=aws.mwaa.EnvironmentLoggingConfigurationArgs(
                task_logs=aws.mwaa.EnvironmentLoggingConfigurationTaskLogsArgs(
                    enabled=True, log_level="INFO"),
                scheduler_logs=aws.mwaa.EnvironmentLoggingConfigurationSchedulerLogsArgs(
                    enabled=True, log_level="WARNING")),
            tags=args.tags, opts=pulumi.ResourceOptions(parent=self, depends_on=ready))


    def _emr_settings(self) -> pulumi.Output[dict[str, str]]:
        """What the DAGs read (AIRFLOW__MLOPS__* on the workers): the tracking server and the
        secret of Airflow's own login, the serving API; for the emr-serverless engines the
        application, the job roles, the secrets of their logins (names, never values), the
        entry point and the Spark settings of the jobs' Python; for the monitoring loop the
        prediction log, the report folder and the pull request's repository. And the
        secrets backend that answers the one variable `mlops_github_token` (secrets.*)."""
        args = self._args
        return pulumi.Output.all(
            app=self.spark.id, role=self.job_role.arn, train_role=self.train_job_role.arn,
            bucket=self.dags.bucket_name, tracking=args.tracking_uri, serving=args.serving_url,
            airflow_login=args.airflow_login_secret_arn, score_login=args.score_login_secret_arn,
            train_login=args.train_login_secret_arn,
            prediction_log=args.prediction_log).apply(lambda a: {
                **secrets_backend_settings(args.prefix),
                "mlops.prediction_log": a["prediction_log"],
                "mlops.monitor_dir": MONITOR_DIR,
                "mlops.github_repository": args.github_repository,
                "mlops.tracking_uri": a["tracking"],
                "mlops.tracking_login_secret_arn": a["airflow_login"],
                "mlops.serving_url": a["serving"],
                "mlops.emr_application_id": a["app"],
                "mlops.emr_job_role_arn": a["role"],
                "mlops.emr_login_secret_arn": a["score_login"],
                "mlops.emr_train_job_role_arn": a["train_role"],
                "mlops.emr_train_login_secret_arn": a["train_login"],
                "mlops.emr_entry_point": f"s3://{a['bucket']}/{ENTRY_POINT_KEY}",
                "mlops.emr_spark_parameters": emr_spark_parameters(
                    a["bucket"], image=bool(args.spark_image)),
            })


def variables_prefix(prefix: str) -> str:
    """Where the secrets backend looks Airflow variables up: `<prefix>/airflow/variables`,
    inside the stack's own secret names (the deploy role manages `<prefix>/*`)."""
    return f"{prefix}/airflow/variables"


def secrets_backend_settings(prefix: str) -> dict[str, str]:
    """MWAA's documented Secrets Manager backend, asked for the one variable the DAGs keep
    there: no connection or configuration lookups, and no other variable name reaches
    Secrets Manager (each would be a call the execution role may not make)."""
    return {
        "secrets.backend": SECRETS_BACKEND,
        "secrets.backend_kwargs": json.dumps({
            "connections_prefix": None,
            "variables_prefix": variables_prefix(prefix),
            "variables_lookup_pattern": f"^{GITHUB_TOKEN_VARIABLE}$",
            "config_prefix": None,
        }),
    }


def emr_spark_parameters(dags_bucket: str, *, image: bool = False) -> str:
    """spark-submit settings that run the job on its Python: the jobs' image's environment
    (`image`), else a packed environment uploaded beside the DAGs (docs/orchestration.md,
    "Spark on EMR Serverless")."""
    python = JOB_PYTHON
    archives = ""
    if not image:
        python = "./environment/bin/python"
        archive = f"s3://{dags_bucket}/{EMR_PREFIX}mlops-env.tar.gz#environment"
        archives = f"--conf spark.archives={archive} "
    return (f"{archives}"
            f"--conf spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON={python} "
            f"--conf spark.emr-serverless.driverEnv.PYSPARK_PYTHON={python} "
            f"--conf spark.executorEnv.PYSPARK_PYTHON={python}")


def emr_pull_policy(*, region: str, account_id: str) -> dict[str, object]:
    """EMR Serverless may read the jobs' images, for this account's applications in this
    region only (the application's ID is not known before it exists, which needs the image)."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "EmrServerlessCustomImage", "Effect": "Allow",
        "Principal": {"Service": "emr-serverless.amazonaws.com"},
        "Action": ["ecr:BatchGetImage", "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer"],
        "Condition": {"StringLike": {
            "aws:SourceArn": f"arn:aws:emr-serverless:{region}:{account_id}:/applications/*"}}}]}


def _assumed_by(*services: str) -> dict[str, object]:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": list(services)},
        "Action": "sts:AssumeRole"}]}


def _job_code(dags_bucket_arn: str) -> dict[str, object]:
    """A job reads its own entry point and packed environment from the DAGs bucket."""
    return {"Sid": "ReadJobCode", "Effect": "Allow", "Action": ["s3:GetObject"],
            "Resource": [f"{dags_bucket_arn}/{ENTRY_POINT_KEY}",
                         f"{dags_bucket_arn}/{EMR_PREFIX}*"]}


def _tracking_login(tracking_secret_arn: str) -> dict[str, object]:
    return {"Sid": "TrackingLogin", "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"], "Resource": [tracking_secret_arn]}


def train_job_policy(bucket_arn: str, tracking_secret_arn: str, *,
                     dags_bucket_arn: str) -> dict[str, object]:
    """Read `training/`, read the tracking login (the run and its model go to the tracking
    server, which stores the artifacts), and the job's own code."""
    return {"Version": "2012-10-17", "Statement": [
        _job_code(dags_bucket_arn),
        {"Sid": "ListTrainingData", "Effect": "Allow", "Action": ["s3:ListBucket"],
         "Resource": [bucket_arn], "Condition": {"StringLike": {
             "s3:prefix": [f"{TRAINING_PREFIX}*"]}}},
        {"Sid": "ReadTrainingData", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": [f"{bucket_arn}/{TRAINING_PREFIX}*"]},
        _tracking_login(tracking_secret_arn),
    ]}


def spark_job_policy(bucket_arn: str, tracking_secret_arn: str, *,
                     dags_bucket_arn: str) -> dict[str, object]:
    """Read `input/`, write `scores/`, read the tracking login, and its own entry point
    and packed environment from the DAGs bucket."""
    return {"Version": "2012-10-17", "Statement": [
        _job_code(dags_bucket_arn),
        {"Sid": "ListBatchPrefixes", "Effect": "Allow", "Action": ["s3:ListBucket"],
         "Resource": [bucket_arn], "Condition": {"StringLike": {
             "s3:prefix": [f"{BATCH_INPUT_PREFIX}*", f"{BATCH_OUTPUT_PREFIX}*"]}}},
        {"Sid": "ReadInput", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": [f"{bucket_arn}/{BATCH_INPUT_PREFIX}*"]},
        {"Sid": "WriteScores", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                    "s3:AbortMultipartUpload"],
         "Resource": [f"{bucket_arn}/{BATCH_OUTPUT_PREFIX}*"]},
        _tracking_login(tracking_secret_arn),
    ]}


def airflow_policy(*, region: str, account_id: str, environment: str, dags_bucket_arn: str,
                   application_arn: str, job_role_arns: list[str], tracking_secret_arn: str,
                   github_token_secret_arn: str,
                   prediction_log_bucket_arn: str) -> dict[str, object]:
    """AWS's documented MWAA execution role (customer-managed bucket, AWS-owned key: its
    metrics, logs, Celery queues in MWAA's own account, and KMS only through SQS), plus
    submitting the scoring and training jobs, reading Airflow's own tracking login, the
    prediction log (the monitoring DAG) and the pull request's GitHub token (the training
    DAG). Account-level reads stay on "*", as AWS authorizes them on nothing narrower."""
    logs = f"arn:aws:logs:{region}:{account_id}:log-group:airflow-{environment}-*"
    queue = f"arn:aws:sqs:{region}:*:airflow-celery-*"  # MWAA's own queues, in its account
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "PublishMetrics", "Effect": "Allow", "Action": ["airflow:PublishMetrics"],
         "Resource": [f"arn:aws:airflow:{region}:{account_id}:environment/{environment}"]},
        {"Sid": "NoBucketListing", "Effect": "Deny", "Action": ["s3:ListAllMyBuckets"],
         "Resource": [dags_bucket_arn, f"{dags_bucket_arn}/*"]},
        {"Sid": "ReadDags", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket",
                    "s3:GetBucketLocation", "s3:GetBucketPublicAccessBlock",
                    "s3:GetEncryptionConfiguration", "s3:GetBucketVersioning"],
         "Resource": [dags_bucket_arn, f"{dags_bucket_arn}/*"]},
        {"Sid": "AccountPublicAccessBlock", "Effect": "Allow",
         "Action": ["s3:GetAccountPublicAccessBlock"], "Resource": ["*"]},
        {"Sid": "Logs", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:CreateLogGroup", "logs:PutLogEvents",
                    "logs:GetLogEvents", "logs:GetLogRecord", "logs:GetLogGroupFields",
                    "logs:GetQueryResults"],
         "Resource": [logs]},
        {"Sid": "DescribeLogGroups", "Effect": "Allow", "Action": ["logs:DescribeLogGroups"],
         "Resource": ["*"]},
        {"Sid": "Metrics", "Effect": "Allow", "Action": ["cloudwatch:PutMetricData"],
         "Resource": ["*"], "Condition": {"StringEquals": {
             "cloudwatch:namespace": "AmazonMWAA"}}},
        {"Sid": "CeleryQueues", "Effect": "Allow",
         "Action": ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ReceiveMessage",
                    "sqs:SendMessage"],
         "Resource": [queue]},
        {"Sid": "QueueEncryption", "Effect": "Allow",
         "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey", "kms:Encrypt"],
         "NotResource": [f"arn:aws:kms:*:{account_id}:key/*"],
         "Condition": {"StringLike": {"kms:ViaService": [f"sqs.{region}.amazonaws.com"]}}},
        {"Sid": "SubmitJobs", "Effect": "Allow",
         "Action": ["emr-serverless:StartApplication", "emr-serverless:StartJobRun",
                    "emr-serverless:GetJobRun", "emr-serverless:CancelJobRun",
                    "emr-serverless:GetApplication"],
         "Resource": [application_arn, f"{application_arn}/jobruns/*"]},
        {"Sid": "PassJobRoles", "Effect": "Allow", "Action": ["iam:PassRole"],
         "Resource": job_role_arns, "Condition": {"StringEquals": {
             "iam:PassedToService": "emr-serverless.amazonaws.com"}}},
        _tracking_login(tracking_secret_arn),
        *documents.prediction_log_read_statements(prediction_log_bucket_arn,
                                                  PREDICTION_LOG_PREFIX),
        {"Sid": "GithubToken", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
         "Resource": [github_token_secret_arn]},
    ]}
