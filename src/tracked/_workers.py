"""Worker processes: the handle they are given, and merging what they wrote into their experiment.

A worker (`multiprocessing`, `ProcessPoolExecutor`, fork or spawn) records its calls with
`with experiment.attach(handle):` into its own part of the experiment's local store
(`workers/<pid>_<hex>/`). When the experiment finishes, each part's rows become rows of the
experiment (counted in its totals, with a `worker` column) and its call records go to every sink.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._config import warn_once
from ._forksafe import loading_unless_imported

if TYPE_CHECKING:
    from ._rows import Rows
    from .sinks import SinkSet

__all__ = ["ExperimentHandle", "merge_workers"]


@dataclass(frozen=True)
class ExperimentHandle:
    """What a worker process needs to record its calls in an experiment; picklable.

    Made by `exp.handle()`, used in the worker with `with experiment.attach(handle):`. Pickled by
    `multiprocessing` (files) or by Ray (a Ray handle holds the experiment's collector actor).
    `parent_call` is the id of the call of the experiment that `exp.handle()` ran in (None outside
    its calls): the parent of the worker's top-level calls in `calls.jsonl`, whatever the start method.
    """

    name: str
    path: str
    config: dict[str, Any]
    tags: tuple[str, ...]
    parent_call: str | None = None
    #: "files": the worker writes into `path` (one machine, or a shared filesystem); "ray": the
    #: worker's records travel through Ray: `collector` is (the driver's collector actor, this
    #: experiment's key there), see `_ray`.
    transport: str = "files"
    collector: Any = None


def merge_workers(experiment_dir: Path, rows: Rows, sinks: SinkSet) -> list[dict[str, Any]]:
    """Rows and calls that worker processes wrote under `experiment_dir/workers/` become the
    experiment's. Returns one entry per worker part: its directory name and how many rows and
    calls it had."""
    # imported when an experiment opens its local store (`sinks`), not by `import tracked`
    with loading_unless_imported("tracked._store"):
        from . import _store

    workers = experiment_dir / _store.WORKERS
    if not workers.is_dir():
        return []
    merged = []
    for part in sorted(p for p in workers.iterdir() if p.is_dir()):
        stored = _store.part_rows(part, warn=_warn_torn)
        for data in stored:
            rows.add(data, stored=True)
        calls = _store.read_calls(part, warn=_warn_torn)
        if calls:
            sinks.add_records(calls)
        merged.append({"dir": part.name, "rows": len(stored), "calls": len(calls)})
    return merged


def _warn_torn(message: str) -> None:
    warn_once(("torn", message), f"tracked: {message}")
