"""The embedded default: `mlflow server` on SQLite with a local artifact folder."""

from __future__ import annotations

from pathlib import Path

from pipeline.localstack.process import ManagedProcess, venv_bin

# MLflow 3's server also starts a job runner with a dozen huey workers for GenAI
# features this product does not use; off, the server starts faster, uses less memory
# and stops at once on SIGTERM.
MLFLOW_SERVER_ENV = (("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),)

def mlflow_server(*, home: Path, host: str, port: int) -> tuple[ManagedProcess, list[str]]:
    """The embedded default: SQLite backend and an artifact folder under `home`."""
    home = home.resolve()
    (home / "artifacts").mkdir(parents=True, exist_ok=True)
    command = [
        venv_bin("mlflow"), "server",
        "--host", host, "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination", str(home / "artifacts"),
        "--serve-artifacts",
    ]
    service = ManagedProcess(name="mlflow", home=home, health_url=f"http://{host}:{port}/health",
                             env=MLFLOW_SERVER_ENV)
    return service, command

