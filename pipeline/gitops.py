"""The GitOps commands: `mlops gate`, `promote`, `rollback`, `drift`, `pr-comment`.

Each command only translates: options in, a library call, plain words out. Progress
for people goes to stderr; the gate's report (its product) goes to stdout. Failures
are raised as `MlopsError`s and turned into one line and an exit code by
`pipeline.cli.run`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import mlflow
import requests
import typer
from mlflow.tracking import MlflowClient

from pipeline import registry
from pipeline.card import ModelCard, load_card
from pipeline.config import Settings, load_settings
from pipeline.drift import check_drift
from pipeline.errors import ConfigError, NegativeVerdict
from pipeline.gate import ARTIFACT_DIR, PASSED_TAG, VERDICT_TAG, GateOutcome, run_gate
from pipeline.github import target_from_env, upsert_comment
from pipeline.promote import Audit, audit_from_env, pr_number_from_event, promote, read_event
from pipeline.report import (
    MARKER,
    plot,
    render,
    render_gate_error,
    render_no_candidate,
    run_link,
)

CardOption = Annotated[
    Path | None, typer.Option("--card", help="model card (default: model_card.yaml)")
]
GitShaOption = Annotated[str | None, typer.Option(
    "--git-sha", help="commit to record (default: $GITHUB_SHA, else git HEAD)")]
PrOption = Annotated[str | None, typer.Option(
    "--pr", help="pull request number (default: from the GitHub event, else none)")]
RunUrlOption = Annotated[str | None, typer.Option(
    "--run-url", help="workflow run URL (default: from GITHUB_* variables, else local)")]
ActorOption = Annotated[str | None, typer.Option(
    "--actor", help="who promoted (default: $GITHUB_ACTOR, else $USER)")]


def say(message: str) -> None:
    typer.echo(message, err=True)


def _connect(card_path: Path | None) -> tuple[Settings, ModelCard, MlflowClient]:
    settings = load_settings()
    card = load_card(card_path or settings.mlops_card)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return settings, card, registry.client(settings.mlflow_tracking_uri)


def gate_command(
    card_path: CardOption = None,
    report: Annotated[Path | None, typer.Option(
        "--report", help="write the markdown report here (it is printed too)")] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="write the verdict as JSON here")] = None,
) -> None:
    """Gate the card's candidate against Production on the same held-out rows.

    Exit 0 pass, 1 fail (the report says why), 2 the gate could not run.
    """
    settings = load_settings()
    card = load_card(card_path or settings.mlops_card)
    if card.model.candidate_run_id is None:
        # A fresh fork, or a card without a proposal: nothing to judge, not an error.
        _publish(render_no_candidate(card.model.name), {
            "passed": True, "verdict": "pass", "candidate_run_id": None,
            "production_version": None, "reasons": ["the card names no candidate run"]},
            report=report, json_path=json_path)
        say("gate: the card names no candidate run; nothing to gate")
        return
    _, card, mlflow_client = _connect(card_path)
    say(f"gate: candidate run {card.model.candidate_run_id} for {card.model.name}")
    outcome = run_gate(card, mlflow_client=mlflow_client,
                       tracking_uri=settings.mlflow_tracking_uri)
    verdict = outcome.verdict
    unchanged = verdict.production_run_id == verdict.candidate_run_id
    plot_path = None if unchanged else _log_to_run(mlflow_client, outcome)
    markdown = render(verdict, plot_path=plot_path)
    payload = verdict.to_json()
    if not unchanged:  # keep the verdict that promoted the Production run
        mlflow_client.log_text(verdict.candidate_run_id, markdown, f"{ARTIFACT_DIR}/report.md")
        mlflow_client.log_dict(verdict.candidate_run_id, payload, f"{ARTIFACT_DIR}/verdict.json")
        mlflow_client.set_tag(verdict.candidate_run_id, VERDICT_TAG, verdict.tag_json())
        mlflow_client.set_tag(verdict.candidate_run_id, PASSED_TAG, str(verdict.passed).lower())
        say(f"verdict tagged on the candidate run: "
            f"{run_link(settings.mlflow_tracking_uri, verdict.candidate_run_id)}")
    _publish(markdown, payload, report=report, json_path=json_path)
    if not verdict.passed:
        raise NegativeVerdict(f"gate failed: {verdict.reasons[0]}")
    say("gate passed")


def _publish(markdown: str, payload: dict[str, Any], *, report: Path | None,
             json_path: Path | None) -> None:
    """The report to its file, the job summary and stdout; the verdict to its JSON file."""
    if report is not None:
        _write(report, markdown)
    if json_path is not None:
        _write(json_path, json.dumps(payload, indent=2) + "\n")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(markdown + "\n")
    typer.echo(markdown)


def _log_to_run(mlflow_client: MlflowClient, outcome: GateOutcome) -> str | None:
    drawn = plot(task=outcome.data.spec.task, truth=outcome.data.y_holdout.to_numpy(),
                 predictions=outcome.predictions, probabilities=outcome.probabilities,
                 classes=outcome.classes)
    if drawn is None:
        return None
    figure, name = drawn
    path = f"{ARTIFACT_DIR}/{name}"
    mlflow_client.log_figure(outcome.verdict.candidate_run_id, figure, path)
    return path


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as err:
        raise ConfigError(f"{path}: cannot write ({err.strerror})") from err


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"--verdict {path}: cannot read ({err.strerror})") from err
    except json.JSONDecodeError as err:
        raise ConfigError(f"--verdict {path}: not valid JSON (line {err.lineno})") from err
    if not isinstance(value, dict):
        raise ConfigError(f"--verdict {path}: expected a JSON object")
    return value


def _audit(git_sha: str | None, pr: str | None, run_url: str | None,
           actor: str | None) -> Audit:
    return audit_from_env(os.environ, git_sha=git_sha, pr_number=pr, run_url=run_url,
                          actor=actor)


def promote_command(
    card_path: CardOption = None,
    verdict: Annotated[Path | None, typer.Option(
        "--verdict", help="the gate's --json file (default: the verdict tagged on the run)")]
    = None,
    git_sha: GitShaOption = None, pr: PrOption = None, run_url: RunUrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Make the card's gated candidate Production (compare-and-set; a re-run is a no-op)."""
    verdict_file = _read_json(verdict) if verdict is not None else None
    _, card, mlflow_client = _connect(card_path)
    result = promote(mlflow_client, card, audit=_audit(git_sha, pr, run_url, actor),
                     verdict_file=verdict_file)
    typer.echo(result.message)


def rollback_command(
    card_path: CardOption = None,
    to: Annotated[str | None, typer.Option(
        "--to", help="version to restore (default: the previous-production alias)")] = None,
    git_sha: GitShaOption = None, pr: PrOption = None, run_url: RunUrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Break glass: move Production back to previous-production now, with audit tags.

    Then put that version's run ID in the card (mode: rollback) so git matches again.
    """
    from pipeline.promote import rollback

    _, card, mlflow_client = _connect(card_path)
    result = rollback(mlflow_client, card.model.name, to_version=to,
                      audit=_audit(git_sha, pr, run_url, actor))
    typer.echo(result.message)


def drift_command(card_path: CardOption = None) -> None:
    """Exit 1 when the registry's Production is not the run the card names."""
    _, card, mlflow_client = _connect(card_path)
    report = check_drift(mlflow_client, card)
    if report.in_sync:
        typer.echo(f"in sync: {card.model.name} Production is version "
                   f"{report.production_version or 'none'}, run "
                   f"{report.production_run_id or 'none'}, as the card says")
        return
    for finding in report.findings:
        typer.echo(f"drift: {finding}")
    raise NegativeVerdict(f"drift found: {report.findings[0]}")


def pr_comment_command(
    report: Annotated[Path, typer.Option("--report", help="markdown report to post")],
    pr: PrOption = None,
) -> None:
    """Post the report as the one sticky PR comment, or update it (GitHub REST API).

    Without a report (the gate could not run) the comment says so, so a PASS from an
    earlier run never stays up next to a gate that now errors.
    """
    env: dict[str, Any] = dict(os.environ)
    try:
        body = report.read_text(encoding="utf-8")
    except FileNotFoundError:
        body = render_gate_error(audit_from_env(env).workflow_run_url)
    except OSError as err:
        raise ConfigError(f"--report {report}: cannot read ({err.strerror})") from err
    target = target_from_env(env, pr_number=pr or pr_number_from_event(read_event(env)))
    with requests.Session() as session:
        result = upsert_comment(session, target, body=body, marker=MARKER)
    typer.echo(f"{result.action} comment {result.comment_id} on PR #{target.pr_number}"
               + (f": {result.url}" if result.url else ""))
