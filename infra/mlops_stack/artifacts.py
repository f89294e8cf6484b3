"""Artifacts: the S3 bucket behind MLflow's proxied artifact store.

Public access blocked, objects owned by the bucket owner, encrypted at rest, versioned
(a deleted model can be recovered for 30 days), and a policy that refuses plain HTTP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mlops_stack import documents

NONCURRENT_VERSION_DAYS = 30
PREDICTION_LOG_PREFIX = "predictions"
"""Where the serving tasks write the prediction log in the artifact bucket (beside MLflow's
`artifacts/`): they may only put files there, the monitor may only read them."""


def prediction_log_uri(bucket_name: str) -> str:
    """The log's location as PREDICTION_LOG takes it: `s3://<bucket>/predictions`."""
    return f"s3://{bucket_name}/{PREDICTION_LOG_PREFIX}"


@dataclass
class ArtifactStoreArgs:
    bucket_prefix: str
    tags: dict[str, str] | None = None


class ArtifactStore(pulumi.ComponentResource):
    """A private, encrypted, versioned bucket reachable only over TLS."""

    def __init__(
        self, name: str, args: ArtifactStoreArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:infra:ArtifactStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket_prefix=args.bucket_prefix,
            force_destroy=False,
            tags=args.tags,
            # stateful: `pulumi destroy` stops here until unprotected (docs/infra.md, teardown)
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=True)),
        )
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=self.bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    ),
                    bucket_key_enabled=True,
                )
            ],
            opts=child,
        )
        self.versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"
            ),
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-old-versions",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=NONCURRENT_VERSION_DAYS
                    ),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=7
                    ),
                )
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.versioning]),
        )
        self.policy = aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=self.bucket.id,
            policy=self.bucket.arn.apply(
                lambda arn: json.dumps(documents.tls_only_bucket_policy(arn))
            ),
            # The public access block must exist first, or S3 may judge the policy alone.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.public_access_block]),
        )

        self.bucket_name = self.bucket.bucket
        self.bucket_arn = self.bucket.arn
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn})
