"""`mlops monitor`: a window of the prediction log against the model's training reference.

Translation only: the options become a `Window` and a call of
`pipeline.monitoring.monitor.monitor`; the outputs asked for are written; the verdict is
printed; drift or decay is a negative verdict (exit 1), bad input exit 2.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import CardOption, app, say, settings_and_card
from pipeline.errors import ConfigError, NegativeVerdict
from pipeline.gitops import registry


@app.command("monitor")
def monitor_command(
    start: Annotated[str | None, typer.Option(
        "--from", help="window start, ISO 8601 (default: 24 hours before --to; UTC "
        "when no zone is given)")] = None,
    end: Annotated[str | None, typer.Option(
        "--to", help="window end, ISO 8601, exclusive (default: now)")] = None,
    version: Annotated[str | None, typer.Option(
        "--version", help="model version to monitor (default: Production)")] = None,
    labels: Annotated[Path | None, typer.Option(
        "--labels", help="CSV/Parquet of labels keyed by request_id and row (or the card's "
        "monitoring.id_column): the live metric")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="write the HTML report "
                                                "here")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the JSON summary "
                                                   "here")] = None,
    gauges: Annotated[Path | None, typer.Option(
        "--prometheus", help="write Prometheus gauges here (a .prom file for node_exporter's "
        "textfile collector)")] = None,
    log: Annotated[str | None, typer.Option(
        "--log", envvar="PREDICTION_LOG", help="the prediction log: folder or s3:// prefix "
        "(default: $PREDICTION_LOG, else <MLOPS_HOME>/predictions, where the server logs)")]
    = None,
    card_path: CardOption = None,
) -> None:
    """Drift of each feature and of the prediction over a window; exit 1 on drift or decay."""
    # scipy, statsmodels and pyarrow: imported by this command only, not at every start.
    from pipeline.monitoring.monitor import monitor
    from pipeline.monitoring.outputs import write_gauges, write_html, write_json
    from pipeline.monitoring.window import Window, parse_time

    for option, path in (("--json", json_path), ("--report", report), ("--gauges", gauges)):
        if path is not None and "://" in str(path):
            raise ConfigError(f"{option} {path}: the monitor writes local files; copy them "
                              "to object storage afterwards")
    settings, card = settings_and_card(card_path)
    until = parse_time(end, option="--to") if end else dt.datetime.now(dt.UTC)
    since = parse_time(start, option="--from") if start else until - dt.timedelta(hours=24)
    window = Window(start=since, end=until)
    location = (log or "").strip() or str(settings.mlops_home / "predictions")
    result = monitor(registry.client(settings.mlflow_tracking_uri), card, log=location,
                     window=window, version=version, labels=labels)
    for path, write, what in ((json_path, write_json, "summary"), (report, write_html, "report"),
                              (gauges, write_gauges, "gauges")):
        if path is not None:
            write(result, path)
            say(f"monitor: {what} written to {path}")
    typer.echo(result.verdict())
    if result.alarm:
        raise NegativeVerdict("drift found" if result.drift else "the live metric decayed")
