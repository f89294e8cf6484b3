"""`mlops runs`: the best runs of the experiment, by the card's metric on validation rows."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli.app import CardOption, app, say, settings_and_card

if TYPE_CHECKING:
    from pipeline.gitops.leaderboard import RunRow


@app.command("runs")
def runs_command(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="how many runs")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    card_path: CardOption = None,
) -> None:
    """List the best runs on the card's data, ranked by the primary metric on the
    validation rows (`val_<metric>`); Production and the card's candidate are marked."""
    from pipeline.gitops import registry
    from pipeline.gitops.leaderboard import best_runs
    from pipeline.stages.datasets import load_spec

    settings, card = settings_and_card(card_path)
    dataset = load_spec(card.data.dataset).name
    client = registry.client(settings.mlflow_tracking_uri)
    rows = best_runs(client, card, experiment=settings.mlops_experiment, dataset=dataset,
                     limit=limit)
    metric = f"val_{card.promotion.metric}"
    if as_json:
        typer.echo(json.dumps({"experiment": settings.mlops_experiment, "dataset": dataset,
                               "metric": metric, "greater_is_better":
                               card.promotion.greater_is_better,
                               "runs": [row.to_json() for row in rows]}))
        return
    if not rows:
        say(f"no finished run on {dataset} in experiment {settings.mlops_experiment!r} logs "
            f"{metric}; train one with `mlops train`")
        return
    _show(rows, metric=metric, title=f"best runs on {dataset} in "
          f"{settings.mlops_experiment!r} by {metric} "
          f"({'higher' if card.promotion.greater_is_better else 'lower'} is better)")


def _show(rows: list[RunRow], *, metric: str, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for header in ("#", "run", "name", metric, "started (UTC)", "data", "note"):
        table.add_column(header, overflow="fold")
    for row in rows:
        note = ", ".join(n for n, on in (("Production", row.production),
                                         ("candidate", row.candidate)) if on)
        table.add_row(str(row.rank), row.run_id, row.name, f"{row.value:.6g}",
                      row.started_at.replace("+00:00", ""), row.data_hash, note)
    console = Console()
    if not console.is_terminal:  # a log or a pipe keeps each run on one line
        console = Console(width=200)
    console.print(table)
