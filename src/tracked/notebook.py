"""Jupyter support: `%load_ext tracked`, then `%%tracked [name]` records a cell as a call.

    %load_ext tracked
    exp = experiment("notebook_exploration").start()   # stays current across cells

    %%tracked explore_happiness
    result = run_introspection_experiment("happiness")  # its tracked calls roll up into the cell

    exp.finish()

An experiment displays as a small table of its totals. `WANDB_NOTEBOOK_NAME` is recorded.
"""

from __future__ import annotations

from typing import Any

from ._context import current_call
from ._tracked import tracked

__all__ = ["load_ipython_extension"]


def _run_cell(shell: Any, name: str, cell: str) -> Any:
    @tracked(name=name)
    def cell_call() -> Any:
        result = shell.run_cell(cell)
        error = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        if error is not None:
            # IPython has shown the traceback already; the call records the error without a second one.
            call = current_call()
            if call is not None:
                call._fail(error)
        return None

    return cell_call()


def load_ipython_extension(ipython: Any) -> None:
    """Register the `%%tracked [name]` cell magic."""

    def tracked_magic(line: str, cell: str) -> None:
        _run_cell(ipython, line.strip() or "cell", cell)

    ipython.register_magic_function(tracked_magic, magic_kind="cell", magic_name="tracked")
