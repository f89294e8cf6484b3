"""GitHub: the Actions context (who, which commit, which PR) and the one sticky comment.

`audit_from_env` reads what GitHub Actions sets (or local defaults, for the demo) into
the `Audit` that promotion writes on a version. The gate's report carries a hidden
marker; on every re-run the comment that holds it is edited instead of adding another
one, so a PR shows one, current verdict.
"""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from pipeline.errors import ConfigError, MlopsError

API_VERSION = "2022-11-28"
_PAGE = 100
_MAX_PAGES = 50


@dataclass(frozen=True)
class Audit:
    """Who and what moved Production: written as tags on the promoted version."""

    git_sha: str
    pr_number: str
    workflow_run_url: str
    actor: str

    def tags(self) -> dict[str, str]:
        return {"git_sha": self.git_sha, "pr_number": self.pr_number,
                "workflow_run_url": self.workflow_run_url, "actor": self.actor}


_MERGE_MESSAGE = re.compile(r"Merge pull request #(\d+)|\(#(\d+)\)\s*$", re.MULTILINE)


def pr_number_from_event(event: Mapping[str, Any]) -> str | None:
    """The pull request of a GitHub event: the PR itself, or the one a push merged.

    A push to main carries no PR number; GitHub's merge commit says "Merge pull request
    #N" and a squash merge ends its title with "(#N)".
    """
    pull = event.get("pull_request")
    if isinstance(pull, Mapping) and pull.get("number") is not None:
        return str(pull["number"])
    if event.get("number") is not None:
        return str(event["number"])
    head = event.get("head_commit")
    message = head.get("message") if isinstance(head, Mapping) else None
    if isinstance(message, str):
        match = _MERGE_MESSAGE.search(message.splitlines()[0] if message else "")
        if match:
            return match.group(1) or match.group(2)
    return None


def read_event(env: Mapping[str, str]) -> dict[str, Any]:
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def audit_from_env(env: Mapping[str, str], *, git_sha: str | None = None,
                   pr_number: str | None = None, run_url: str | None = None,
                   actor: str | None = None) -> Audit:
    """Options win, then GitHub Actions' variables, then local defaults (the demo)."""
    from pipeline.stages.train import git_commit  # brings scikit-learn: not at every start

    url = run_url
    if url is None and env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        url = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    local_user = env.get("USER") or _login()
    return Audit(
        git_sha=git_sha or env.get("GITHUB_SHA") or git_commit(),
        pr_number=pr_number or pr_number_from_event(read_event(env)) or "none",
        workflow_run_url=url or "local",
        actor=actor or env.get("GITHUB_ACTOR") or local_user or "unknown",
    )


def _login() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


class GitHubError(MlopsError):
    """GitHub's API refused or failed a call."""


BOT_LOGIN = "github-actions[bot]"
"""Who writes the sticky comment: the identity of the workflow's GITHUB_TOKEN."""


@dataclass(frozen=True)
class Target:
    api_url: str
    repository: str
    pr_number: str
    token: str
    author: str = BOT_LOGIN


class GitHubRetry(Retry):
    """urllib3's retry, plus GitHub's secondary rate limit: a 403 that says Retry-After."""

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code == 403 and has_retry_after and self.total:
            return True
        return bool(super().is_retry(method, status_code, has_retry_after))


def session(*, retries: int = 4, backoff: float = 1.0) -> requests.Session:
    """A session that retries 5xx, 429 and rate-limit 403s with backoff (Retry-After wins).

    POST is retried too: a comment created twice is the lesser evil next to a verdict
    that never shows, and the next run edits the first one found.
    """
    retry = GitHubRetry(total=retries, backoff_factor=backoff, respect_retry_after_header=True,
                        status_forcelist=(429, 500, 502, 503, 504),
                        allowed_methods=frozenset({"GET", "POST", "PATCH"}),
                        raise_on_status=False)
    http = requests.Session()
    http.mount("https://", HTTPAdapter(max_retries=retry))
    http.mount("http://", HTTPAdapter(max_retries=retry))
    return http


@dataclass(frozen=True)
class CommentResult:
    action: str  # "created" or "updated"
    comment_id: int
    url: str


def target_from_env(env: Mapping[str, str], *, pr_number: str | None,
                    need_pr: bool = True) -> Target:
    """Where to comment, from the variables GitHub Actions sets and the job's token."""
    token = env.get("GITHUB_TOKEN", "")
    repository = env.get("GITHUB_REPOSITORY", "")
    if not token:
        raise ConfigError("GITHUB_TOKEN: not set; the workflow passes the job's token")
    if not repository or "/" not in repository:
        raise ConfigError("GITHUB_REPOSITORY: not set (expected owner/name)")
    if need_pr and not pr_number:
        raise ConfigError("--pr: no pull request number (not a pull_request event?)")
    if pr_number is not None and pr_number and not pr_number.isdigit():
        raise ConfigError(f"--pr: {pr_number[:20]!r} is not a pull request number")
    pr_number = pr_number or ""
    return Target(api_url=env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/"),
                  repository=repository, pr_number=pr_number, token=token,
                  author=env.get("MLOPS_COMMENT_AUTHOR") or BOT_LOGIN)


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION}


def _check(response: requests.Response, what: str) -> Any:
    if response.status_code >= 400:
        raise GitHubError(f"GitHub API: {what} answered {response.status_code}")
    return response.json()


def bot_comments(session: requests.Session, target: Target, marker: str
                 ) -> list[dict[str, Any]]:
    """Every comment on the PR by the workflow's bot whose body holds the marker, oldest
    first.

    Comments by anyone else are never edited nor read, whatever they contain: a user
    who pastes the marker cannot hijack the verdict or make the job fail with 403. The
    bot's own comments are not proof of anything either (every workflow posts as it):
    promote believes only a verdict signed by the gate workflow (`signing`).
    """
    url = f"{target.api_url}/repos/{target.repository}/issues/{target.pr_number}/comments"
    found: list[dict[str, Any]] = []
    for page in range(1, _MAX_PAGES + 1):
        response = session.get(url, headers=_headers(target.token), timeout=30,
                               params={"per_page": _PAGE, "page": page})
        comments = _check(response, "listing comments")
        for comment in comments:
            author = (comment.get("user") or {}).get("login")
            if author == target.author and marker in (comment.get("body") or ""):
                found.append(dict(comment))
        if len(comments) < _PAGE:
            break
    return found


def find_comment(session: requests.Session, target: Target, marker: str) -> dict[str, Any] | None:
    """The first of the bot's comments that holds the marker: the sticky one."""
    found = bot_comments(session, target, marker)
    return found[0] if found else None


def pull_request(session: requests.Session, target: Target) -> dict[str, Any]:
    """The pull request `target.pr_number` as GitHub describes it (head SHA, state)."""
    url = f"{target.api_url}/repos/{target.repository}/pulls/{target.pr_number}"
    value = _check(session.get(url, headers=_headers(target.token), timeout=30),
                   f"reading pull request #{target.pr_number}")
    if not isinstance(value, dict) or not isinstance((value.get("head") or {}).get("sha"), str):
        raise GitHubError(f"GitHub API: pull request #{target.pr_number} has no head commit")
    return dict(value)


_SHA = re.compile(r"^[0-9a-f]{40}$")


def pull_request_of_run(session: requests.Session, target: Target,
                        event: Mapping[str, Any]) -> dict[str, Any]:
    """The open pull request whose head is the commit a `workflow_run` event ran on.

    The event is GitHub's (the workflow that triggered it cannot edit it); the PR is
    looked up by its head branch and checked against the head SHA, so a PR of a fork
    (whose number the event leaves out) is found too, and a branch that moved on is
    not taken for the commit that was gated.
    """
    run = event.get("workflow_run")
    if not isinstance(run, Mapping):
        raise ConfigError("GITHUB_EVENT_PATH: not a workflow_run event (gate.yml runs on one)")
    head_sha = str(run.get("head_sha") or "")
    branch = str(run.get("head_branch") or "")
    owner = str(((run.get("head_repository") or {}).get("owner") or {}).get("login") or "")
    if not _SHA.match(head_sha) or not branch or not owner:
        raise ConfigError("GITHUB_EVENT_PATH: the workflow_run event names no head commit")
    url = f"{target.api_url}/repos/{target.repository}/pulls"
    response = session.get(url, headers=_headers(target.token), timeout=30,
                           params={"state": "open", "head": f"{owner}:{branch}",
                                   "per_page": str(_PAGE)})
    for pull in _check(response, "listing pull requests"):
        if (pull.get("head") or {}).get("sha") == head_sha:
            return dict(pull)
    raise GitHubError(f"GitHub API: no open pull request has head commit {head_sha[:12]} "
                      f"(branch {branch[:80]}); it was closed or pushed to since")


MAX_FILE_BYTES = 100 * 1024 * 1024
"""The most GitHub's contents API serves raw."""


def file_at(session: requests.Session, target: Target, path: str, ref: str) -> bytes | None:
    """A file of the repository at commit `ref`, as bytes (None: no such file there).

    Read through the API, so the gate workflow never checks out the pull request's
    tree: what it reads of it (the card, a data file) is data, parsed by main's code.
    """
    if not _SHA.match(ref):
        raise ConfigError(f"not a commit SHA: {ref[:60]!r}")
    if path.startswith("/") or ".." in path.split("/") or "\\" in path:
        raise ConfigError(f"{path[:80]}: not a path inside the repository")
    url = f"{target.api_url}/repos/{target.repository}/contents/{path}"
    headers = {**_headers(target.token), "Accept": "application/vnd.github.raw+json"}
    response = session.get(url, headers=headers, params={"ref": ref}, timeout=60,
                           stream=True)
    if response.status_code == 404:
        return None
    if response.status_code >= 400:
        raise GitHubError(f"GitHub API: reading {path[:80]} at {ref[:12]} answered "
                          f"{response.status_code}")
    data = bytearray()
    for chunk in response.iter_content(1 << 16):
        data += chunk
        if len(data) > MAX_FILE_BYTES:
            raise GitHubError(f"{path[:80]} at {ref[:12]}: larger than {MAX_FILE_BYTES:,} "
                              "bytes")
    return bytes(data)


STATUS_CONTEXT = "mlops/gate"


def set_status(session: requests.Session, target: Target, sha: str, *, state: str,
               description: str, url: str | None) -> None:
    """The gate's check on the PR's head commit: success, failure or error."""
    body: dict[str, Any] = {"state": state, "context": STATUS_CONTEXT,
                            "description": description[:140]}
    if url and url.startswith("https://"):
        body["target_url"] = url
    response = session.post(f"{target.api_url}/repos/{target.repository}/statuses/{sha}",
                            json=body, headers=_headers(target.token), timeout=30)
    _check(response, "setting the commit status")


def upsert_comment(session: requests.Session, target: Target, *, body: str,
                   marker: str) -> CommentResult:
    """Edit the marked comment if there is one, else create it."""
    if marker not in body:
        body = f"{marker}\n{body}"
    existing = find_comment(session, target, marker)
    base = f"{target.api_url}/repos/{target.repository}/issues"
    if existing is not None:
        response = session.patch(f"{base}/comments/{existing['id']}", json={"body": body},
                                 headers=_headers(target.token), timeout=30)
        data = _check(response, "updating the comment")
        return CommentResult("updated", int(data["id"]), str(data.get("html_url", "")))
    response = session.post(f"{base}/{target.pr_number}/comments", json={"body": body},
                            headers=_headers(target.token), timeout=30)
    data = _check(response, "creating the comment")
    return CommentResult("created", int(data["id"]), str(data.get("html_url", "")))


def comment_body(session: requests.Session, target: Target, marker: str) -> str | None:
    """The body of the bot's sticky comment on the PR, if there is one."""
    found = find_comment(session, target, marker)
    return None if found is None else str(found.get("body") or "")
