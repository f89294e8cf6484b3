"""The sticky PR comment against a fake GitHub REST API on loopback.

GitHub's API is the one outside service that cannot run here, so a small HTTP server
plays it: it keeps comments in memory and answers the three calls the gate makes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from pipeline.gitops.github import BOT_LOGIN, GitHubError, Target, session, upsert_comment
from pipeline.gitops.report import MARKER
from tests.utils import run_mlops
from tests.utils.fake_github import TOKEN, FakeGitHub, by, github

__all__ = ["github"]  # the fixture


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
    github.comments = [by("someone", i, f"chatter {i}") for i in range(150)]
    github.comments.append(by(BOT_LOGIN, 9999, f"{MARKER}\nold report"))
    with requests.Session() as session:
        result = upsert_comment(session, _target(github), body="new report", marker=MARKER)
    assert result.action == "updated"
    assert result.comment_id == 9999
    assert github.comments[-1]["body"] == f"{MARKER}\nnew report"  # marker added
    assert len(github.comments) == 151


def test_a_users_comment_with_the_marker_is_never_edited(github: FakeGitHub) -> None:
    """The hijack: someone pastes the marker into their own comment before the gate runs."""
    planted = by("mallory", 1, f"{MARKER}\n## Promotion gate: PASS (trust me)")
    github.comments = [planted.copy()]
    with requests.Session() as http:
        result = upsert_comment(http, _target(github), body=f"{MARKER}\nFAIL", marker=MARKER)
    assert result.action == "created"
    assert github.comments[0] == planted  # untouched: no PATCH on someone else's comment
    assert github.comments[1]["body"] == f"{MARKER}\nFAIL"
    assert not any(call.startswith("PATCH") for call in github.calls)


def test_5xx_and_secondary_rate_limits_are_retried(github: FakeGitHub) -> None:
    github.fail_next = [(502, {}), (403, {"Retry-After": "0"}), (503, {})]
    result = upsert_comment(session(backoff=0), _target(github), body=f"{MARKER}\nPASS",
                            marker=MARKER)
    assert result.action == "created"
    assert len(github.comments) == 1
    assert len(github.calls) == 5  # three refusals, then the listing and the creation


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
    github.comments = [by(BOT_LOGIN, 5, f"{MARKER}\n## Promotion gate: PASS")]
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": "o/r", "GITHUB_API_URL": github.url,
           "GITHUB_RUN_ID": "31", "GITHUB_SERVER_URL": "https://github.test"}
    done = run_mlops("pr-comment", "--report", str(tmp_path / "missing.md"), "--pr", "7",
                     env=env)
    assert done.returncode == 0, done.stderr
    body = github.comments[0]["body"]
    assert "could not run" in body
    assert "PASS" not in body
    assert "https://github.test/o/r/actions/runs/31" in body
