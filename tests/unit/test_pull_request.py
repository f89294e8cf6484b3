"""The retraining pull request against the fake GitHub: branch, bot commit, PR, once."""

from __future__ import annotations

import re

import pytest

from pipeline.errors import ConfigError
from pipeline.gitops.github import GitHubError, session
from pipeline.gitops.pull_request import (
    Bot,
    Repository,
    propose_candidate,
    propose_from_env,
    pull_request_body,
    repository_from_env,
)
from tests.utils import REPO
from tests.utils.fake_github import TOKEN, FakeGitHub, github, github_env

__all__ = ["github"]  # the fixture

RUN = "0123456789abcdef0123456789abcdef"
CARD = (REPO / "model_card.yaml").read_text()
SUMMARY = {
    "verdict": "DRIFT: 1 of 9 features drifted (carat)", "drift": True, "rows": 600,
    "model_version": "3", "from": "2026-12-01T00:00:00+00:00", "to": "2026-12-02T00:00:00+00:00",
    "features": [{"name": "carat", "drifted": True, "statistic": 1e-30, "threshold": 0.05},
                 {"name": "<img src=x onerror=alert(1)>", "drifted": False, "statistic": 0.9,
                  "threshold": 0.05}],
    "prediction": {"name": "prediction", "drifted": True, "statistic": 1e-20, "threshold": 0.05},
}


def _repo(fake: FakeGitHub, token: str = TOKEN) -> Repository:
    fake.seed("model_card.yaml", CARD)
    return Repository(api_url=fake.url, name="o/r", token=token)


def test_a_candidate_comes_back_as_one_pull_request_by_the_bot(github: FakeGitHub) -> None:
    repo = _repo(github)
    body = pull_request_body(run_id=RUN, model_name="diamond-price", version="4",
                             summary=SUMMARY, registered_by="airflow mlops_training manual")
    pull = propose_candidate(session(retries=0), repo, run_id=RUN, model_name="diamond-price",
                             body=body, bot=Bot("retrain-bot", "retrain-bot@example.test"))
    assert pull.created
    assert pull.number == 1
    assert pull.branch == f"mlops/retrain-{RUN}"
    changed = github.files[(pull.branch, "model_card.yaml")]
    assert f"candidate_run_id: {RUN}  # the MLflow run ID" in changed
    differ = [(a, b) for a, b in zip(CARD.splitlines(), changed.splitlines(), strict=True)
              if a != b]
    assert len(differ) == 1, "only the candidate line changes"
    assert "candidate_run_id: null" in differ[0][0]
    assert github.files[("main", "model_card.yaml")] == CARD, "main is untouched"
    (commit,) = github.commits
    assert commit["committer"] == {"name": "retrain-bot", "email": "retrain-bot@example.test"}
    (opened,) = github.pulls
    assert opened["base"] == {"ref": "main"}
    assert opened["head"] == {"ref": pull.branch}
    assert "DRIFT: 1 of 9 features drifted (carat)" in opened["body"]
    assert "| carat | **yes** | 1e-30 | 0.05 |" in opened["body"]
    assert r"\<img src=x onerror=alert(1)\>" in opened["body"], "text from the data is escaped"
    assert not re.search(r"(?<!\\)<img", opened["body"])
    assert "registered as version 4" in opened["body"]

    again = propose_candidate(session(retries=0), repo, run_id=RUN,
                              model_name="diamond-price", body=body)
    assert not again.created
    assert again.number == 1
    assert len(github.pulls) == 1
    assert len(github.commits) == 1


def test_a_transient_failure_is_retried(github: FakeGitHub) -> None:
    repo = _repo(github)
    github.fail_next.append((503, {"Retry-After": "0"}))
    pull = propose_candidate(session(retries=2, backoff=0), repo, run_id=RUN,
                             model_name="m", body="b")
    assert pull.created
    assert len(github.pulls) == 1


def test_refusals_are_one_line(github: FakeGitHub) -> None:
    with pytest.raises(GitHubError, match=r"^GitHub API: looking for an open pull request "
                                          r"answered 401$"):
        propose_candidate(session(retries=0), _repo(github, token="wrong"), run_id=RUN,
                          model_name="m", body="b")
    with pytest.raises(ConfigError, match="GITHUB_TOKEN: not set"):
        repository_from_env({"GITHUB_REPOSITORY": "o/r"})
    with pytest.raises(ConfigError, match="is not a 32-character MLflow run ID"):
        propose_candidate(session(retries=0), _repo(github), run_id="nope", model_name="m",
                          body="b")
    assert github.pulls == []


def test_from_the_environment_as_the_dag_calls_it(github: FakeGitHub) -> None:
    github.seed("cards/model_card.yaml", CARD)
    env = {**github_env(github), "MLOPS_CARD_PATH_IN_REPO": "cards/model_card.yaml"}
    pull = propose_from_env(env, run_id=RUN, model_name="diamond-price", version="2",
                            summary=None, registered_by="airflow")
    assert pull.created
    assert RUN in github.files[(pull.branch, "cards/model_card.yaml")]
    assert github.commits[0]["committer"]["name"] == "mlops-retrain[bot]"
