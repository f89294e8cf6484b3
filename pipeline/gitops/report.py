"""The gate's report: the PR comment, the job summary and what `mlops gate` prints.

Verdict first, in plain words, then the evidence: one sentence saying what the primary
metric's interval means, every metric for both models with the difference and its
bootstrap interval (as a table and as Mermaid charts GitHub draws in the comment), the
floors, the data hashes, and links to both runs. `render` is pure (a verdict in,
markdown out); `plot` draws one figure (predicted vs actual for regression, ROC for
classification) on the Agg canvas, with no pyplot state, for the shell to log to the
candidate run.
"""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.gitops.budgets import FIGURES
from pipeline.gitops.gate import fmt
from pipeline.gitops.markdown import code, mermaid_name, text
from pipeline.gitops.registry import run_url
from pipeline.gitops.slices import SLICES_FILE
from pipeline.gitops.verdict import Verdict
from pipeline.stages.metrics import METRICS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MARKER = "<!-- mlops-gate-report -->"
"""Hidden marker that finds the one sticky PR comment again on re-runs."""
_EMBEDDED = re.compile(r"<!-- mlops-verdict:([A-Za-z0-9_=-]+) -->")


_SIGNED = re.compile(r"<!-- mlops-verdict-signed:([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+) -->")


def embed_signed(token: str) -> str:
    """The trusted gate's signed verdict (`signing.sign`), hidden in the comment."""
    return f"<!-- mlops-verdict-signed:{token} -->"


def signed_tokens(markdown: str) -> list[str]:
    """Every signed verdict a comment holds (each is verified before it is believed)."""
    return _SIGNED.findall(markdown)


def embed_verdict(verdict: Verdict) -> str:
    """The verdict, hidden in the comment, so promote can compare with what was reviewed."""
    encoded = base64.urlsafe_b64encode(verdict.to_tag().encode()).decode()
    return f"<!-- mlops-verdict:{encoded} -->"


def embedded_verdict(markdown: str) -> Verdict | None:
    """The verdict hidden in a report, or None (none there, or not a verdict)."""
    match = _EMBEDDED.search(markdown)
    if match is None:
        return None
    try:
        return Verdict.from_tag(base64.urlsafe_b64decode(match.group(1)).decode())
    except (ValueError, TypeError, KeyError):
        return None


def render(verdict: Verdict, *, plot_note: str | None = None,
           marker: str | None = None) -> str:
    """Markdown for a person reviewing the pull request.

    Every value that a run, a tag, the registry or the card supplied goes through
    `markdown.text`/`code`, so the only markup is the report's own and the only hidden
    comments are its marker and `marker` (the embedded verdict, signed when the trusted
    gate workflow renders it; `embed_verdict` otherwise).
    """
    head = "✅ **PASS**" if verdict.passed else "❌ **FAIL**"
    against = (f"Production version {text(verdict.production_version)}"
               if verdict.production_version else "no Production version (first model)")
    lines = [
        MARKER,
        f"## Promotion gate: {head}",
        "",
        f"Candidate run {code(verdict.candidate_run_id)} vs {against} of "
        f"{code(verdict.model_name)}, mode {code(verdict.mode)}, on "
        f"{verdict.evaluated_rows:,} sealed test rows recomputed from the data (no run is "
        "scored on them before the gate).",
        "",
        "**Why it passed:**" if verdict.passed else "**Why it failed:**",
        "",
        *[f"- {text(reason)}" for reason in verdict.reasons],
        *([""] + [f"- ⚠️ {text(note)}" for note in verdict.notes] if verdict.notes else []),
        *(["", text(meaning)] if (meaning := interval_sentence(verdict)) else []),
        "",
        _metric_table(verdict),
        "",
        *chart(verdict),
        _floor_table(verdict),
        "",
        *slice_section(verdict),
        *serving_section(verdict),
        "| data | hash |",
        "|---|---|",
        *[f"| {text(role)} | {code(value or 'n/a')} |"
          for role, value in verdict.data_hashes.items()],
        "",
        f"- candidate run: {_run_link(verdict, verdict.candidate_run_id)}",
    ]
    if verdict.production_run_id:
        lines.append(f"- Production run: {_run_link(verdict, verdict.production_run_id)}")
    if plot_note:
        lines.append(f"- plot: {plot_note}")
    lines += ["", f"<sub>paired bootstrap, {verdict.resamples:,} resamples, seed {verdict.seed}, "
              f"policy hash {code(verdict.policy_hash)}, gated at {text(verdict.gated_at)}"
              "</sub>", "", marker if marker is not None else embed_verdict(verdict), ""]
    return "\n".join(lines)


_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def _run_link(verdict: Verdict, run_id: str | None) -> str:
    """The run's page in the MLflow UI: the configured tracking URI (without a login)
    and a run ID of MLflow's shape; anything else is shown as inert text."""
    if run_id is None or not _RUN_ID.match(run_id):
        return code(run_id)
    return run_url(verdict.tracking_uri, run_id)


def render_no_candidate(model_name: str) -> str:
    return "\n".join([
        MARKER, "## Promotion gate: ✅ **PASS** (nothing to gate)", "",
        f"The card names no candidate run for {code(model_name)}, so nothing would be "
        "promoted. Put a run ID in `model.candidate_run_id` (`mlops propose RUN_ID`) to gate "
        "it.", "",
    ])


def render_gate_error(workflow_url: str) -> str:
    where = f"the [workflow run]({workflow_url})" if workflow_url.startswith("http") else "the log"
    return "\n".join([
        MARKER, "## Promotion gate: ⚠️ **could not run**", "",
        f"The gate stopped before a verdict (exit 2): {where} says why in one line. "
        "A candidate cannot be promoted until the gate passes.", "",
    ])


def _metric_table(verdict: Verdict) -> str:
    level = f"{verdict.confidence:.0%}"
    rows = [f"| metric | candidate | Production | difference | {level} interval |",
            "|---|---:|---:|---:|---|"]
    for name, row in verdict.metrics.items():
        star = " (primary)" if name == verdict.metric else ""
        interval = (f"[{fmt(row.low)}, {fmt(row.high)}]" if row.low is not None else "n/a")
        rows.append(f"| {text(name)}{star} | {fmt(row.candidate)} | {fmt(row.production)} | "
                    f"{fmt(row.difference)} | {interval} |")
    return "\n".join(rows)


def interval_sentence(verdict: Verdict) -> str | None:
    """What the primary metric's interval means for this pull request, in one sentence."""
    row = verdict.metrics.get(verdict.metric)
    if row is None or row.low is None or row.high is None:
        return None
    level = f"{verdict.confidence:.0%}"
    better, worse = ("higher", "lower") if verdict.greater_is_better else ("lower", "higher")
    # As improvements (positive = better): the two ends, pessimistic first.
    low, high = sorted(improvement_ends(row.low, row.high, verdict.greater_is_better))
    name = f"the candidate's {verdict.metric.upper()}"
    if low > 0:
        where = f"between {fmt(low)} and {fmt(high)} {better} than Production's"
    elif high < 0:
        return (f"With {level} confidence {name} is worse than Production's: between "
                f"{fmt(-high)} and {fmt(-low)} {worse}.")
    elif low == high == 0:
        return f"The candidate's {verdict.metric.upper()} equals Production's on every row."
    else:
        where = (f"anywhere from {fmt(high)} {better} to {fmt(-low)} {worse} than "
                 "Production's: these rows cannot tell which model is better")
    return f"With {level} confidence {name} is {where}."


def improvement_ends(low: float, high: float, greater_is_better: bool) -> tuple[float, float]:
    """An interval of differences as improvements (positive = better), pessimistic first."""
    return (low, high) if greater_is_better else (-high, -low)


CHART_SIZE = '%%{init: {"xyChart": {"width": 640, "height": 240}}}%%'
"""Short and wide: the default chart is taller than the rest of the comment and cuts a
long title at both ends (seen rendered by Chromium with the mermaid package)."""


def chart(verdict: Verdict) -> list[str]:
    """A Mermaid chart per metric: the interval's ends and the observed improvement as bars,
    the bar to clear (`min_improvement` for the primary metric, 0 for the others) as a line.

    GitHub renders ```mermaid blocks in comments and job summaries, so the reviewer sees
    the picture without registry credentials. Empty when no metric has an interval.
    """
    lines: list[str] = []
    for name, row in verdict.metrics.items():
        if row.low is None or row.high is None or row.difference is None \
                or not mermaid_name(name):
            continue
        greater = (verdict.greater_is_better if name == verdict.metric
                   else METRICS[name].greater_is_better if name in METRICS else True)
        pessimistic, optimistic = improvement_ends(row.low, row.high, greater)
        observed = row.difference if greater else -row.difference
        bar = verdict.min_improvement if name == verdict.metric else 0.0
        values = [pessimistic, observed, optimistic, bar]
        span = max(values) - min(values) or 1.0
        low_axis, high_axis = min(values) - 0.1 * span, max(values) + 0.1 * span
        label = f"min_improvement {_num(bar)}" if name == verdict.metric else "no change"
        lines += [
            "```mermaid",
            CHART_SIZE,
            "xychart-beta",
            f'    title "{name}: improvement over Production, {verdict.confidence:.0%} interval"',
            '    x-axis ["pessimistic end", "observed", "optimistic end"]',
            f'    y-axis "improvement in {name}" {_num(low_axis)} --> {_num(high_axis)}',
            f"    bar [{', '.join(_num(v) for v in values[:3])}]",
            f"    line [{', '.join(_num(bar) for _ in range(3))}]",
            "```",
            f"<sub>{name}: the bars are the improvement over Production (positive = better) "
            f"at the interval's ends and as observed; the line is {label}.</sub>",
            "",
        ]
    return lines


def _num(value: float) -> str:
    """A plain number Mermaid parses: no thousands separators, a few significant digits."""
    return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.0f}"


def _floor_table(verdict: Verdict) -> str:
    if not verdict.floors:
        return "No floors are set in the card."
    rows = ["| floor | bound | candidate | holds |", "|---|---:|---:|---|"]
    for floor in verdict.floors:
        side = "≥" if floor.greater_is_better else "≤"
        rows.append(f"| {text(floor.metric)} | {side} {fmt(floor.bound)} | "
                    f"{fmt(floor.value)} | {'yes' if floor.ok else '**no**'} |")
    return "\n".join(rows)


FOLDED_SLICES = 12
"""A longer slice table is folded (`<details>`): the failing slices are in the reasons."""


def slice_section(verdict: Verdict) -> list[str]:
    """The primary metric per slice, both models, the corrected interval, and whether the
    slice holds; empty when the card declares no slices."""
    table = verdict.slices
    if table is None:
        return []
    metric = text(table.metric)
    worse = "lower" if verdict.greater_is_better else "higher"
    head = [f"**Slices**: {metric} on each slice of the sealed test rows."]
    compared = verdict.mode == "improve" and verdict.production_run_id not in (
        None, verdict.candidate_run_id)
    if table.family and not compared:
        head.append("Slices are judged only when the candidate is compared with another "
                    "Production (mode improve): shown here, not judged.")
    elif table.family:
        head.append(
            f"A slice with at least {table.min_rows:,} rows fails when the candidate's {metric} "
            f"could be {worse} than Production's by more than {fmt(table.max_regression)} "
            f"(max_regression): each interval of the difference candidate - Production is "
            f"at {table.confidence:.2%}, Bonferroni-corrected for the {table.family} slices "
            f"judged, so that all of them hold together at {verdict.confidence:.0%}; "
            "smaller slices are shown, not judged.")
    else:
        head.append("No slice is compared with Production (there is none, or no slice "
                    f"has {table.min_rows:,} rows).")
    digest = f"<sub>slice table sha256 {code(table.digest)} ({code(SLICES_FILE)})</sub>"
    if not table.rows:
        return [" ".join(head), "", f"The rows are in the {code(SLICES_FILE)} artifact. {digest}",
                ""]
    level = f"{table.confidence:.2%}"
    rows = [f"| slice | rows | candidate | Production | difference | {level} interval | holds |",
            "|---|---:|---:|---:|---:|---|---|"]
    for row in table.rows:
        interval = f"[{fmt(row.low)}, {fmt(row.high)}]" if row.low is not None else "n/a"
        rows.append(f"| {text(row.label)} | {row.rows:,} | {fmt(row.candidate)} | "
                    f"{fmt(row.production)} | {fmt(row.difference)} | {interval} | "
                    f"{_holds(row.holds, row.rows, table.min_rows)} |")
    if len(table.rows) > FOLDED_SLICES:
        failed = len(table.failed)
        summary = (f"all {len(table.rows)} slices ({failed} failing)" if failed
                   else f"all {len(table.rows)} slices")
        rows = [f"<details><summary>{summary}</summary>", "", *rows, "", "</details>"]
    return [" ".join(head), "", *rows, "", digest, ""]


def _holds(holds: bool | None, rows: int, min_rows: int) -> str:
    if holds is None:
        return f"not judged (under {min_rows:,} rows)" if rows < min_rows else "not judged"
    return "yes" if holds else "**no**"


def serving_section(verdict: Verdict) -> list[str]:
    """Both models' serving figures side by side, the candidate's ratio to Production's,
    and each declared budget; empty when nothing was measured (a note says why)."""
    serving = verdict.serving
    if serving is None:
        return []
    mine, theirs = serving.candidate, serving.production
    budgets = {check.name: check for check in verdict.budgets}
    runs = f"median of {mine.runs} run{'s' if mine.runs != 1 else ''} per model"
    production = f"Production ({text(theirs.runtime)})" if theirs is not None else "Production"
    lines = [f"**Serving cost** on the runtime each model would be served with, each loaded "
             f"in a process of its own ({runs}; one row, one thread):", "",
             f"| figure | budget | candidate ({text(mine.runtime)}) | {production} | "
             "candidate / Production | holds |",
             "|---|---:|---:|---:|---:|---|"]
    for name, (what, unit) in FIGURES.items():
        check = budgets.get(name)
        ratio = serving.ratio(name)
        lines.append(
            f"| {what} ({unit}) | {'≤ ' + fmt(check.limit) if check else '—'} | "
            f"{fmt(mine.figure(name))} | "
            f"{fmt(theirs.figure(name)) if theirs is not None else 'n/a'} | "
            f"{f'{ratio:.2f}x' if ratio is not None else 'n/a'} | "
            f"{('yes' if check.ok else '**no**') if check else '—'} |")
    return [*lines, ""]


def plot(*, task: str, truth: np.ndarray, predictions: dict[str, np.ndarray],
         probabilities: dict[str, np.ndarray | None], classes: list[Any] | None
         ) -> tuple[Figure, str] | None:
    """Predicted vs actual (regression) or ROC (classification), or None if not drawable."""
    # Imported here: matplotlib costs every other command start-up time it does not need.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    if task == "regression":
        for role, values in predictions.items():
            axes.scatter(truth, values, s=3, alpha=0.35, label=role)
        low, high = float(np.min(truth)), float(np.max(truth))
        axes.plot([low, high], [low, high], color="black", linewidth=1, label="perfect")
        axes.set(xlabel="actual", ylabel="predicted",
                 title="Predicted vs actual (sealed test rows)")
        axes.legend()
        return figure, "predicted_vs_actual.png"
    if classes is None or len(classes) != 2:
        return _roc_one_vs_rest(figure, axes, truth, probabilities, classes)
    drawn = False
    for role, proba in probabilities.items():
        if proba is None:
            continue
        fpr, tpr = _roc_curve(truth == classes[1], proba[:, 1])
        axes.plot(fpr, tpr, label=role)
        drawn = True
    if not drawn:
        return None
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    axes.set(xlabel="false positive rate", ylabel="true positive rate",
             title="ROC (sealed test rows)")
    axes.legend()
    return figure, "roc.png"


def _roc_one_vs_rest(figure: Figure, axes: Any, truth: np.ndarray,
                     probabilities: dict[str, np.ndarray | None],
                     classes: list[Any] | None) -> tuple[Figure, str] | None:
    proba = probabilities.get("candidate")
    if proba is None or classes is None:
        return None
    for index, label in enumerate(classes):
        fpr, tpr = _roc_curve(truth == label, proba[:, index])
        axes.plot(fpr, tpr, label=f"candidate: {label}")
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    axes.set(xlabel="false positive rate", ylabel="true positive rate",
             title="ROC one-vs-rest (sealed test rows)")
    axes.legend(fontsize="small")
    return figure, "roc.png"


def _roc_curve(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(positive, score)
    return fpr, tpr
