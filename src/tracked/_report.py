"""`tracked report`: the comparison `tracked compare` prints, drawn, in one self-contained HTML file.

The charts are plotly figures; plotly.js is embedded once, so the file opens offline. Each figure's
data is embedded as JSON (`<script type="application/json" class="tracked-figure">`) and drawn by
`Plotly.newPlot`, so what a chart shows can be read back from the file (the tests do). The numbers
are compare's own: the caller hands over compare's buckets, its rows and the totals they were made
from (`Bucket`); only what compare has no figure for (the latency histogram, the running curves,
the per-task table) is read from the rows here. Unknown cost or usage is never drawn as 0: it is
labelled with `cost_text` / `tokens_text`, as compare prints it.
"""

from __future__ import annotations

import html
import math
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, TypeGuard

from ._store import CALLS, StoredExperiment, read_calls
from ._totals import metric_value
from ._values import cost_text, is_number, money, tokens_text

__all__ = ["INSTALL_HINT", "Bucket", "ReportUnavailable", "render", "require_plotly"]

INSTALL_HINT = "pip install 'tracked[report]'"

#: Points per running curve: more rows than this are sampled evenly (the last one always kept).
MAX_LINE_POINTS = 400
#: Strategy x task cells of the per-task table: more tasks than fit are sampled (flagged ones first).
TABLE_CELLS = 10_000
MIN_TABLE_TASKS = 100
HISTOGRAM_BINS = 40
#: Dollar amounts on axes: "$0.0001", "$2e-5" (not plotly's SI "20µ").
USD = "$.3~g"
#: Experiments still running, or cut short, when they are compared with `--all`.
UNFINISHED = ("crashed", "failed", "interrupted", "running", "unknown")
TASK_KEYS = ("task_id", "task", "id")


class ReportUnavailable(Exception):
    """plotly is not installed: the message says which extra to install."""


def require_plotly() -> None:
    """Raise `ReportUnavailable` (with the install hint) unless plotly can be imported."""
    try:
        import plotly.graph_objects  # noqa: F401
    except ImportError as exc:
        raise ReportUnavailable(f"the report needs plotly: {INSTALL_HINT}") from exc


@dataclass
class Bucket:
    """One bar of the comparison: compare's row for a value of the `--by` key, the totals that
    row was made from (`totals_of(experiments)`), and its per-model rows (`model_rows`)."""

    label: str
    experiments: list[StoredExperiment]
    row: dict[str, Any]
    totals: dict[str, Any]
    models: list[dict[str, Any]] = field(default_factory=list)


# --- reading rows ------------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    return float(value) if is_number(value) and math.isfinite(value) else None


def _num(value: Any) -> TypeGuard[int | float]:
    """`is_number` for values read from JSON (exactly int or float), inlined for a million rows."""
    kind = type(value)
    return kind is int or (kind is float and value == value)


def _task_id(row: dict[str, Any], index: int) -> str:
    """A task's id: the row's `task_id`, `task` or `id` when the code logged one, else its position."""
    for key in TASK_KEYS:
        value = row.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
    return str(index)


@dataclass
class _Scan:
    """What the report reads from one experiment's rows, in one pass: its calls (the rows with a
    latency: the tasks) with their task ids and whether each is flagged, the latencies and TTFTs,
    and the running curve of the metric against the cost."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    flagged: list[bool] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    curve_cost: list[float] = field(default_factory=list)
    curve_mean: list[float] = field(default_factory=list)
    unpriced_rows: int = 0
    #: per top-level call id: the calls inside it that failed (an exception the strategy caught)
    nested_errors: dict[str, int] = field(default_factory=dict)


def _nested_errors(exp: StoredExperiment) -> dict[str, int]:
    """Per top-level call id, how many calls inside it failed, from the call records (`calls.jsonl`);
    read in full only when a record has an error (most stores have none)."""
    path = exp.path / CALLS
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    if '"error":"' not in text:
        return {}
    records = read_calls(exp.path, warn=lambda _: None)
    parents = {r.get("id"): r.get("parent_id") for r in records}
    out: dict[str, int] = {}
    for r in records:
        parent = r.get("parent_id")
        if not r.get("error") or parent is None:
            continue
        root, seen = parent, 0
        while parents.get(root) is not None and seen < 1000:  # (a loop in torn records ends)
            root, seen = parents[root], seen + 1
        out[str(root)] = out.get(str(root), 0) + 1
    return out


def _scan(exp: StoredExperiment, quality: str | None) -> _Scan:
    # Written for a million rows: `_num` inlined, one `get` per field.
    out = _Scan()
    nested = out.nested_errors = _nested_errors(exp)
    unfinished = exp.status in UNFINISHED
    cost = total = 0.0
    count = 0
    tasks, rows, flagged, latencies, ttfts = out.tasks, out.rows, out.flagged, out.latencies, out.ttfts
    for row in exp.rows:
        value: Any = row.get("cost_usd")
        kind = type(value)
        known = (kind is float or kind is int) and value == value
        if known:
            cost += value
        if quality is not None:
            metric = row.get(quality)
            if metric is not None:
                # `quality` is one of compare's metrics, so a plain number counts as itself (as in metric_value)
                kind = type(metric)
                number = float(metric) if kind is float or kind is int else metric_value(quality, metric)
                if number is not None and math.isfinite(number):
                    total += number
                    count += 1
                    out.curve_cost.append(cost)
                    out.curve_mean.append(total / count)
        latency: Any = row.get("latency_s")
        kind = type(latency)
        if not (kind is float or kind is int) or latency != latency:
            continue
        task = row.get("task_id")
        tasks.append(task if type(task) is str else _task_id(row, len(rows)))
        rows.append(row)
        if latency > 0:
            latencies.append(latency)
        ttft = row.get("ttft_s")
        if ttft is not None and _num(ttft) and ttft > 0:
            ttfts.append(float(ttft))
        unpriced = bool(row.get("unpriced_calls")) or (bool(row.get("llm_calls")) and not known)
        out.unpriced_rows += unpriced
        flagged.append(
            unpriced
            or unfinished
            or bool(row.get("error"))
            or bool(row.get("usage_unknown_calls"))
            or (bool(nested) and row.get("call_id") in nested)
        )
    return out


def _sample(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n), the last one included."""
    if n <= k:
        return list(range(n))
    step = (n - 1) / (k - 1)
    return sorted({round(i * step) for i in range(k)})


# --- the figures -------------------------------------------------------------------------------


@dataclass
class Chart:
    key: str
    title: str
    text: str
    figure: Any


def _palette(labels: Sequence[str], names: Iterable[str] = ()) -> dict[str, str]:
    """A colour per strategy (or `--by` value), given in name order over `names` (every value in the
    store) and `labels`: a strategy keeps its colour whatever `--group`, `--all` or the ranking
    leave beside it."""
    from plotly.colors import qualitative

    colours = [*qualitative.Plotly, *qualitative.D3, *qualitative.Alphabet]
    order = {name: i for i, name in enumerate(sorted({*names, *labels}))}
    return {label: colours[order[label] % len(colours)] for label in labels}


def _model_palette(models: Sequence[str]) -> dict[str, str]:
    """Colours for the models, from palettes the strategies' do not use (a model is not a strategy)."""
    from plotly.colors import qualitative

    colours = [*qualitative.Dark2, *qualitative.Set2, *qualitative.Pastel1]
    return {model: colours[i % len(colours)] for i, model in enumerate(sorted(models))}


def _layout(fig: Any, **extra: Any) -> None:
    settings: dict[str, Any] = {
        "template": "plotly_white",
        "margin": {"l": 60, "r": 20, "t": 50, "b": 60},
        "font": {"family": "system-ui, -apple-system, 'Segoe UI', sans-serif", "size": 12},
        "legend": {"orientation": "h", "y": -0.2},
    }
    fig.update_layout(**{**settings, **extra})


def _summary_chart(buckets: list[Bucket], metrics: list[str], by: str, colours: dict[str, str]) -> Chart:
    """Each metric's mean with its standard error, the total cost and the tokens, per bucket."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    labels = [b.label for b in buckets]
    panels = [f"{m}: mean ± standard error" for m in metrics] + ["total cost (USD)", "tokens (in + out)"]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=panels, horizontal_spacing=0.08, vertical_spacing=0.18)

    def at(i: int) -> dict[str, int]:
        return {"row": i // cols + 1, "col": i % cols + 1}

    for i, metric in enumerate(metrics):
        means = [_finite(b.row.get(f"{metric}_mean")) for b in buckets]
        counts = [int(b.totals.get(f"{metric}/n") or 0) for b in buckets]
        # no error bar from fewer than two values (a ±0 would claim a precision one value cannot give)
        errors = [
            _finite(b.totals.get(f"{metric}/stderr")) if n >= 2 else None for b, n in zip(buckets, counts, strict=True)
        ]
        fig.add_trace(
            go.Bar(
                x=labels,
                y=means,
                marker_color=[colours[label] for label in labels],
                name=f"{metric} mean",
                meta={"figure": "mean", "metric": metric},
                error_y={"type": "data", "array": errors, "visible": True},
                text=["n=1" if n == 1 else "" for n in counts],
                textposition="outside",
                customdata=counts,
                showlegend=False,
                hovertemplate="%{x}: %{y:.4g} (n=%{customdata})<extra></extra>",
            ),
            **at(i),
        )
        missing = [label for label, mean in zip(labels, means, strict=True) if mean is None]
        if missing:
            fig.add_trace(
                go.Scatter(
                    x=missing,
                    y=[0] * len(missing),
                    mode="text",
                    text=["no value"] * len(missing),
                    textposition="top center",
                    showlegend=False,
                    name=f"{metric}: no value",
                    meta={"figure": "no value", "metric": metric},
                    hovertemplate=f"%{{x}}: no {html.escape(metric)} logged<extra></extra>",
                ),
                **at(i),
            )
    i = len(metrics)
    costs = [_finite(b.row["cost_usd"]) for b in buckets]
    cost_labels = [cost_text(b.row["cost_usd"], b.row["unpriced_calls"]) for b in buckets]
    fig.add_trace(
        go.Bar(
            x=labels,
            y=costs,
            name="cost_usd",
            meta={"figure": "cost_usd"},
            text=cost_labels,
            textposition="outside",
            showlegend=False,
            marker_color=[colours[label] for label in labels],
            hovertemplate="%{x}: %{text}<extra></extra>",
        ),
        **at(i),
    )
    _unknown_marks(fig, buckets, [b.row["unpriced_calls"] for b in buckets], costs, cost_labels, at(i))
    for figure, colour in (("tokens_in", "#72b7b2"), ("tokens_out", "#f58518")):
        values = [b.row[figure] if is_number(b.row[figure]) else None for b in buckets]
        tokens = [tokens_text(b.row[figure], b.row["usage_unknown_calls"]) for b in buckets]
        fig.add_trace(
            go.Bar(
                x=labels,
                y=values,
                name=figure.replace("_", " "),
                meta={"figure": figure},
                marker_color=colour,
                customdata=tokens,
                hovertemplate=f"%{{x}}: %{{customdata}} {figure.replace('_', ' ')}<extra></extra>",
            ),
            **at(i + 1),
        )
    _unknown_marks(fig, buckets, [b.row["usage_unknown_calls"] for b in buckets], None, None, at(i + 1))
    _layout(fig, barmode="stack", height=330 * rows, legend={"orientation": "h", "y": -0.08 - 0.02 * rows})
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(tickformat=USD, **at(i))
    text = (
        f"Each custom metric's mean over the tasks, with its standard error (the error bars; none from one value: "
        f"n=1); \u201cno value\u201d where no task logged it. The total cost "
        f"and tokens of each {by}. A cost or token count that leaves calls out says so on the bar; one known for "
        f"no call is marked \u201cunknown\u201d, never drawn as 0."
    )
    unfinished_buckets = [
        f"{b.label} ({b.row['status']})" for b in buckets if any(e.status in UNFINISHED for e in b.experiments)
    ]
    if unfinished_buckets:
        text += f" With runs that did not run to their end (--all): {', '.join(unfinished_buckets)}."
    return Chart("summary", f"Per {by}: metrics, cost and tokens", text, fig)


def _unknown_marks(
    fig: Any,
    buckets: list[Bucket],
    counts: list[Any],
    values: list[float | None] | None,
    labels: list[str] | None,
    at: dict[str, int],
) -> None:
    """A text mark over each bucket whose figure leaves calls out (or is unknown for all of them)."""
    import plotly.graph_objects as go

    marked = [i for i, n in enumerate(counts) if n]
    if not marked:
        return
    # a bar with a value already says what it leaves out in its own label: a second one would overlap it
    text = [
        (labels[i] if values is None or values[i] is None else "")
        if labels
        else f"{counts[i]} calls with usage unknown"
        for i in marked
    ]
    fig.add_trace(
        go.Scatter(
            x=[buckets[i].label for i in marked],
            y=[(values[i] if values else None) or 0 for i in marked],
            mode="markers+text",
            text=text,
            textposition="top center",
            marker={"symbol": "x", "color": "#d62728"},
            name="not known for every call",
            meta={"figure": "unknown"},
            showlegend=False,
            hovertemplate="%{x}: %{text}<extra></extra>",
        ),
        **at,
    )


@dataclass
class _Point:
    bucket: str
    name: str
    cost_per_task: float | None
    unpriced: int
    quality: float | None
    #: the experiment's status when it did not run to its end ("crashed", ...), else None
    unfinished: str | None = None


def _frontier(points: list[_Point], goal: str) -> list[_Point]:
    """The points no other is at least as cheap and at least as good as, and better on one of the
    two: of complete costs and finished experiments only."""
    sign = 1.0 if goal == "maximize" else -1.0
    known = [
        p for p in points
        if p.cost_per_task is not None and p.quality is not None and not p.unpriced and not p.unfinished
    ]  # fmt: skip
    known.sort(key=lambda p: (p.cost_per_task, -sign * (p.quality or 0.0)))
    best, out = -math.inf, list[_Point]()
    for p in known:
        q = sign * (p.quality or 0.0)
        last = out[-1] if out else None
        if q > best or (last and q == best and (p.cost_per_task, p.quality) == (last.cost_per_task, last.quality)):
            best = q
            out.append(p)
    return out


def _points(buckets: list[Bucket], quality: str) -> list[_Point]:
    points = []
    for b in buckets:
        for exp in b.experiments:
            totals = exp.totals()
            calls, cost = totals.get("total/calls") or 0, totals.get("total/cost_usd")
            points.append(
                _Point(
                    b.label,
                    exp.name,
                    cost / calls if is_number(cost) and calls else None,
                    int(totals.get("total/unpriced_calls") or 0),
                    _finite(totals.get(f"{quality}/mean")),
                    exp.status if exp.status in UNFINISHED else None,
                )
            )
    return points


def _frontier_chart(buckets: list[Bucket], quality: str, goal: str, by: str, colours: dict[str, str]) -> Chart:
    """Cost per task against the metric's mean, one point per experiment, the frontier marked."""
    import plotly.graph_objects as go

    points = _points(buckets, quality)
    fig = go.Figure()
    for b in buckets:
        mine = [p for p in points if p.bucket == b.label and p.cost_per_task is not None and p.quality is not None]
        if not mine:
            continue
        fig.add_trace(
            go.Scatter(
                x=[p.cost_per_task for p in mine],
                y=[p.quality for p in mine],
                mode="markers+text",
                name=b.label,
                meta={"figure": "experiments"},
                text=[p.unfinished or "" for p in mine],
                textposition="bottom center",
                customdata=[
                    [p.name + (f" ({p.unfinished})" if p.unfinished else ""), cost_text(p.cost_per_task, p.unpriced)]
                    for p in mine
                ],
                marker={
                    "size": 11,
                    "color": colours[b.label],
                    "symbol": ["x" if p.unfinished else "circle-open" if p.unpriced else "circle" for p in mine],
                    "line": {"width": 2},
                },
                hovertemplate=(
                    f"%{{customdata[0]}}<br>cost per task %{{customdata[1]}}<br>{quality} %{{y:.4g}}<extra></extra>"
                ),
            )
        )
    best = _frontier(points, goal)
    if best:
        fig.add_trace(
            go.Scatter(
                x=[p.cost_per_task for p in best],
                y=[p.quality for p in best],
                mode="lines+markers+text",
                name="cost/quality frontier",
                meta={"figure": "frontier"},
                line={"shape": "hv", "dash": "dash", "color": "#444"},
                # a ring around each frontier point: its own colour (its strategy) stays visible, its name beside it
                marker={"symbol": "circle-open", "size": 20, "color": "#444", "line": {"width": 1.5}},
                text=[p.name for p in best],
                textposition="top center",
                cliponaxis=False,
                customdata=[p.name for p in best],
                hovertemplate="frontier: %{customdata}<extra></extra>",
            )
        )
    _layout(fig, height=420, xaxis_title="cost per task (USD)", yaxis_title=f"{quality} (mean)", xaxis_tickformat=USD)
    unknown = [p.name for p in points if p.cost_per_task is None]
    no_metric = [p.name for p in points if p.quality is None]
    partial = [p.name for p in points if p.cost_per_task is not None and p.unpriced]
    better = "higher" if goal == "maximize" else "lower"
    text = (
        f"One point per experiment: its cost per task (total cost / tasks) against its mean {quality}. The dashed "
        f"line joins the experiments, ringed and named, that no other is at least as cheap and at least as good "
        f"as ({better} {quality}) while better on one of the two."
    )
    if partial:
        text += (
            " Hollow points leave unpriced calls out of their cost (a lower bound) and are not considered for the "
            "frontier, even when above it: " + ", ".join(partial) + "."
        )
    unfinished = [f"{p.name} ({p.unfinished})" for p in points if p.unfinished and p.cost_per_task is not None]
    if unfinished:
        text += (
            " Crosses are experiments that did not run to their end (--all), labelled with their status and not "
            "considered for the frontier: " + ", ".join(unfinished) + "."
        )
    if unknown:
        text += f" Not drawn, cost unknown: {', '.join(unknown)}."
    if no_metric:
        text += f" Not drawn, no {quality} logged: {', '.join(no_metric)}."
    return Chart("frontier", f"Cost per task against {quality}", text, fig)


def _running_chart(buckets: list[Bucket], scans: dict[int, _Scan], quality: str, colours: dict[str, str]) -> Chart:
    """The running mean of the metric against the running cost, one line per experiment."""
    import plotly.graph_objects as go

    fig = go.Figure()
    sampled = False
    incomplete: list[str] = []
    unknown: list[str] = []
    no_metric: list[str] = []
    for b in buckets:
        for n, exp in enumerate(b.experiments):
            scan = scans[id(exp)]
            xs, ys = scan.curve_cost, scan.curve_mean
            if not xs:
                no_metric.append(exp.name)
                continue
            if not is_number(exp.totals().get("total/cost_usd")):
                unknown.append(exp.name)  # every call unpriced or of unknown usage: no cost axis to draw it on
                continue
            keep = _sample(len(xs), MAX_LINE_POINTS)
            sampled = sampled or len(keep) < len(xs)
            if scan.unpriced_rows:
                incomplete.append(exp.name)
            fig.add_trace(
                go.Scatter(
                    x=[xs[i] for i in keep],
                    y=[ys[i] for i in keep],
                    mode="lines",
                    name=exp.name + (f" ({exp.status})" if exp.status in UNFINISHED else ""),
                    legendgroup=b.label,
                    legendgrouptitle_text=b.label if n == 0 else None,
                    meta={"figure": "running", "bucket": b.label, "tasks": len(xs)},
                    line={"color": colours[b.label], "dash": "dot" if scan.unpriced_rows else "solid"},
                    hovertemplate=(
                        f"{html.escape(exp.name)}<br>cost so far $%{{x:.4g}}<br>"
                        f"{quality} so far %{{y:.4g}}<extra></extra>"
                    ),
                )
            )
    _layout(
        fig,
        height=420,
        xaxis_title="running cost (USD)",
        yaxis_title=f"running mean of {quality}",
        xaxis_tickformat=USD,
    )
    fig.update_layout(legend={"orientation": "v", "y": 1, "x": 1.02})
    text = (
        f"Each experiment's mean {quality} so far against what it had cost so far, task by task: where a strategy "
        f"settles, and what it paid to get there."
    )
    if any(scan.curve_cost and not scan.curve_cost[-1] for scan in scans.values()):
        text += " An experiment that cost nothing (a local model) is a vertical line at $0."
    if sampled:
        text += f" Lines of more than {MAX_LINE_POINTS} tasks are drawn through {MAX_LINE_POINTS} evenly spaced ones."
    if incomplete:
        text += f" Dotted lines leave unpriced calls out of their cost (a lower bound): {', '.join(incomplete)}."
    if unknown:
        text += f" Not drawn, cost unknown: {', '.join(unknown)}."
    if no_metric:
        text += f" Not drawn, no {quality} logged: {', '.join(no_metric)}."
    return Chart("running", f"Running {quality} against running cost", text, fig)


def _histogram(values: list[float], edges: list[float]) -> list[float]:
    """The share of `values` in each bin between consecutive `edges` (the outer bins take the rest)."""
    if not values:
        return [0.0] * (len(edges) - 1)
    ordered = sorted(values)  # then each edge's place by bisection: no per-value Python work
    cuts = [0, *(bisect_left(ordered, edge) for edge in edges[1:-1]), len(ordered)]
    return [(b - a) / len(ordered) for a, b in pairwise(cuts)]


def _edges(values: Iterable[float]) -> list[float] | None:
    positive = [v for v in values if v > 0]
    if not positive:
        return None
    lo, hi = min(positive), max(positive)
    if hi <= lo * 1.01:
        lo, hi = lo / 1.5, hi * 1.5
    step = (math.log(hi) - math.log(lo)) / HISTOGRAM_BINS
    edges = [math.exp(math.log(lo) + i * step) for i in range(HISTOGRAM_BINS + 1)]
    edges[0], edges[-1] = lo, hi  # exactly: the fastest and slowest values are inside the outer bins
    return edges


def _latency_chart(buckets: list[Bucket], scans: dict[int, _Scan], by: str, colours: dict[str, str]) -> Chart:
    """The latency distribution per bucket with p50/p95 marked, and TTFT where streams were used."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figures = [("latency_s", "latency")]
    if any(is_number(b.totals.get("ttft_s/p50")) for b in buckets):
        figures.append(("ttft_s", "time to first token (TTFT), one per task"))
    fig = make_subplots(rows=len(figures), cols=1, subplot_titles=[t for _, t in figures], vertical_spacing=0.16)
    for r, (figure, _) in enumerate(figures, 1):
        kind = "latencies" if figure == "latency_s" else "ttfts"
        values = {b.label: [v for e in b.experiments for v in getattr(scans[id(e)], kind)] for b in buckets}
        edges = _edges(v for vs in values.values() for v in vs)
        if edges is None:
            continue
        centres = [math.sqrt(a * b) for a, b in pairwise(edges)]
        for b in buckets:
            if not values[b.label]:
                continue
            shares = _histogram(values[b.label], edges)
            # Each bin an outlined bar from edge to edge (milliseconds: plotly's SI "2m" would read as
            # minutes): the slowest value is inside the last bar, and two equal neighbours stay two bars.
            xs, ys, hover = [], [], []
            for (lo, hi), share in zip(pairwise(edges), shares, strict=True):
                if share:
                    xs += [lo * 1000, lo * 1000, hi * 1000, hi * 1000, None]
                    ys += [0, share, share, 0, None]
                    hover += [f"{share:.1%} of tasks in {lo * 1000:.3g}\u2013{hi * 1000:.3g} ms"] * 4 + [""]
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    line={"color": colours[b.label]},
                    name=b.label,
                    legendgroup=b.label,
                    showlegend=r == 1,
                    meta={"figure": figure, "bucket": b.label, "n": len(values[b.label])},
                    customdata=hover,
                    hovertemplate=f"{html.escape(b.label)}: %{{customdata}}<extra></extra>",
                ),
                row=r,
                col=1,
            )
            marks = [(q, float(v)) for q in ("p50", "p95") if is_number(v := b.totals.get(f"{figure}/{q}"))]

            def share_at(v: float, shares: list[float] = shares, centres: list[float] = centres) -> float:
                return shares[min(range(len(centres)), key=lambda k: abs(math.log(centres[k] / max(v, 1e-12))))]

            fig.add_trace(
                go.Scatter(
                    x=[v * 1000 for _, v in marks],
                    customdata=[v for _, v in marks],  # seconds, as compare reports them
                    y=[share_at(v) for _, v in marks],
                    mode="markers+text",
                    text=[q for q, _ in marks],
                    textposition="top center",
                    legendgroup=b.label,
                    showlegend=False,
                    marker={"symbol": "triangle-down", "size": 11, "color": colours[b.label]},
                    name=f"{b.label} p50/p95",
                    meta={"figure": f"{figure}/percentiles", "bucket": b.label},
                    hovertemplate=f"{html.escape(b.label)} %{{text}}: %{{x:.3g}} ms<extra></extra>",
                ),
                row=r,
                col=1,
            )
        fig.update_xaxes(type="log", title_text="milliseconds (log scale)", tickformat="~g", row=r, col=1)
        fig.update_yaxes(title_text="share of tasks", tickformat=".0%", row=r, col=1)
    _layout(fig, height=380 * len(figures))
    text = (
        f"How long each {by}'s top-level calls (one per task) took: the share of tasks in each band of a log "
        f"scale (one outlined bar per band), with the p50 and p95 compare reports marked."
    )
    if len(figures) > 1:
        text += (
            " Below, the time to the first token, one per task as compare's TTFT p50 is: the top-level call's own "
            "(a generator's first item), else that of the first streamed LLM call inside it; tasks without a stream "
            "are not counted."
        )
    return Chart("latency", "Latency" + (" and TTFT" if len(figures) > 1 else ""), text, fig)


def _models_chart(buckets: list[Bucket], by: str) -> Chart | None:
    """Cost by model, stacked per bucket (the models the LLM calls used, nested ones included)."""
    import plotly.graph_objects as go

    models = sorted({m["model"] for b in buckets for m in b.models})
    if not models:
        return None
    fig = go.Figure()
    labels = [b.label for b in buckets]
    model_colours = _model_palette(models)
    for model in models:
        rows = [next((m for m in b.models if m["model"] == model), None) for b in buckets]
        fig.add_trace(
            go.Bar(
                x=labels,
                y=[_finite(m["cost_usd"]) if m else None for m in rows],
                name=model,
                marker_color=model_colours[model],
                meta={"figure": "model_cost", "model": model},
                customdata=[
                    _model_cost_text(m) + f" over {m['llm_calls']:,} LLM calls" if m else "not used" for m in rows
                ],
                hovertemplate=f"%{{x}}, {html.escape(model)}: %{{customdata}}<extra></extra>",
            )
        )
    marks = [(b.label, m) for b in buckets for m in b.models if m["unpriced_calls"]]
    if marks:
        fig.add_trace(
            go.Scatter(
                x=[label for label, _ in marks],
                y=[0 for _ in marks],
                mode="markers+text",
                text=[f"{m['model']}: {_model_cost_text(m)}" for _, m in marks],
                textposition="top center",
                marker={"symbol": "x", "color": "#d62728"},
                showlegend=False,
                name="not priced",
                meta={"figure": "unknown"},
                hovertemplate="%{x}: %{text}<extra></extra>",
            )
        )
    _layout(fig, barmode="stack", height=420, yaxis_title="cost (USD)", yaxis_tickformat=USD)
    return Chart(
        "models",
        f"Cost by model, per {by}",
        "What each model cost, stacked per bar (every LLM call, nested ones included, from the experiments' "
        "per-model totals). A model without a price is marked with its unpriced calls, and calls whose usage could "
        "not be read as \u201cusage unknown\u201d, never drawn as $0.",
        fig,
    )


def _model_cost_text(m: dict[str, Any]) -> str:
    """A model's cost saying why calls are left out: unpriced (no price for the model) or usage
    unknown (a priced model whose tokens could not be read; compare counts those as unpriced too)."""
    unpriced, unknown = int(m.get("unpriced_calls") or 0), int(m.get("usage_unknown_calls") or 0)
    if not unknown:
        return cost_text(m["cost_usd"], unpriced)
    reasons = f"{unknown:,} usage unknown"
    if unpriced > unknown:
        reasons = f"{unpriced - unknown:,} unpriced, {reasons}"
    cost = m["cost_usd"]
    return f"{money(cost)} + {reasons}" if is_number(cost) and cost > 0 else f"unknown ({reasons})"


# --- the per-task table ------------------------------------------------------------------------


@dataclass
class _Cell:
    metric: list[float] = field(default_factory=list)
    cost: float = 0.0
    cost_rows: int = 0
    latency: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    unpriced: int = 0
    #: unpriced calls in the rows whose cost is known (a lower bound)
    unpriced_in_known: int = 0


def _choose_tasks(buckets: list[Bucket], scans: dict[int, _Scan]) -> tuple[list[str], set[str], str]:
    """Every task in order, the flagged ones, and the tasks the table shows: all when they fit,
    else the flagged ones first (up to half), then an even sample of the rest, with a sentence
    saying so (empty when all are shown)."""
    order: dict[str, None] = {}
    flagged: set[str] = set()
    for b in buckets:
        for exp in b.experiments:
            scan = scans[id(exp)]
            order.update(dict.fromkeys(scan.tasks))
            flagged.update(t for t, f in zip(scan.tasks, scan.flagged, strict=True) if f)
    tasks = list(order)
    cap = max(MIN_TABLE_TASKS, TABLE_CELLS // max(len(buckets), 1))
    if len(tasks) <= cap:
        return tasks, flagged, ""
    shown_flagged = [t for t in tasks if t in flagged][: cap // 2]
    taken = set(shown_flagged)
    rest = [t for t in tasks if t not in taken]
    keep = taken | {rest[i] for i in _sample(len(rest), cap - len(shown_flagged))}
    note = (
        f"The table shows {len(keep):,} of {len(tasks):,} tasks: {len(shown_flagged):,} of the {len(flagged):,} "
        f"with a flagged call, and an even sample of the others. The charts above use every task; the local store "
        f"has them all."
    )
    return [t for t in tasks if t in keep], flagged, note


def _cells(
    buckets: list[Bucket], scans: dict[int, _Scan], shown: set[str], quality: str | None
) -> dict[str, dict[str, _Cell]]:
    """Per task shown, per bucket: the metric, cost, latency and errors of its row(s), with flags."""
    table: dict[str, dict[str, _Cell]] = {}
    for b in buckets:
        for exp in b.experiments:
            unfinished = exp.status if exp.status in UNFINISHED else None
            scan = scans[id(exp)]
            for task, row in zip(scan.tasks, scan.rows, strict=True):
                if task not in shown:
                    continue
                cells = table.setdefault(task, {})
                cell = cells.get(b.label)
                if cell is None:
                    cell = cells[b.label] = _Cell()
                if quality is not None and quality in row:
                    value = metric_value(quality, row[quality])
                    if value is not None:
                        cell.metric.append(value)
                cost = row.get("cost_usd")
                if row.get("unpriced_calls") or (row.get("llm_calls") and not is_number(cost)):
                    cell.flags.add("unpriced")
                    cell.unpriced += int(row.get("unpriced_calls") or row.get("llm_calls") or 1)
                if is_number(cost) or not (row.get("llm_calls") or row.get("unpriced_calls")):
                    # (a call with no LLM call in it cost $0, as compare counts it)
                    cell.cost += cost if is_number(cost) else 0.0
                    cell.cost_rows += 1
                    cell.unpriced_in_known += int(row.get("unpriced_calls") or 0)
                cell.latency.append(float(row["latency_s"]))
                if row.get("error"):
                    cell.errors.append(str(row.get("error_type") or "error"))
                    cell.flags.add("error")
                inside = scan.nested_errors.get(str(row.get("call_id")), 0)
                if inside:
                    cell.errors.append(f"{inside} failed call{'s' if inside > 1 else ''} inside")
                    cell.flags.add("failed call inside")
                if row.get("usage_unknown_calls"):
                    cell.flags.add("usage unknown")
                if unfinished:
                    cell.flags.add(f"{unfinished} run")
    return table


def _td(text: str, value: float | None, flag: bool = False) -> str:
    """A numeric cell: its text, and the number it sorts by (none: sorted last)."""
    cls = ' class="flag"' if flag else ""
    return f'<td data-v="{"" if value is None else repr(value)}"{cls}>{html.escape(text)}</td>'


def _table(buckets: list[Bucket], scans: dict[int, _Scan], quality: str | None) -> tuple[str, str, int]:
    """The per-task table's HTML, the sampling note, and how many tasks are flagged."""
    shown, flagged_tasks, note = _choose_tasks(buckets, scans)
    table = _cells(buckets, scans, set(shown), quality)
    flagged = len(flagged_tasks)
    head = ['<th data-type="text">task</th>']
    for b in buckets:
        runs = len(b.experiments)
        label = html.escape(b.label) + (f" (mean of {runs} runs)" if runs > 1 else "")
        if quality is not None:
            head.append(f"<th>{label}: {html.escape(quality)}</th>")
        head += [f"<th>{label}: cost</th>", f"<th>{label}: latency</th>", f'<th data-type="text">{label}: error</th>']
    head.append('<th data-type="text">flags</th>')
    body = []
    for task in shown:
        cells = [f"<td{_task_sort_key(task)}>{html.escape(task)}</td>"]
        flags: set[str] = set()
        for b in buckets:
            c = table[task].get(b.label)
            if c is None:
                cells += ['<td data-v="">-</td>'] * (4 if quality is not None else 3)
                continue
            flags |= c.flags
            if quality is not None:
                mean = sum(c.metric) / len(c.metric) if c.metric else None
                cells.append(_td(f"{mean:.4g}" if mean is not None else "-", mean))
            runs = len(c.latency)
            cells.append(_cost_td(c, runs))
            latency = sum(c.latency) / runs
            # three significant digits: a call that failed at once took microseconds, not "0.0 ms"
            cells.append(_td(f"{latency * 1000:.3g} ms" if latency < 1 else f"{latency:.3g} s", latency))
            error = ", ".join(sorted(set(c.errors)))
            cells.append(f'<td class="{"flag" if error else ""}">{html.escape(error)}</td>')
        cells.append(f'<td class="{"flag" if flags else ""}">{html.escape(", ".join(sorted(flags)))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    html_table = (
        '<div class="table-wrap"><table class="sortable" id="tasks"><thead><tr>'
        + "".join(head)
        + "</tr></thead><tbody>"
        + "\n".join(body)
        + "</tbody></table></div>"
    )
    return html_table, note, flagged


def _cost_td(c: _Cell, runs: int) -> str:
    """A task's cost: the mean over the runs whose cost for it is known (a run of unknown cost is
    not a $0 one), saying what it leaves out; unknown, and sorted last, when no run's is known."""
    if not c.cost_rows:
        return _td(cost_text(None, c.unpriced or runs), None, flag=True)
    mean = c.cost / c.cost_rows
    unknown_runs = runs - c.cost_rows
    text = cost_text(mean, c.unpriced_in_known)
    if unknown_runs:
        text += f" (mean of {c.cost_rows}; {unknown_runs} run{'s' if unknown_runs > 1 else ''} unknown)"
    return _td(text, mean, flag=bool(c.unpriced))


def _task_sort_key(task: str) -> str:
    """A numeric task id sorts as a number (2 before 10); any other as its text."""
    try:
        return f' data-v="{float(task)!r}"'
    except ValueError:
        return ""


# --- the page ----------------------------------------------------------------------------------

_SORT_JS = """
document.querySelectorAll("table.sortable th").forEach(function (th, i) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], asc = th.dataset.dir !== "asc", text = th.dataset.type === "text";
    th.parentNode.querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = asc ? "asc" : "desc";
    function key(row) {
      var cell = row.cells[i];
      if (text && cell.dataset.v === undefined) return cell.textContent;
      return cell.dataset.v === "" || cell.dataset.v === undefined ? NaN : parseFloat(cell.dataset.v);
    }
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (typeof x === "number" && isNaN(x)) return 1;
      if (typeof y === "number" && isNaN(y)) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""

_DRAW_JS = """
var drawing = Array.prototype.map.call(document.querySelectorAll("script.tracked-figure"), function (script) {
  var figure = JSON.parse(script.textContent);
  return Plotly.newPlot(script.dataset.target, figure.data, figure.layout, {responsive: true, displaylogo: false});
});
Promise.all(drawing).then(function () { document.body.dataset.chartsDrawn = String(drawing.length); });
"""

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1200px;
       padding: 0 16px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 2em; }
p.meta, p.note { color: #555; } p.note { background: #fff8e1; padding: 6px 10px; border-left: 3px solid #f0b429; }
.chart { width: 100%; min-height: 300px; }
.table-wrap { max-height: 640px; overflow: auto; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
th { position: sticky; top: 0; background: #f4f4f4; cursor: pointer; user-select: none; }
th[data-dir="asc"]::after { content: " \\25B2"; } th[data-dir="desc"]::after { content: " \\25BC"; }
td:first-child, th:first-child { text-align: left; } td.flag { color: #b00020; font-weight: 600; }
"""


def _script_json(data: str) -> str:
    """JSON that can sit inside a <script> element (no `</script>` in it)."""
    return data.replace("</", "<\\/").replace("<!--", "<\\u0021--")


def render(
    buckets: list[Bucket],
    *,
    by: str,
    metrics: list[str],
    quality: str | None,
    goal: str,
    title: str,
    source: str,
    notes: Sequence[str] = (),
    names: Iterable[str] = (),
) -> str:
    """The report's HTML: every chart of the comparison, the per-task table, plotly.js embedded;
    `names`: every value of `by` in the store, for colours that do not change with what is left out."""
    from plotly.offline import get_plotlyjs

    colours = _palette([b.label for b in buckets], names)
    scans = {id(e): _scan(e, quality) for b in buckets for e in b.experiments}
    charts = [_summary_chart(buckets, metrics, by, colours)]
    page_notes = list(notes)
    if quality is not None:
        charts.append(_frontier_chart(buckets, quality, goal, by, colours))
        charts.append(_running_chart(buckets, scans, quality, colours))
    else:
        page_notes.append("No custom metric was logged: the cost/quality and running charts need one.")
    charts.append(_latency_chart(buckets, scans, by, colours))
    models = _models_chart(buckets, by)
    if models is not None:
        charts.append(models)
    table, table_note, flagged = _table(buckets, scans, quality)
    n_exps = sum(len(b.experiments) for b in buckets)
    errors = sum(b.row["errors"] or 0 for b in buckets)
    inside = sum(sum(scans[id(e)].nested_errors.values()) for b in buckets for e in b.experiments)
    unpriced = sum(b.row["unpriced_calls"] or 0 for b in buckets)
    unknown = sum(b.row["usage_unknown_calls"] or 0 for b in buckets)

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<style>{_CSS}</style>",
        f"<script>{get_plotlyjs()}</script>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{n_exps} experiment{"" if n_exps == 1 else "s"} from {html.escape(source)}, '
        f"by {html.escape(by)}; "
        f"written {html.escape(time.strftime('%Y-%m-%d %H:%M:%S'))} by tracked report.</p>",
    ]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in page_notes]
    for chart in charts:
        data = _script_json(chart.figure.to_json())
        parts += [
            f'<section id="section-{chart.key}"><h2>{html.escape(chart.title)}</h2>',
            f"<p>{html.escape(chart.text)}</p>",
            f'<div class="chart" id="chart-{chart.key}" data-chart="{chart.key}"></div>',
            f'<script type="application/json" class="tracked-figure" data-target="chart-{chart.key}" '
            f'id="figure-{chart.key}">{data}</script>',
            "</section>",
        ]
    parts += [
        '<section id="section-tasks"><h2>Per task</h2>',
        f"<p>One row per task (its <code>task_id</code>, <code>task</code> or <code>id</code> when logged, else its "
        f"position in the run), one group of columns per {html.escape(by)}; click a heading to sort. Flagged calls "
        f"are in red: {errors:,} failed, {inside:,} failed inside a task (an exception it caught), "
        f"{unpriced:,} unpriced, {unknown:,} with usage unknown (a cost that leaves "
        f"calls out says so, never $0); {flagged:,} tasks have one.</p>",
    ]
    if table_note:
        parts.append(f'<p class="note" id="table-note">{html.escape(table_note)}</p>')
    parts += [table, "</section>", f"<script>{_DRAW_JS}{_SORT_JS}</script>", "</body></html>"]
    return "\n".join(parts)
