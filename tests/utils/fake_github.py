"""A fake GitHub REST API on loopback: the one outside service that cannot run here.

It keeps comments in memory and answers the calls the gate workflow and promote make
(list, create, edit comments; find a pull request by head branch, read one; read a file
at a commit, raw; set a commit status); comments it creates are by the workflow's bot
identity. For the retraining pull request it also keeps branches, files and pull
requests: read a ref, read a file, create a branch, commit a file (the contents API),
open and list PRs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

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
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    files: dict[tuple[str, str], str] = field(default_factory=dict)  # (branch, path) -> text
    commits: list[dict[str, Any]] = field(default_factory=list)
    pulls: list[dict[str, Any]] = field(default_factory=list)
    blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    """(commit SHA, path) -> the file's bytes at that commit (the contents API, raw)."""
    statuses: list[dict[str, Any]] = field(default_factory=list)

    def seed(self, path: str, text: str, *, branch: str = "main") -> None:
        """A repository whose `branch` holds `path`."""
        self.files[(branch, path)] = text
        self.branches[branch] = _sha(f"{branch}:{text}")

    def open_pull(self, number: int, *, sha: str, branch: str = "feature",
                  owner: str = "o") -> dict[str, Any]:
        """A pull request from `owner`'s `branch`, its head at commit `sha`."""
        pull = {"number": number, "state": "open",
                "head": {"sha": sha, "ref": branch, "label": f"{owner}:{branch}",
                         "repo": {"full_name": f"{owner}/r", "owner": {"login": owner}}}}
        self.pulls.append(pull)
        return pull

    def pull(self, number: int) -> dict[str, Any]:
        return next(p for p in self.pulls if p["number"] == number)

    def workflow_run_event(self, number: int) -> dict[str, Any]:
        """What GitHub sends gate.yml when the PR's gate-request run completes."""
        head = self.pull(number)["head"]
        return {"action": "completed", "workflow_run": {
            "head_sha": head["sha"], "head_branch": head["ref"],
            "head_repository": {"full_name": head["repo"]["full_name"],
                                "owner": head["repo"]["owner"]},
            "event": "pull_request", "conclusion": "success", "pull_requests": []}}


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


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
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if "/git/ref/heads/" in url.path:
                name = unquote(url.path.split("/git/ref/heads/", 1)[1])
                if name not in state.branches:
                    self.send_json(404, {"message": "Not Found"})
                    return
                self.send_json(200, {"ref": f"refs/heads/{name}",
                                     "object": {"sha": state.branches[name]}})
                return
            if "/contents/" in url.path and \
                    self.headers.get("Accept") == "application/vnd.github.raw+json":
                self._raw(unquote(url.path.split("/contents/", 1)[1]), query)
                return
            if "/contents/" in url.path:
                path = unquote(url.path.split("/contents/", 1)[1])
                text = state.files.get((query.get("ref", ["main"])[0], path))
                if text is None:
                    self.send_json(404, {"message": "Not Found"})
                    return
                self.send_json(200, {"sha": _sha(text), "path": path, "encoding": "base64",
                                     "content": base64.b64encode(text.encode()).decode()})
                return
            if url.path.endswith("/pulls"):
                owner, _, head = query.get("head", [""])[0].rpartition(":")
                self.send_json(200, [p for p in state.pulls if p["head"]["ref"] == head
                                     and p["head"].get("label", f"{owner}:{head}")
                                     == f"{owner}:{head}"
                                     and p["state"] == query.get("state", ["open"])[0]])
                return
            if "/pulls/" in url.path:
                number = int(url.path.rsplit("/", 1)[1])
                found = [p for p in state.pulls if p["number"] == number]
                self.send_json(200 if found else 404, found[0] if found else
                               {"message": "Not Found"})
                return
            per_page, page = int(query["per_page"][0]), int(query["page"][0])
            self.send_json(200, state.comments[(page - 1) * per_page: page * per_page])

        def _raw(self, path: str, query: dict[str, list[str]]) -> None:
            data = state.blobs.get((query.get("ref", [""])[0], path))
            if data is None:
                self.send_json(404, {"message": "Not Found"})
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            if not self._guard():
                return
            path = unquote(urlsplit(self.path).path.split("/contents/", 1)[1])
            body = self._body()
            branch = body["branch"]
            current = state.files.get((branch, path))
            if current is None or _sha(current) != body["sha"]:
                self.send_json(409, {"message": f"{path} does not match {body['sha']}"})
                return
            text = base64.b64decode(body["content"]).decode()
            state.files[(branch, path)] = text
            state.branches[branch] = _sha(f"{branch}:{text}")
            state.commits.append({**body, "path": path, "content": text})
            self.send_json(200, {"commit": {"sha": state.branches[branch]}})

        def do_POST(self) -> None:
            if not self._guard():
                return
            url = urlsplit(self.path)
            if "/statuses/" in url.path:
                status = {**self._body(), "sha": url.path.rsplit("/", 1)[1]}
                state.statuses.append(status)
                self.send_json(201, status)
                return
            if url.path.endswith("/git/refs"):
                body = self._body()
                name = body["ref"].removeprefix("refs/heads/")
                if name in state.branches:
                    self.send_json(422, {"message": "Reference already exists"})
                    return
                base = next(b for b, sha in state.branches.items() if sha == body["sha"])
                state.branches[name] = body["sha"]
                for (branch, path), text in list(state.files.items()):
                    if branch == base:
                        state.files[(name, path)] = text
                self.send_json(201, {"ref": body["ref"], "object": {"sha": body["sha"]}})
                return
            if url.path.endswith("/pulls"):
                body = self._body()
                number = len(state.pulls) + 1
                pull = {"number": number, "state": "open", "title": body["title"],
                        "body": body["body"], "base": {"ref": body["base"]},
                        "head": {"ref": body["head"]},
                        "html_url": f"https://github.test/o/r/pull/{number}"}
                state.pulls.append(pull)
                self.send_json(201, pull)
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
