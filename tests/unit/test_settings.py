"""A login inside MLFLOW_TRACKING_URI is refused where settings are read, in one line.

The URI travels into run links, verdicts (the JSON file and the PR comment), `/model`,
`/ready` and error messages; with `https://user:password@host` every one of them would
publish the password. MLflow takes the login from MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD, so the URI never needs one.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.cli import run
from tests.utils import REPO

SECRET = "s3cret-pa55"
URIS = (f"https://alice:{SECRET}@mlflow.example.com", f"http://alice:{SECRET}@127.0.0.1:5000",
        f"https://{SECRET}@mlflow.example.com/path")


@pytest.mark.parametrize("uri", URIS)
@pytest.mark.parametrize("argv", [["status"], ["gate"], ["promote"], ["drift"], ["registry-check"],
                                  ["train", "--estimator", "dummy"]])
def test_every_command_refuses_a_login_in_the_tracking_uri(
        uri: str, argv: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert run(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines == ["error: MLFLOW_TRACKING_URI: holds a user name or password; set "
                     "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead (a URI is "
                     "shown in links, verdicts and errors)"]
    assert SECRET not in captured.out + captured.err


@pytest.mark.parametrize("uri", URIS)
def test_the_server_refuses_to_start_with_a_login_in_the_tracking_uri(uri: str) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MODEL_NAME": "m"}
    done = subprocess.run([sys.executable, "-m", "serving"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: MLFLOW_TRACKING_URI: holds a user name or password; set "
        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead"]
    assert SECRET not in done.stdout + done.stderr


def test_a_uri_without_a_login_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.settings import load_settings
    from serving.settings import load_settings as serving_settings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com:8443/x")
    monkeypatch.setenv("MODEL_NAME", "m")
    assert load_settings().mlflow_tracking_uri == "https://mlflow.example.com:8443/x"
    assert serving_settings().mlflow_tracking_uri == "https://mlflow.example.com:8443/x"
