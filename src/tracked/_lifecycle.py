"""The open experiments of this process, and how they end when the process does.

- **At exit** experiments left open (a notebook, a script without `with`) are finished.
- **On SIGTERM**, when the program has no handler of its own (the default action would kill the
  process without running `finally` blocks or exit hooks), open experiments are finished as
  "interrupted", their rows and summaries flushed; then the default action is restored and SIGTERM
  sent again, so the process ends exactly as it would have (exit status 143). A handler the
  program installs later replaces ours; one it installed before is left alone. SIGINT needs
  nothing: Python raises KeyboardInterrupt, and `with experiment(...)` finishes as "interrupted".
  A SIGTERM that comes while an experiment is being finished on the main thread (its exit hook
  runs, or a `with` block ends) lets that finish complete before the process ends.
- **In a forked child**, the parent's open experiments are forgotten: the child has none of their
  threads, and its calls must not write into the parent's store (workers join an experiment with
  `experiment.attach()`).
- **In a `multiprocessing` child** (a `Pool` or `ProcessPoolExecutor` worker), whose end runs
  `multiprocessing`'s finalizers but not `atexit` hooks when it was forked, experiments left open (an
  initializer that attaches) are finished by such a finalizer.

Experiments are known here only by the methods they are called with (`_close`, `_after_fork`).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ._context import _open

if TYPE_CHECKING:
    from ._experiment import Experiment

__all__ = ["finish_all", "finish_open_experiments", "finishing", "register", "unregister"]

_sigterm_installed = False
_sigterm_deferred = False  # a SIGTERM came while the main thread was finishing an experiment
_finishing: dict[int, int] = {}  # thread id -> experiments being finished on it (nested)
_finalizer_pid = 0  # the process that registered the multiprocessing finalizer


def register(exp: Experiment) -> None:
    """`exp` has started: it is open until `unregister`."""
    _open.append(exp)
    if not _install_mp_finalizer():
        _install_sigterm()


@contextmanager
def finishing() -> Iterator[None]:
    """Around an experiment's finish: a SIGTERM meanwhile on this thread waits for it to end."""
    me = threading.get_ident()
    _finishing[me] = _finishing.get(me, 0) + 1
    try:
        yield
    finally:
        left = _finishing.pop(me, 1) - 1
        if left:
            _finishing[me] = left
        elif _sigterm_deferred and me == threading.main_thread().ident:
            _resend_sigterm()


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


_after_wandb = [False]


def finish_before_wandb_exits() -> None:
    """The user's code imported wandb (a `wandb.Image` in a row): experiments left open are finished
    at exit before wandb's own exit hooks (registered as it was imported) remove the media files a
    run still needs; exit hooks run last registered first. Once per process."""
    if not _after_wandb[0]:
        _after_wandb[0] = True
        atexit.unregister(finish_open_experiments)
        atexit.register(finish_open_experiments)


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
    global _sigterm_deferred
    try:
        finish_all("interrupted")
    finally:
        if threading.get_ident() in _finishing and not _sigterm_deferred:
            # Interrupted while finishing one (the handler runs on the thread doing it): it ends first.
            _sigterm_deferred = True
        else:
            _resend_sigterm()


def _resend_sigterm() -> None:
    global _sigterm_installed, _sigterm_deferred
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _sigterm_installed = _sigterm_deferred = False
    os.kill(os.getpid(), signal.SIGTERM)


def _install_mp_finalizer() -> bool:
    """In a `multiprocessing` child, once: finish the experiments left open when it ends. Returns
    whether this is such a child.

    Its SIGTERM keeps (or gets back) the default action: a pool's `terminate()` expects it to end
    the worker at once, and a Python handler could be left waiting, never run, while the worker
    blocks on the pool's queue. A worker's call records are on disk as each of its tasks ends
    (`SinkSet.calls_on_caller`), so nothing of a finished task is lost."""
    global _finalizer_pid, _sigterm_installed
    if _finalizer_pid == os.getpid():
        return True
    mp, util = sys.modules.get("multiprocessing"), sys.modules.get("multiprocessing.util")
    if mp is None or util is None:
        return False  # not imported: not a multiprocessing child
    try:
        if mp.parent_process() is None:
            return False
        util.Finalize(None, finish_all, args=("finished",), exitpriority=100)
    except Exception:  # an odd multiprocessing: the atexit hook is all there is
        return False
    _finalizer_pid = os.getpid()
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:  # inherited from a forking parent
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _sigterm_installed = False
    except (ValueError, OSError):  # not the main thread
        pass
    return True


def _forget_in_child() -> None:
    global _sigterm_deferred
    for exp in _open:
        exp._after_fork()
    _open.clear()
    _finishing.clear()
    _sigterm_deferred = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
