"""One sticky pull-request comment through GitHub's REST API.

The gate's report carries a hidden marker; on every re-run the comment that holds it
is edited instead of adding another one, so a PR shows one, current verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from pipeline.errors import ConfigError, MlopsError

API_VERSION = "2022-11-28"
_PAGE = 100
_MAX_PAGES = 50


class GitHubError(MlopsError):
    """GitHub's API refused or failed a call."""


@dataclass(frozen=True)
class Target:
    api_url: str
    repository: str
    pr_number: str
    token: str


@dataclass(frozen=True)
class CommentResult:
    action: str  # "created" or "updated"
    comment_id: int
    url: str


def target_from_env(env: Mapping[str, str], *, pr_number: str | None) -> Target:
    """Where to comment, from the variables GitHub Actions sets and the job's token."""
    token = env.get("GITHUB_TOKEN", "")
    repository = env.get("GITHUB_REPOSITORY", "")
    if not token:
        raise ConfigError("GITHUB_TOKEN: not set; the workflow passes the job's token")
    if not repository or "/" not in repository:
        raise ConfigError("GITHUB_REPOSITORY: not set (expected owner/name)")
    if not pr_number:
        raise ConfigError("--pr: no pull request number (not a pull_request event?)")
    return Target(api_url=env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/"),
                  repository=repository, pr_number=pr_number, token=token)


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION}


def _check(response: requests.Response, what: str) -> Any:
    if response.status_code >= 400:
        raise GitHubError(f"GitHub API: {what} answered {response.status_code}")
    return response.json()


def find_comment(session: requests.Session, target: Target, marker: str) -> dict[str, Any] | None:
    """The first comment on the PR whose body contains the marker."""
    url = f"{target.api_url}/repos/{target.repository}/issues/{target.pr_number}/comments"
    for page in range(1, _MAX_PAGES + 1):
        response = session.get(url, headers=_headers(target.token), timeout=30,
                               params={"per_page": _PAGE, "page": page})
        comments = _check(response, "listing comments")
        for comment in comments:
            if marker in (comment.get("body") or ""):
                return dict(comment)
        if len(comments) < _PAGE:
            return None
    return None


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
