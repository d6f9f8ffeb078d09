"""The local store: its layout, and the one reader of it.

Every module that reads or writes an experiment directory takes the names from here::

    <root>/experiments/<name>_<YYYYmmdd_HHMMSS>/
        config.json     name, project, group, tags, notes, config, system info
        results.jsonl   one line per row, written (one `write` syscall) before the call returns;
                        metrics joined later are extra lines with the same `_step` and `"_join": true`
        calls.jsonl     every call, nested ones too, written from a background thread
        summary.json    totals, status, children; written last, at finish
        files/          copies of files given to `exp.save()`
        workers/<pid>_<hex>/   the same files, for each worker attached with `exp.handle()` (merged
                        into the experiment's own when it finishes; read from here until then)
        wandb_sync.json `tracked sync`'s state: the W&B run id this experiment was replayed into

The reader reads what `experiment()` writes and what the older tracker wrote (`config.json` holding
the ExperimentConfig fields flat, `results.jsonl` lines without `_step`, no `summary.json`). Torn
or unreadable lines and files (a crash mid-write) are skipped with a warning, everywhere alike.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ._config import TrackedWarning
from ._totals import Totals, metric_value
from ._values import is_number

__all__ = [
    "CALLS",
    "CONFIG",
    "EXPERIMENTS",
    "FILES",
    "RESULTS",
    "SUMMARY",
    "SYNC_STATE",
    "WORKERS",
    "StoredExperiment",
    "experiment_dirs",
    "find_experiments",
    "load_experiment",
    "new_experiment_dir",
    "new_worker_dir",
    "part_rows",
    "read_calls",
    "read_jsonl",
    "read_rows",
    "unmerged_parts",
    "totals_of",
    "write_json",
]

# --- the layout -----------------------------------------------------------------------------

EXPERIMENTS = "experiments"
CONFIG = "config.json"
RESULTS = "results.jsonl"
CALLS = "calls.jsonl"
SUMMARY = "summary.json"
FILES = "files"
WORKERS = "workers"
SYNC_STATE = "wandb_sync.json"

_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]+")


def safe_name(name: str) -> str:
    """A file-name-safe version of an experiment name."""
    cleaned = _UNSAFE.sub("_", name).strip("._-")
    return cleaned[:100] or "experiment"


def new_experiment_dir(root: Path, name: str, started: float) -> Path:
    """Make `<root>/experiments/<name>_<YYYYmmdd_HHMMSS>/` (with a suffix if it exists) and return it."""
    base = root / EXPERIMENTS
    base.mkdir(parents=True, exist_ok=True)
    stem = f"{safe_name(name)}_{datetime.fromtimestamp(started).strftime('%Y%m%d_%H%M%S')}"
    # Two experiments of the same name in the same second: the second gets a suffix.
    for i in range(1, 10_000):
        path = base / (stem if i == 1 else f"{stem}_{i}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"cannot make a directory for {name!r} under {base}")  # pragma: no cover


def new_worker_dir(experiment_dir: Path) -> Path:
    """Make this process's part of an experiment, `<experiment>/workers/<pid>_<hex>/`, and return it."""
    path = experiment_dir / WORKERS / f"{os.getpid()}_{os.urandom(3).hex()}"
    path.mkdir(parents=True)
    return path


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write a JSON file whole: written then renamed, so a reader never sees half of it and a
    crash leaves the old one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        text = json.dumps(data, indent=2, ensure_ascii=False, default=repr).encode("utf-8")
    except UnicodeEncodeError:  # not valid Unicode somewhere: JSON escapes read back the same
        text = json.dumps(data, indent=2, ensure_ascii=True, default=repr).encode("ascii")
    with open(tmp, "wb") as f:
        f.write(text + b"\n")
    os.replace(tmp, path)


# --- the reader -----------------------------------------------------------------------------

_STAMP = re.compile(r"_(\d{8}_\d{6})(?:_\d+)?$")


def _warn(message: str) -> None:
    warnings.warn(f"tracked: {message}", TrackedWarning, stacklevel=3)


Warn = Callable[[str], None]


def read_jsonl(path: Path, *, warn: Warn | None = None) -> Iterator[dict[str, Any]]:
    """Lines of a JSONL file; a torn or unreadable line (a crash mid-write) is skipped with a warning."""
    warn = _warn if warn is None else warn
    try:
        f = open(path, encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                warn(f"{path}:{n}: skipped a torn or unreadable line")
                continue
            if isinstance(record, dict):
                yield record


def read_rows(path: Path, *, warn: Warn | None = None) -> list[dict[str, Any]]:
    """The rows of a `results.jsonl`, with later joined metrics merged into their step.

    Also reads the older tracker's files, whose lines have no `_step`: each is a row.
    """
    rows: dict[Any, dict[str, Any]] = {}
    order: list[Any] = []
    for n, record in enumerate(read_jsonl(path, warn=warn)):
        step = record.get("_step", ("line", n))
        if record.pop("_join", False) and step in rows:
            rows[step].update(record)
            continue
        if step not in rows:
            order.append(step)
            rows[step] = record
        else:
            rows[step].update(record)
    return [rows[s] for s in order]


def read_calls(path: Path, *, warn: Warn | None = None) -> list[dict[str, Any]]:
    """The call records of an experiment directory (`calls.jsonl`), torn lines skipped; with those
    of its worker parts not merged yet (`unmerged_parts`)."""
    calls = list(read_jsonl(path / CALLS, warn=warn))
    for part in unmerged_parts(path):
        calls.extend(read_jsonl(part / CALLS, warn=warn))
    return calls


def unmerged_parts(path: Path) -> list[Path]:
    """The worker parts (`workers/<part>/`) of an experiment that never finished: its end merges
    them into its own rows and calls, so a process killed before that leaves them only here."""
    workers = path / WORKERS
    if (path / SUMMARY).exists() or not workers.is_dir():
        return []
    return sorted(p for p in workers.iterdir() if p.is_dir())


def part_rows(part: Path, *, warn: Warn | None = None) -> list[dict[str, Any]]:
    """A worker part's rows as its experiment's end merges them: a `worker` column (the part's
    directory name), their own `_step`s left out."""
    out = []
    for row in read_rows(part / RESULTS, warn=warn):
        data = {k: v for k, v in row.items() if not k.startswith("_")}
        data["worker"] = part.name
        out.append(data)
    return out


def read_json(path: Path, *, warn: Warn | None = None) -> dict[str, Any]:
    """A JSON object file; {} when it is missing, and {} with a warning when it is unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError:
        (_warn if warn is None else warn)(f"{path} is unreadable; ignored")
        return {}
    return data if isinstance(data, dict) else {}


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
        """The user's metrics of its rows: the keys the summary has `<m>/mean` for (`metric_value`)."""
        return {k for row in self.rows for k, v in row.items() if metric_value(k, v) is not None}


def totals_of(experiments: list[StoredExperiment]) -> dict[str, Any]:
    """Totals recomputed from the rows of several experiments."""
    totals = Totals()
    for exp in experiments:
        for row in exp.rows:
            totals.add_row(row)
        for row in exp.rows:
            for key, value in row.items():
                metric = metric_value(key, value)
                if metric is not None and not math.isinf(metric):
                    totals.add_metric(key, metric)
    return totals.as_dict()


def _flatten_legacy(row: dict[str, Any]) -> dict[str, Any]:
    metadata = row.pop("metadata", None)
    if isinstance(metadata, dict):
        for key, value in metadata.items():
            row.setdefault(f"metadata/{key}", value)
    return row


def load_experiment(path: Path, *, with_rows: bool = True, warn: Warn | None = None) -> StoredExperiment:
    """Read one experiment directory (new or older format).

    Unreadable files and torn lines are skipped with a warning (through `warn`, by default a
    `TrackedWarning`); a missing file reads as empty.
    """
    meta = read_json(path / CONFIG, warn=warn)
    if "config" in meta and isinstance(meta["config"], dict):
        config = meta["config"]
        name = meta.get("name") or path.name
    else:  # the older tracker: ExperimentConfig's fields, flat
        config = {k: v for k, v in meta.items() if k != "experiment_name"}
        name = meta.get("experiment_name") or path.name.rsplit("_", 2)[0]
    # The older tracker's results nest `metadata`: shown as `metadata/<key>` columns.
    rows = [_flatten_legacy(r) for r in read_rows(path / RESULTS, warn=warn)] if with_rows else []
    if with_rows:
        for part in unmerged_parts(path):
            rows.extend(part_rows(part, warn=warn))
    summary = read_json(path / SUMMARY, warn=warn)
    return StoredExperiment(path=path, name=str(name), config=config, meta=meta, summary=summary, rows=rows)


def is_experiment_dir(path: Path) -> bool:
    """Whether `path` holds an experiment (its results or its config)."""
    return (path / RESULTS).exists() or (path / CONFIG).exists()


def experiment_dirs(root: Path) -> Iterator[Path]:
    """Experiment directories under `root` (a store root, its `experiments/`, or one experiment)."""
    if is_experiment_dir(root):
        yield root
        return
    base = root / EXPERIMENTS if (root / EXPERIMENTS).is_dir() else root
    if not base.is_dir():
        return
    for child in sorted(base.iterdir()):
        if child.is_dir() and is_experiment_dir(child):
            yield child


def find_experiments(root: Path, *, with_rows: bool = True) -> list[StoredExperiment]:
    """Every experiment under `root`, newest first."""
    found = [load_experiment(p, with_rows=with_rows) for p in experiment_dirs(root)]
    found.sort(key=lambda e: e.started_at, reverse=True)
    return found
