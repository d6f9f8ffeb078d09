"""The one ContextVar that holds the running call, and ways to carry it into threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from ._call import Call
    from ._experiment import Experiment

__all__ = ["ThreadPoolExecutor", "bind", "current_call", "current_experiment"]

P = ParamSpec("P")
R = TypeVar("R")

_current: contextvars.ContextVar[Call | None] = contextvars.ContextVar("tracked_call", default=None)
# The innermost experiment opened in this context (None: look at the process-wide stack).
_current_exp: contextvars.ContextVar[Experiment | None] = contextvars.ContextVar("tracked_experiment", default=None)
# The last top-level call that ended in this thread or task: `exp.log()` after it joins its row.
_last_row: contextvars.ContextVar[Call | None] = contextvars.ContextVar("tracked_last_row", default=None)

# Experiments started and not finished, oldest first. Used where the context holds none: calls from
# threads the user started without carrying the context, and notebooks, where `.start()` in one cell
# must stay current in the next.
_open: list[Experiment] = []


def current_call() -> Call | None:
    """The `@tracked` call running here, or None outside any call.

    Example:
        >>> @tracked
        ... def solve(task):
        ...     tracked.current_call().log({"retries": 2})
    """
    return _current.get()


def current_experiment() -> Experiment | None:
    """The innermost open experiment, or None."""
    exp = _current_exp.get()
    if exp is not None and not exp.finished:
        return exp
    return _open[-1] if _open else None


def _copy_for_another_thread() -> contextvars.Context:
    """The current context for work that runs elsewhere: the same call and experiment, but not
    the row this thread may still be joining metrics to."""
    ctx = contextvars.copy_context()
    if ctx.get(_last_row) is not None:
        ctx.run(_last_row.set, None)
    return ctx


def lane() -> tuple[int, Any]:
    """The thread and asyncio task running now: rows are joined and closed per lane."""
    loop = asyncio._get_running_loop()
    return threading.get_ident(), asyncio.current_task(loop) if loop is not None else None


def bind(fn: Callable[P, R]) -> Callable[P, R]:
    """Bind `fn` to the current context, so calls it makes in another thread nest under this one.

    Example:
        >>> threading.Thread(target=tracked.bind(worker)).start()
    """
    ctx = _copy_for_another_thread()

    @functools.wraps(fn)
    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        # A copy per run: one context cannot be entered by two threads at once.
        return ctx.copy().run(fn, *args, **kwargs)

    return bound


class ThreadPoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """A drop-in `concurrent.futures.ThreadPoolExecutor` whose tasks run in the submitter's context.

    Calls made by the submitted work are children of the call that submitted it, and belong to
    the submitter's experiment.
    """

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[R]:
        ctx = _copy_for_another_thread()
        return super().submit(ctx.run, fn, *args, **kwargs)
