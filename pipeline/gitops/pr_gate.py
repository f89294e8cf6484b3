"""The gate of a pull request, run by main's code: what `gate.yml` does on `workflow_run`.

A workflow triggered by `pull_request` runs the PR's own workflow file and code, so
nothing it writes can be trusted, and every job posts as the same bot. `gate.yml` is
triggered when the PR's `gate-request` workflow completes; GitHub takes its file from
the default branch, and it checks out only the default branch. It finds the PR from
the event (GitHub's, not the PR's), reads the PR's card and the data files the card
names through the API (data, parsed by main's code; the PR's tree is never checked
out), runs the gate read-only, and posts the one sticky comment with the verdict signed
by the `gate` environment's key, and a commit status on the PR's head.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests
from mlflow.tracking import MlflowClient

from pipeline.errors import ConfigError, MlopsError, first_line
from pipeline.gitops.card import ModelCard, data_files, load_card
from pipeline.gitops.evaluation import GateOutcome, run_gate
from pipeline.gitops.github import (
    Target,
    file_at,
    pull_request_of_run,
    read_event,
    set_status,
    target_from_env,
    upsert_comment,
)
from pipeline.gitops.report import MARKER, embed_signed, render, render_no_candidate
from pipeline.gitops.signing import Evidence, sign, signing_key_from
from pipeline.gitops.verdict import Verdict


@dataclass(frozen=True)
class PullRequestGate:
    """What the gate workflow did: the PR, its head, the verdict (None: nothing to gate)."""

    pr_number: str
    head_sha: str
    verdict: Verdict | None
    markdown: str
    comment_url: str
    outcome: GateOutcome | None = None


@dataclass(frozen=True)
class PullRequestFiles:
    """The PR's card, read at its head commit, and where its data files were written."""

    card: ModelCard
    root: Path


def fetch_card(http: requests.Session, target: Target, *, card_path: str, head_sha: str,
               root: Path) -> PullRequestFiles:
    """The PR's card and the data files it names, written under `root` (data only)."""
    text = file_at(http, target, card_path, head_sha)
    if text is None:
        raise ConfigError(f"{card_path}: not in the pull request at {head_sha[:12]}")
    local = root / "model_card.yaml"
    local.write_bytes(text)
    card = load_card(local)
    for path in data_files(card):
        data = file_at(http, target, path, head_sha)
        if data is None:
            raise ConfigError(f"data: {path} is not in the pull request at {head_sha[:12]}")
        destination = root / path
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(data)
    return PullRequestFiles(card=card, root=root)


def gate_pull_request(env: Mapping[str, str], http: requests.Session, *,
                      mlflow_client: MlflowClient, tracking_uri: str, card_path: str,
                      run_url: str) -> PullRequestGate:
    """Gate the PR the `workflow_run` event names; comment and set its status.

    A gate that cannot run still edits the comment (so an earlier PASS never stays up)
    and sets the status to error, then raises its one-line reason.
    """
    key = signing_key_from(env)
    base = target_from_env(env, pr_number=None, need_pr=False)
    pull = pull_request_of_run(http, base, read_event(env))
    target = dataclasses.replace(base, pr_number=str(pull["number"]))
    head = str(pull["head"]["sha"])
    try:
        with tempfile.TemporaryDirectory(prefix="mlops-pr-gate-") as tmp:
            files = fetch_card(http, target, card_path=card_path, head_sha=head,
                               root=Path(tmp))
            outcome = None
            if files.card.model.candidate_run_id is None:
                verdict, markdown = None, render_no_candidate(files.card.model.name)
            else:
                outcome = run_gate(files.card, mlflow_client=mlflow_client,
                                   tracking_uri=tracking_uri, data_root=files.root)
                verdict = outcome.verdict
                evidence = Evidence(verdict=verdict, repository=target.repository,
                                    pr_number=target.pr_number, head_sha=head)
                markdown = render(verdict, marker=embed_signed(sign(evidence, key)))
    except MlopsError as err:
        _could_not_run(http, target, head, run_url, first_line(err))
        raise
    comment = upsert_comment(http, target, body=markdown, marker=MARKER)
    state = "success" if verdict is None or verdict.passed else "failure"
    description = ("nothing to gate" if verdict is None else
                   f"{'pass' if verdict.passed else 'fail'}: {verdict.reasons[0]}")
    set_status(http, target, head, state=state, description=description, url=run_url)
    return PullRequestGate(pr_number=target.pr_number, head_sha=head, verdict=verdict,
                           markdown=markdown, comment_url=comment.url, outcome=outcome)


def _could_not_run(http: requests.Session, target: Target, head: str, run_url: str,
                   reason: str) -> None:
    from pipeline.gitops.markdown import text
    from pipeline.gitops.report import render_gate_error

    body = render_gate_error(run_url) + f"\nReason: {text(reason)}\n"
    upsert_comment(http, target, body=body, marker=MARKER)
    set_status(http, target, head, state="error", description=f"could not run: {reason}",
               url=run_url)
