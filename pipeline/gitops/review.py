"""The verdict the reviewer saw, as far as promote may believe it.

Promote recomputes the verdict on main and decides on that alone; the reviewed verdict
is what it compares with: the candidate, the Production version it was compared
against (compare-and-set) and the SHA-256 of the model's files (a file swapped after
review is refused). That comparison is only as good as the reviewed verdict's origin.
With the gate workflow's public key configured (`MLOPS_VERDICT_PUBLIC_KEY`, the
`production` environment), only a verdict signed by that workflow for this pull
request at its head commit counts, and promote refuses without one. Without a key
(the local demo, a fork's first days) an unsigned verdict is compared with, or none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

from pipeline.errors import ConfigError, MlopsError, first_line
from pipeline.gitops.github import (
    bot_comments,
    pull_request,
    session,
    target_from_env,
)
from pipeline.gitops.report import MARKER, embedded_verdict, signed_tokens
from pipeline.gitops.signing import PUBLIC_KEY_VARIABLE, Evidence, public_key_from, verify
from pipeline.gitops.verdict import Verdict


@dataclass(frozen=True)
class Review:
    """The reviewed verdict (None: none could be believed) and where it came from."""

    verdict: Verdict | None
    required: bool
    """A public key is configured: without a signed verdict, promote refuses."""
    source: str
    """One line: what was believed, or why nothing was."""


def on_github(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_ACTIONS") == "true"


def required_key(env: Mapping[str, str]) -> str | None:
    """The gate workflow's public key; on GitHub Actions promote needs one."""
    key = public_key_from(env)
    if key is None and on_github(env):
        raise ConfigError(f"{PUBLIC_KEY_VARIABLE}: not set; on GitHub Actions promote believes "
                          "only a verdict signed by the gate workflow (docs/gate.md, "
                          "\"Signed verdicts\")")
    return key


def from_file(path: Path, env: Mapping[str, str]) -> Review:
    """`--verdict FILE`: the gate's JSON, for local use; never with a key configured."""
    if required_key(env) is not None:
        raise ConfigError(f"--verdict {path}: a file is not signed; with {PUBLIC_KEY_VARIABLE} "
                          "set, promote believes only the gate workflow's signed verdict")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"--verdict {path}: cannot read ({err.strerror})") from err
    except json.JSONDecodeError as err:
        raise ConfigError(f"--verdict {path}: not valid JSON (line {err.lineno})") from err
    if not isinstance(value, dict):
        raise ConfigError(f"--verdict {path}: expected a JSON object")
    try:
        verdict = Verdict.from_json(value)
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"--verdict {path}: not a verdict written by `mlops gate --json` "
                          f"({err})") from err
    return Review(verdict=verdict, required=False, source=f"the verdict in {path}")


def from_pull_request(env: Mapping[str, str], pr_number: str) -> Review:
    """The verdict in the PR's sticky comment: signed and checked when a key is set."""
    key = required_key(env)
    if not env.get("GITHUB_TOKEN") or not env.get("GITHUB_REPOSITORY") or pr_number == "none":
        why = ("no pull request to read the reviewed verdict from (promote finds it from "
               "the merge commit's message, or --pr)")
        return Review(verdict=None, required=key is not None,
                      source=why if key else "no PR verdict to compare with; main's own "
                                             "verdict decides")
    try:
        target = target_from_env(env, pr_number=pr_number)
        with session() as http:
            comments = bot_comments(http, target, MARKER)
            head = str(pull_request(http, target)["head"]["sha"]) if key else ""
    except (MlopsError, requests.RequestException) as err:
        return Review(verdict=None, required=key is not None,
                      source=f"could not read PR #{pr_number}'s verdict ({first_line(err)})")
    bodies = [str(comment.get("body") or "") for comment in comments]
    if key is None:
        verdict = next((v for body in bodies if (v := embedded_verdict(body))), None)
        return Review(verdict=verdict, required=False,
                      source=f"the (unsigned) verdict in PR #{pr_number}'s sticky comment"
                      if verdict else f"PR #{pr_number} has no verdict to compare with; "
                                      "main's own verdict decides")
    believed = believed_evidence(bodies, key, repository=target.repository,
                                 pr_number=pr_number, head_sha=head)
    if believed is None:
        return Review(verdict=None, required=True,
                      source=f"PR #{pr_number} has no verdict signed by the gate workflow for "
                             f"its head commit {head[:12]} (a comment without a valid "
                             "signature is not believed); re-run gate.yml on the PR")
    return Review(verdict=believed.verdict, required=True,
                  source=f"the verdict the gate workflow signed for PR #{pr_number} at "
                         f"{head[:12]}")


def believed_evidence(bodies: list[str], public_key: str, *, repository: str,
                      pr_number: str, head_sha: str) -> Evidence | None:
    """The last signed verdict, among the comments, that verifies and is for this PR at
    this commit; a valid signature for another PR or an older commit is not enough."""
    found = None
    for body in bodies:
        for token in signed_tokens(body):
            evidence = verify(token, public_key)
            if evidence is not None and (evidence.repository, evidence.pr_number,
                                         evidence.head_sha) == (repository, pr_number, head_sha):
                found = evidence
    return found
