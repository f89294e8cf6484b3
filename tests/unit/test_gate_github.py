"""The sticky PR comment against a fake GitHub REST API on loopback.

GitHub's API is the one outside service that cannot run here, so a small HTTP server
plays it: it keeps comments in memory and answers the three calls the gate makes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from pipeline.gitops.github import GitHubError, Target, upsert_comment
from pipeline.gitops.report import MARKER
from tests.utils import JsonHandler, run_mlops

TOKEN = "test-token"


@dataclass
class FakeGitHub:
    url: str
    comments: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    fail_with: int | None = None


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    state = FakeGitHub(url="")

    class Handler(JsonHandler):

        def _guard(self) -> bool:
            state.calls.append(f"{self.command} {self.path}")
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.send_json(401, {"message": "Bad credentials"})
                return False
            if state.fail_with:
                self.send_json(state.fail_with, {"message": "nope"})
                return False
            return True

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length", "0"))
            return dict(json.loads(self.rfile.read(length)))

        def do_GET(self) -> None:
            if not self._guard():
                return
            query = parse_qs(urlsplit(self.path).query)
            per_page, page = int(query["per_page"][0]), int(query["page"][0])
            self.send_json(200, state.comments[(page - 1) * per_page: page * per_page])

        def do_POST(self) -> None:
            if not self._guard():
                return
            comment = {"id": 1000 + len(state.comments), "body": self._body()["body"],
                       "html_url": f"https://github.test/o/r/pull/7#c{len(state.comments)}"}
            state.comments.append(comment)
            self.send_json(201, comment)

        def do_PATCH(self) -> None:
            if not self._guard():
                return
            comment_id = int(self.path.rsplit("/", 1)[1])
            comment = next(c for c in state.comments if c["id"] == comment_id)
            comment["body"] = self._body()["body"]
            self.send_json(200, comment)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _target(github: FakeGitHub) -> Target:
    return Target(api_url=github.url, repository="o/r", pr_number="7", token=TOKEN)


def test_the_first_report_creates_one_comment_and_reruns_edit_it(github: FakeGitHub) -> None:
    with requests.Session() as session:
        first = upsert_comment(session, _target(github), body=f"{MARKER}\nFAIL", marker=MARKER)
        second = upsert_comment(session, _target(github), body=f"{MARKER}\nPASS", marker=MARKER)
    assert (first.action, second.action) == ("created", "updated")
    assert first.comment_id == second.comment_id
    assert [c["body"] for c in github.comments] == [f"{MARKER}\nPASS"]
    assert github.calls[1].startswith("POST /repos/o/r/issues/7/comments")
    assert github.calls[-1] == f"PATCH /repos/o/r/issues/comments/{first.comment_id}"


def test_the_marked_comment_is_found_past_the_first_page(github: FakeGitHub) -> None:
    github.comments = [{"id": i, "body": f"chatter {i}"} for i in range(150)]
    github.comments.append({"id": 9999, "body": f"{MARKER}\nold report"})
    with requests.Session() as session:
        result = upsert_comment(session, _target(github), body="new report", marker=MARKER)
    assert result.action == "updated"
    assert result.comment_id == 9999
    assert github.comments[-1]["body"] == f"{MARKER}\nnew report"  # marker added
    assert len(github.comments) == 151


def test_an_api_error_is_one_line_without_the_token(github: FakeGitHub) -> None:
    github.fail_with = 403
    with requests.Session() as session, pytest.raises(GitHubError) as err:
        upsert_comment(session, _target(github), body="x", marker=MARKER)
    assert str(err.value) == "GitHub API: listing comments answered 403"


def test_mlops_pr_comment_as_the_workflow_runs_it(github: FakeGitHub, tmp_path: Path) -> None:
    report = tmp_path / "gate-report.md"
    report.write_text(f"{MARKER}\n## Promotion gate: PASS\n")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7}}))
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": "o/r", "GITHUB_API_URL": github.url,
           "GITHUB_EVENT_PATH": str(event)}
    for expected in ("created", "updated"):
        done = run_mlops("pr-comment", "--report", str(report), env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"{expected} comment 1000 on PR #7")
    assert len(github.comments) == 1

    missing = run_mlops("pr-comment", "--report", str(report),
                        env={**env, "GITHUB_TOKEN": ""})
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("error: GITHUB_TOKEN: not set; the workflow passes the "
                                      "job's token")


def test_a_gate_that_could_not_run_replaces_the_old_verdict(github: FakeGitHub,
                                                            tmp_path: Path) -> None:
    github.comments = [{"id": 5, "body": f"{MARKER}\n## Promotion gate: PASS"}]
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": "o/r", "GITHUB_API_URL": github.url,
           "GITHUB_RUN_ID": "31", "GITHUB_SERVER_URL": "https://github.test"}
    done = run_mlops("pr-comment", "--report", str(tmp_path / "missing.md"), "--pr", "7",
                     env=env)
    assert done.returncode == 0, done.stderr
    body = github.comments[0]["body"]
    assert "could not run" in body
    assert "PASS" not in body
    assert "https://github.test/o/r/actions/runs/31" in body
