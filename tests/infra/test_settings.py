"""Config: required keys and contradictions stop the program with one clear line."""

from __future__ import annotations

import json

import pytest
from mlops_stack.settings import ConfigError, settings_from

GOOD = {
    "githubRepo": "acme/mlops-gitops",
    "stateBucket": "acme-pulumi-state",
    "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
    "trackingHost": "mlflow.example.com",
    "servingHost": "models.example.com",
    "trackingImage": "sha256:" + "a" * 64,
    "servingImage": "3f295fe",
}


def load(**config: str | None):
    values = {**GOOD, **config}
    return settings_from(lambda key: values.get(key), project="mlops", stack="prod")


def error_of(**config: str | None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(**config)
    message = str(caught.value)
    assert "\n" not in message, "config errors are one line"
    return message


def test_defaults_are_private_and_small():
    settings = load()
    assert settings.prefix == "mlops-prod"
    assert settings.https
    assert not settings.serving_public
    assert settings.effective_serving_cidrs == (settings.vpc_cidr,)
    assert not settings.high_availability
    assert settings.db_deletion_protection
    assert settings.ci_environments.serving_image == "serving-image"
    assert settings.tracking_rate_limit == 1000
    assert settings.tracking_allowed_cidrs == (), "the tracking server is open to no one by default"
    assert settings.ci_environments.infra == "infra"


def test_missing_repo_names_the_key_and_how_to_set_it():
    message = error_of(githubRepo=None)
    assert message.startswith("missing required config mlops:githubRepo")
    assert "pulumi config set mlops:githubRepo OWNER/REPO" in message


def test_missing_state_bucket_names_the_key():
    assert error_of(stateBucket=None).startswith("missing required config mlops:stateBucket")


def test_no_certificate_and_no_plain_http_opt_in_is_refused():
    message = error_of(certificateArn=None)
    assert "mlops:certificateArn" in message
    assert "mlops:allowPlainHttp" in message


def test_plain_http_only_when_explicitly_allowed():
    settings = load(certificateArn=None, allowPlainHttp="true")
    assert not settings.https
    assert settings.allow_plain_http


def test_certificate_needs_the_host_names_it_covers():
    assert "mlops:trackingHost" in error_of(trackingHost=None)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"githubRepo": "acme"}, "OWNER/REPO"),
        ({"githubRepo": "acme/*"}, "OWNER/REPO"),
        ({"dagsEnvironment": "dags-*"}, "wildcards"),
        ({"trackingAllowedCidrs": "10.0.0.0/33"}, "invalid CIDR"),
        ({"vpcCidr": "10.0.0.0/24"}, "/20 or larger"),
        ({"trackingCpu": "512", "trackingMemory": "8192"}, "not a Fargate size"),
        ({"servingMinTasks": "3", "servingMaxTasks": "2"}, "below"),
        ({"allowPlainHttp": "maybe"}, "true or false"),
        ({"servingMaxTasks": "many"}, "integer"),
        ({"trackingImage": "latest"}, "immutable tag"),
        ({"servingImage": "sha256:abc"}, "immutable tag"),
        ({"servingImage": None}, "mlops:servingImage"),
    ],
)
def test_invalid_values_are_refused_with_the_key(config, fragment):
    assert fragment in error_of(**config)


def test_cidr_lists_accept_json_or_commas():
    assert load(trackingAllowedCidrs='["198.51.100.0/24"]').tracking_allowed_cidrs == (
        "198.51.100.0/24",
    )
    assert load(servingAllowedCidrs="10.0.0.0/8, 192.168.0.0/16").serving_allowed_cidrs == (
        "10.0.0.0/8",
        "192.168.0.0/16",
    )


def test_program_reports_missing_config_as_one_line_run_error(monkeypatch):
    import pulumi
    from mlops_stack import program

    class EmptyConfig:
        def __init__(self, namespace: str) -> None:
            assert namespace == "mlops"

        def get(self, key: str) -> None:
            return None

    monkeypatch.setattr(pulumi, "Config", EmptyConfig)
    monkeypatch.setattr(pulumi, "get_project", lambda: "mlops")
    monkeypatch.setattr(pulumi, "get_stack", lambda: "prod")
    with pytest.raises(pulumi.RunError, match=r"^missing required config mlops:githubRepo"):
        program.main()


def test_the_example_stack_config_is_valid():
    import yaml

    from tests.infra.conftest import INFRA

    config = yaml.safe_load((INFRA / "Pulumi.example.yaml").read_text())["config"]
    values = {
        key.split(":", 1)[1]: value if isinstance(value, str) else json.dumps(value)
        for key, value in config.items()
        if key.startswith("mlops:")
    }
    settings = settings_from(values.get, project="mlops", stack="prod")
    assert settings.https
    assert settings.github_repo == "acme/mlops-gitops"
