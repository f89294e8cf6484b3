"""`mlops data init`: a reviewed YAML schema from your CSV/Parquet, and a card for it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from pipeline.cli.app import CardOption, app, say
from pipeline.errors import ConfigError, DataProblems, MlopsError
from pipeline.files import atomic_write
from pipeline.gitops.card import check_policy, load_card, with_data_section
from pipeline.settings import load_settings

if TYPE_CHECKING:  # pandas and friends load when a file is read, not with every command
    from pipeline.gitops.new_card import NewCard
    from pipeline.stages.datasets import DatasetSpec
    from pipeline.stages.datasets.infer import Proposal

data_app = typer.Typer(help="Your own data: a schema and a card from a CSV/Parquet file.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("init")
def init_command(
    source: Annotated[str, typer.Argument(help="CSV or Parquet file, local or s3://")],
    target: Annotated[str, typer.Option("--target", help="the column to predict")],
    task: Annotated[Literal["regression", "classification"] | None, typer.Option(
        help="default: classification for text or a few whole numbers, else regression")]
    = None,
    name: Annotated[str | None, typer.Option(help="dataset name (default: from the file)")]
    = None,
    model_name: Annotated[str | None, typer.Option(
        "--model-name", help="registered model name of a new card (default: from the "
        "dataset name)")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="schema file to write (default: <name>.schema.yaml beside the card)")]
    = None,
    force: Annotated[bool, typer.Option(help="overwrite an existing schema file")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    card_path: CardOption = None,
) -> None:
    """Infer a schema from SOURCE, show why, and write it with a complete card for it.

    The card gets a model name from the data's, the task's primary metric, a floor
    derived from the dummy baseline on the validation rows and TODOs for its prose; a
    card that already names this schema is kept, with its data section updated.
    """
    from pipeline.gitops.new_card import describes, new_card
    from pipeline.stages.data import read_table
    from pipeline.stages.datasets.infer import dataset_name, propose
    from pipeline.stages.datasets.schema_file import render_schema

    card_file = card_path or load_settings().mlops_card
    # a broken card fails before anything is read or written; a missing one is written
    existing = load_card(card_file) if card_file.exists() else None
    dataset = name or dataset_name(source)
    schema_path = out or card_file.parent / f"{dataset}.schema.yaml"
    if schema_path.exists() and not force:
        raise ConfigError(f"{schema_path}: exists; review or delete it, or pass --force")
    frame = read_table(source)
    try:
        proposal = propose(frame, target=target, name=dataset, task=task)
    except DataProblems as err:
        if as_json:
            typer.echo(json.dumps({"written": False, "errors": list(err.problems)}))
        raise
    text = render_schema(proposal.spec, header=_header(source, proposal), reasons=proposal.reasons)
    reference = _as_typed(schema_path)
    made = None
    if describes(existing, schema=reference):
        card_text = with_data_section(card_file, dataset=reference, source=source,
                                      comment="schema by mlops data init: review it")
    else:
        made = new_card(frame, proposal.spec, schema=reference, source=source,
                        model_name=model_name)
        card_text = made.text
    for path in (schema_path, card_file):
        path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(schema_path, text)
    atomic_write(card_file, card_text)
    next_step = _policy_hint(card_file, proposal.spec) if made is None else None
    if as_json:
        typer.echo(json.dumps(_summary(proposal, schema_path, card_file, next_step, made)))
        return
    show_table(proposal)
    for column, note in proposal.notes.items():
        say(f"unsure about {column}: {note}")
    say(f"wrote {schema_path}")
    if made is None:
        say(f"kept {card_file} (it already names this schema); data.source: {source}")
    else:
        say(f"wrote a new {card_file}: model {made.model_name}, primary metric {made.metric}; "
            "floor: " + "; ".join(f.rule for f in made.floors))
        say(f"the card's prose says TODO where a person must write it: see {card_file}")
    if next_step:
        say(f"next: {next_step}")
    say(f"review {schema_path} and {card_file}, then: mlops train --estimator dummy "
        "--register --promote (a first Production, if the registry has none), mlops train, "
        "mlops propose RUN_ID, mlops gate")


def _as_typed(path: Path) -> str:
    """The schema as the card names it: relative to here when it is below here."""
    absolute = path.resolve()
    try:
        return absolute.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(absolute)


def _header(source: str, proposal: Proposal) -> str:
    left_out = "".join(f"\nLeft out: {name} ({why})." for name, why in proposal.left_out.items())
    unsure = "".join(f"\nUnsure about {name}: {note}." for name, note in proposal.notes.items())
    return (f"Dataset schema proposed by `mlops data init` from {os.path.basename(source)} "
            f"({proposal.rows} rows).\n"
            "Review it before training: each column's kind, its range (min/max) or its\n"
            "categories, all as seen in this file. `outside: keep` keeps a value outside\n"
            "them, counted and warned about (the range is recorded for monitoring); where a\n"
            "bound is a rule, `outside: blank` blanks a feature's value (the model imputes\n"
            "it) and `outside: drop` drops the row. The comment says why each was guessed."
            f"{left_out}{unsure}")


def _policy_hint(card_file: Path, spec: DatasetSpec) -> str | None:
    """The card's promotion rules must speak of this task's metrics: say what to change."""
    from pipeline.stages.metrics import PRIMARY_METRIC, greater_is_better

    try:
        check_policy(load_card(card_file), task=spec.task)
    except MlopsError as err:
        primary = PRIMARY_METRIC[spec.task]
        return (f"{err}; for {spec.task} set promotion.metric: {primary}, "
                f"greater_is_better: {str(greater_is_better(primary)).lower()} and its floors")
    return None


def _summary(proposal: Proposal, schema: Path, card: Path, next_step: str | None,
             made: NewCard | None) -> dict[str, Any]:
    spec = proposal.spec
    return {
        "written": True, "schema": str(schema), "card": str(card),
        "card_written": "kept" if made is None else "new",
        "model_name": None if made is None else made.model_name,
        "metric": None if made is None else made.metric,
        "floors": [] if made is None else [
            {"metric": f.metric, "bound": f.bound, "baseline": f.baseline, "rule": f.rule}
            for f in made.floors],
        "notes": proposal.notes,
        "dataset": spec.name,
        "task": spec.task, "rows": proposal.rows, "target": spec.target.name,
        "columns": [{"name": c.name, "kind": c.kind, "min": c.min, "max": c.max,
                     "categories": None if c.categories is None else list(c.categories),
                     "reason": proposal.reasons.get(c.name, "")} for c in spec.columns],
        "left_out": proposal.left_out, "next": next_step,
    }


def show_table(proposal: Proposal) -> None:
    """The proposed schema as a table on stderr: column, kind, valid values, why."""
    from rich.console import Console
    from rich.table import Table

    spec = proposal.spec
    table = Table(title=f"{spec.name}: {spec.task}, {proposal.rows} rows, target "
                        f"{spec.target.name}", title_justify="left")
    for header in ("column", "kind", "valid values", "why"):
        table.add_column(header, overflow="fold")
    for column in spec.columns:
        if column.categories is not None:
            shown = ", ".join(column.categories[:8]) + (" ..." if len(column.categories) > 8
                                                         else "")
        elif column.kind == "numeric":
            shown = f"{column.min:g} .. {column.max:g}"
        else:
            shown = "any"
        if column.outside == "keep" and shown != "any":
            shown += " (kept if outside)"
        label = f"{column.name} (target)" if column is spec.target else column.name
        table.add_row(label, column.kind, shown, proposal.reasons.get(column.name, ""))
    for name, why in proposal.left_out.items():
        table.add_row(name, "left out", "", why)
    console = Console(stderr=True)
    if not console.is_terminal:  # a log keeps each column on one line
        console = Console(stderr=True, width=200)
    console.print(table)
