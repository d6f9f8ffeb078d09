"""Reading a local store: the experiments in it, with their config, rows and totals.

Reads what `experiment()` writes and what the older tracker wrote (`config.json` holding the
ExperimentConfig fields flat, `results.jsonl` lines without `_step`, no `summary.json`).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ._config import TrackedWarning
from ._totals import ROW_FIELDS, Totals
from ._values import is_number
from .sinks.local import read_jsonl, read_rows

__all__ = ["StoredExperiment", "find_experiments", "load_experiment", "ROW_FIELDS"]


_STAMP = re.compile(r"_(\d{8}_\d{6})(?:_\d+)?$")


def _warn(message: str) -> None:
    warnings.warn(f"tracked: {message}", TrackedWarning, stacklevel=2)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class StoredExperiment:
    """One experiment directory of a local store."""

    path: Path
    name: str
    config: dict[str, Any]
    meta: dict[str, Any]
    summary: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        """finished / failed / interrupted from summary.json; without one, running while its
        process is alive, else crashed (or "legacy" for the older tracker's files)."""
        status = self.summary.get("status")
        if isinstance(status, str):
            return status
        system = self.meta.get("system") or {}
        pid, host = system.get("pid"), system.get("host")
        if isinstance(pid, int) and host == socket.gethostname():
            return "running" if _pid_alive(pid) else "crashed"
        return "legacy" if "system" not in self.meta else "unknown"

    @property
    def started_at(self) -> float:
        value = self.meta.get("started_at")
        if is_number(value):
            return float(value)
        stamp = _STAMP.search(self.path.name)  # <name>_<YYYYmmdd_HHMMSS>, the older tracker's too
        if stamp:
            try:
                return datetime.strptime(stamp.group(1), "%Y%m%d_%H%M%S").timestamp()
            except ValueError:
                pass
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    @property
    def group(self) -> str | None:
        return self.meta.get("group")

    def totals(self) -> dict[str, Any]:
        """The totals: from summary.json when finished, else recomputed from the rows."""
        if "total/calls" in self.summary:
            return self.summary
        return totals_of([self])

    def metrics(self) -> set[str]:
        return {k for row in self.rows for k, v in row.items() if k not in ROW_FIELDS and is_number(v)}


def totals_of(experiments: list[StoredExperiment]) -> dict[str, Any]:
    """Totals recomputed from the rows of several experiments."""
    totals = Totals()
    for exp in experiments:
        for row in exp.rows:
            totals.add_row(row)
        for row in exp.rows:
            for key, value in row.items():
                if key not in ROW_FIELDS and is_number(value) and not (isinstance(value, float) and math.isinf(value)):
                    totals.add_metric(key, float(value))
    return totals.as_dict()


def _flatten_legacy(row: dict[str, Any]) -> dict[str, Any]:
    metadata = row.pop("metadata", None)
    if isinstance(metadata, dict):
        for key, value in metadata.items():
            row.setdefault(f"metadata/{key}", value)
    return row


def load_experiment(path: Path, *, with_rows: bool = True) -> StoredExperiment:
    """Read one experiment directory (new or older format)."""

    def load(name: str) -> dict[str, Any]:
        try:
            data = json.loads((path / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError:
            _warn(f"{path / name} is unreadable; ignored")
            return {}
        return data if isinstance(data, dict) else {}

    meta = load("config.json")
    if "config" in meta and isinstance(meta["config"], dict):
        config = meta["config"]
        name = meta.get("name") or path.name
    else:  # the older tracker: ExperimentConfig's fields, flat
        config = {k: v for k, v in meta.items() if k != "experiment_name"}
        name = meta.get("experiment_name") or path.name.rsplit("_", 2)[0]
    rows = [_flatten_legacy(r) for r in read_rows(path / "results.jsonl", warn=_warn)] if with_rows else []
    return StoredExperiment(
        path=path, name=str(name), config=config, meta=meta, summary=load("summary.json"), rows=rows
    )


def experiment_dirs(root: Path) -> Iterator[Path]:
    """Experiment directories under `root` (a store root, its `experiments/`, or one experiment)."""
    if (root / "results.jsonl").exists() or (root / "config.json").exists():
        yield root
        return
    base = root / "experiments" if (root / "experiments").is_dir() else root
    if not base.is_dir():
        return
    for child in sorted(base.iterdir()):
        if child.is_dir() and ((child / "results.jsonl").exists() or (child / "config.json").exists()):
            yield child


def find_experiments(root: Path, *, with_rows: bool = True) -> list[StoredExperiment]:
    """Every experiment under `root`, newest first."""
    found = [load_experiment(p, with_rows=with_rows) for p in experiment_dirs(root)]
    found.sort(key=lambda e: e.started_at, reverse=True)
    return found


def read_calls(path: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(path / "calls.jsonl", warn=_warn))
