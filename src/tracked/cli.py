"""The `tracked` command (also `python -m tracked`): demo, ls, compare, report, sync, sweep."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._config import configure
from ._store import StoredExperiment, find_experiments, totals_of
from ._totals import ROW_FIELDS, metric_value
from ._values import cost_text, is_number, tokens_text

__all__ = ["main"]


class UsageError(Exception):
    """A wrong path or argument: printed without a traceback, exit code 2."""


def escape(text: str) -> str:
    """User text (names, config values, paths) shown as is, not read as rich markup."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output (CI logs, files) gets a wide table rather than rich's 80 columns.
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, width=width)


def _num(value: Any, digits: int = 3) -> str:
    if not is_number(value):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _store_root(arg: str | None) -> Path:
    root = Path(arg) if arg else Path(os.environ.get("TRACKED_DIR") or ".")
    if not root.exists():
        raise UsageError(f"no such directory: {root}")
    if not root.is_dir():
        raise UsageError(f"not a directory: {root}")
    return root


# --- compare ----------------------------------------------------------------------------------


TRIAL = "trial"


def _label(exp: StoredExperiment, by: str) -> str:
    if by == TRIAL:  # one row per sweep trial, named by its parameters
        sweep = exp.meta.get("sweep") or {}
        params = sweep.get("params") if isinstance(sweep, dict) else None
        if isinstance(params, dict):
            return " ".join(f"{k}={v}" for k, v in params.items())
        return exp.path.name
    value = exp.config[by]
    return value if isinstance(value, str) else json.dumps(value)


#: Compared by default: experiments that ran to their end (and the older tracker's, which have no
#: status). Failed, crashed, interrupted and running ones only with `--all`.
COMPARED = ("finished", "legacy")


def _comparable(experiments: list[StoredExperiment], by: str, group: str | None) -> list[StoredExperiment]:
    """The experiments that have the config key (or are sweep trials) in the group, leaving out
    parents whose rows are all their children's (they would count them twice)."""
    from ._sync import children_of

    return [
        e for e in experiments
        if (by == TRIAL or by in e.config)
        and (group is None or e.group == group)
        and (e.rows or not (e.summary.get("children") or children_of(e, experiments)))
    ]  # fmt: skip


def _status_counts(exps: list[StoredExperiment]) -> str:
    """How many of each status, most first: "2 finished, 1 crashed"."""
    counts: dict[str, int] = {}
    for exp in exps:
        counts[exp.status] = counts.get(exp.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _status_text(exps: list[StoredExperiment]) -> str:
    """The status when all have the same ("finished"), else how many of each."""
    statuses = {e.status for e in exps}
    return statuses.pop() if len(statuses) == 1 else _status_counts(exps)


def compare_buckets(
    experiments: list[StoredExperiment], by: str, group: str | None, *, include_all: bool = False
) -> dict[str, list[StoredExperiment]]:
    """The experiments compared, by value of config key `by` (or by sweep trial): only those that
    ran to their end unless `include_all`. `compare` and `report` choose them here."""
    chosen = [
        e for e in _comparable(experiments, by, group)
        # A sweep's trial cut short (and run again) is never ranked with the finished ones.
        if (e.status in COMPARED and (by != TRIAL or e.status == "finished")) or (include_all and by != TRIAL)
    ]  # fmt: skip
    buckets: dict[str, list[StoredExperiment]] = {}
    for exp in chosen:
        buckets.setdefault(_label(exp, by), []).append(exp)
    return buckets


def compare_metrics(buckets: dict[str, list[StoredExperiment]]) -> list[str]:
    """The custom metrics of the compared experiments, sorted: the keys `StoredExperiment.metrics()`
    finds, each checked by `metric_value` until it is found once (tracked's own row fields never
    are), which matters on a store of millions of rows."""
    found: set[str] = set()
    for exps in buckets.values():
        for exp in exps:
            for row in exp.rows:
                for key, value in row.items():
                    if key not in found and key not in ROW_FIELDS and metric_value(key, value) is not None:
                        found.add(key)
    return sorted(found)


def compare_row(
    by: str, value: str, exps: list[StoredExperiment], totals: dict[str, Any], metrics: list[str]
) -> dict[str, Any]:
    """One row of the comparison: status, totals and each custom metric's mean, from `totals`
    (`totals_of(exps)`)."""
    row: dict[str, Any] = {
        by: value,
        "experiments": len(exps),
        "status": _status_text(exps),
        "calls": totals.get("total/calls", 0),
        "errors": totals.get("total/errors", 0),
        "llm_calls": totals.get("total/llm_calls", 0),
        "tokens_in": totals.get("total/tokens_in", 0),
        "tokens_out": totals.get("total/tokens_out", 0),
        "cost_usd": totals.get("total/cost_usd", 0.0),
        "unpriced_calls": totals.get("total/unpriced_calls", 0),
        "usage_unknown_calls": totals.get("total/usage_unknown_calls", 0),
        "latency_s_mean": totals.get("latency_s/mean"),
        "latency_s_p95": totals.get("latency_s/p95"),
        "ttft_s_p50": totals.get("ttft_s/p50"),
    }
    for metric in metrics:
        row[f"{metric}_mean"] = totals.get(f"{metric}/mean")
    return row


def compare_rows(
    experiments: list[StoredExperiment], by: str, group: str | None, *, include_all: bool = False
) -> list[dict[str, Any]]:
    """One row per value of config key `by` (or per sweep trial): status, totals and each custom
    metric's mean; only experiments that ran to their end unless `include_all`."""
    buckets = compare_buckets(experiments, by, group, include_all=include_all)
    metrics = compare_metrics(buckets)
    return [compare_row(by, value, exps, totals_of(exps), metrics) for value, exps in buckets.items()]


def model_rows(
    experiments: list[StoredExperiment], group: str | None, *, include_all: bool = False
) -> list[dict[str, Any]]:
    """One row per LLM model actually called, from the experiments' per-model totals (the LLM
    calls each measured, nested ones included): LLM calls, tokens, cost, unpriced calls; only
    experiments that ran to their end unless `include_all`."""
    rows: dict[str, dict[str, Any]] = {}
    for exp in experiments:
        if group is not None and exp.group != group:
            continue
        if not include_all and exp.status not in COMPARED:
            continue
        if exp.summary.get("children") and not exp.rows:
            continue  # a parent's totals hold its children's, compared on their own
        summary = exp.totals()
        names = {
            k[len("model/") : -len("/name")]: v
            for k, v in summary.items()
            if k.startswith("model/") and k.endswith("/name")
        }
        for key, name in names.items():
            row = rows.setdefault(str(name), {"model": str(name), "experiments": 0, "llm_calls": 0, "tokens_in": None,
                                              "tokens_out": None, "cost_usd": None, "unpriced_calls": 0,
                                              "usage_unknown_calls": 0})  # fmt: skip
            row["experiments"] += 1
            for figure in ("llm_calls", "tokens_in", "tokens_out", "cost_usd", "unpriced_calls", "usage_unknown_calls"):
                value = summary.get(f"model/{key}/{figure}")
                if is_number(value):  # a cost none of the runs knows stays None: unknown, not 0
                    row[figure] = (row[figure] or 0) + value
    return sorted(rows.values(), key=lambda r: -(r["cost_usd"] or 0.0))


def render_models(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="by model (the LLM calls measured)", title_justify="left")
    for col in ("model", "runs", "LLM calls", "tokens in", "tokens out", "cost"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in rows:
        table.add_row(
            escape(row["model"]), str(row["experiments"]), _num(row["llm_calls"]),
            tokens_text(row["tokens_in"], row["usage_unknown_calls"]),
            tokens_text(row["tokens_out"], row["usage_unknown_calls"]),
            cost_text(row["cost_usd"], row["unpriced_calls"]),
        )  # fmt: skip
    return table


def _sort_rows(rows: list[dict[str, Any]], metric: str | None, goal: str) -> list[dict[str, Any]]:
    if metric is None:
        return rows
    key = f"{metric.removesuffix('/mean')}_mean"  # a sweep's objective may name the summary key

    def rank(row: dict[str, Any]) -> float:
        value = row.get(key)
        if not is_number(value) or math.isnan(value):
            return math.inf
        return -value if goal == "maximize" else value

    return sorted(rows, key=rank)


def render_compare(rows: list[dict[str, Any]], by: str, title: str | None = None) -> Any:
    from rich.table import Table

    table = Table(title=escape(title) if title else None, title_justify="left")
    metric_cols = [k for k in (rows[0] if rows else {}) if k.endswith("_mean") and k != "latency_s_mean"]
    for col, justify in [(by, "left"), ("runs", "right"), ("status", "left"), ("calls", "right"),
                         ("errors", "right"), ("LLM calls", "right"), ("tokens in", "right"),
                         ("tokens out", "right"), ("cost", "right"), ("latency mean", "right"),
                         ("latency p95", "right"), ("TTFT p50", "right")]:  # fmt: skip
        table.add_column(col, justify=justify, no_wrap=col == "status")  # type: ignore[arg-type]
    for col in metric_cols:
        table.add_column(col[: -len("_mean")], justify="right")
    for row in rows:
        table.add_row(
            escape(str(row[by])), str(row["experiments"]), escape(row["status"]), _num(row["calls"]),
            _num(row["errors"]), _num(row["llm_calls"]),
            tokens_text(row["tokens_in"], row.get("usage_unknown_calls")),
            tokens_text(row["tokens_out"], row.get("usage_unknown_calls")),
            cost_text(row["cost_usd"], row.get("unpriced_calls")),
            _seconds(row["latency_s_mean"]), _seconds(row["latency_s_p95"]), _seconds(row["ttft_s_p50"]),
            *(_num(row[c]) for c in metric_cols),
        )  # fmt: skip
    return table


def _seconds(value: Any) -> str:
    if not is_number(value):
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _compare_models(experiments: list[StoredExperiment], args: argparse.Namespace) -> int:
    """`compare --by model` when no config says the model: the models the LLM calls used."""
    rows = model_rows(experiments, args.group, include_all=args.all)
    if not rows:
        raise UsageError("no experiment has per-model totals (they are in summary.json of finished experiments)")
    _print_rows(rows, args, lambda: render_models(rows))
    return 0


def _print_rows(rows: list[dict[str, Any]], args: argparse.Namespace, table: Callable[[], Any]) -> None:
    """Rows as JSON (`--json`), CSV (`--csv`) or the rich table `table()` makes."""
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    elif args.csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        sys.stdout.write(buf.getvalue())
    else:
        _console().print(table())


def _choose(args: argparse.Namespace) -> tuple[Path, list[StoredExperiment], str, str | None, str]:
    """What `compare` and `report` compare: the store, its experiments, the key to compare by and
    the metric to rank by (a sweep's group ranks by the sweep's metric) with its goal."""
    root = _store_root(args.dir)
    experiments = find_experiments(root)
    if not experiments:
        raise UsageError(f"no experiments under {root}")
    if args.group is not None and not any(e.group == args.group for e in experiments):
        groups = sorted({e.group for e in experiments if e.group})
        raise UsageError(f"no experiments in group {args.group!r} under {root} (groups: {', '.join(groups) or 'none'})")
    sweep_metric = _sweep_metric(experiments, args.group) if args.group is not None else None
    by = args.by or (TRIAL if sweep_metric is not None else "strategy")
    metric, goal = args.metric, args.goal
    if metric is None and sweep_metric and sweep_metric[0]:
        metric, goal = sweep_metric
    return root, experiments, by, metric, goal


def _nothing_to_compare(experiments: list[StoredExperiment], by: str, left_out: str) -> UsageError:
    if left_out:
        return UsageError(f"no experiment to compare by {by!r} ran to its end ({left_out}; --all includes them)")
    keys = sorted({k for e in experiments for k in e.config})
    return UsageError(f"no experiment has config key {by!r} (keys: {', '.join(keys) or 'none'})")


def cmd_compare(args: argparse.Namespace) -> int:
    _, experiments, by, metric, goal = _choose(args)
    if by == "model" and not any("model" in e.config for e in experiments):
        return _compare_models(experiments, args)
    rows = compare_rows(experiments, by, args.group, include_all=args.all)
    left_out = _left_out(experiments, by, args.group) if not args.all else ""
    if not rows:
        raise _nothing_to_compare(experiments, by, left_out)
    rows = _sort_rows(rows, metric, goal)
    title = f"by {by}" + (f" in group {args.group}" if args.group else "")
    title += f", ranked by {metric} ({goal})" if metric else ""
    _print_rows(rows, args, lambda: render_compare(rows, by, title))
    if left_out:
        note = f"left out: {left_out} (--all includes them)"
        if args.json or args.csv:
            print(note, file=sys.stderr)
        else:
            _console().print(note, markup=False, soft_wrap=True)
    return 0


def _left_out(experiments: list[StoredExperiment], by: str, group: str | None) -> str:
    """What the comparison leaves out for not having run to its end: "1 failed, 2 crashed"."""
    return _status_counts([e for e in _comparable(experiments, by, group) if e.status not in COMPARED])


def _sweep_metric(experiments: list[StoredExperiment], group: str) -> tuple[str, str] | None:
    """The metric and goal of the sweep whose group this is: None if it is not a sweep's group,
    an empty pair for a sweep without a metric."""
    for exp in experiments:
        sweep = exp.meta.get("sweep") if exp.group == group else None
        if isinstance(sweep, dict) and group in (sweep.get("id"), sweep.get("name")):
            metric = sweep.get("metric")
            return (metric, sweep.get("goal") or "minimize") if isinstance(metric, str) else ("", "")
    return None


# --- report -----------------------------------------------------------------------------------

REPORT = "report.html"


def write_report(
    experiments: list[StoredExperiment],
    out: Path,
    *,
    by: str,
    group: str | None,
    metric: str | None,
    goal: str,
    include_all: bool,
    source: str,
    notes: Sequence[str] = (),
    metric_given: bool = False,
) -> Path:
    """Write the report of what `compare` would show for these arguments to `out`; return its path.

    The buckets, rows and totals are compare's (`compare_buckets`, `totals_of`, `compare_row`), in
    compare's order (`_sort_rows`); raises `ReportUnavailable` without plotly, `UsageError` when
    there is nothing to compare, `out` cannot be written, or `metric_given` and `metric` is none of
    the experiments' metrics."""
    from ._report import Bucket, render, require_plotly

    require_plotly()
    target = _report_target(out)
    buckets = compare_buckets(experiments, by, group, include_all=include_all)
    if not buckets:
        raise _nothing_to_compare(experiments, by, "" if include_all else _left_out(experiments, by, group))
    metrics = compare_metrics(buckets)
    made = []
    for value, exps in buckets.items():
        totals = totals_of(exps)
        row = compare_row(by, value, exps, totals, metrics)
        made.append(Bucket(value, exps, row, totals, model_rows(exps, None, include_all=True)))
    quality = metric.removesuffix("/mean") if metric else None
    if quality not in metrics:
        if metric_given:
            raise UsageError(
                f"no metric {metric!r} in the experiments compared (metrics: {', '.join(metrics) or 'none'})"
            )
        quality = "accuracy" if "accuracy" in metrics else (metrics[0] if metrics else None)
    # ranked by the metric the charts draw (--metric, else accuracy, else the first), as `--help` says
    order = {id(row): i for i, row in enumerate(_sort_rows([b.row for b in made], quality, goal))}
    made.sort(key=lambda b: order[id(b.row)])
    title = f"tracked report: by {by}" + (f" in group {group}" if group else "")
    names = {_label(e, by) for e in experiments if by == TRIAL or by in e.config}  # colours kept across --group/--all
    text = render(
        made, by=by, metrics=metrics, quality=quality, goal=goal, title=title, source=source, notes=notes, names=names
    )
    _write_file(target, text, out)
    return out


def _report_target(out: Path) -> Path:
    """The regular file the report replaces: `out`, or the file a symlink names; a `UsageError`
    for anything else (a directory, a device such as /dev/full, a FIFO), which a temporary file
    renamed over it would replace."""
    if out.is_dir():  # (through links)
        raise UsageError(f"cannot write the report to {out}: it is a directory")
    if out.exists() and not out.is_file():
        raise UsageError(f"cannot write the report to {out}: it is not a regular file (a device, FIFO or socket)")
    target = out.resolve() if out.is_symlink() else out
    if not target.parent.is_dir():
        raise UsageError(f"cannot write the report to {out}: no directory {target.parent}")
    return target


def _write_file(target: Path, text: str, out: Path) -> None:
    """Write `text` to a new file next to `target`, then rename it over `target` (a reader never
    sees half a report); any error (a full disk, a directory that takes no new files) is a
    `UsageError` naming what failed, and leaves `target` as it was."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise UsageError(
            f"cannot write the report to {out}: cannot create a file in {target.parent} ({exc.strerror or exc})"
        ) from None
    try:
        with open(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if target.is_file():
            shutil.copymode(target, tmp)  # an existing report keeps its permissions
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write the report to {out}: {exc.strerror or exc}") from None


def cmd_report(args: argparse.Namespace) -> int:
    from ._report import ReportUnavailable

    try:
        from ._report import require_plotly

        require_plotly()  # before reading a large store
        root, experiments, by, metric, goal = _choose(args)
        if by == "model" and not any("model" in e.config for e in experiments):
            raise UsageError(
                "no experiment has config key 'model'; the report's \"cost by model\" chart shows the models "
                "the LLM calls used, whatever --by is"
            )
        left_out = _left_out(experiments, by, args.group) if not args.all else ""
        notes = [f"Left out: {left_out} (--all includes them)."] if left_out else []
        keyless = _without_key(experiments, by, args.group)
        if keyless:
            keyless_note = f"{keyless} experiment{'s' if keyless > 1 else ''} without config key {by!r}"
            notes.append(f"Left out: {keyless_note}.")
        if args.output is not None and not args.output.strip():
            raise UsageError("cannot write the report: -o names no file (it is empty)")
        out = Path(args.output) if args.output is not None else root / REPORT
        start = time.perf_counter()
        path = write_report(
            experiments, out, by=by, group=args.group, metric=metric, goal=goal, include_all=args.all,
            source=str(root.resolve()), notes=notes, metric_given=args.metric is not None,
        )  # fmt: skip
    except ReportUnavailable as exc:
        raise UsageError(str(exc)) from None
    elapsed = time.perf_counter() - start
    size = path.stat().st_size / 1e6
    print(f"report: {path.resolve()} ({size:.1f} MB, {elapsed:.1f} s)")
    if left_out:
        print(f"left out: {left_out} (--all includes them)", file=sys.stderr)
    if keyless:
        print(f"left out: {keyless_note}", file=sys.stderr)
    return 0


def _without_key(experiments: list[StoredExperiment], by: str, group: str | None) -> int:
    """How many experiments of the group the comparison leaves out for not having config key `by`
    (parents whose rows are their children's are not counted: they are never compared)."""
    if by == TRIAL:
        return 0
    return sum(
        1 for e in experiments
        if by not in e.config and (group is None or e.group == group) and (e.rows or not e.summary.get("children"))
    )  # fmt: skip


# --- ls ---------------------------------------------------------------------------------------


def totals_with_children(exp: StoredExperiment, store: list[StoredExperiment]) -> dict[str, Any]:
    """An experiment's totals: its summary's when it finished; else (killed, or still running)
    recomputed from its rows and those of the experiments opened inside it, as its summary would
    have added them up."""
    if "total/calls" in exp.summary:
        return exp.summary
    from ._sync import descendants_of

    return totals_of([exp, *descendants_of(exp, store)])


def cmd_ls(args: argparse.Namespace) -> int:
    from rich.table import Table

    root = _store_root(args.dir)
    experiments = find_experiments(root)
    if args.json:
        listed = []
        for e in experiments:
            totals = totals_with_children(e, experiments)
            listed.append({
                "dir": str(e.path), "name": e.name, "status": e.status, "group": e.group, "started_at": e.started_at,
                "calls": totals.get("total/calls", 0), "cost_usd": totals.get("total/cost_usd"),
                "unpriced_calls": totals.get("total/unpriced_calls", 0),
            })  # fmt: skip
        print(json.dumps(listed, indent=2))
        return 0
    if not experiments:
        _console().print(f"no experiments under {root}")
        return 0
    table = Table(title=escape(f"experiments in {root}"), title_justify="left")
    for col, justify in [("started", "left"), ("name", "left"), ("status", "left"), ("group", "left"),
                         ("calls", "right"), ("cost", "right"), ("dir", "left")]:  # fmt: skip
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    colour = {"finished": "green", "failed": "red", "crashed": "red", "interrupted": "yellow", "running": "cyan"}
    for exp in experiments:
        totals = totals_with_children(exp, experiments)
        status = exp.status
        table.add_row(
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(exp.started_at)), escape(exp.name),
            f"[{colour.get(status, 'white')}]{escape(status)}[/]", escape(exp.group or ""),
            _num(totals.get("total/calls", 0)),
            cost_text(totals.get("total/cost_usd"), totals.get("total/unpriced_calls")), escape(exp.path.name),
        )  # fmt: skip
    _console().print(table)
    return 0


# --- sync -------------------------------------------------------------------------------------


def cmd_sync(args: argparse.Namespace) -> int:
    from ._sync import NothingToSync, sync_experiments

    target = Path(args.target) if args.target else Path(os.environ.get("TRACKED_DIR") or ".")
    if not target.exists():
        raise UsageError(f"no such directory: {target}")
    try:
        return sync_experiments(target, offline=args.offline, console=_console())
    except NothingToSync as exc:
        raise UsageError(str(exc)) from None


# --- demo -------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ._demo import STRATEGIES, run_demo

    if args.tasks < 1:
        raise UsageError(f"--tasks must be at least 1, got {args.tasks}")
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_SILENT", "true")
    configure(quiet=True)  # the demo ends with its own footer, which says where the runs are
    console = _console()
    start = time.perf_counter()
    with Progress(
        TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        ids = {s: bar.add_task(s, total=args.tasks) for s in STRATEGIES}
        parent = run_demo(args.tasks, str(out), progress=lambda s, n: bar.advance(ids[s], n))
    elapsed = time.perf_counter() - start
    children = [
        find_experiments(out / "experiments" / c["dir"])[0]
        for c in parent.final_summary.get("children", [])
        if "dir" in c
    ]
    rows = _sort_rows(compare_rows(children, "strategy", None), "accuracy", "maximize")
    console.print(render_compare(rows, "strategy", f"strategy comparison: {args.tasks} tasks, {elapsed:.1f} s"))
    console.print(f"local store: {parent.path.parent.resolve()}", markup=False)
    children_info = parent.final_summary.get("children", [])
    runs = [c["wandb_id"] for c in children_info if c.get("wandb_id")]
    mode = (parent.final_summary.get("sinks") or {}).get("wandb")
    if runs and all(c.get("wandb_mode") == "online" for c in children_info if c.get("wandb_id")):
        console.print(f"W&B runs ({len(runs)}) uploaded to project tracked-demo, group {parent.group}", markup=False)
    elif runs:
        console.print(
            f"W&B runs ({len(runs)}, offline) are in {out.resolve() / 'wandb'}; upload them with:", markup=False
        )
        console.print(f"  wandb sync {out.resolve() / 'wandb'}/offline-run-*   (or: tracked sync {out})", markup=False)
    elif mode == "off":
        console.print(f"W&B was off; to send these experiments to W&B later: tracked sync {out}", markup=False)
    console.print(_demo_report(children, out), markup=False, soft_wrap=True)
    return 0


def _demo_report(children: list[StoredExperiment], out: Path) -> str:
    """Write the demo's report next to its runs: the line that says where (or what to install)."""
    from ._report import INSTALL_HINT, ReportUnavailable

    try:
        path = write_report(
            children, out / REPORT, by="strategy", group=None, metric="accuracy", goal="maximize", include_all=False,
            source=str(out.resolve()),
        )  # fmt: skip
    except ReportUnavailable:
        return f"for a report with charts: {INSTALL_HINT}, then: tracked report {out}"
    return f"report: {path.resolve()}"


# --- sweep ------------------------------------------------------------------------------------


def cmd_sweep(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ._sweep import SweepError, describe, run_sweep

    path = Path(args.file)
    store = Path(args.dir)
    console = _console()
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as bar:
            task = bar.add_task(f"sweep {path.name}", total=None)

            def progress(done: int, total: int | None, trial: Any) -> None:
                bar.update(task, completed=done, total=total)
                if trial is not None:
                    bar.console.print(escape(describe(trial)))

            state = run_sweep(
                path, count=args.count, parallel=args.parallel, store=store, on_progress=progress,
                on_notice=lambda text: bar.console.print(text, markup=False),
            )  # fmt: skip
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    except KeyboardInterrupt:
        console.print("sweep stopped; run the same command again to resume", markup=False)
        return 130
    failed = [t for t in state.trials if t.status == "failed"]
    console.print(
        f"sweep {state.name}: {len(state.trials)} trials, {len(failed)} failed; "
        f"compare them with: tracked compare {store} --group {state.id}",
        markup=False,
    )
    return 1 if failed and len(failed) == len(state.trials) else 0


# --- the parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracked",
        description="Experiments tracked with tracked: run the demo, list, compare, report, sync to W&B.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        help="run a small strategy comparison (single, debate, self_consistency)",
        description=(
            "Compare single, debate (3 debaters, 2 rounds) and self_consistency (5 samples) on simulated "
            "false-belief tasks, with a simulated local Ollama model and a priced hosted judge. Writes W&B "
            "offline runs and the local store, then prints the comparison."
        ),
    )
    demo.add_argument("--tasks", type=int, default=10, help="number of tasks (default 10)")
    demo.add_argument("--dir", default=".", help="where experiments/ and wandb/ are written (default: here)")
    demo.set_defaults(fn=cmd_demo)

    ls = sub.add_parser(
        "ls",
        help="list the experiments in a store, newest first",
        description="List the experiments in a local store, newest first, with status, group, calls and cost.",
    )
    ls.add_argument("dir", nargs="?", help="the store (default: TRACKED_DIR, else here)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(fn=cmd_ls)

    compare = sub.add_parser(
        "compare",
        help="compare experiments by a config key",
        description=(
            "One row per value of a config key (default: strategy), with status, totals, latency, TTFT and each "
            "custom metric's mean. Only experiments that ran to their end, unless --all."
        ),
    )
    compare.add_argument("dir", nargs="?", help="the store (default: TRACKED_DIR, else here)")
    compare.add_argument(
        "--by", help="config key to compare by (default: strategy; for a sweep's group, one row per trial)"
    )
    compare.add_argument("--group", help="only experiments of this group (a sweep's id, <name>-<digest>, for example)")
    compare.add_argument("--metric", help="rank by the mean of this metric")
    compare.add_argument("--goal", choices=("maximize", "minimize"), default="maximize", help="ranking direction")
    compare.add_argument(
        "--all", action="store_true", help="also compare failed, crashed, interrupted and running experiments"
    )
    fmt = compare.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    compare.set_defaults(fn=cmd_compare)

    report = sub.add_parser(
        "report",
        help="write the comparison as charts in one HTML file (offline)",
        description=(
            "Write one self-contained HTML file (it opens offline) with charts of what `tracked compare` compares: "
            "each metric's mean with its standard error, cost and tokens, cost per task against the metric with "
            "the frontier, running curves, latency and TTFT, cost by model, and a sortable per-task table. "
            "Needs plotly: pip install 'tracked[report]'."
        ),
    )
    report.add_argument("dir", nargs="?", help="the store (default: TRACKED_DIR, else here)")
    report.add_argument("--by", help="config key to compare by (default: strategy; for a sweep's group, one per trial)")
    report.add_argument("--group", help="only experiments of this group")
    report.add_argument(
        "--metric",
        help="the metric of the cost/quality charts, and the order (default: accuracy, else the first in name order)",
    )
    report.add_argument("--goal", choices=("maximize", "minimize"), default="maximize", help="the metric's direction")
    report.add_argument(
        "--all", action="store_true", help="also include failed, crashed, interrupted and running experiments"
    )
    report.add_argument("-o", "--output", help=f"the HTML file to write (default: DIR/{REPORT})")
    report.set_defaults(fn=cmd_report)

    sync = sub.add_parser(
        "sync",
        help="send local-store experiments to W&B",
        description=(
            "Replay local-store experiments into W&B (online with credentials, else offline runs): name, group, "
            "tags, notes, config, rows, summary. Each experiment keeps one W&B run id; one that already has an "
            "offline W&B run is uploaded with `wandb sync`."
        ),
    )
    sync.add_argument("target", nargs="?", help="a store or one experiment directory (default: TRACKED_DIR, else here)")
    sync.add_argument("--offline", action="store_true", help="write offline W&B runs even when credentials exist")
    sync.set_defaults(fn=cmd_sync)

    sweep = sub.add_parser(
        "sweep",
        help="run a W&B sweep.yaml on this machine, without a W&B server",
        description=(
            "Run the trials of a W&B sweep file (grid, random or bayes, chosen by W&B's `sweeps` engine) "
            "as `wandb agent` would run them, up to --parallel at a time. Each trial is an experiment in the "
            "sweep's group (its id, <name>-<digest of the file>), its parameters in exp.config. Running the same "
            "command again resumes; an edited file is a new sweep."
        ),
    )
    sweep.add_argument("file", help="the sweep.yaml (program, method, metric, parameters)")
    sweep.add_argument("--count", type=int, help="trials in all (required for random and bayes; grid: all)")
    sweep.add_argument("--parallel", type=int, default=1, help="trials at a time (default 1)")
    sweep.add_argument("--dir", default=".", help="the store: experiments/ and sweeps/ (default: here)")
    sweep.set_defaults(fn=cmd_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except UsageError as exc:
        _console(stderr=True).print(f"[red]tracked {args.command}: {escape(str(exc))}[/]")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tracked compare --json | head`: the reader has gone
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # (no second error when Python flushes stdout at exit)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
