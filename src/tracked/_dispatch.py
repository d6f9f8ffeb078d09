"""Background dispatch: a queue drained by a thread of its own, bounded, with stall detection.

Written once for every background job of an experiment: the calls thread (call records to every
sink) and one thread per background sink (W&B). The caller only puts items on a queue; the thread
takes them in batches. When a thread falls behind by more than `MAX_QUEUED` items, callers wait for
it to catch up, so memory stays bounded and nothing is dropped; a thread that makes no progress at
all (a hung W&B) is not waited for, and memory grows instead.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from ._config import internal_error

__all__ = ["FINISH_TIMEOUT_S", "MAX_QUEUED", "Dispatcher", "start_without_signals"]

# Past this many items waiting for a background thread, callers wait for it (W&B takes a few
# thousand rows a second offline: see benchmarks/README.md).
MAX_QUEUED = 10_000
# How long finishing waits for a thread that makes no progress at all before giving up on it.
FINISH_TIMEOUT_S = 120.0
# How long a thread sleeps when its queue is empty. It drains the queue in batches rather than
# waking on every put, which would take the GIL from the caller at each call.
POLL_S = 0.02
# How long a caller waits for a thread that makes no progress before it stops waiting for it.
STALL_S = 1.0

_STOP = ("stop", None)

# Signals sent to the process are taken by the threads that do not block them. One taken by a
# background thread interrupts nothing: the main thread, blocked in a system call (a `Pool` worker
# waiting for a task when its `terminate()` sends SIGTERM), would not run the handler and never end.
# Background threads block them, so they reach the main thread; those that report a fault in the
# thread itself are left alone.
_SYNCHRONOUS = ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGABRT", "SIGSYS")
_ASYNC_SIGNALS: set[signal.Signals] = (
    set(signal.valid_signals()) - {getattr(signal, name) for name in _SYNCHRONOUS if hasattr(signal, name)}
    if hasattr(signal, "pthread_sigmask")
    else set()
)

Handler = Callable[[str, Any], None]


def start_without_signals(thread: threading.Thread) -> None:
    """Start a background thread of the SDK with the process's signals blocked in it (see
    `_ASYNC_SIGNALS`), so that they reach the user's threads."""
    if _ASYNC_SIGNALS:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _ASYNC_SIGNALS)  # the new thread inherits the mask
        try:
            thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    else:  # pragma: no cover - no pthread_sigmask (Windows)
        thread.start()


class Dispatcher:
    """A thread that hands each queued `(kind, payload)` item to `handle`, in order.

    Args:
        name: The thread's name.
        handle: Called on the thread for each item. If it raises, `on_error` is called and the
            thread goes on with the next item.
        on_error: Called with the exception `handle` raised.
        idle: Called on the thread each time it has taken every queued item (to flush a batch).
        first: Called once on the thread before the first item (to warm a cache off the caller's path).
    """

    def __init__(
        self,
        name: str,
        handle: Handler,
        *,
        on_error: Callable[[BaseException], None],
        idle: Callable[[], None] | None = None,
        first: Callable[[], None] | None = None,
    ) -> None:
        self._handle = handle
        self._on_error = on_error
        self._idle = idle
        self._first = first
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.progress = 0  # items taken: waiting ends while it grows
        self._stalled_at: int | None = None
        self.closed = False  # set when the experiment has ended: callers no longer wait
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread, with the process's signals blocked in it (see `_ASYNC_SIGNALS`)."""
        start_without_signals(self.thread)

    def put(self, kind: str, payload: Any) -> None:
        """Queue an item (never blocks)."""
        self._queue.put((kind, payload))

    def qsize(self) -> int:
        return self._queue.qsize()

    def wait_if_behind(self) -> None:
        """If more than `MAX_QUEUED` items wait, wait until the thread has worked a little below
        that, as long as it makes progress: many short waits rather than a few long ones."""
        q = self._queue
        if q.qsize() <= MAX_QUEUED:
            return
        seen, since = self.progress, time.monotonic()
        if self._stalled_at == seen:
            return  # found stuck before and still is: not waited for again
        while q.qsize() > MAX_QUEUED - MAX_QUEUED // 20 and not self.closed:
            time.sleep(0.005)
            now = self.progress
            if now != seen:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since > STALL_S:
                self._stalled_at = now  # stuck: memory grows rather than the user's code waiting
                return

    def stop(self) -> bool:
        """Queue the end and wait for the thread while it makes progress. Returns False when it
        made none for `FINISH_TIMEOUT_S` (it is left running, as a daemon)."""
        self._queue.put(_STOP)
        thread = self.thread
        if not thread.is_alive():
            return True
        seen, since = self.progress, time.monotonic()
        while thread.is_alive():
            thread.join(min(1.0, FINISH_TIMEOUT_S))
            if self.progress != seen:
                seen, since = self.progress, time.monotonic()
            elif time.monotonic() - since >= FINISH_TIMEOUT_S and thread.is_alive():
                return False
        return True

    def _run(self) -> None:
        if self._first is not None:
            try:
                self._first()
            except Exception:
                pass
        q = self._queue
        handle = self._handle
        while True:
            try:
                item = q.get_nowait()
            except queue.Empty:
                time.sleep(POLL_S)  # a put() does not wake the thread
                continue
            while True:
                self.progress += 1
                kind, payload = item
                if kind == "stop":
                    if self._idle is not None:
                        self._guarded(self._idle)
                    return
                try:
                    handle(kind, payload)
                except Exception as exc:
                    self._report(exc)
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
            if self._idle is not None:
                self._guarded(self._idle)

    def _guarded(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:
            self._report(exc)

    def _report(self, exc: BaseException) -> None:
        try:
            self._on_error(exc)
        except Exception as inner:  # pragma: no cover - the error handlers guard themselves
            internal_error(f"the {self.thread.name} thread", inner)
