"""The stack's settings: read once from the stack config, validated before any resource exists.

A missing or contradictory value stops the program with one line that names the config key
and how to set it, instead of a provider error halfway through an update.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

NAMESPACE = "mlops"
REPO_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
ENVIRONMENT_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# Fargate's valid (cpu, memory) pairs for the sizes this stack offers.
FARGATE_MEMORY = {
    256: (512, 1024, 2048),
    512: (1024, 2048, 3072, 4096),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
}

ConfigGetter = Callable[[str], str | None]
PROFILES = ("default", "small-team")
HOURS_PATTERN = re.compile(r"^(MON|TUE|WED|THU|FRI|SAT|SUN)-(MON|TUE|WED|THU|FRI|SAT|SUN) "
                           r"([01]?\d|2[0-3])-([01]?\d|2[0-3])$")
MAX_SERVING_SOURCES = 4
"""A listener rule holds at most 5 condition values: the host, and 4 source ranges."""


class ConfigError(Exception):
    """A stack config value is missing or invalid; the message is one line."""


@dataclass(frozen=True)
class CiEnvironments:
    """The GitHub environment of each workflow job that assumes an AWS role; the role's
    trust is pinned to it. The registry's workflows (the gate, promote, rollback, drift)
    assume no role: their MLflow logins are environment secrets (docs/infra.md)."""

    infra: str = "infra"
    dags: str = "dags"
    serving_image: str = "serving-image"


@dataclass(frozen=True)
class ServingHours:
    """When the serving API runs: days and hours (24 h clock) in a time zone; outside them
    it is scaled to zero tasks by a scheduled action."""

    first_day: str = "MON"
    last_day: str = "FRI"
    start_hour: int = 7
    end_hour: int = 19
    timezone: str = "UTC"


@dataclass(frozen=True)
class StackSettings:
    """Everything the program needs, with the defaults the cost estimate in docs/infra.md uses."""

    prefix: str
    github_repo: str
    state_bucket: str
    certificate_arn: str | None = None
    tracking_host: str | None = None
    serving_host: str | None = None
    allow_plain_http: bool = False
    vpc_cidr: str = "10.40.0.0/16"
    high_availability: bool = False
    # who may reach the tracking load balancer besides the stack's own NAT addresses
    tracking_allowed_cidrs: tuple[str, ...] = ()
    serving_public: bool = False
    serving_allowed_cidrs: tuple[str, ...] = ()
    db_instance_class: str = "db.t4g.micro"
    db_allocated_storage_gb: int = 20
    db_backup_retention_days: int = 7
    db_deletion_protection: bool = True
    tracking_cpu: int = 512
    tracking_memory: int = 1024
    serving_cpu: int = 512
    serving_memory: int = 1024
    serving_min_tasks: int = 1
    serving_max_tasks: int = 3
    serving_cpu_target: float = 60.0
    # immutable tags (e.g. the git commit) or digests (sha256:...), never `latest`
    tracking_image: str = ""
    serving_image: str = ""
    model_name: str = "diamond-price"
    experiment: str = "mlops-gitops"
    """The experiment training logs to (the pipeline's MLOPS_EXPERIMENT), pre-created."""
    admin_username: str = "admin"
    log_retention_days: int = 30
    # Airflow (MWAA) and Spark (EMR Serverless) for batch work: off by default (cost)
    orchestration: bool = False
    # the EMR jobs' image (infra/spark_image), an immutable tag or digest in the stack's
    # spark-job repository; unset: the release's own image and the packed environment
    spark_image: str | None = None
    # requests per 5 minutes from one address before the tracking load balancer blocks it
    tracking_rate_limit: int = 1000
    # the roles trust one workflow file on main, not only its environment: needs the
    # repository's OIDC subject template to include job_workflow_ref (docs/infra.md)
    oidc_workflow_subjects: bool = False
    github_oidc_provider_arn: str | None = None
    pulumi_secrets_key_arn: str | None = None
    ci_environments: CiEnvironments = field(default_factory=CiEnvironments)
    # The small-team profile (docs/infra.md, "A cheaper stack for a small team"): each of
    # these can also be set on its own.
    profile: str = "default"
    shared_load_balancer: bool = False  # one ALB, routing by host to tracking and serving
    nat_instance: bool = False  # a t4g.nano NAT instance instead of a NAT gateway
    fargate_spot: bool = False  # both services on Fargate Spot
    serving_hours: ServingHours | None = None  # None: serving runs around the clock

    @property
    def https(self) -> bool:
        return self.certificate_arn is not None

    @property
    def effective_serving_cidrs(self) -> tuple[str, ...]:
        """Who may reach the serving load balancer: the VPC itself unless configured."""
        return self.serving_allowed_cidrs or (self.vpc_cidr,)


def _key(name: str) -> str:
    return f"{NAMESPACE}:{name}"


def _require(get: ConfigGetter, name: str, hint: str) -> str:
    value = get(name)
    if value is None or not value.strip():
        raise ConfigError(
            f"missing required config {_key(name)}: set it with "
            f"`pulumi config set {_key(name)} {hint}`"
        )
    return value.strip()


def _bool(get: ConfigGetter, name: str, default: bool) -> bool:
    value = get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise ConfigError(f"config {_key(name)} must be true or false, got {value!r}")


def _int(get: ConfigGetter, name: str, default: int, *, minimum: int = 0) -> int:
    value = get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"config {_key(name)} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"config {_key(name)} must be at least {minimum}, got {number}")
    return number


def _cidrs(get: ConfigGetter, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = get(name)
    if value is None:
        return default
    text = value.strip()
    items = json.loads(text) if text.startswith("[") else text.split(",")
    cidrs = tuple(str(item).strip() for item in items if str(item).strip())
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr)
        except ValueError:
            raise ConfigError(f"config {_key(name)} has an invalid CIDR {cidr!r}") from None
    return cidrs


def image_ref(value: str, name: str) -> str:
    """An image the task definition pins: a digest, or a tag other than `latest`.

    The repositories are IMMUTABLE, so a tag names one image for ever; `latest` would be
    refused on its second push, and says nothing about what runs.
    """
    if DIGEST_PATTERN.match(value):
        return value
    if value == "latest" or not TAG_PATTERN.match(value):
        raise ConfigError(
            f"config {_key(name)} must be an immutable tag (e.g. the git commit) or a digest "
            f"sha256:<64 hex>, got {value!r}"
        )
    return value


def _optional(get: ConfigGetter, name: str) -> str | None:
    value = get(name)
    return value.strip() if value and value.strip() else None


def _check_size(name: str, cpu: int, memory: int) -> None:
    if memory not in FARGATE_MEMORY.get(cpu, ()):
        raise ConfigError(
            f"config {_key(name + 'Cpu')}={cpu} with {_key(name + 'Memory')}={memory} "
            "is not a Fargate size (e.g. 512 with 1024, 1024 with 2048)"
        )


def _serving_hours(get: ConfigGetter, default: ServingHours | None) -> ServingHours | None:
    value = _optional(get, "servingHours")
    timezone = _optional(get, "servingTimezone") or "UTC"
    if value is None:
        return None if default is None else ServingHours(timezone=timezone)
    if value.lower() == "always":
        return None
    match = HOURS_PATTERN.match(value.upper())
    if match is None:
        raise ConfigError(f"config {_key('servingHours')} must look like MON-FRI 7-19 (days, "
                          f"then the hours it runs) or always, got {value!r}")
    first, last, start, end = match.groups()
    if int(start) >= int(end):
        raise ConfigError(f"config {_key('servingHours')}: the start hour must come before "
                          f"the end hour, got {value!r}")
    return ServingHours(first, last, int(start), int(end), timezone)


def settings_from(get: ConfigGetter, *, project: str, stack: str) -> StackSettings:
    """Build the settings from a config getter (`pulumi.Config("mlops").get` in a real run)."""
    github_repo = _require(get, "githubRepo", "OWNER/REPO")
    if not REPO_PATTERN.match(github_repo):
        raise ConfigError(
            f"config {_key('githubRepo')} must look like OWNER/REPO, got {github_repo!r}"
        )
    state_bucket = _require(get, "stateBucket", "BUCKET (the S3 bucket of the Pulumi state)")

    certificate_arn = _optional(get, "certificateArn")
    allow_plain_http = _bool(get, "allowPlainHttp", False)
    tracking_host = _optional(get, "trackingHost")
    serving_host = _optional(get, "servingHost")
    if certificate_arn is None and not allow_plain_http:
        raise ConfigError(
            f"missing required config {_key('certificateArn')}: set an ACM certificate ARN "
            f"(with {_key('trackingHost')} and {_key('servingHost')}), or set "
            f"{_key('allowPlainHttp')} true to accept plain HTTP"
        )
    if certificate_arn is not None and (tracking_host is None or serving_host is None):
        raise ConfigError(
            f"config {_key('certificateArn')} needs {_key('trackingHost')} and "
            f"{_key('servingHost')}: the host names the certificate covers"
        )

    vpc_cidr = _optional(get, "vpcCidr") or "10.40.0.0/16"
    try:
        network = ipaddress.ip_network(vpc_cidr)
    except ValueError:
        raise ConfigError(f"config {_key('vpcCidr')} is not a CIDR: {vpc_cidr!r}") from None
    if network.prefixlen > 20:
        raise ConfigError(f"config {_key('vpcCidr')} must be /20 or larger, got {vpc_cidr}")

    environments = CiEnvironments(
        infra=_optional(get, "infraEnvironment") or CiEnvironments.infra,
        dags=_optional(get, "dagsEnvironment") or CiEnvironments.dags,
        serving_image=_optional(get, "servingImageEnvironment") or CiEnvironments.serving_image,
    )
    for env_name in (environments.infra, environments.dags, environments.serving_image):
        if not ENVIRONMENT_PATTERN.match(env_name):
            raise ConfigError(f"GitHub environment names may not contain wildcards: {env_name!r}")

    profile = (_optional(get, "profile") or "default").lower()
    if profile not in PROFILES:
        raise ConfigError(f"config {_key('profile')} must be one of {', '.join(PROFILES)}, "
                          f"got {profile!r}")
    small = profile == "small-team"

    settings = StackSettings(
        profile=profile,
        shared_load_balancer=_bool(get, "sharedLoadBalancer", small),
        nat_instance=_bool(get, "natInstance", small),
        fargate_spot=_bool(get, "fargateSpot", small),
        serving_hours=_serving_hours(get, ServingHours() if small else None),
        prefix=f"{project}-{stack}".lower(),
        github_repo=github_repo,
        state_bucket=state_bucket,
        certificate_arn=certificate_arn,
        tracking_host=tracking_host,
        serving_host=serving_host,
        allow_plain_http=allow_plain_http,
        vpc_cidr=vpc_cidr,
        high_availability=_bool(get, "highAvailability", False),
        orchestration=_bool(get, "orchestration", False),
        spark_image=(image_ref(value, "sparkImage")
                     if (value := _optional(get, "sparkImage")) else None),
        tracking_allowed_cidrs=_cidrs(get, "trackingAllowedCidrs", ()),
        serving_public=_bool(get, "servingPublic", False),
        serving_allowed_cidrs=_cidrs(get, "servingAllowedCidrs", ()),
        db_instance_class=_optional(get, "dbInstanceClass") or "db.t4g.micro",
        db_allocated_storage_gb=_int(get, "dbAllocatedStorageGb", 20, minimum=20),
        db_backup_retention_days=_int(get, "dbBackupRetentionDays", 7, minimum=1),
        db_deletion_protection=_bool(get, "dbDeletionProtection", True),
        tracking_cpu=_int(get, "trackingCpu", 512, minimum=256),
        tracking_memory=_int(get, "trackingMemory", 1024, minimum=512),
        serving_cpu=_int(get, "servingCpu", 512, minimum=256),
        serving_memory=_int(get, "servingMemory", 1024, minimum=512),
        serving_min_tasks=_int(get, "servingMinTasks", 1, minimum=1),
        serving_max_tasks=_int(get, "servingMaxTasks", 3, minimum=1),
        serving_cpu_target=float(_int(get, "servingCpuTarget", 60, minimum=10)),
        tracking_image=image_ref(_require(get, "trackingImage", "TAG_OR_DIGEST"), "trackingImage"),
        serving_image=image_ref(_require(get, "servingImage", "TAG_OR_DIGEST"), "servingImage"),
        model_name=_optional(get, "modelName") or "diamond-price",
        experiment=_optional(get, "experiment") or "mlops-gitops",
        tracking_rate_limit=_int(get, "trackingRateLimit", 1000, minimum=100),
        oidc_workflow_subjects=_bool(get, "oidcWorkflowSubjects", False),
        admin_username=_optional(get, "adminUsername") or "admin",
        log_retention_days=_int(get, "logRetentionDays", 30, minimum=1),
        github_oidc_provider_arn=_optional(get, "githubOidcProviderArn"),
        pulumi_secrets_key_arn=_optional(get, "pulumiSecretsKeyArn"),
        ci_environments=environments,
    )
    _check_size("tracking", settings.tracking_cpu, settings.tracking_memory)
    _check_size("serving", settings.serving_cpu, settings.serving_memory)
    if settings.serving_max_tasks < settings.serving_min_tasks:
        raise ConfigError(
            f"config {_key('servingMaxTasks')} ({settings.serving_max_tasks}) is below "
            f"{_key('servingMinTasks')} ({settings.serving_min_tasks})"
        )
    if settings.shared_load_balancer and (tracking_host is None or serving_host is None):
        raise ConfigError(
            f"config {_key('sharedLoadBalancer')} routes by host name: set "
            f"{_key('trackingHost')} and {_key('servingHost')}"
        )
    if settings.shared_load_balancer and settings.high_availability:
        raise ConfigError(f"config {_key('sharedLoadBalancer')} is for one NAT address: "
                          f"turn {_key('highAvailability')} off")
    if settings.shared_load_balancer and (
            len(settings.effective_serving_cidrs) + 1 > MAX_SERVING_SOURCES):
        raise ConfigError(
            f"config {_key('servingAllowedCidrs')}: with {_key('sharedLoadBalancer')} at most "
            f"{MAX_SERVING_SOURCES - 1} ranges (the NAT address is added)")
    if settings.nat_instance and settings.high_availability:
        raise ConfigError(f"config {_key('natInstance')} is one instance: turn "
                          f"{_key('highAvailability')} off")
    if len(settings.prefix) > 24:
        raise ConfigError(
            f"project and stack name {settings.prefix!r} are too long for AWS names: "
            "keep them under 25 characters together"
        )
    return settings
