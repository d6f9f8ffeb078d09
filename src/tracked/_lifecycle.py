"""The open experiments of this process, and how they end when the process does.

- **At exit** experiments left open (a notebook, a script without `with`) are finished.
- **On SIGTERM**, when the program has no handler of its own (the default action would kill the
  process without running `finally` blocks or exit hooks), open experiments are finished as
  "interrupted", their rows and summaries flushed; then the default action is restored and SIGTERM
  sent again, so the process ends exactly as it would have (exit status 143). A handler the
  program installs later replaces ours; one it installed before is left alone. SIGINT needs
  nothing: Python raises KeyboardInterrupt, and `with experiment(...)` finishes as "interrupted".
- **In a forked child**, the parent's open experiments are forgotten: the child has none of their
  threads, and its calls must not write into the parent's store (workers join an experiment with
  `experiment.attach()`).

Experiments are known here only by the methods they are called with (`_close`, `_after_fork`).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from ._context import _open

if TYPE_CHECKING:
    from ._experiment import Experiment

__all__ = ["finish_all", "finish_open_experiments", "register", "unregister"]

_sigterm_installed = False


def register(exp: Experiment) -> None:
    """`exp` has started: it is open until `unregister`."""
    _open.append(exp)
    _install_sigterm()


def unregister(exp: Experiment) -> None:
    if exp in _open:
        _open.remove(exp)


def finish_all(status: str) -> None:
    """Finish every open experiment, innermost first."""
    for exp in reversed(list(_open)):
        try:
            exp._close(status)
        except Exception:
            pass


@atexit.register
def finish_open_experiments() -> None:
    """At exit, experiments left open are finished ("failed" after an uncaught exception)."""
    last = getattr(sys, "last_value", None)
    finish_all("finished" if last is None else "interrupted" if isinstance(last, KeyboardInterrupt) else "failed")


def _install_sigterm() -> None:
    """Install the SIGTERM handler once, from the main thread, if SIGTERM has its default action."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # embedded interpreters, odd platforms
        return
    _sigterm_installed = True


def _on_sigterm(signum: int, frame: Any) -> None:
    global _sigterm_installed
    try:
        finish_all("interrupted")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _sigterm_installed = False
        os.kill(os.getpid(), signal.SIGTERM)


def _forget_in_child() -> None:
    for exp in _open:
        exp._after_fork()
    _open.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
