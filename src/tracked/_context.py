"""The one ContextVar that holds the running call, and ways to carry it into threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import copyreg
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ._config import config

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

# A `@tracked` function defined in a script's or notebook's `__main__` is pickled by value by
# cloudpickle (Ray, joblib), with the module globals its wrapper reads: these variables are then
# pickled by name and are the receiving process's own. Any other ContextVar still cannot be pickled.
_BY_NAME = {var.name: var for var in (_current, _current_exp, _last_row)}


def _context_var(name: str) -> contextvars.ContextVar[Any]:
    return _BY_NAME[name]


def _reduce_context_var(var: contextvars.ContextVar[Any]) -> tuple[Any, tuple[str]]:
    if _BY_NAME.get(var.name) is var:
        return _context_var, (var.name,)
    raise TypeError(f"cannot pickle '{type(var).__module__}.{type(var).__qualname__}' object")  # as before


copyreg.pickle(contextvars.ContextVar, _reduce_context_var)

# Experiments started and not finished, oldest first. Used where the context holds none (`ambient`):
# calls from threads the user started without carrying the context, and notebooks, where `.start()`
# in one cell must stay current in the next.
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
    """The innermost open experiment of this context (thread or task), or None."""
    exp = _current_exp.get()
    if exp is not None and not exp.finished:
        return exp
    return ambient() if _open else None


def ambient(for_call: bool = False) -> Experiment | None:
    """The open experiment a context that holds none belongs to: the innermost one started in this
    thread (in this task, outside any task, or in a task that has ended: an earlier notebook cell),
    else the innermost one started in the main thread (the program's), or in a thread that has
    ended. Never one started in another thread or task that is still running: that one is its
    own, and four threads or tasks that each start an experiment start four siblings. For a call
    (`for_call`), the only open experiment, wherever it was started, when there is just one."""
    if for_call and len(_open) == 1:
        return _open[0]
    here = threading.current_thread()
    loop = asyncio._get_running_loop()
    task = asyncio.current_task(loop) if loop is not None else None
    main = threading.main_thread()
    for exp in reversed(_open):
        thread, home_task = exp._home
        if thread is None:
            continue  # finishing (another thread's `finish()` has let go of its home)
        if thread is here:
            if home_task is None or home_task is task or home_task.done():
                return exp
        elif thread is main or not thread.is_alive():
            return exp
    return None


class Here(threading.local):
    """An experiment's state per thread: `last`, the top-level call of the experiment that began
    last in this thread (what `exp.log()` joins after `asyncio.run(...)` of a tracked coroutine,
    whose own context is gone by then, or between the items of a generator)."""

    last: Call | None = None


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


def reachable(row_lane: Any, here: tuple[int, Any]) -> bool:
    """Whether code running in lane `here` comes after the top-level call that ran in `row_lane`,
    so that metrics it logs may join that call's row: the same thread, and the same task, or no
    task (sync code, which waits while the thread runs an event loop: `asyncio.run(...)`), or a
    task that has ended (the coroutine `asyncio.run` ran, an earlier notebook cell)."""
    if row_lane[0] != here[0]:
        return False
    task = row_lane[1]
    return task is here[1] or task is None or task.done()


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
    the submitter's experiment. Unlike a plain pool (which carries only the running call and
    experiment, see `carry_into_thread_pools`), every context variable is carried, and it does so
    whatever `configure(propagate_threads=...)` says.
    """

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[R]:
        ctx = _copy_for_another_thread()
        return _plain_submit(self, ctx.run, fn, *args, **kwargs)


# --- plain thread pools carry the running call ----------------------------------------------------
# As logfire and OpenTelemetry do for their own context, `concurrent.futures.ThreadPoolExecutor.submit`
# (and so `map`, and asyncio's `run_in_executor`) is patched to carry tracked's own state into the
# worker: the running call and experiment, nothing else (the user's context variables stay as the
# stdlib leaves them). Work submitted outside any call and experiment is submitted unchanged.

_plain_submit = concurrent.futures.ThreadPoolExecutor.submit


def _carried(call: Call | None, exp: Experiment | None, fn: Callable[..., R]) -> Callable[..., R]:
    def run(*args: Any, **kwargs: Any) -> R:
        token_call, token_exp, token_row = _current.set(call), _current_exp.set(exp), _last_row.set(None)
        try:
            return fn(*args, **kwargs)
        finally:
            _last_row.reset(token_row)
            _current_exp.reset(token_exp)
            _current.reset(token_call)

    return run


def _submit_carrying(
    self: concurrent.futures.ThreadPoolExecutor, fn: Callable[..., R], /, *args: Any, **kwargs: Any
) -> concurrent.futures.Future[R]:
    if config.propagate_threads:
        call, exp = _current.get(), _current_exp.get()
        if call is not None or exp is not None:
            fn = _carried(call, exp, fn)
    return _plain_submit(self, fn, *args, **kwargs)


def carry_into_thread_pools() -> None:
    """Patch `concurrent.futures.ThreadPoolExecutor.submit` (once) to carry the running call and
    experiment; `configure(propagate_threads=False)` makes it submit unchanged."""
    if concurrent.futures.ThreadPoolExecutor.submit is _plain_submit:
        concurrent.futures.ThreadPoolExecutor.submit = _submit_carrying  # type: ignore[method-assign,assignment]


carry_into_thread_pools()
