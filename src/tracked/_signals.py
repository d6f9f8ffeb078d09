"""What `tracked` does on SIGTERM: finish open experiments, then die of SIGTERM as before.

Only when the program has no SIGTERM handler of its own (the default action, which would kill
the process without running `finally` blocks or exit hooks). The handler marks the open
experiments "interrupted", flushes their rows and summaries, restores the default action and
sends SIGTERM again, so the process ends exactly as it would have (exit status 143). A handler the
program installs later replaces ours; one it installed before is left alone. SIGINT needs nothing:
Python raises KeyboardInterrupt, and `with experiment(...)` finishes as "interrupted".
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

_installed = False


def install() -> None:
    """Install the SIGTERM handler once, from the main thread, if SIGTERM has its default action."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # embedded interpreters, odd platforms
        return
    _installed = True


def _on_sigterm(signum: int, frame: Any) -> None:
    global _installed
    from ._experiment import finish_all

    try:
        finish_all("interrupted")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _installed = False
        os.kill(os.getpid(), signal.SIGTERM)
