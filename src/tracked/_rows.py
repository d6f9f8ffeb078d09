"""An experiment's rows: one per top-level call (or per `exp.log` outside calls), with totals.

A row is numbered (its step) when it is made and written to the durable sinks at once. Metrics
logged after its call returned join it until it is sealed: when its thread or task starts another
top-level call, or the experiment ends. Sealed rows reach the background sinks whole and in step
order; a row that stays open too long (its thread never made another call) is sealed so that it
does not hold back the rows after it.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._call import Call
from ._totals import ROW_FIELDS, Totals, metric_value

if TYPE_CHECKING:
    from .sinks import SinkSet

__all__ = ["MAX_WAITING_ROWS", "Row", "Rows", "call_row"]

# Past this many complete rows waiting for an open one before them, the open one is sealed;
# metrics logged for it afterwards become a row of their own. Without a background sink nothing waits.
MAX_WAITING_ROWS = 10_000


class Row:
    __slots__ = ("data", "sealed", "step")

    def __init__(self, step: int, data: dict[str, Any]) -> None:
        self.step = step
        self.data = data
        self.sealed = False

    def __lt__(self, other: Row) -> bool:
        return self.step < other.step


def row_ttft(call: Call) -> float | None:
    """A top-level call's time to first token: its own (a stream), else that of the first streamed
    LLM call made inside it (seconds from that call's start to its first item)."""
    ttft = call.ttft_s
    return call.__dict__.get("_first_ttft") if ttft is None else ttft


def call_row(call: Call) -> dict[str, Any]:
    """The row of a top-level call: its name, figures, error and metrics."""
    # The figures unpacked once (the properties of `Call`, in the order of `_call.FIGURES`).
    latency, model, _, tokens_in, tokens_out, _, _, cost, _, _, llm_calls, unpriced, unknown = call._figs
    known = not unknown or unknown < llm_calls  # (`tokens_known`)
    data: dict[str, Any] = {
        "call": call.name,
        "call_id": call.id,  # its record in calls.jsonl
        "latency_s": latency,
        "tokens_in": tokens_in if known else None,  # unknown, not 0
        "tokens_out": tokens_out if known else None,
        "cost_usd": cost,
        "llm_calls": llm_calls,
        "error": 1 if call.error_type else 0,
    }
    ttft = row_ttft(call)
    if ttft is not None:
        data["ttft_s"] = ttft
    if model is not None:
        data["model"] = model
    if call.error_type is not None:
        data["error_type"] = call.error_type
    if unpriced:
        data["unpriced_calls"] = unpriced
    if unknown:
        data["usage_unknown_calls"] = unknown
    if call.metrics:
        data.update(call.metrics)
    return data


class Rows:
    """The rows and own totals of one experiment, written through its `SinkSet`.

    `lock` guards the rows and `totals`; it is re-entrant because the SIGTERM handler may end the
    experiment on a thread that holds it.
    """

    def __init__(self, sinks: SinkSet) -> None:
        self.lock = threading.RLock()
        self.totals = Totals()
        self.count = 0  # rows made
        self._sinks = sinks
        self._open: dict[int, Row] = {}
        self._ready: list[Row] = []
        self._next_emit = 0

    def _new(self, data: dict[str, Any]) -> Row:
        row = Row(self.count, data)
        self.count += 1
        return row

    def add_call(self, call: Call) -> Row:
        """The row of a top-level call that has ended; it stays open for metrics logged next."""
        data = call_row(call)
        latency, _, _, tokens_in, tokens_out, _, _, cost, _, _, llm_calls, unpriced, unknown = call._figs
        with self.lock:
            row = self._new(data)
            self.totals.add_call(
                call.name, latency or 0.0, call.error_type is not None, llm_calls, tokens_in, tokens_out, cost,
                unpriced, unknown,
            )  # fmt: skip
            ttft = row_ttft(call)
            if ttft is not None:
                self.totals.add_ttft(ttft)
            if call.metrics:
                self.count_metrics({}, call.metrics)
            self._open[row.step] = row
        # Outside the lock: the write is one syscall that other threads need not wait for. Metrics
        # joined later come from this same thread or task, after this returns.
        self._sinks.write_row(row.step, row.data)
        return row

    def add_model(self, call: Call) -> None:
        """An LLM call (one that measured its own usage), or a result of the older tracker that
        reported its own, counted under its model."""
        _, model, _, tokens_in, tokens_out, _, _, cost, _, _, llm_calls, unpriced, unknown = call._figs
        with self.lock:
            self.totals.add_model(model, tokens_in, tokens_out, cost, llm_calls, unpriced, unknown)

    def add_late(self, call: Call) -> None:
        """A nested call that ended after its parent had returned: its usage counts in the totals,
        under the name of the row it belongs to (its outermost ancestor in this experiment)."""
        top = call
        while top.parent is not None and top.parent.experiment is call.experiment:
            top = top.parent
        with self.lock:
            self.totals.add_late(
                top.name, call.llm_calls, call.tokens_in, call.tokens_out, call.cost_usd, call.unpriced_calls,
                call.usage_unknown_calls,
            )  # fmt: skip

    def add(self, data: dict[str, Any], *, stored: bool = False) -> None:
        """A sealed row of its own: metrics logged outside any call, or (`stored`) a row read back
        from a worker's store, whose figures count in the totals."""
        with self.lock:
            if stored:
                self.totals.add_row(data)
            self.count_metrics({}, data if not stored else _metrics_of(data))
            row = self._new(data)
            self._sinks.write_row(row.step, row.data)
            self._seal(row)

    def count_metrics(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        """Keep the metric means right when a row's metrics are set or replaced (holding `lock`)."""
        for key, value in new.items():
            before = metric_value(key, old.get(key))
            if before is not None:
                self.totals.add_metric(key, before, -1)
            after = metric_value(key, value)
            if after is not None:
                self.totals.add_metric(key, after)

    def join(self, row: Any, metrics: dict[str, Any]) -> bool:
        """Metrics logged after a top-level call returned join its row, unless it was sealed."""
        with self.lock:
            if not isinstance(row, Row) or row.sealed:
                return False
            self.count_metrics(row.data, metrics)
            row.data.update(metrics)
            self._sinks.join(row.step, metrics)
            return True

    def seal(self, row: Any) -> None:
        """The row is complete (its thread or task started another top-level call)."""
        if isinstance(row, Row) and not row.sealed:
            with self.lock:
                self._seal(row)

    def seal_all(self) -> None:
        with self.lock:
            for step in sorted(self._open):
                self._seal(self._open[step])

    def _seal(self, row: Row) -> None:
        # Holding the lock. Rows reach the background sinks whole and in step order.
        if row.sealed:
            return
        row.sealed = True
        self._open.pop(row.step, None)
        if not self._sinks.ordered and not self._ready:
            self._next_emit = max(self._next_emit, row.step + 1)
            return
        heapq.heappush(self._ready, row)
        while self._ready:
            if self._ready[0].step == self._next_emit:
                ready = heapq.heappop(self._ready)
                self._next_emit += 1
                self._sinks.emit(ready.step, ready.data)
            elif len(self._ready) > MAX_WAITING_ROWS and self._next_emit in self._open:
                self._seal(self._open[self._next_emit])
            else:
                break


def _metrics_of(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ROW_FIELDS}
