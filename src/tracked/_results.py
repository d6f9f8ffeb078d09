"""The older tracker's results: the calls made for one `log_result` are that result's children.

While an `ExperimentTracker` has an experiment open, every call that would be a top-level row of
it (an instrumented client's request, a `@tracked` function) becomes instead a child of one open
"result" call. `log_result` ends that call as the result's row, with the result's fields as its
metrics and its own figures as a report: what the children measured beats what the result says
(`Call._finish`), and a new "result" call opens for the next one. A result with nothing measured
below it is a row of its own figures (`Experiment.add_result`), with no LLM call invented.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any

from ._call import _CLOSED, _KIDS, Call
from ._context import _current, _last_row, lane
from .usage import Usage

if TYPE_CHECKING:
    from ._experiment import Experiment

__all__ = ["Results"]


class Results:
    """The open "result" call of an experiment driven by the older tracker."""

    def __init__(self, exp: Experiment) -> None:
        self.exp = exp
        self.open: Call | None = None
        self._begin()

    def _begin(self) -> None:
        call = Call("result", None, self.exp, perf_counter())
        call._row = True
        self.open = call
        self.exp._adopt = call  # read by `_tracked._begin` for every would-be top-level call

    def _measured(self, call: Call) -> bool:
        kids = call.__dict__.get(_KIDS)
        return bool(kids) and kids is not _CLOSED

    def end(self, metrics: dict[str, Any], report: Usage | None) -> Call | None:
        """End the open result with `metrics` if calls were measured for it; returns its row's
        call (open for more metrics until `Experiment._seal`), or None.

        `report` is what the result says of its own usage (checked against the measured figures).
        Its latency is measured: from the start of the first call made for it to now."""
        call = self.open
        if call is None or not self._measured(call):
            return None
        self._begin()  # calls starting from now on belong to the next result
        call._own = report if report is not None and report.reported else None
        call.metrics = metrics or None
        call._lane = lane()
        call._finish(perf_counter() - call.__dict__.get("_first", call._t0), None, None, None, None)
        self.exp._on_call_end(call)
        return call

    def promote_current(self) -> Call | None:
        """`log_result` inside a tracked call: the outermost call below the open result becomes
        a top-level row of its own (what it was before results were collected); returned."""
        call = _current.get()
        if call is None or call.experiment is not self.exp:
            return None
        while call.parent is not None and call.parent.experiment is self.exp and call.parent is not self.open:
            call = call.parent
        if call.parent is self.open:
            here = lane()
            prev = _last_row.get()
            if prev is not None and prev._lane == here and prev.experiment is self.exp:
                self.exp._seal(prev)
            call.parent = None
            call._row = True
            call._lane = here
        return call

    def close(self) -> None:
        """The experiment ends: calls made after the last result are one more row; no more results."""
        call, self.open = self.open, None
        self.exp._adopt = None
        if call is not None and self._measured(call):
            call._lane = lane()
            call._finish(perf_counter() - call.__dict__.get("_first", call._t0), None, None, None, None)
            self.exp._on_call_end(call)
            self.exp._seal(call)
