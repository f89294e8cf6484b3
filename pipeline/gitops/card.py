"""`model_card.yaml`: the candidate run, the promotion policy, the data, and the card.

Validated by pydantic so a bad card fails with the field path and the reason before
anything touches the registry. The card section follows Mitchell et al., "Model Cards
for Model Reporting" (2019).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pipeline.errors import ConfigError, format_validation_error
from pipeline.files import atomic_write, read_yaml_mapping

if TYPE_CHECKING:
    from pipeline.stages.data import PreparedData
    from pipeline.stages.datasets import DatasetSpec

RUN_ID_PATTERN = r"^[0-9a-f]{32}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Strict):
    name: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    candidate_run_id: str | None = Field(default=None, pattern=RUN_ID_PATTERN)
    twin_tolerance: float | None = Field(default=None, gt=0)
    """Regression: how far (in target units) the compiled twin may be from the model;
    by default 1e-6 * max(1, |y|)."""


MAX_SLICES = 100
"""More slices than this would make the report unreadable and each corrected interval so
wide that none passes: the gate refuses (exit 2) and asks for bins or fewer columns."""


class SliceSection(_Strict):
    """Which slices of the sealed test rows the gate compares, and how much worse one may be.

    Each column's values make slices (a numeric column's bins, declared in `bins`, make
    them instead). A slice with at least `min_rows` rows fails the gate when the candidate
    could be worse than Production on it, on the primary metric, by more than
    `max_regression` (the metric's units): the pessimistic end of the slice's paired
    bootstrap interval, Bonferroni-corrected for the number of slices judged, must not
    fall below `-max_regression` (docs/gate.md, "Slices").
    """

    columns: list[str] = Field(min_length=1)
    bins: dict[str, list[float]] = Field(default_factory=dict)
    """A numeric column's bin edges, increasing: `[0.5, 1, 2]` makes `< 0.5`,
    `0.5 to < 1`, `1 to < 2` and `>= 2`."""
    min_rows: int = Field(default=100, ge=10)
    """A smaller slice is shown in the report but never fails the gate: too few rows."""
    max_regression: float = Field(ge=0.0, allow_inf_nan=False)

    @field_validator("columns")
    @classmethod
    def _distinct_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.strip():
                raise ValueError("a column name must not be blank")
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"{repeated[0]!r} is named twice")
        return value

    @field_validator("bins")
    @classmethod
    def _increasing_edges(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        for name, edges in value.items():
            if not edges:
                raise ValueError(f"{name}: give at least one edge")
            if not all(math.isfinite(edge) for edge in edges):
                raise ValueError(f"{name}: edges must be finite numbers")
            if any(b <= a for a, b in itertools.pairwise(edges)):
                raise ValueError(f"{name}: edges must be strictly increasing")
        return value

    @model_validator(mode="after")
    def _bins_of_named_columns(self) -> SliceSection:
        stray = sorted(set(self.bins) - set(self.columns))
        if stray:
            raise PydanticCustomError(
                "stray_bins", "bins.{name}: not one of the slice columns",
                {"name": stray[0]})
        return self


class BudgetSection(_Strict):
    """What serving the candidate may cost, measured on the runtime it would be served with
    (its compiled twin when it has one, else sklearn), in a process of its own.

    Every limit is optional; without any, the figures are still measured and shown next
    to Production's. Timings are of one row, repeated; each figure is the median over
    `repeats` processes per model (docs/gate.md, "Serving budgets").
    """

    p50_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    p99_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    model_mb: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    load_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    memory_mb: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    repeats: int = Field(default=3, ge=1, le=15)

    def limits(self) -> dict[str, float]:
        """The declared budgets, by figure name, in a fixed order."""
        values = {"p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "model_mb": self.model_mb,
                  "load_s": self.load_s, "memory_mb": self.memory_mb}
        return {name: value for name, value in values.items() if value is not None}


class PromotionPolicy(_Strict):
    mode: Literal["improve", "rollback"] = "improve"
    metric: str = Field(min_length=1)
    greater_is_better: bool
    min_improvement: float = 0.0
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    floors: dict[str, float] = Field(default_factory=dict)
    bootstrap_resamples: int = Field(default=2000, ge=1000, le=100_000)
    seed: int = 0
    slices: SliceSection | None = None
    budgets: BudgetSection | None = None


class DataSection(_Strict):
    """Which data, and how its rows split: train, validation, and test (sealed).

    Both fractions are of all rows after cleansing; train gets the rest. The
    defaults (0.2 and 0.2) keep the test set the one `holdout_fraction: 0.2` held out.
    """

    dataset: str = Field(default="diamonds", min_length=1)
    source: str = Field(default="builtin", min_length=1)
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)

    @model_validator(mode="before")
    @classmethod
    def _no_holdout_fraction(cls, value: Any) -> Any:
        if isinstance(value, dict) and "holdout_fraction" in value:
            raise PydanticCustomError(
                "renamed", "holdout_fraction is now two keys: validation_fraction (rows that "
                "mlops train logs and tuning selects on) and test_fraction (the sealed rows "
                "only the gate scores); replace it with both")
        return value

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> DataSection:
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise PydanticCustomError(
                "no_training_rows", "validation_fraction + test_fraction must stay below 1, "
                "or no row is left for training")
        return self


class CardSection(_Strict):
    owner: str = Field(min_length=1)
    intended_use: str = Field(min_length=1)
    training_data: str = Field(min_length=1)
    evaluation_data: str = Field(min_length=1)
    limitations: str = Field(min_length=1)
    ethical_considerations: str = Field(min_length=1)
    model_details: str | None = None
    metrics: str | None = None
    caveats_and_recommendations: str | None = None

    @field_validator("*")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value


class DriftTest(_Strict):
    """The two-sample test of one kind of column, and the level it is judged at."""

    threshold: float = Field(default=0.05, gt=0.0, lt=0.5)
    """A column drifts when its p-value, corrected for the number of columns tested
    (`MonitoringSection.correction`), is below this."""


class NumericDrift(DriftTest):
    test: Literal["ks", "cramer_von_mises"] = "ks"
    """ks: two-sample Kolmogorov-Smirnov; cramer_von_mises: two-sample Cramér-von Mises
    (Evidently's `ks` and `cramer_von_mises`, through scipy)."""


class CategoricalDrift(DriftTest):
    test: Literal["chisquare", "g_test"] = "chisquare"
    """Pearson's chi-square or the G-test of the window's category counts against the
    reference's shares (Evidently's `chisquare` and `g_test`, through scipy)."""


class MonitoringSection(_Strict):
    """How `mlops monitor` judges a window of logged traffic (docs/monitoring.md).

    Every input feature and the prediction are tested against the training reference;
    the p-values are corrected together (`correction`), so a window of unshifted traffic
    raises any alarm at all with a chance of at most the largest threshold.
    """

    numeric: NumericDrift = NumericDrift()
    categorical: CategoricalDrift = CategoricalDrift()
    correction: Literal["holm", "bonferroni"] = "holm"
    min_rows: int = Field(default=100, ge=1)
    """A window with fewer logged rows is refused (exit 2): too few to test."""
    decay_tolerance: float = Field(default=0.10, ge=0.0, lt=1.0)
    """With labels: decay when the live metric's interval lies entirely on the worse
    side of the gate's value by more than this share of it."""
    id_column: str | None = Field(default=None, min_length=1)
    """A request column that identifies a row, passed through by /predict without
    feeding the model; labels may be keyed by it instead of (request_id, row)."""


class ModelCard(_Strict):
    model: ModelSection
    promotion: PromotionPolicy
    data: DataSection = DataSection()
    card: CardSection
    monitoring: MonitoringSection = MonitoringSection()


def load_card(path: Path | str) -> ModelCard:
    """Read and validate a card; every problem becomes one line naming the field."""
    path = Path(path)
    raw = read_yaml_mapping(path, label=str(path), expected="model, promotion and card")
    try:
        return ModelCard.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{path}: {format_validation_error(err)}") from err


_CANDIDATE_LINE = re.compile(r"^(\s*candidate_run_id:)[^\n#]*(#.*)?$", re.MULTILINE)


def write_candidate_run_id(path: Path, run_id: str, *, source: Path | None = None) -> None:
    """Put `run_id` in the card, keeping its comments; atomic, validated before writing.
    With `source`, the card read is that one and `path` becomes its copy."""
    if not re.match(RUN_ID_PATTERN, run_id):
        raise ConfigError(f"run ID {run_id!r} is not a 32-character MLflow run ID")
    text = (source or path).read_text(encoding="utf-8")
    new_text, count = _CANDIDATE_LINE.subn(
        lambda m: f"{m.group(1)} {run_id}" + (f"  {m.group(2)}" if m.group(2) else ""), text
    )
    if count != 1:
        raise ConfigError(f"{path}: expected exactly one 'candidate_run_id:' line, found {count}")
    try:
        ModelCard.model_validate(yaml.safe_load(new_text))
    except ValidationError as err:
        raise ConfigError(f"{path}: {format_validation_error(err)}") from err
    atomic_write(path, new_text)


_TOP_LEVEL_KEY = re.compile(r"^[A-Za-z_]\w*:", re.MULTILINE)


def with_data_section(path: Path, *, dataset: str, source: str, comment: str) -> str:
    """The card's text with `data:` pointed at a dataset and source, every other line kept.

    Only the `dataset:` and `source:` lines of the `data:` block change (added when
    absent, the block too). The result is validated; the caller writes it (atomically).
    """
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if re.match(r"^data:\s*(#.*)?$", line))
    except StopIteration:
        lines += ["", "data:"]
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines)) if _TOP_LEVEL_KEY.match(lines[i])),
               len(lines))
    values = {"dataset": (_yaml_scalar(dataset), f"  # {comment}"),
              "source": (_yaml_scalar(source), "")}
    for key, (value, note) in values.items():
        pattern = re.compile(rf"^(\s+){key}:[^\n#]*(#.*)?$")
        found = [i for i in range(start + 1, end) if pattern.match(lines[i])]
        if found:
            match = pattern.match(lines[found[0]])
            assert match is not None
            kept = note or (f"  {match.group(2)}" if match.group(2) else "")
            lines[found[0]] = f"{match.group(1)}{key}: {value}{kept}"
        else:
            lines.insert(start + 1, f"  {key}: {value}{note}")
            end += 1
    new_text = "\n".join(lines) + "\n"
    try:
        ModelCard.model_validate(yaml.safe_load(new_text))
    except ValidationError as err:
        raise ConfigError(f"{path}: {format_validation_error(err)}") from err
    return new_text


def _yaml_scalar(value: str) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).removesuffix(
        "\n").removesuffix("\n...").strip()


def prepare_data(card: ModelCard, *, root: Path | None = None,
                 spec: DatasetSpec | None = None) -> PreparedData:
    """The card's dataset through the data stage, split into the card's three sets.

    Relative paths in `data` are read under `root` when given (the gate workflow's copy
    of a pull request's files), else from the working directory, as always.
    """
    from pipeline.stages.data import prepare  # pandas and sklearn: only when used
    from pipeline.stages.datasets import load_spec

    data = card.data
    where = {path: str(root / path) for path in data_files(card)} if root is not None else {}
    return prepare(spec or load_spec(where.get(data.dataset, data.dataset)),
                   source=where.get(data.source, data.source),
                   validation_fraction=data.validation_fraction, test_fraction=data.test_fraction)


def data_files(card: ModelCard) -> list[str]:
    """The repository files the card's data section names (a schema, a data file), as
    relative paths: what a gate run elsewhere must read from the pull request."""
    from pipeline.stages.datasets import SCHEMA_SUFFIXES

    files = []
    if card.data.dataset.lower().endswith(SCHEMA_SUFFIXES):
        files.append(card.data.dataset)
    source = card.data.source
    if source != "builtin" and "://" not in source:
        files.append(source)
    return [path for path in files if not Path(path).is_absolute()]


def check_policy(card: ModelCard, *, task: str) -> None:
    """The promotion policy must speak of metrics this task logs, in their direction.

    Checked when the task is known (the dataset module declares it), so a typo in a
    floor or a flipped `greater_is_better` fails with the field path before any
    model is evaluated; so does a card about other data that kept the demo card's
    model name or prose (`check_leftovers`).
    """
    from pipeline.stages.metrics import METRICS

    policy = card.promotion
    resamplable = sorted(m.name for m in METRICS.values() if m.task == task and m.resamplable)
    of_task = sorted(m.name for m in METRICS.values() if m.task == task)
    if policy.metric not in resamplable:
        points = sorted(set(of_task) - set(resamplable))
        raise ConfigError(
            f"promotion.metric: {policy.metric!r} is not a metric the gate can compare for a "
            f"{task} task (choose one of {', '.join(resamplable)}"
            + (f"; {' and '.join(points)} may be floors, not the primary: the gate's "
               "bootstrap resamples labels)" if points else ")")
        )
    direction = METRICS[policy.metric].greater_is_better
    if policy.greater_is_better != direction:
        raise ConfigError(
            f"promotion.greater_is_better: {policy.metric} is better when "
            f"{'higher' if direction else 'lower'}, so this must be {str(direction).lower()}"
        )
    for metric in policy.floors:
        if metric not in of_task:
            raise ConfigError(
                f"promotion.floors.{metric}: not a metric of a {task} task "
                f"(choose from {', '.join(of_task)})"
            )
    check_leftovers(card)


DEMO_DATASET = "diamonds"
DEMO_CARD = {
    "model.name": "diamond-price",
    "card.owner": "3868e93e60b1f779",
    "card.model_details": "1ce54395afade263",
    "card.intended_use": "dc9955ea339c99f8",
    "card.training_data": "5be7a1f9a77db6d7",
    "card.evaluation_data": "de6229a43168696c",
    "card.metrics": "ec544e4f9c5a2aa0",
    "card.limitations": "6dda227d46e76908",
    "card.ethical_considerations": "3f20ec129a435e2e",
    "card.caveats_and_recommendations": "412a86e64228c9b9",
}
"""The demo card (`model_card.yaml` as the repository ships it): its model name, and a
fingerprint of each field of its prose (`prose_fingerprint`). A test holds them to the
shipped card."""
PLACEHOLDER = "TODO"


def prose_fingerprint(text: str) -> str:
    """A short hash of prose, blind to how its lines are wrapped."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:16]


def demo_leftovers(card: ModelCard) -> list[str]:
    """The fields still the demo card's in a card whose data is not the demo's.

    A fork that changed `data:` alone keeps a model name whose Production was trained on
    other columns (the gate then fails on "feature schema differs") and prose about
    diamonds; `mlops data init` writes a whole card instead.
    """
    if card.data.dataset == DEMO_DATASET:
        return []
    found = ["model.name"] if card.model.name == DEMO_CARD["model.name"] else []
    for field, value in card.card.model_dump().items():
        key = f"card.{field}"
        if value is not None and DEMO_CARD.get(key) == prose_fingerprint(value):
            found.append(key)
    return found


def placeholders(card: ModelCard) -> list[str]:
    """The card's prose fields that still hold a TODO for a person to write."""
    return [f"card.{field}" for field, value in card.card.model_dump().items()
            if value is not None and PLACEHOLDER in value]


def check_leftovers(card: ModelCard) -> None:
    """Refuse a card about other data that still carries the demo card's fields."""
    found = demo_leftovers(card)
    if found:
        raise ConfigError(
            f"{', '.join(found)}: still the demo card's, but data.dataset is "
            f"{card.data.dataset!r}; write this model's own (`mlops data init` writes a "
            "whole card for new data)")


def check_slices(card: ModelCard, *, spec: DatasetSpec) -> None:
    """Every slice column is a column of the card's dataset, binned when it is numeric.

    Checked before any model is downloaded, so a typo in a slice column fails with the
    field path (exit 2) instead of slicing nothing; the gate checks the rows themselves
    again when it splits them (`pipeline.gitops.slices.split`).
    """
    section = card.promotion.slices
    if section is None:
        return
    kinds = {column.name: column.kind for column in spec.columns}
    for name in section.columns:
        if name not in kinds:
            raise ConfigError(
                f"promotion.slices.columns: {name!r} is not a column of dataset {spec.name} "
                f"(columns: {', '.join(kinds)})")
        if kinds[name] == "numeric" and name not in section.bins:
            raise ConfigError(
                f"promotion.slices.bins.{name}: {name} is numeric; declare its bin edges "
                f"(e.g. {name}: [edge, edge, ...]) to slice it")
        if kinds[name] != "numeric" and name in section.bins:
            raise ConfigError(f"promotion.slices.bins.{name}: {name} is categorical; its "
                              "values are the slices, so it takes no bins")


def policy_hash(card: ModelCard) -> str:
    """A content hash of what a gate verdict depends on: model, candidate, policy, data.

    The prose of the card is left out on purpose: fixing a typo in `limitations`
    after the gate ran must not invalidate the verdict; changing a floor must.
    """
    payload = {
        "model": card.model.model_dump(mode="json"),
        # Keys left unset (slices, budgets) are left out: a card that does not use them
        # keeps the hash it had before they existed.
        "promotion": card.promotion.model_dump(mode="json", exclude_none=True),
        "data": card.data.model_dump(mode="json"),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
