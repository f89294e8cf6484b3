"""The serving image, built and run through the Docker SDK against a real MLflow server.

Needs a Docker daemon (`scripts/dockerd.sh start` where none runs); the PR workflow's
step does the same with curl (`make image-test`).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import TrackingServer, TrackingServers
from tests.serving.conftest import train, wait_for
from tests.utils import REPO, free_port
from tests.utils.cards import write_card

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.slow]

TAG = "mlops-serving:test"


@pytest.fixture(scope="module")
def image(docker_client: Any) -> Any:
    """Built from the repository's Dockerfile (base image pulled or stood in, cached)."""
    base = subprocess.run([str(REPO / "scripts" / "base-image.sh")], cwd=REPO,
                          capture_output=True, text=True, timeout=900, check=False)
    assert base.returncode == 0, base.stderr
    built, _ = docker_client.images.build(path=str(REPO), tag=TAG, network_mode="host",
                                          rm=True, forcerm=True, timeout=900)
    return built


@pytest.fixture(scope="module")
def registry(tracking_servers: TrackingServers,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[TrackingServer, str]:
    """The SQLite backend with a cheap Production model (the image test needs only one)."""
    tracking = tracking_servers.get("sqlite")
    name = f"image-{uuid.uuid4().hex[:8]}"
    card = write_card(tmp_path_factory.mktemp("image-card"), name)
    train(card, tracking.env, "--estimator", "ridge", "--register", "--promote")
    return tracking, name


@pytest.fixture
def container(docker_client: Any, image: Any,
              registry: tuple[TrackingServer, str]) -> Iterator[tuple[Any, str]]:
    tracking, name = registry
    port = free_port()
    running = docker_client.containers.run(
        image.id, detach=True, network_mode="host",
        environment={**tracking.env, "MODEL_NAME": name, "SERVING_HOST": "127.0.0.1",
                     "SERVING_PORT": str(port)})
    try:
        yield running, f"http://127.0.0.1:{port}"
    finally:
        running.remove(force=True)


def test_image_serves_the_production_model(container: tuple[Any, str],
                                           registry: tuple[TrackingServer, str]) -> None:
    running, url = container
    _, name = registry

    def ready() -> bool:
        running.reload()
        assert running.status == "running", running.logs(tail=20).decode()
        try:
            return requests.get(f"{url}/ready", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    wait_for(ready, what="the container to load the model", seconds=180)
    spec = requests.get(f"{url}/openapi.json", timeout=10).json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    predicted = requests.post(f"{url}/predict", json=body["example"], timeout=30)
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["model"]["name"] == name
    assert len(predicted.json()["predictions"]) == len(body["example"]["records"])
    mlflow_body = spec["paths"]["/invocations"]["post"]["requestBody"]["content"][
        "application/json"]["example"]
    invoked = requests.post(f"{url}/invocations", json=mlflow_body, timeout=30)
    assert invoked.json() == {"predictions": predicted.json()["predictions"]}
    assert requests.get(f"{url}/model", timeout=10).json()["version"] == "1"

    def healthy() -> bool:
        running.reload()
        return bool(running.attrs["State"].get("Health", {}).get("Status") == "healthy")

    wait_for(healthy, what="Docker's HEALTHCHECK to pass", seconds=90)


def test_image_runs_as_non_root_without_compilers(docker_client: Any, image: Any) -> None:
    assert image.attrs["Config"]["User"] not in ("", "root", "0")
    out = docker_client.containers.run(
        image.id, ["sh", "-c", "id -u; for c in gcc cc g++ make; do command -v $c; done; true"],
        remove=True).decode().split()
    assert out[0] != "0"
    assert out[1:] == [], f"compilers in the final image: {out[1:]}"


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run([str(hadolint), str(REPO / "Dockerfile")], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


