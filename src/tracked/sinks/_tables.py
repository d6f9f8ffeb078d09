"""The W&B run's two tables, `calls` and `tasks`, built as rows arrive and sent while the run goes on.

Each table is sent to the run's summary: every `configure(table_flush_s=...)` seconds as an
increment of an incremental table (W&B's `log_mode="INCREMENTAL"`: each update sends only the rows
that came since, and the app shows them all), and once more at the end. A run that ends before its
first update writes each table once, as an ordinary (immutable) table, which every W&B server shows.
An incremental table's columns are fixed when it is first sent; when a later row brings a column it
lacks (a metric first logged late), the end writes the whole table again as an ordinary one.

A row is sent once it is complete: a call once its depth is known (its parent's record came: records
come children first, so a call tree is sent when its top-level call has ended), a task once its
top-level call's record came (for the models it used). What is left at the end is sent then.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = ["CALL_COLUMNS", "TASK_COLUMNS", "TASK_FIGURES", "Tables"]

#: The calls table: every call, nested ones included; `depth` 0 is a top-level call, and the rows
#: with `llm` true (calls that measured their own usage) sum to the run's totals.
CALL_COLUMNS = (
    "id", "parent_id", "depth", "name", "llm", "start_time", "latency_s", "ttft_s", "model", "provider",
    "tokens_in", "tokens_out", "cost_usd", "cost_source", "llm_calls", "unpriced_calls", "usage_unknown_calls",
    "error", "error_message", "input", "output",
)  # fmt: skip
#: The tasks table: one row per top-level call (a task), with its step, the user's metrics (between
#: `output` and `latency_s`) and the captured text, so that a task can be compared across runs.
TASK_COLUMNS = ("step", "task_id", "call", "input", "output")
TASK_FIGURES = (
    "latency_s", "ttft_s", "tokens_in", "tokens_out", "cost_usd", "llm_calls", "unpriced_calls", "usage_unknown_calls",
    "model", "models", "error_type", "error_message", "start_time",
)  # fmt: skip
_COUNTS = ("unpriced_calls", "usage_unknown_calls")
_TASK_FIXED = frozenset({*TASK_COLUMNS, *TASK_FIGURES, "call_id", "error"})

#: Makes a W&B table: (columns, rows, incremental) -> a `wandb.Table`.
MakeTable = Callable[[list[str], list[list[Any]], bool], Any]


class _Table:
    """One table: its complete rows (dicts, in the order they became complete), how many were
    sent, and the incremental W&B table they were sent to."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.rows: list[dict[str, Any]] = []
        self.left_out = 0  # rows over `table_max_rows`
        self.sent = 0
        self.live: Any = None  # the incremental wandb.Table, once sent
        self.columns: list[str] = []
        self.grew = False  # a row came with a column the incremental table lacks

    def columns_for(self, extra: set[str]) -> list[str]:
        if self.key == "calls":
            return [*CALL_COLUMNS, *sorted(extra)]
        return [*TASK_COLUMNS, *sorted(extra), *TASK_FIGURES]

    def extra(self, rows: list[dict[str, Any]]) -> set[str]:
        if self.key == "calls":
            return {k for row in rows for k in row if k not in CALL_COLUMNS}
        return {k for row in rows for k in row if k not in _TASK_FIXED and not k.startswith("_")}


class Tables:
    """The calls and tasks tables of one run (used from the sink's thread only)."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.calls = _Table("calls")
        self.tasks = _Table("tasks")
        self._depth: dict[str, int] = {}  # call id -> depth, for the calls whose depth is known
        self._top: dict[str, str] = {}  # call id -> its top-level call's id
        self._waiting: dict[str, list[dict[str, Any]]] = {}  # parent id -> calls waiting for its record
        self._n_waiting = 0
        self._tops: dict[str, Mapping[str, Any]] = {}  # top-level call records, by id
        self._models: dict[str, set[str]] = {}  # top-level call id -> models of the LLM calls under it
        self._tasks_waiting: dict[str, list[dict[str, Any]]] = {}  # top-level call id -> its task rows
        self.made: list[Any] = []  # the W&B tables made, to let go of at the end

    # --- rows in ---------------------------------------------------------------------------

    def add_task(self, step: int, row: Mapping[str, Any]) -> None:
        """A top-level call's row (or an older tracker's result) at history step `step`."""
        if len(self.tasks.rows) + sum(map(len, self._tasks_waiting.values())) >= self.max_rows:
            self.tasks.left_out += 1
            return
        task = {**row, "_tracked_step": step}  # (a user's own `step` metric stays theirs)
        call_id = row.get("call_id")
        if isinstance(call_id, str) and call_id not in self._tops:
            self._tasks_waiting.setdefault(call_id, []).append(task)
        else:
            self.tasks.rows.append(self._task_values(task))

    def add_call(self, rec: Mapping[str, Any]) -> None:
        """A call's record, as the local store's `calls.jsonl` has it."""
        if rec.get("parent_id") is None and len(self._tops) < self.max_rows:
            self._tops[rec["id"]] = rec
        if len(self.calls.rows) + self._n_waiting >= self.max_rows:
            self.calls.left_out += 1
        else:
            row = {c: rec.get(c) for c in CALL_COLUMNS}
            row["llm"] = bool(rec.get("llm"))
            for count in _COUNTS:  # 0, not null: null is for what is unknown
                row[count] = rec.get(count) or 0
            row["start_time"] = _date(rec.get("start_time"))
            row["input"], row["output"] = _text(rec.get("inputs")), _text(rec.get("output"))
            for key, value in (rec.get("metrics") or {}).items():  # the call's own metrics
                row[f"metrics/{key}"] = value
            parent = rec.get("parent_id")
            if parent is None:
                self._settle(row, 0, str(row["id"]))
            elif parent in self._depth:
                self._settle(row, self._depth[parent] + 1, self._top[parent])
            else:
                self._waiting.setdefault(parent, []).append(row)
                self._n_waiting += 1
        if rec.get("parent_id") is None:
            for task in self._tasks_waiting.pop(rec["id"], ()):
                self.tasks.rows.append(self._task_values(task))

    def _settle(self, row: dict[str, Any], depth: int, top: str) -> None:
        """`row`'s depth is known: it is complete, and so are the calls that waited for it."""
        stack = [(row, depth, top)]
        while stack:
            row, depth, top = stack.pop()
            row["depth"] = depth
            self._depth[row["id"]], self._top[row["id"]] = depth, top
            self.calls.rows.append(row)
            if row["llm"] and row.get("model"):
                self._models.setdefault(top, set()).add(row["model"])
            kids = self._waiting.pop(row["id"], ())
            self._n_waiting -= len(kids)
            stack.extend((kid, depth + 1, top) for kid in kids)

    def _task_values(self, task: dict[str, Any]) -> dict[str, Any]:
        call_id = task.get("call_id") or ""
        rec = self._tops.get(call_id) or {}
        used = self._models.get(call_id) or ({task["model"]} if task.get("model") else set())
        return {
            **task,
            **{count: task.get(count) or 0 for count in _COUNTS},
            "step": task["_tracked_step"],
            "models": ", ".join(sorted(used)) or None,
            "task_id": next((task[k] for k in ("task_id", "task", "id") if k in task), None),
            "input": _text(rec.get("inputs")),
            "output": _text(rec.get("output")) if rec.get("output") is not None else _text(task.get("output")),
            "error_message": rec.get("error_message"),
            "start_time": _date(rec.get("start_time")),
        }

    def finish_rows(self) -> None:
        """The end: calls whose parent's record never came (left out of the table, or in another
        process) are top-level here (depth 0), and tasks whose call record never came are complete."""
        while self._waiting:
            present = {row["id"] for rows in self._waiting.values() for row in rows}
            roots = [p for p in self._waiting if p not in present] or [next(iter(self._waiting))]
            for parent in roots:
                kids = self._waiting.pop(parent)
                self._n_waiting -= len(kids)
                for kid in kids:
                    self._settle(kid, 0, kid["id"])
        for tasks in self._tasks_waiting.values():
            self.tasks.rows.extend(self._task_values(t) for t in tasks)
        self._tasks_waiting.clear()

    # --- tables out -------------------------------------------------------------------------

    def send(self, make: MakeTable, *, final: bool) -> dict[str, Any]:
        """The tables to put in the run's summary now, by key: the rows that became complete since
        the last update (live), or, at the end, what completes each table."""
        out: dict[str, Any] = {}
        for table in (self.calls, self.tasks):
            new = table.rows[table.sent :]
            if table.live is not None and not table.grew and table.extra(new) - set(table.columns):
                table.grew = True
            if final and (table.live is None or table.grew):
                if table.rows:  # the whole table at once, as an ordinary table
                    columns = table.columns_for(table.extra(table.rows))
                    out[table.key] = make(columns, [[r.get(c) for c in columns] for r in table.rows], False)
                    self.made.append(out[table.key])
                continue
            if not new:
                continue
            if table.live is None:
                table.columns = table.columns_for(table.extra(new))
                table.live = make(table.columns, [], True)
                self.made.append(table.live)
            for row in new:
                table.live.add_data(*[row.get(c) for c in table.columns])
            table.sent = len(table.rows)
            out[table.key] = table.live
        return out


def _date(epoch: Any) -> str | None:
    """A start time (seconds since the epoch) as an ISO 8601 date, as a table shows it."""
    if not isinstance(epoch, (int, float)):
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds")


def _text(value: Any) -> str | None:
    """Captured text for a table cell: the messages sent one per line (`role: content`), a reply
    as it is, anything else as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    messages = value.get("messages") if isinstance(value, Mapping) else None
    if isinstance(messages, list) and all(isinstance(m, Mapping) for m in messages):
        return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in messages)
    return json.dumps(value, default=repr, ensure_ascii=False)
