"""`mlops train` on a terminal shows its stages; with --json stdout stays one JSON object.

stderr is a real pseudo-terminal (what a person's shell gives the command), stdout a
pipe (what `$(mlops train)` or `| jq` gives it). MLflow is a SQLite file: the display,
not the server, is under test.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from pathlib import Path

import mlflow
import pytest

from tests.utils import MLOPS, REPO
from tests.utils.cards import write_card

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def train_on_a_terminal(tmp_path: Path, *args: str, estimator: str = "dummy"
                        ) -> tuple[int, str, str]:
    """(exit code, stdout, what the terminal showed) of `mlops train` with stderr on a pty."""
    card = write_card(tmp_path, "terminal-progress")
    env = {key: value for key, value in os.environ.items() if key not in {"CI", "GITHUB_ACTIONS"}}
    env.update({"TERM": "xterm-256color", "COLUMNS": "120",
                "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
                "MLOPS_EXPERIMENT": "terminal"})
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen([MLOPS, "train", "--estimator", estimator, "--card",
                                    str(card), *args], stdout=subprocess.PIPE, stderr=follower,
                                   stdin=subprocess.DEVNULL, env=env, cwd=REPO)
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the command closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        assert process.stdout is not None
        out = process.stdout.read().decode()
        code = process.wait(timeout=300)
    finally:
        os.close(leader)
    return code, out, ANSI.sub("", shown.decode(errors="replace"))


def test_stages_are_drawn_on_the_terminal_and_stdout_keeps_the_run_id(tmp_path: Path) -> None:
    code, out, shown = train_on_a_terminal(tmp_path)
    assert code == 0, shown
    assert re.fullmatch(r"[0-9a-f]{32}\n", out)
    for stage in ("data: read, validate, cleanse, split", "fitting dummy on",
                  "logging the run and the model"):
        assert stage in shown, shown
    assert "done" in shown


def test_with_json_the_terminal_gets_lines_and_stdout_one_object(tmp_path: Path) -> None:
    code, out, shown = train_on_a_terminal(tmp_path, "--json")
    assert code == 0, shown
    assert json.loads(out)["estimator"] == "dummy"
    assert "fitting dummy" not in shown
    assert "trained dummy:" in shown


def test_boosting_shows_a_bar_of_its_iterations_and_logs_the_same_params(
        tmp_path: Path) -> None:
    code, out, shown = train_on_a_terminal(tmp_path, "--param", "max_iter=15",
                                           "--param", "early_stopping=false",
                                           estimator="hist_gradient_boosting")
    assert code == 0, shown
    assert "boosting iterations" in shown, shown
    assert "15/15" in shown, shown
    assert "[15/15]" not in shown  # the estimator's own lines are read, not printed
    run = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(out.strip())
    assert run.data.params["estimator.verbose"] == "0"
