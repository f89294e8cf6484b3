"""`mlops card check`: the card as the gate will read it, before a pull request."""

from __future__ import annotations

import typer

from pipeline.cli.app import CardOption, app, say, settings_and_card
from pipeline.gitops.card import check_policy, placeholders

card_app = typer.Typer(help="The model card: check it before a pull request.",
                       no_args_is_help=True)
app.add_typer(card_app, name="card")


@card_app.command("check")
def check_command(card_path: CardOption = None) -> None:
    """Validate the card, its policy against the dataset's task, and leftovers of the
    demo card (exit 2 on any); list the prose that still says TODO (exit 0)."""
    from pipeline.stages.datasets import load_spec

    settings, card = settings_and_card(card_path)
    path = card_path or settings.mlops_card
    spec = load_spec(card.data.dataset)
    check_policy(card, task=spec.task)
    floors = ", ".join(f"{name} {bound:g}" for name, bound in card.promotion.floors.items())
    typer.echo(f"{path}: valid; model {card.model.name}, {spec.task} on {spec.name}, "
               f"primary metric {card.promotion.metric}, floors: {floors or 'none'}")
    todo = placeholders(card)
    if todo:
        say(f"still TODO (write them before the model is reviewed): {', '.join(todo)}")
