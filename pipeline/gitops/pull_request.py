"""A retrained candidate comes back as a pull request: the card's `candidate_run_id` set on
a branch of its own, committed by a bot, and a PR whose body carries the monitor's
summary. The gate and the reviewers then decide, exactly as for a person's PR.

Five calls of GitHub's REST API through the retrying session of `pipeline.gitops.github`:
read the base branch's head and the card, create the branch, commit the changed card
(the contents API: one file, one commit), open the PR. Re-running for the same run finds
the branch and its open PR and returns that PR: one candidate, one pull request.
"""

from __future__ import annotations

import base64
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from pipeline.errors import ConfigError
from pipeline.gitops.card import RUN_ID_PATTERN, write_candidate_run_id
from pipeline.gitops.github import GitHubError, _check, _headers

BRANCH_PREFIX = "mlops/retrain-"
DEFAULT_BOT = ("mlops-retrain[bot]", "mlops-retrain[bot]@users.noreply.github.com")


@dataclass(frozen=True)
class Repository:
    """Where the PR goes, and the token that may push a branch and open PRs there."""

    api_url: str
    name: str  # owner/name
    token: str
    base: str = "main"

    @property
    def url(self) -> str:
        return f"{self.api_url}/repos/{self.name}"


@dataclass(frozen=True)
class Bot:
    """Who commits: the identity the PR's commit shows."""

    name: str = DEFAULT_BOT[0]
    email: str = DEFAULT_BOT[1]


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    branch: str
    created: bool  # False: the run's PR was already open


def repository_from_env(env: Mapping[str, str], *, token: str | None = None) -> Repository:
    """The repository from GitHub's own variable names (as in Actions), the token given
    or `GITHUB_TOKEN`."""
    secret = token or env.get("GITHUB_TOKEN", "")
    name = env.get("GITHUB_REPOSITORY", "")
    if not secret:
        raise ConfigError("GITHUB_TOKEN: not set; opening a pull request needs a token that "
                          "may push a branch and open pull requests")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        raise ConfigError("GITHUB_REPOSITORY: not set (expected owner/name)")
    return Repository(api_url=env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/"),
                      name=name, token=secret, base=env.get("MLOPS_BASE_BRANCH") or "main")


def card_with_candidate(text: str, run_id: str) -> str:
    """The card's text with `candidate_run_id` set, comments kept, validated
    (`card.write_candidate_run_id`, on a scratch copy)."""
    with tempfile.TemporaryDirectory(prefix="mlops-card-") as tmp:
        path = Path(tmp) / "model_card.yaml"
        path.write_text(text, encoding="utf-8")
        write_candidate_run_id(path, run_id)
        return path.read_text(encoding="utf-8")


def propose_candidate(http: requests.Session, repo: Repository, *, run_id: str,
                      model_name: str, body: str,
                      card_path: str = "model_card.yaml", bot: Bot | None = None
                      ) -> PullRequest:
    """Open (or find) the pull request that makes `run_id` the card's candidate."""
    if not re.match(RUN_ID_PATTERN, run_id):
        raise ConfigError(f"run ID {run_id!r} is not a 32-character MLflow run ID")
    bot = bot or Bot()
    branch = f"{BRANCH_PREFIX}{run_id}"
    existing = _open_pull(http, repo, branch)
    if existing is not None:
        return existing
    base_sha = _get(http, repo, f"/git/ref/heads/{quote(repo.base)}",
                    "reading the base branch")["object"]["sha"]
    card = _get(http, repo, f"/contents/{quote(card_path)}", "reading the card",
                params={"ref": repo.base})
    text = base64.b64decode(card["content"]).decode("utf-8")
    changed = card_with_candidate(text, run_id)
    if not _branch_exists(http, repo, branch):
        _send(http, "post", f"{repo.url}/git/refs", repo, "creating the branch",
              {"ref": f"refs/heads/{branch}", "sha": base_sha})
    title = f"Retrained candidate for {model_name}: run {run_id[:12]}"
    _send(http, "put", f"{repo.url}/contents/{quote(card_path)}", repo, "committing the card", {
        "message": f"Card: candidate_run_id {run_id} (retrained after a monitoring alarm)",
        "content": base64.b64encode(changed.encode("utf-8")).decode("ascii"),
        "sha": card["sha"], "branch": branch,
        "committer": {"name": bot.name, "email": bot.email},
        "author": {"name": bot.name, "email": bot.email}})
    opened = _send(http, "post", f"{repo.url}/pulls", repo, "opening the pull request", {
        "title": title, "head": branch, "base": repo.base, "body": body,
        "maintainer_can_modify": True})
    return PullRequest(number=int(opened["number"]), url=str(opened.get("html_url", "")),
                       branch=branch, created=True)


def pull_request_body(*, run_id: str, model_name: str, version: str | None,
                      summary: Mapping[str, Any] | None, registered_by: str) -> str:
    """Markdown for the reviewer: why it was retrained (the monitor's summary), what."""
    lines = ["## Retrained candidate", "",
             f"Run `{run_id}` of `{_md(model_name)}`"
             + (f", registered as version {_md(version)}" if version else "")
             + f" by {_md(registered_by)}. It is **not** Production: the gate runs on this "
             "pull request and the reviewers decide; merging promotes it.", ""]
    if summary:
        lines += ["## Why: the monitor's alarm", "", f"> {_md(str(summary.get('verdict', '')))}",
                  "", "| feature | drifted | corrected p-value | threshold |",
                  "|---|---|---|---|"]
        for feature in [*summary.get("features", []), summary.get("prediction") or {}]:
            if feature:
                lines.append(f"| {_md(str(feature.get('name')))} | "
                             f"{'**yes**' if feature.get('drifted') else 'no'} | "
                             f"{_number(feature.get('statistic'))} | "
                             f"{_number(feature.get('threshold'))} |")
        live = summary.get("live_metric")
        if live:
            lines += ["", f"Live {_md(str(live.get('metric')))}: {_number(live.get('value'))} "
                      f"[{_number(live.get('low'))}, {_number(live.get('high'))}] on "
                      f"{_number(live.get('rows'))} labeled rows; the gate measured "
                      f"{_number(live.get('gate_value'))}."]
        lines += ["", f"Window: {_md(str(summary.get('from')))} to {_md(str(summary.get('to')))}"
                  f", {_number(summary.get('rows'))} rows of version "
                  f"{_md(str(summary.get('model_version')))}."]
    return "\n".join(lines) + "\n"


def propose_from_env(env: Mapping[str, str], *, run_id: str, model_name: str,
                     version: str | None, summary: Mapping[str, Any] | None,
                     registered_by: str, token: str | None = None) -> PullRequest:
    """What the training DAG calls: the repository, card path and bot from the
    environment (`GITHUB_*`, `MLOPS_CARD_PATH_IN_REPO`, `MLOPS_BOT_NAME`/`_EMAIL`)."""
    from pipeline.gitops.github import session

    repo = repository_from_env(env, token=token)
    bot = Bot(name=env.get("MLOPS_BOT_NAME") or DEFAULT_BOT[0],
              email=env.get("MLOPS_BOT_EMAIL") or DEFAULT_BOT[1])
    body = pull_request_body(run_id=run_id, model_name=model_name, version=version,
                             summary=summary, registered_by=registered_by)
    return propose_candidate(session(), repo, run_id=run_id, model_name=model_name, body=body,
                             card_path=env.get("MLOPS_CARD_PATH_IN_REPO") or "model_card.yaml",
                             bot=bot)


def _md(text: str | None) -> str:
    """Text from runs and files, safe inside Markdown: no links, images, HTML, tables or
    mentions (an @ as its entity notifies nobody)."""
    escaped = re.sub(r"([\\`*_\[\]|<>])", r"\\\1", (text or "")[:300])
    return escaped.replace("@", "&#64;")


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a"


def _get(http: requests.Session, repo: Repository, path: str, what: str,
         params: dict[str, str] | None = None) -> Any:
    response = http.get(f"{repo.url}{path}", headers=_headers(repo.token), params=params,
                        timeout=30)
    return _check(response, what)


def _send(http: requests.Session, method: str, url: str, repo: Repository, what: str,
          payload: dict[str, Any]) -> Any:
    response = http.request(method.upper(), url, json=payload, headers=_headers(repo.token),
                            timeout=30)
    return _check(response, what)


def _branch_exists(http: requests.Session, repo: Repository, branch: str) -> bool:
    response = http.get(f"{repo.url}/git/ref/heads/{quote(branch)}",
                        headers=_headers(repo.token), timeout=30)
    if response.status_code == 404:
        return False
    _check(response, "looking for the branch")
    return True


def _open_pull(http: requests.Session, repo: Repository, branch: str) -> PullRequest | None:
    owner = repo.name.split("/", 1)[0]
    response = http.get(f"{repo.url}/pulls", headers=_headers(repo.token), timeout=30,
                        params={"head": f"{owner}:{branch}", "state": "open"})
    found = _check(response, "looking for an open pull request")
    if not isinstance(found, list):
        raise GitHubError("GitHub API: listing pull requests answered something unexpected")
    for pull in found:
        return PullRequest(number=int(pull["number"]), url=str(pull.get("html_url", "")),
                           branch=branch, created=False)
    return None
