"""A complete model card for new data: what `mlops data init` writes beside the schema.

A fork's card is the demo's (`diamond-price`, RMSE with an `r2: 0.90` floor, prose
about diamonds); pointing only its `data:` at new data leaves a model name whose
Production has another schema and floors that mean nothing for this data. The new card
says only what can be known from the data, and marks the rest TODO:

- `model.name` from the data's name (`my_loans` -> `my-loans`);
- the task's primary metric (`pipeline.stages.metrics.PRIMARY_METRIC`) and its
  direction, `min_improvement: 0.0`;
- one floor on that metric derived from the dummy baseline scored on this data's
  validation rows, the rule written beside it (`pipeline.stages.baseline`);
- the card's prose with the facts it knows (rows, source, target) and a TODO for each
  thing a person must say (owner, intended use, limitations, ...).

The text is checked by the card's own validation (`ModelCard`, `check_policy`) before
it is returned: what is written can be read.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml

from pipeline.gitops.card import ModelCard, check_policy
from pipeline.stages.baseline import Floor, dummy_scores, floor_from_baseline
from pipeline.stages.metrics import PRIMARY_METRIC, greater_is_better

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.stages.datasets import DatasetSpec

VALIDATION_FRACTION = 0.2
TEST_FRACTION = 0.2
TODO = "TODO"
"""What marks the card's prose a person still has to write (`mlops card check` lists it)."""


@dataclass(frozen=True)
class NewCard:
    """The card's text and what it decided, for the command to show."""

    text: str
    model_name: str
    metric: str
    floors: tuple[Floor, ...]
    baseline: dict[str, float]


def describes(card: ModelCard | None, *, schema: str) -> bool:
    """Whether an existing card is already this data's (`data.dataset` names the schema):
    then it is kept, with its reviewed prose and policy, and only its data section moves.
    Any other card (the demo's, another dataset's) is replaced by a new one."""
    return card is not None and card.data.dataset == schema


def model_name_for(dataset: str) -> str:
    """`my_loans` -> `my-loans`: the registered model's name from the dataset's."""
    name = re.sub(r"[^A-Za-z0-9.\-]+", "-", dataset).strip("-.")
    return name or "model"


def new_card(frame: pd.DataFrame, spec: DatasetSpec, *, schema: str, source: str,
             model_name: str | None = None) -> NewCard:
    """A complete card for `spec`'s data in `frame` (what `source` holds), its floors
    derived from the dummy baseline on the validation rows of the pipeline's own split."""
    from pipeline.stages.data import PreparedData, cleanse, data_hash, split, validate

    clean, report = cleanse(validate(frame, spec), spec)
    train, validation, test = split(clean, validation_fraction=VALIDATION_FRACTION,
                                    test_fraction=TEST_FRACTION)
    data = PreparedData(spec=spec, train=train, validation=validation, test=test,
                        report=report, data_hash=data_hash(clean))
    baseline = dummy_scores(data)
    metric = PRIMARY_METRIC[spec.task]
    floor = floor_from_baseline(metric, baseline[metric], task=spec.task,
                                rows=len(validation))
    name = model_name or model_name_for(spec.name)
    text = render(spec, model_name=name, metric=metric, floors=(floor,), schema=schema,
                  source=source, rows=len(frame))
    card = ModelCard.model_validate(yaml.safe_load(text))  # what we write, we can read
    check_policy(card, task=spec.task)
    return NewCard(text=text, model_name=name, metric=metric, floors=(floor,),
                   baseline=baseline)


def render(spec: DatasetSpec, *, model_name: str, metric: str, floors: tuple[Floor, ...],
           schema: str, source: str, rows: int) -> str:
    """The card as YAML with a comment on each decision, in the demo card's layout."""
    floor_lines = []
    for floor in floors:
        floor_lines += [*_wrap(floor.rule, "    # "), f"    {floor.metric}: {floor.bound:g}"]
    target = spec.target.name
    features = len(spec.features)
    return "\n".join([
        "# The candidate proposed for production, the rules it must pass, and its model card,",
        f"# written by `mlops data init` from {_comment(source)} ({rows} rows): review every",
        f"# {TODO}. A pull request that changes candidate_run_id is gated by `mlops gate`;",
        "# merging it promotes the candidate with `mlops promote`.",
        "model:",
        f"  name: {_text(model_name)}   # the registered model, named after the data",
        "  candidate_run_id: null   # the MLflow run ID of the candidate (mlops train prints it)",
        "",
        "promotion:",
        "  mode: improve            # improve: must beat Production; rollback: a former "
        "Production version",
        f"  metric: {metric}  # the primary metric of {spec.task}; the gate computes it on "
        "the sealed test rows",
        f"  greater_is_better: {str(greater_is_better(metric)).lower()}",
        "  min_improvement: 0.0     # the confidence bound of the improvement must clear this",
        "  confidence: 0.95",
        "  floors:                  # absolute bounds every candidate must meet",
        *floor_lines,
        "  bootstrap_resamples: 2000",
        "  seed: 0",
        "",
        "data:",
        f"  dataset: {_text(schema)}  # schema by mlops data init: review it",
        f"  source: {_text(source)}",
        f"  validation_fraction: {VALIDATION_FRACTION} # rows mlops train logs val_* "
        "metrics on, and tuning selects on",
        f"  test_fraction: {TEST_FRACTION}       # sealed rows only the gate scores",
        "",
        "card:",
        *_prose("owner", f"{TODO}: the team that answers for this model"),
        *_prose("model_details",
            f"A scikit-learn Pipeline (imputation, encoding, then an estimator) trained by "
            f"`mlops train` to predict {target} from {features} features; the exact run is "
            f"candidate_run_id. {TODO}: the estimator chosen and why."),
        *_prose("intended_use",
            f"{TODO}: what the model is for, who uses its answers for which decisions, "
            "and what it must not be used for."),
        *_prose("training_data",
            f"{rows} rows of {source}. Cleansing drops exact duplicates and rows without "
            "a target; about 60% of the rest, chosen by a hash of each row, train the "
            f"model and 20% validate it. {TODO}: where the data comes from, when, and "
            "whom or what it covers."),
        *_prose("evaluation_data",
            "The sealed ~20% of rows chosen by the same row hash, scored by the gate "
            f"alone. {TODO}: how well they stand for the cases the model will meet."),
        *_prose("metrics",
            f"{metric} on the sealed test rows is the primary metric (a paired bootstrap "
            "of the difference decides promotion); the others are reported. Floor: "
            + "; ".join(floor.rule for floor in floors) + "."),
        *_prose("limitations",
            f"{TODO}: where the model is known to be weak (rare cases, ranges with few "
            "rows, changes over time)."),
        *_prose("ethical_considerations",
            f"{TODO}: personal data, groups its errors may fall on, how its answers "
            "could be misused."),
        *_prose("caveats_and_recommendations",
            "Retrain and re-gate when new data arrives; `mlops monitor` compares served "
            "traffic with the training data, `mlops registry-check` the registry with "
            "this card."),
        "",
    ])


def _prose(key: str, value: str) -> list[str]:
    """A card field as a folded block (`>-`), wrapped like the demo card's prose."""
    return [f"  {key}: >-", *_wrap(value, "    ")]


def _wrap(text: str, indent: str) -> list[str]:
    """Lines of at most 88 characters that fold back into `text` (no word is split)."""
    return textwrap.wrap(text, width=88, initial_indent=indent, subsequent_indent=indent,
                         break_on_hyphens=False, break_long_words=False)


def _text(value: str) -> str:
    """A YAML scalar that reads back as this text: plain when it does (`loans.csv`), else
    double-quoted (a JSON string is a valid YAML one: `"yes"`, `"a: b"`)."""
    plain = re.fullmatch(r"[A-Za-z0-9_][\w./-]*", value) is not None
    return value if plain and yaml.safe_load(value) == value else json.dumps(value)


def _comment(value: str) -> str:
    return value.replace("\n", " ")
