"""Jupyter support: `%load_ext tracked`, then `%%tracked [name]` records a cell as a call.

    %load_ext tracked
    exp = experiment("notebook_exploration").start()   # stays current across cells

    %%tracked explore_happiness
    result = run_introspection_experiment("happiness")  # its tracked calls roll up into the cell

    %%tracked explore_async
    result = await client.chat.completions.create(...)  # top-level await works in a tracked cell

    exp.finish()

A `%%tracked` cell is rewritten before it runs: its first line becomes a call that opens the
cell's tracked call, and the rest of the cell is left exactly as written, so top-level `await`,
the value shown for the last expression and line numbers in tracebacks are as in any cell. The
call ends when the cell has run (IPython's `post_run_cell` event), with the cell's error if it
raised. An experiment displays as a small table of its totals. `WANDB_NOTEBOOK_NAME` is recorded.
"""

from __future__ import annotations

import re
from time import perf_counter
from typing import Any

from ._config import config, internal_error
from ._context import _current
from ._tracked import _begin, _end, _failed, _Spec

__all__ = ["begin_cell", "load_ipython_extension"]

_MAGIC = re.compile(r"^%%tracked(?:[ \t]+(?P<name>.*?))?[ \t]*$")

#: The `%%tracked` cell running now: (call, spec, the context token), or None. A kernel runs one
#: cell at a time.
_cell: list[tuple[Any, _Spec, Any]] = []


def _rewrite(lines: list[str]) -> list[str]:
    """IPython input transformer: a cell whose first line is `%%tracked [name]` gets that line
    replaced by the call that opens the cell's tracked call (same number of lines)."""
    if not lines:
        return lines
    match = _MAGIC.match(lines[0].rstrip("\r\n"))
    if match is None:
        return lines
    name = (match.group("name") or "").strip() or "cell"
    opener = f"__import__('tracked.notebook', fromlist=['begin_cell']).begin_cell({name!r})\n"
    return [opener, *lines[1:]]


def begin_cell(name: str) -> None:
    """Open the tracked call of the `%%tracked` cell now running (the rewritten cell's first
    line): calls made in the cell are its children, and it is a row of the current experiment."""
    if not config.enabled:
        return
    try:
        _end_cell(None)  # a cell whose end was not seen (an event handler removed): ended now
        spec = _Spec.named(name, None, None)
        call = _begin(spec, None, (), {})
        _cell.append((call, spec, _current.set(call)))
    except Exception as exc:
        internal_error("starting a tracked cell", exc)


def _end_cell(result: Any) -> None:
    """IPython's `post_run_cell`: the `%%tracked` cell's call ends, with the cell's error if any
    (IPython has shown its traceback already)."""
    if not _cell:
        return
    call, spec, token = _cell.pop()
    latency = perf_counter() - call._t0
    try:
        _current.reset(token)
    except ValueError:
        pass  # the cell ran as a task of its own (top-level await): its context is gone with it
    error = None
    if result is not None:
        error = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
    if error is not None:
        _failed(call, error)
    _end(call, spec, latency, None, (), {})


def _on_post_run_cell(result: Any) -> None:
    try:
        _end_cell(result)
    except Exception as exc:
        internal_error("ending a tracked cell", exc)


def load_ipython_extension(ipython: Any) -> None:
    """Make `%%tracked [name]` cells tracked calls (loading it twice changes nothing)."""
    cleanup = ipython.input_transformers_cleanup
    if _rewrite not in cleanup:
        cleanup.append(_rewrite)
    try:
        ipython.events.unregister("post_run_cell", _on_post_run_cell)
    except ValueError:
        pass
    ipython.events.register("post_run_cell", _on_post_run_cell)

    def tracked_magic(line: str, cell: str) -> None:
        # Reached only when the cell was not rewritten (run through `run_cell_magic` directly).
        begin_cell(line.strip() or "cell")
        result = ipython.run_cell(cell)
        _end_cell(result)

    ipython.register_magic_function(tracked_magic, magic_kind="cell", magic_name="tracked")
