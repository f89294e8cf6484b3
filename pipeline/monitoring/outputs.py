"""What `mlops monitor` leaves behind: the JSON summary, the HTML report, the gauges.

The HTML report is one self-contained page (charts inline as PNG): the verdict, then a
row per column as Evidently lays out its drift table (kind, reference and window
distributions, test, corrected p-value, threshold, drifted), and the live metric when
labels were given. The Prometheus gauges are written in the text exposition format to
a file, for node_exporter's textfile collector (no Pushgateway): the last run's figures
per model and version, replaced atomically on each run.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from pipeline.files import atomic_write
from pipeline.monitoring.drift import ColumnDrift
from pipeline.monitoring.monitor import MonitorResult


def write_json(result: MonitorResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(result.to_json(), indent=2) + "\n")


def write_gauges(result: MonitorResult, path: Path) -> None:
    """The last run's figures as Prometheus gauges in a textfile (atomic rename)."""
    registry = CollectorRegistry()
    labels = {"model": result.model_name, "version": result.model_version}
    names = list(labels)
    _gauge(registry, "mlops_monitor_drift", "1 when the last window drifted", names, labels,
           float(result.drift))
    _gauge(registry, "mlops_monitor_decay", "1 when the live metric decayed", names, labels,
           float(result.decay))
    _gauge(registry, "mlops_monitor_rows", "Logged rows in the last window", names, labels,
           result.rows)
    _gauge(registry, "mlops_monitor_last_run_timestamp_seconds", "When the monitor last ran",
           names, labels, pd.Timestamp(result.checked_at).timestamp())
    p_values = Gauge("mlops_monitor_column_p_value",
                     "Corrected p-value of each column's drift test (drifts below threshold)",
                     [*names, "column"], registry=registry)
    drifted = Gauge("mlops_monitor_column_drifted", "1 for a column that drifted",
                    [*names, "column"], registry=registry)
    for column in (*result.features, result.prediction):
        p_values.labels(*labels.values(), column.name).set(column.statistic)
        drifted.labels(*labels.values(), column.name).set(float(column.drifted))
    if result.live is not None:
        live = Gauge("mlops_monitor_live_metric", "The gate's metric on labeled live rows",
                     [*names, "metric", "bound"], registry=registry)
        for bound, value in (("value", result.live.value), ("low", result.live.low),
                             ("high", result.live.high)):
            live.labels(*labels.values(), result.live.metric, bound).set(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)


def _gauge(registry: CollectorRegistry, name: str, text: str, names: list[str],
           labels: dict[str, str], value: float) -> None:
    Gauge(name, text, names, registry=registry).labels(*labels.values()).set(value)


# --- the HTML report ---------------------------------------------------------------------------


def write_html(result: MonitorResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, render_html(result))


def render_html(result: MonitorResult) -> str:
    reference, window = result.frames if result.frames is not None else (None, None)
    rows = "".join(_column_row(c, reference, window) for c in (*result.features,
                                                               result.prediction))
    head = "Drift detected" if result.drift else "No drift detected"
    if result.decay:
        head += " &middot; live metric decayed"
    tone = "alarm" if result.alarm else "ok"
    drifted = sum(c.drifted for c in result.features)
    live = _live_section(result)
    e = html.escape
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Monitoring: {e(result.model_name)} version {e(result.model_version)}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
       color: #1f2328; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }}
.meta {{ color: #59636e; font-size: 13px; margin-bottom: 16px; }}
.banner {{ padding: 10px 14px; border-radius: 6px; font-weight: 600; margin-bottom: 16px; }}
.banner.alarm {{ background: #ffebe9; border: 1px solid #ff8182; }}
.banner.ok {{ background: #dafbe1; border: 1px solid #4ac26b; }}
.cards {{ display: flex; gap: 12px; margin-bottom: 16px; }}
.card {{ border: 1px solid #d1d9e0; border-radius: 6px; padding: 8px 14px; }}
.card b {{ display: block; font-size: 20px; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13px; }}
th, td {{ border-bottom: 1px solid #d1d9e0; padding: 6px 8px; text-align: left;
          vertical-align: middle; }}
th {{ background: #f6f8fa; }}
td.num {{ font-variant-numeric: tabular-nums; text-align: right; }}
.yes {{ color: #cf222e; font-weight: 600; }} .no {{ color: #1a7f37; }}
img {{ display: block; }}
</style></head><body>
<h1>Monitoring: {e(result.model_name)} version {e(result.model_version)}</h1>
<div class="meta">window {e(result.window.line())} &middot; run {e(result.run_id)} &middot;
checked {e(result.checked_at)}</div>
<div class="banner {tone}">{head}</div>
<div class="cards">
<div class="card"><b>{result.rows:,}</b>rows in the window</div>
<div class="card"><b>{result.reference_rows:,}</b>reference rows (validation)</div>
<div class="card"><b>{drifted} / {len(result.features)}</b>features drifted</div>
<div class="card"><b>{"drifted" if result.prediction.drifted else "stable"}</b>prediction</div>
</div>
{live}
<table>
<tr><th>Column</th><th>Kind</th><th>Reference (grey) vs window (blue)</th><th>Test</th>
<th>p-value</th><th>Corrected ({e(result.correction)})</th><th>Threshold</th>
<th>Drifted</th></tr>
{rows}
</table>
<p class="meta">{e(result.verdict())}</p>
</body></html>
"""


def _live_section(result: MonitorResult) -> str:
    live = result.live
    if live is None:
        return ""
    gate = (f"{live.gate_value:.4g} ({html.escape(live.gate_source)})"
            if live.gate_value is not None else "none recorded")
    state = "decayed" if live.decayed else "within tolerance"
    return (f'<div class="card" style="margin-bottom:16px"><b>{html.escape(live.metric)} '
            f"{live.value:.4g}</b>live, {live.confidence:.0%} interval [{live.low:.4g}, "
            f"{live.high:.4g}] on {live.rows:,} labeled rows &middot; the gate measured "
            f"{gate} &middot; {state}</div>")


def _column_row(column: ColumnDrift, reference: Any, window: Any) -> str:
    chart = ""
    if reference is not None and column.name in reference.columns \
            and column.name in window.columns:
        chart = f'<img alt="{html.escape(column.name)}" src="data:image/png;base64,' \
                f'{_chart(reference[column.name], window[column.name], column.kind)}">'
    drifted = '<span class="yes">yes</span>' if column.drifted else '<span class="no">no</span>'
    return (f"<tr><td>{html.escape(column.name)}</td><td>{column.kind}</td><td>{chart}</td>"
            f"<td>{column.test}</td><td class=num>{column.p_value:.3g}</td>"
            f"<td class=num>{column.statistic:.3g}</td><td class=num>{column.threshold:g}</td>"
            f"<td>{drifted}</td></tr>\n")


def _chart(reference: pd.Series, window: pd.Series, kind: str) -> str:
    """Reference vs window, as shares: histograms for numbers, bars for categories."""
    from matplotlib.figure import Figure  # only when a report is asked for

    figure = Figure(figsize=(2.6, 0.9), dpi=100)
    axes = figure.add_axes((0.02, 0.18, 0.96, 0.8))
    if kind == "numeric":
        ref = pd.to_numeric(reference, errors="coerce").dropna().to_numpy(dtype=float)
        cur = pd.to_numeric(window, errors="coerce").dropna().to_numpy(dtype=float)
        both = np.concatenate([ref, cur]) if len(cur) else ref
        low, high = np.quantile(both, [0.005, 0.995]) if len(both) else (0.0, 1.0)
        bins = np.linspace(low, high if high > low else low + 1, 30).tolist()
        axes.hist(ref, bins=bins, density=True, color="#8c959f", alpha=0.6)
        axes.hist(cur, bins=bins, density=True, histtype="step", color="#0969da", linewidth=1.4)
        axes.tick_params(labelsize=6, left=False, labelleft=False)
    else:
        ref_share = reference.astype(str).value_counts(normalize=True)
        cur_share = window.astype(str).value_counts(normalize=True)
        labels = list(ref_share.index[:12])
        x = np.arange(len(labels))
        axes.bar(x - 0.2, [ref_share.get(k, 0) for k in labels], 0.4, color="#8c959f")
        axes.bar(x + 0.2, [cur_share.get(k, 0) for k in labels], 0.4, color="#0969da")
        axes.set_xticks(x, labels, fontsize=5)
        axes.tick_params(left=False, labelleft=False)
    for side in ("top", "right", "left"):
        axes.spines[side].set_visible(False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode()
