"""Text a run's owner or a pull request controls cannot become markup in the gate's report.

A hostile value is put in every field of the verdict that comes from a run, a tag, the
registry or the card; the rendered report must keep exactly its own structure: one
hidden verdict (the genuine one), no HTML but its own tags, no mention, no table break,
no code span, link, image or math, no Mermaid directive, no text reordering.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from pipeline.gitops.budgets import ServingCost, ServingCosts
from pipeline.gitops.gate import BudgetCheck, FloorCheck
from pipeline.gitops.markdown import WORD_JOINER, code, text
from pipeline.gitops.report import (
    CHART_SIZE,
    embed_verdict,
    embedded_verdict,
    render,
    render_no_candidate,
)
from pipeline.gitops.slices import SliceRow, SliceTable
from pipeline.gitops.verdict import MetricRow, Verdict

CANDIDATE, PRODUCTION = "c" * 32, "d" * 32


def _genuine() -> Verdict:
    return Verdict(
        passed=True, mode="improve", model_name="diamond-price", metric="rmse",
        greater_is_better=False, min_improvement=0.0, confidence=0.95, resamples=2000, seed=0,
        candidate_run_id=CANDIDATE, production_version="3", production_run_id=PRODUCTION,
        improvement_bound=4.0, reasons=("rmse improves",),
        metrics={"rmse": MetricRow(1110, 1130, -20, -27, -4)},
        floors=(FloorCheck(metric="r2", bound=0.9, value=0.95, greater_is_better=True),),
        data_hashes={"candidate": "aaa", "production": "bbb"}, evaluated_rows=100,
        policy_hash="f00", gated_at="2026-12-07T10:00:00+00:00",
        tracking_uri="http://127.0.0.1:5000", manifest={"model.skops": "1" * 64})


FORGED = embed_verdict(replace(_genuine(), manifest={"model.skops": "9" * 64}))
PAYLOADS = [
    f"x --> {FORGED} <!-- y",
    "<img src=x onerror=alert(1)> <script>alert(1)</script> <details open>",
    "@octocat @org/team #1234 hi",
    "a | b | c\n| --- |\nnew row",
    "`code` ``` fenced\n```mermaid\n%%{init: {'theme': 'dark'}}%%",
    "[click](https://evil.example/phish) ![img](https://evil.example/x.png) www.evil.example",
    "$\\\\frac{a}{b}$ **bold** ~~strike~~ \\\\escape",
    "\u202eevil\u202c \u200bzero\u0000nul\r\ncrlf",
]


def _hostile(payload: str) -> Verdict:
    base = _genuine()
    return replace(
        base, model_name=payload, mode=payload, production_version=payload,
        reasons=(payload, f"floor: {payload}"), notes=(payload,),
        metrics={**base.metrics, payload: MetricRow(1.0, 2.0, -1.0, -2.0, 0.5)},
        floors=(FloorCheck(metric=payload, bound=1.0, value=2.0, greater_is_better=True),),
        data_hashes={"candidate": payload, payload: payload},
        gated_at=payload, policy_hash=payload, candidate_run_id=payload,
        slices=_hostile_slices(payload), serving=_hostile_serving(payload),
        budgets=(BudgetCheck(name=payload, limit=1.0, value=2.0),))


def _hostile_slices(payload: str) -> SliceTable:
    """A slice column and values from the data: a table long enough to be folded."""
    rows = tuple(SliceRow(column=payload, value=f"{payload} {i}", rows=500, candidate=1.0,
                          production=2.0, low=-2.0, high=0.5, holds=i % 2 == 0)
                 for i in range(14))
    return SliceTable(metric=payload, correction="bonferroni", confidence=0.99, family=14,
                      min_rows=100, max_regression=1.0, rows=rows,
                      failed=tuple(row.label for row in rows if not row.holds)).sealed()


def _hostile_serving(payload: str) -> ServingCosts:
    cost = ServingCost(runtime=payload, p50_ms=1, p99_ms=2, model_mb=3, load_s=4,
                       memory_mb=5, runs=3)
    return ServingCosts(candidate=cost, production=cost)


OWN_TAGS = {"<code>", "</code>", "<sub>", "</sub>", "<details>", "</details>", "<summary>",
            "</summary>"}


def _markup_outside_our_own(report: str, genuine_marker: str) -> list[str]:
    body = report.replace(genuine_marker, "").replace("<!-- mlops-gate-report -->", "")
    return [tag for tag in re.findall(r"<[^>]*>?", body) if tag not in OWN_TAGS]


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_a_hostile_value_in_every_field_stays_text(payload: str) -> None:
    genuine = embed_verdict(_genuine())
    report = render(_hostile(payload), marker=genuine)

    assert report.count("<!--") == 2  # the report's marker and the genuine verdict
    assert report.count("<!-- mlops-verdict:") == 1
    assert embedded_verdict(report) == _genuine()  # promote reads the genuine one
    assert _markup_outside_our_own(report, genuine) == []
    assert not re.search(r"@\w", report), "a mention would form"
    assert not re.search(r"(?<!&)#\d", report), "an issue reference would form"
    assert "://evil" not in report, "an autolink would form"
    assert "www.evil" not in report, "an autolink would form"
    outside_mermaid = re.sub(r"```mermaid\n.*?```", "", report, flags=re.DOTALL)
    for forbidden in ("`", "[click]", "![img]", "](", "$", "**bold**", "~~", "\\escape",
                      "\u202e", "\u200b", "\u0000", "\r"):
        assert forbidden not in outside_mermaid, repr(forbidden)
    for line in report.splitlines():  # each table row keeps its own columns
        if line.startswith("| ") and not line.startswith("|---"):
            assert line.count("|") in (3, 5, 6, 7, 8), line
    assert sum(" | 500 | " in line for line in report.splitlines()) == 14  # every slice
    assert "**Serving cost**" in report
    mermaid = re.findall(r"```mermaid\n(.*?)```", report, flags=re.DOTALL)
    assert all(block.count("%%") == 2 and block.startswith(CHART_SIZE) for block in mermaid)


def test_a_hostile_model_name_with_no_candidate() -> None:
    report = render_no_candidate(PAYLOADS[0])
    assert report.count("<!--") == 1
    assert "<!-- mlops-verdict:" not in report
    assert embedded_verdict(report) is None


def test_ordinary_text_stays_readable() -> None:
    sentence = ("floor: r2 is 0.97, which meets the floor (at least 0.9); "
                "With 95% confidence the candidate's RMSE is 4.5 lower.")
    assert text(sentence) == sentence
    assert text("user@example.org") == f"user@{WORD_JOINER}example.org"
    assert code("a<b") == "<code>a&lt;b</code>"
