"""Fork safety: no fork happens while the SDK is loading a module or data.

`os.fork` copies only the thread that calls it. Had another thread of the SDK been importing a module
at that moment (the price data on an experiment's calls thread, `wandb` on its W&B thread), the child
would inherit that module's import lock, held by a thread it does not have, and hang at its first
import of the module (or of anything importing it). So every lazy import and load of the SDK, and
everything a background sink's thread does with `wandb` (which imports as it goes), runs inside
`loading()`; before a fork, the forking thread waits for the one running to end and holds the lock
until the fork is done, so that none begins meanwhile. The child gets a lock of its own.

The wait is bounded by `FORK_WAIT_S` (W&B's online init can take long): past it the fork goes ahead.

Fork hooks registered before ours run after it. `logging` and `concurrent.futures.thread` take locks in
theirs that a load may need (a logger, a thread pool): they are imported first, so that the fork waits
for the load before they take them, not while holding them.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401  (its fork hook must be registered before ours)
import logging  # noqa: F401  (likewise)
import os
import sys
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from ._config import warn_once

__all__ = ["FORK_WAIT_S", "loading", "loading_unless_imported"]

#: How long a fork waits, at most, for a load of the SDK on another thread to end (seconds).
FORK_WAIT_S = 60.0

# Re-entrant: a load may import a module whose import loads more, and a thread may fork while in one.
_lock = threading.RLock()
_forking: list[threading.RLock] = []  # the lock held by the forking thread, from before to after the fork


def loading() -> AbstractContextManager[bool]:
    """The SDK's load lock, for `with loading():` around a lazy import or data load on any thread:
    no fork of this process happens in the block. Re-entrant; the lock is released on the object
    acquired, even in a child forked meanwhile by this thread (which has a new one)."""
    return _lock


_NO_LOCK = nullcontext()


def loading_unless_imported(*modules: str) -> AbstractContextManager[Any]:
    """`loading()` while any of `modules` is not fully imported yet; once they are, a context that
    takes no lock, for a lazy import on a path that runs again (an experiment opening): a background
    sink's thread may hold the lock for long (W&B's init), and the import then has nothing to load."""
    for name in modules:
        module = sys.modules.get(name)
        if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
            return _lock
    return _NO_LOCK


def _before_fork() -> None:
    lock = _lock
    if lock.acquire(timeout=FORK_WAIT_S):
        _forking.append(lock)
        return
    warn_once(
        ("fork-while-loading",),
        f"tracked: os.fork() waited {FORK_WAIT_S:g} s for tracked to finish loading a module on another thread, "
        "and went ahead; the child may hang if it imports that module",
    )


def _after_fork_in_parent() -> None:
    while _forking:
        _forking.pop().release()


def _after_fork_in_child() -> None:
    global _lock
    _forking.clear()
    _lock = threading.RLock()  # the parent's may be held by a thread the child does not have


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
