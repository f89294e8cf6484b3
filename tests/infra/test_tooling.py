"""The tracking image's entrypoint and the Pulumi runner behind `make infra-run`."""

from __future__ import annotations

import configparser
from pathlib import Path
from urllib.parse import unquote

import entrypoint as entry
import pulumi_command as runner
import pytest

ENV = {
    "DB_HOST": "db.internal",
    "DB_PORT": "3306",
    "DB_NAME": "mlflow",
    "DB_USERNAME": "mlflow",
    "DB_PASSWORD": "p@ss:w/rd%#?",
    "DB_APP_USERNAME": "mlflow_app",
    "DB_APP_PASSWORD": "app@ss:w/rd%#?",
    "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
    "MLFLOW_AUTH_ADMIN_PASSWORD": "a-long-admin-password",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-long-flask-secret",
}


def store_in(uri: str, *, database: str) -> str:
    """What auth_store.prepare_auth_store returns, without a database to prepare
    (tests/tracking_image runs the real one against MariaDB)."""
    return uri.replace(f"/{ENV['DB_NAME']}?", f"/{database}?")


def test_backend_store_uri_quotes_credentials_and_verifies_tls():
    uri = entry.backend_store_uri(ENV, ca_bundle="/ca.pem")
    assert uri.startswith("mysql+pymysql://mlflow_app:"), "the server is the application user"
    password = uri.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert unquote(password) == ENV["DB_APP_PASSWORD"]
    master = entry.backend_store_uri(ENV, ca_bundle="/ca.pem", login="DB")
    assert unquote(master.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]) == \
        ENV["DB_PASSWORD"]
    assert uri.endswith("@db.internal:3306/mlflow?charset=utf8mb4&ssl_ca=/ca.pem")


def test_auth_config_survives_configparser_and_holds_no_admin_password(tmp_path: Path):
    made: list[dict[str, object]] = []
    run_env = entry.prepare(ENV, config_path=tmp_path / "auth" / "basic_auth.ini", store=store_in,
                            app_user=lambda uri, **kw: made.append({"uri": uri, **kw}),
                            upgrade=lambda uri: made.append({"upgraded": uri}))
    assert made[0]["username"] == "mlflow_app"
    assert made[0]["databases"] == ("mlflow", "mlflow_auth")
    assert str(made[0]["uri"]).startswith("mysql+pymysql://mlflow:"), "made with the master"
    assert made[1] == {"upgraded": run_env["MLFLOW_BACKEND_STORE_URI"]}
    config_path = Path(run_env["MLFLOW_AUTH_CONFIG_PATH"])
    parser = configparser.ConfigParser()  # as MLflow reads it: with interpolation
    parser.read(config_path)
    section = parser["mlflow"]
    # the users in a database of their own on the same server, over the same TLS
    assert section["database_uri"] == store_in(run_env["MLFLOW_BACKEND_STORE_URI"],
                                               database="mlflow_auth")
    assert section["default_permission"] == "NO_PERMISSIONS"
    assert "admin_password" not in section
    assert ENV["MLFLOW_AUTH_ADMIN_PASSWORD"] not in config_path.read_text()
    assert config_path.stat().st_mode & 0o777 == 0o600
    assert run_env["MLFLOW_AUTH_ADMIN_PASSWORD"] == ENV["MLFLOW_AUTH_ADMIN_PASSWORD"]
    assert "DB_PASSWORD" not in run_env
    assert "DB_APP_PASSWORD" not in run_env


def test_entrypoint_refuses_to_start_without_its_settings(tmp_path: Path):
    env = {k: v for k, v in ENV.items() if k != "MLFLOW_AUTH_ADMIN_PASSWORD"}
    with pytest.raises(entry.EntrypointError, match="MLFLOW_AUTH_ADMIN_PASSWORD"):
        entry.prepare(env, config_path=tmp_path / "x.ini", store=store_in,
                      app_user=lambda *a, **k: None, upgrade=lambda uri: None)


def test_entrypoint_exits_2_with_one_line(monkeypatch, capsys):
    monkeypatch.setattr(entry.os, "environ", {})
    with pytest.raises(SystemExit) as stopped:
        entry.main([])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_workers_follow_the_task_size():
    from mlops_stack.tracking import workers_for

    assert workers_for(256, 512) == 1
    assert workers_for(512, 1024) == 1
    assert workers_for(1024, 2048) == 2
    assert workers_for(2048, 4096) == 4
    assert workers_for(2048, 1024) == 2  # memory caps it


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("preview", ["--policy-pack", "--diff"]),
        ("up", ["--policy-pack", "--diff", "--yes"]),
        ("refresh", ["--yes"]),
        ("destroy", ["--yes"]),
    ],
)
def test_runner_builds_one_non_interactive_pulumi_command(command, expected):
    argv = runner.pulumi_argv(command=command, stack="acme/prod")
    assert argv[:4] == ["pulumi", command, "--stack", "acme/prod"]
    assert "--non-interactive" in argv
    for flag in expected:
        assert flag in argv
    if command in {"refresh", "destroy"}:
        assert "--policy-pack" not in argv


@pytest.mark.parametrize(
    ("command", "stack"), [("import", "prod"), ("up", "prod; rm -rf /"), ("up", "")]
)
def test_runner_refuses_unknown_commands_and_odd_stack_names(command, stack):
    with pytest.raises(runner.UsageError):
        runner.pulumi_argv(command=command, stack=stack)


def test_runner_reads_stack_and_command_from_the_environment():
    args = runner.parse([], {"STACK": "prod", "COMMAND": "preview"})
    assert (args.stack, args.command) == ("prod", "preview")


def test_tracking_image_pins_mlflow_and_what_the_cloud_setup_needs():
    from tests.infra.conftest import TRACKING_IMAGE

    pins = {
        line.split("==")[0].lower(): line.split("==")[1]
        for line in (TRACKING_IMAGE / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert pins["mlflow"] == "3.17.2"
    assert {"pymysql", "boto3", "flask-wtf"} <= set(pins)
    dockerfile = (TRACKING_IMAGE / "Dockerfile").read_text()
    assert "-r requirements.txt -c constraints.txt" in dockerfile
    assert "mlops_auth.py" in dockerfile
    assert "USER 10001" in dockerfile


def test_an_up_from_the_config_does_not_roll_back_the_workflows_digest() -> None:
    """serving-image.yml deploys a digest without changing the config; an up from an older
    config is stopped, naming both images and how to proceed."""
    digest = "sha256:" + "a" * 64
    reason = runner.rollback_guard(configured="3f295fe", deployed=digest)
    assert reason is not None
    assert f"the stack serves {digest}" in reason
    assert f"pulumi config set mlops:servingImage {digest}" in reason
    assert runner.rollback_guard(configured=digest, deployed=digest) is None
    assert runner.rollback_guard(configured="3f295fe", deployed=None) is None  # first up


def test_the_runner_stops_such_an_up_before_pulumi_runs(monkeypatch, capsys) -> None:
    digest = "sha256:" + "b" * 64
    monkeypatch.delenv("SERVING_IMAGE", raising=False)
    monkeypatch.setattr(runner.shutil, "which", lambda _: "/usr/bin/pulumi")
    monkeypatch.setattr(runner, "deployed_and_configured", lambda stack: (digest, "3f295fe"))
    monkeypatch.setattr(runner.os, "execvp", lambda *a: pytest.fail("pulumi must not run"))
    with pytest.raises(SystemExit) as stopped:
        runner.main(["--stack", "prod", "--command", "up"])
    assert stopped.value.code == 2
    assert "an up would roll the service back" in capsys.readouterr().err
    ran: list[list[str]] = []
    monkeypatch.setenv("SERVING_IMAGE", digest)
    monkeypatch.setattr(runner.os, "execvp", lambda file, argv: ran.append(argv))
    runner.main(["--stack", "prod", "--command", "up"])
    assert f"mlops:servingImage={digest}" in ran[0]


def test_the_stack_reports_the_serving_image_it_deployed(stack) -> None:
    from tests.infra.conftest import SERVING_IMAGE_REF

    assert stack.outputs["servingImage"] == SERVING_IMAGE_REF
