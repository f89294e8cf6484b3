"""A fake GitHub REST API on loopback: the one outside service that cannot run here.

It keeps comments, pull requests, files at commits and commit statuses in memory and
answers the calls the gate workflow and promote make (list, create, edit comments; find
a pull request by head branch, read one; read a file at a commit; set a status);
comments it creates are by the workflow's bot identity.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from pipeline.gitops.github import BOT_LOGIN
from tests.utils import JsonHandler

TOKEN = "test-token"


@dataclass
class FakeGitHub:
    url: str
    comments: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    fail_with: int | None = None
    fail_next: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Pull requests by number: {"number", "head": {"sha", "ref", "repo"}, "state"}."""
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    """(commit SHA, path) -> the file's bytes at that commit (the contents API)."""
    statuses: list[dict[str, Any]] = field(default_factory=list)

    def open_pull(self, number: int, *, sha: str, branch: str = "feature",
                  owner: str = "o") -> dict[str, Any]:
        pull = {"number": number, "state": "open",
                "head": {"sha": sha, "ref": branch, "label": f"{owner}:{branch}",
                         "repo": {"full_name": f"{owner}/r", "owner": {"login": owner}}}}
        self.pulls[number] = pull
        return pull

    def workflow_run_event(self, number: int) -> dict[str, Any]:
        """What GitHub sends gate.yml when the PR's gate-request run completes."""
        head = self.pulls[number]["head"]
        return {"action": "completed", "workflow_run": {
            "head_sha": head["sha"], "head_branch": head["ref"],
            "head_repository": {"full_name": head["repo"]["full_name"],
                                "owner": head["repo"]["owner"]},
            "event": "pull_request", "conclusion": "success", "pull_requests": []}}


def by(login: str, comment_id: int, body: str) -> dict[str, Any]:
    return {"id": comment_id, "body": body, "user": {"login": login}}


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """The fake API, started for one test."""
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
            if state.fail_next:
                status, headers = state.fail_next.pop(0)
                data = b'{"message": "try again later"}'
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(data))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
                return False
            return True

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length", "0"))
            return dict(json.loads(self.rfile.read(length)))

        def do_GET(self) -> None:
            if not self._guard():
                return
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            path = parts.path
            if path.startswith("/repos/o/r/contents/"):
                self._contents(path.removeprefix("/repos/o/r/contents/"), query)
            elif path == "/repos/o/r/pulls":
                head = query.get("head", [""])[0]
                self.send_json(200, [p for p in state.pulls.values()
                                     if p["head"]["label"] == head and p["state"] == "open"])
            elif path.startswith("/repos/o/r/pulls/"):
                pull = state.pulls.get(int(path.rsplit("/", 1)[1]))
                if pull is None:
                    self.send_json(404, {"message": "Not Found"})
                else:
                    self.send_json(200, pull)
            else:
                per_page, page = int(query["per_page"][0]), int(query["page"][0])
                self.send_json(200, state.comments[(page - 1) * per_page: page * per_page])

        def _contents(self, path: str, query: dict[str, list[str]]) -> None:
            data = state.files.get((query.get("ref", [""])[0], path))
            if data is None:
                self.send_json(404, {"message": "Not Found"})
                return
            assert self.headers.get("Accept") == "application/vnd.github.raw+json"
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            if not self._guard():
                return
            if "/statuses/" in self.path:
                status = {**self._body(), "sha": self.path.rsplit("/", 1)[1]}
                state.statuses.append(status)
                self.send_json(201, status)
                return
            comment = {**by(BOT_LOGIN, 1000 + len(state.comments), self._body()["body"]),
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




def github_env(github: FakeGitHub) -> dict[str, str]:
    """The variables a workflow job has, pointed at the fake API."""
    return {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": "o/r", "GITHUB_API_URL": github.url}
