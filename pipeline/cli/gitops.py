"""`mlops gate`, `promote`, `rollback`, `registry-check`, `pr-comment`: the GitOps commands.

Each command only translates: options in, a library call, plain words out. Progress
for people goes to stderr; the gate's report (its product) goes to stdout. Failures
are raised as `MlopsError`s and turned into one line and an exit code by
`pipeline.cli.app.run`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline import progress
from pipeline.cli.app import CardOption, app, say, settings_and_card, use_tracking_server
from pipeline.errors import ConfigError, NegativeVerdict
from pipeline.gitops import registry
from pipeline.gitops.card import ModelCard, policy_hash
from pipeline.settings import Settings, load_settings

if TYPE_CHECKING:  # each command imports what it uses: `mlops --help` stays quick
    from matplotlib.figure import Figure
    from mlflow.tracking import MlflowClient

    from pipeline.gitops.github import Audit
    from pipeline.gitops.verdict import Verdict

GitShaOption = Annotated[str | None, typer.Option(
    "--git-sha", help="commit to record (default: $GITHUB_SHA, else git HEAD)")]
PrOption = Annotated[str | None, typer.Option(
    "--pr", help="pull request number (default: from the GitHub event, else none)")]
RunUrlOption = Annotated[str | None, typer.Option(
    "--run-url", help="workflow run URL (default: from GITHUB_* variables, else local)")]
ActorOption = Annotated[str | None, typer.Option(
    "--actor", help="who promoted (default: $GITHUB_ACTOR, else $USER)")]


def _connect(card_path: Path | None) -> tuple[Settings, ModelCard, MlflowClient]:
    settings, card = settings_and_card(card_path)
    use_tracking_server(settings)
    return settings, card, registry.client(settings.mlflow_tracking_uri)


@app.command("gate")
def gate_command(
    card_path: CardOption = None,
    report: Annotated[Path | None, typer.Option(
        "--report", help="write the markdown report here; then only the verdict and its "
        "reasons are printed (without it, the whole report)")] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="write the verdict as JSON here")] = None,
    plot_path: Annotated[Path | None, typer.Option(
        "--plot", help="write the plot (PNG) here, e.g. for the workflow's artifact")] = None,
    slices_path: Annotated[Path | None, typer.Option(
        "--slices", help="write the slice table here (JSON; its SHA-256 is the verdict's "
        "slices.digest), when the card declares slices")] = None,
    record: Annotated[bool, typer.Option(
        "--record", help="also log the report, verdict and plot to the candidate run "
        "(needs write access; informational: promote recomputes the verdict)")] = False,
) -> None:
    """Gate the card's candidate against Production on the same sealed test rows (read-only).

    Exit 0 pass, 1 fail (the report says why), 2 the gate could not run.
    """
    from pipeline.gitops.evaluation import draw_plot, now, record_verdict, run_gate
    from pipeline.gitops.report import render, render_no_candidate
    from pipeline.gitops.verdict import no_candidate

    settings, card = settings_and_card(card_path)
    if card.model.candidate_run_id is None:
        # A fresh fork, or a card without a proposal: nothing to judge, not an error.
        verdict = no_candidate(model_name=card.model.name, metric=card.promotion.metric,
                               greater_is_better=card.promotion.greater_is_better,
                               policy_hash=policy_hash(card), gated_at=now())
        _publish(render_no_candidate(card.model.name), verdict, report=report,
                 json_path=json_path)
        say("gate: the card names no candidate run; nothing to gate")
        return
    _, card, mlflow_client = _connect(card_path)
    say(f"gate: candidate run {card.model.candidate_run_id} for {card.model.name}")
    with progress.shown_on_terminal():
        outcome = run_gate(card, mlflow_client=mlflow_client,
                           tracking_uri=settings.mlflow_tracking_uri,
                           serving_url=settings.mlops_serving_url)
    drawn = draw_plot(outcome)
    note = _save_plot(drawn, plot_path)
    markdown = render(outcome.verdict, plot_note=note)
    if record:
        link = record_verdict(mlflow_client, outcome, markdown=markdown, drawn=drawn)
        if link is not None:
            say(f"report and verdict logged to the candidate run: {link}")
    _publish(markdown, outcome.verdict, report=report, json_path=json_path,
             slices_path=slices_path)
    if not outcome.verdict.passed:
        raise NegativeVerdict(f"gate failed: {outcome.verdict.reasons[0]}")
    say("gate passed")


def _save_plot(drawn: tuple[Figure, str] | None, path: Path | None) -> str | None:
    """Write the plot; the note says where a reviewer finds it (the run's artifacts on CI)."""
    from pipeline.gitops.github import audit_from_env

    if drawn is None or path is None:
        return None
    figure, name = drawn
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")
    except OSError as err:
        raise ConfigError(f"--plot {path}: cannot write ({err.strerror})") from err
    where = audit_from_env(os.environ).workflow_run_url
    if where.startswith("http"):
        what = name.removesuffix(".png").replace("_", " ")
        return f"{what} in the [workflow run's artifacts]({where})"
    return f"`{path}`"


def _publish(markdown: str, verdict: Verdict, *, report: Path | None,
             json_path: Path | None, slices_path: Path | None = None) -> None:
    """The report to its file, the job summary and stdout; the verdict to its JSON file,
    the slice table to its own (the artifact whose digest the verdict carries)."""
    if report is not None:
        _write(report, markdown)
    if json_path is not None:
        _write(json_path, json.dumps(verdict.to_json(), indent=2) + "\n")
    if slices_path is not None and verdict.slices is not None:
        from pipeline.gitops.slices import table_json

        _write(slices_path, table_json(verdict.slices))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(markdown + "\n")
    if report is None:
        typer.echo(markdown)
        return
    # The report (Mermaid, an embedded plot) is for a browser: a terminal gets the verdict.
    typer.echo("\n".join([*_verdict_lines(verdict), f"report: {report}"]))


def _verdict_lines(verdict: Verdict) -> list[str]:
    """The verdict and its reasons, one line each: what a person reads in a terminal."""
    against = (f"Production version {verdict.production_version}"
               if verdict.production_version else "no Production version")
    head = (f"gate {'PASSED' if verdict.passed else 'FAILED'}: {verdict.model_name} run "
            f"{verdict.candidate_run_id or '(none)'} vs {against}, on {verdict.metric}")
    return [head, *(f"- {reason}" for reason in verdict.reasons)]


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as err:
        raise ConfigError(f"{path}: cannot write ({err.strerror})") from err


def _audit(git_sha: str | None, pr: str | None, run_url: str | None,
           actor: str | None) -> Audit:
    from pipeline.gitops.github import audit_from_env

    return audit_from_env(os.environ, git_sha=git_sha, pr_number=pr, run_url=run_url,
                          actor=actor)


@app.command("promote")
def promote_command(
    card_path: CardOption = None,
    verdict: Annotated[Path | None, typer.Option(
        "--verdict", help="the PR's verdict to compare with (the gate's --json file, local "
        "use only; default: the verdict in the PR's sticky comment, which must be signed by "
        "the gate workflow when MLOPS_VERDICT_PUBLIC_KEY is set)")] = None,
    git_sha: GitShaOption = None, pr: PrOption = None, run_url: RunUrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Re-compute the gate with this code and, if it passes, make the candidate Production.

    Compare-and-set; a re-run is a no-op. Exit 1 when main's verdict fails. With
    MLOPS_SERVING_URL (the deployed server) it refuses a candidate that server cannot
    load, then waits until the server serves the new version, and moves the alias back
    (exit 2, with the server's reason) when the server refuses it.
    """
    from pipeline.gitops.promote import promote
    from pipeline.gitops.review import from_file, from_pull_request

    settings, card, mlflow_client = _connect(card_path)
    audit = _audit(git_sha, pr, run_url, actor)
    env = dict(os.environ)
    review = (from_file(verdict, env) if verdict is not None
              else from_pull_request(env, audit.pr_number))
    say(f"promote: compared with {review.source}" if review.verdict is not None
        else f"promote: {review.source}")
    say(f"promote: re-computing the gate for run {card.model.candidate_run_id} with this "
        "code")
    result = promote(mlflow_client, card, audit=audit, review=review,
                     tracking_uri=settings.mlflow_tracking_uri,
                     serving_url=settings.mlops_serving_url)
    for difference in result.differences:
        say(f"promote: the PR's verdict and main's differ: {difference}")
    for movement in result.movements:
        say(f"promote: serving cost re-measured (within noise, not compared): {movement}")
    typer.echo(result.message)


@app.command("gate-pr")
def gate_pr_command(
    card_path: CardOption = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="write report.md, verdict.json and plot.png here (the workflow keeps "
        "them as an artifact)")] = None,
) -> None:
    """The gate workflow's step: gate the pull request of the `workflow_run` event with
    this (main's) code, post the signed verdict as the sticky comment, set the status.

    Exit 0 pass, 1 fail, 2 the gate could not run (the comment and status say so).
    """
    from pipeline.gitops.evaluation import draw_plot
    from pipeline.gitops.github import audit_from_env
    from pipeline.gitops.github import session as github_session
    from pipeline.gitops.pr_gate import gate_pull_request

    settings = load_settings()
    use_tracking_server(settings)
    mlflow_client = registry.client(settings.mlflow_tracking_uri)
    env = dict(os.environ)
    card = str(card_path or settings.mlops_card)
    with github_session() as http, progress.shown_on_terminal():
        done = gate_pull_request(env, http, mlflow_client=mlflow_client,
                                 tracking_uri=settings.mlflow_tracking_uri, card_path=card,
                                 run_url=audit_from_env(env).workflow_run_url)
    if out is not None:
        if done.outcome is not None:
            _save_plot(draw_plot(done.outcome), out / "plot.png")
        _write(out / "report.md", done.markdown)
        if done.verdict is not None:
            _write(out / "verdict.json", json.dumps(done.verdict.to_json(), indent=2) + "\n")
        if done.verdict is not None and done.verdict.slices is not None:
            from pipeline.gitops.slices import SLICES_FILE, table_json

            _write(out / SLICES_FILE, table_json(done.verdict.slices))
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(done.markdown + "\n")
    say(f"gate-pr: PR #{done.pr_number} at {done.head_sha[:12]}: comment {done.comment_url}")
    if done.verdict is not None and not done.verdict.passed:
        raise NegativeVerdict(f"gate failed: {done.verdict.reasons[0]}")
    typer.echo("gate passed" if done.verdict is not None else "nothing to gate")


@app.command("verdict-key")
def verdict_key_command() -> None:
    """Make the key pair that signs the gate workflow's verdicts (docs/gate.md).

    The private key goes into the `gate` environment's secret MLOPS_VERDICT_SIGNING_KEY,
    the public key into the `production` environment's variable MLOPS_VERDICT_PUBLIC_KEY.
    """
    from pipeline.gitops.signing import PUBLIC_KEY_VARIABLE, SIGNING_KEY_VARIABLE, new_key_pair

    private, public = new_key_pair()
    typer.echo(f"{SIGNING_KEY_VARIABLE}={private}")
    typer.echo(f"{PUBLIC_KEY_VARIABLE}={public}")
    say("put the first line in the `gate` environment as a secret and the second in the "
        "`production` environment as a variable; keep no other copy of the first")


def _version_number(value: str | None) -> str | None:
    """A registry version is a positive integer: anything else is refused before use."""
    if value is None or value.strip() == "":
        return None
    if not value.isascii() or not value.isdigit() or value.startswith("0"):
        raise typer.BadParameter("expected a model version number such as 3")
    return value


@app.command("rollback")
def rollback_command(
    card_path: CardOption = None,
    to: Annotated[str | None, typer.Option(
        "--to", envvar="ROLLBACK_TO", callback=_version_number,
        help="version to restore, a number (default: the previous-production alias; "
        "$ROLLBACK_TO, as rollback.yml passes its input)")] = None,
    git_sha: GitShaOption = None, pr: PrOption = None, run_url: RunUrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Break glass: move Production back to previous-production now, with audit tags.

    Then put that version's run ID in the card (mode: rollback) so git matches again.
    """
    from pipeline.gitops.promote import rollback

    _, card, mlflow_client = _connect(card_path)
    result = rollback(mlflow_client, card.model.name, to_version=to,
                      audit=_audit(git_sha, pr, run_url, actor))
    typer.echo(result.message)


@app.command("registry-check")
def registry_check_command(card_path: CardOption = None) -> None:
    """Exit 1 when the registry's Production is not the run the card names."""
    from pipeline.gitops.registry_check import check_registry

    _, card, mlflow_client = _connect(card_path)
    report = check_registry(mlflow_client, card)
    if report.in_sync:
        typer.echo(f"in sync: {card.model.name} Production is version "
                   f"{report.production_version or 'none'}, run "
                   f"{report.production_run_id or 'none'}, as the card says")
        return
    for finding in report.findings:
        typer.echo(f"out of sync: {finding}")
    raise NegativeVerdict(f"the registry does not match the card: {report.findings[0]}")


@app.command("drift", hidden=True)
def drift_command(card_path: CardOption = None) -> None:
    """The former name of `registry-check` (drift now means data drift: `mlops monitor`)."""
    note = ("note: `mlops drift` is now `mlops registry-check` (does the registry's Production "
            "match the card); drift of the data is `mlops monitor`")
    try:
        registry_check_command(card_path)
    except NegativeVerdict:
        say(note)  # after the findings; a failure to check stays one line
        raise
    say(note)


@app.command("pr-comment")
def pr_comment_command(
    report: Annotated[Path, typer.Option("--report", help="markdown report to post")],
    pr: PrOption = None,
) -> None:
    """Post the report as the one sticky PR comment, or update it (GitHub REST API).

    Without a report (the gate could not run) the comment says so, so a PASS from an
    earlier run never stays up next to a gate that now errors.
    """
    from pipeline.gitops.github import (
        audit_from_env,
        pr_number_from_event,
        read_event,
        target_from_env,
        upsert_comment,
    )
    from pipeline.gitops.github import session as github_session
    from pipeline.gitops.report import MARKER, render_gate_error

    env = dict(os.environ)
    try:
        body = report.read_text(encoding="utf-8")
    except FileNotFoundError:
        body = render_gate_error(audit_from_env(env).workflow_run_url)
    except OSError as err:
        raise ConfigError(f"--report {report}: cannot read ({err.strerror})") from err
    target = target_from_env(env, pr_number=pr or pr_number_from_event(read_event(env)))
    with github_session() as http:
        result = upsert_comment(http, target, body=body, marker=MARKER)
    typer.echo(f"{result.action} comment {result.comment_id} on PR #{target.pr_number}"
               + (f": {result.url}" if result.url else ""))
