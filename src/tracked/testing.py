"""Helpers for testing code that uses `tracked`: capture experiments in memory, read back what
an experiment wrote.

`capture()` records every experiment started inside it in an in-memory sink (`MemorySink`), beside
its other sinks, as logfire's test exporter or httpx's mock transport do. `read_experiment` reads
an experiment directory of the local store. `read_wandb_run` reads a W&B offline run from its
`.wandb` record log (the protobuf classes ship with `wandb`), so tests can assert what W&B
received without an account or a network.

Example:
    >>> from tracked.testing import capture, read_wandb_run
    >>> with capture() as captured, experiment("t", dir=tmp_path) as exp:
    ...     work()
    >>> assert captured["t"].rows[0]["call"] == "work"
    >>> run = read_wandb_run(exp.final_summary["wandb"]["dir"])
    >>> assert run.history[0]["call"] == "work"
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _store
from .sinks.memory import Captured, MemorySink, capture

__all__ = [
    "Captured",
    "LocalExperiment",
    "MemorySink",
    "WandbRun",
    "capture",
    "read_experiment",
    "read_wandb_run",
    "wandb_records",
]

_BLOCK = 32768
_HEADER = 7  # crc32c (4), length (2), type (1)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def wandb_records(path: str | Path) -> list[Any]:
    """Every record of a `.wandb` file, as `wandb_internal_pb2.Record` messages.

    The file is a LevelDB-style log: a 7-byte file header, then 32 KiB blocks of chunks.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if len(data) < 7:  # created, nothing written yet
        return []
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a .wandb file")
    out = []
    pos = 7
    pending = b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if kind == 0 and length == 0:  # padding to the end of the block
            pos += left
            continue
        if pos + _HEADER + length > len(data):  # the last record is still being written
            break
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == _FULL:
            raw = chunk
        elif kind == _FIRST:
            pending = chunk
            continue
        elif kind == _MIDDLE:
            pending += chunk
            continue
        elif kind == _LAST:
            raw, pending = pending + chunk, b""
        else:
            break
        record = pb.Record()  # type: ignore[attr-defined]
        try:
            record.ParseFromString(raw)
        except Exception:  # a record cut short by the writer: what came before is complete
            break
        out.append(record)
    return out


def _items(updates: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in updates:
        key = item.key or "/".join(item.nested_key)
        out[key] = json.loads(item.value_json)
    return out


@dataclass
class WandbRun:
    """What a W&B run recorded, read from its `.wandb` file."""

    id: str = ""
    name: str = ""
    project: str = ""
    entity: str = ""
    group: str = ""
    job_type: str = ""
    notes: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    exit_code: int | None = None
    dir: Path | None = None
    #: When the run started (seconds since the epoch): W&B's Created.
    started_at: float | None = None
    #: Metric definitions (`run.define_metric`): name -> the summaries W&B keeps of it
    #: (["none"] when it keeps none, so the runs table shows no last value for it).
    metrics: dict[str, list[str]] = field(default_factory=dict)
    #: The metrics whose last definition hides them in the app (`define_metric(..., hidden=True)`).
    hidden: set[str] = field(default_factory=set)
    #: Artifacts the run logged: name -> {path in the artifact: the local file it was made from}
    #: (the saved files are in `run-<id>-files`).
    artifacts: dict[str, dict[str, Path]] = field(default_factory=dict)
    #: The increments of each incremental table sent to the summary (`log_mode="INCREMENTAL"`): key
    #: -> the files of its increments, in the order sent (each holds the rows that came since).
    increments: dict[str, list[str]] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """The run's rows as the local store has them: each history step (numbers only) with the
        text of that step from the `tasks` table (call name, output, model, error type, string metrics)."""
        tasks = {t["step"]: t for t in self.table("tasks")} if "tasks" in self.summary else {}
        out = []
        for step in self.history:
            task = tasks.get(step.get("_step"), {})
            text = {k: v for k, v in task.items() if isinstance(v, str) and k not in _TABLE_ONLY}
            out.append({**step, **text})
        return out

    def saved(self) -> dict[str, bytes]:
        """The files saved with `exp.save`, by their path in the run's files artifact."""
        files = self.artifacts.get(f"run-{self.id}-files", {})
        return {name: path.read_bytes() for name, path in files.items()}

    def table(self, key: str = "calls") -> list[dict[str, Any]]:
        """The rows of a table stored in the summary (by default the calls table), as the app shows
        it: an incremental table's rows are those of all its increments."""
        ref = self.summary[key]
        assert self.dir is not None
        paths = self.increments[key] if ref.get("_type") == "incremental-table-file" else [ref["path"]]
        rows: list[dict[str, Any]] = []
        for path in paths:
            data = json.loads((self.dir / "files" / path).read_text())
            rows.extend(dict(zip(data["columns"], row, strict=True)) for row in data["data"])
        return rows


# Columns of the tasks table that are not columns of a row.
_TABLE_ONLY = frozenset({"input", "start_time", "error_message", "task_id", "models"})


def read_wandb_run(path: str | Path, *, wait_s: float = 20.0) -> WandbRun:
    """Read a W&B run directory (`.../offline-run-...`) or its `.wandb` file.

    wandb writes the file from its own service process, which may still be writing when
    `run.finish()` has returned: this waits up to `wait_s` for the run's exit record.
    """
    path = Path(path)
    run_dir = path.parent if path.suffix == ".wandb" else path
    deadline = time.monotonic() + wait_s
    while True:
        files = list(path.glob("*.wandb")) if path.is_dir() else [path] if path.exists() else []
        records = wandb_records(files[0]) if len(files) == 1 else []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .wandb file in {path}, found {len(files)}")
    run = WandbRun(dir=run_dir)
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.id, run.name, run.project, run.entity = r.run_id, r.display_name, r.project, r.entity
            run.group, run.job_type, run.notes = r.run_group, r.job_type, r.notes
            run.tags = list(r.tags)
            if r.HasField("start_time"):
                run.started_at = r.start_time.seconds + r.start_time.nanos / 1e9
            run.config.update({k: v for k, v in _items(r.config.update).items() if k != "_wandb"})
        elif kind == "config":
            run.config.update({k: v for k, v in _items(record.config.update).items() if k != "_wandb"})
        elif kind == "history":
            row = _items(record.history.item)
            run.history.append({k: v for k, v in row.items() if k not in ("_runtime", "_timestamp")})
        elif kind == "summary":
            for key, value in _items(record.summary.update).items():
                if not key.startswith("_"):
                    run.summary[key] = value
                    if isinstance(value, dict) and value.get("_type") == "incremental-table-file":
                        seen = run.increments.setdefault(key, [])
                        if value["path"] not in seen:
                            seen.append(value["path"])
        elif kind == "files":
            run.files.extend(f.path for f in record.files.files)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
        elif kind == "artifact":
            a = record.artifact
            run.artifacts[a.name] = {e.path: Path(e.local_path) for e in a.manifest.contents}
        elif kind == "metric":
            m = record.metric
            name = m.name or m.glob_name
            run.metrics[name] = [f.name for f, on in m.summary.ListFields() if on]
            if m.options.hidden:
                run.hidden.add(name)
            else:
                run.hidden.discard(name)
    return run


@dataclass
class LocalExperiment:
    """What the local store holds for one experiment."""

    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    calls: list[dict[str, Any]]
    summary: dict[str, Any]


def _warn(message: str) -> None:
    import warnings

    from ._config import TrackedWarning

    warnings.warn(f"tracked: {message}", TrackedWarning, stacklevel=4)


def read_experiment(path: str | Path) -> LocalExperiment:
    """Read an experiment directory of the local store (rows with joined metrics merged).

    `config` is the whole `config.json` (name, tags, notes, config, system, ...). Torn lines and
    unreadable files are skipped with a `TrackedWarning`, as `tracked ls` does.
    """
    path = Path(path)
    return LocalExperiment(
        path=path,
        config=_store.read_json(path / _store.CONFIG, warn=_warn),
        rows=_store.read_rows(path / _store.RESULTS, warn=_warn),
        calls=_store.read_calls(path, warn=_warn),
        summary=_store.read_json(path / _store.SUMMARY, warn=_warn),
    )
