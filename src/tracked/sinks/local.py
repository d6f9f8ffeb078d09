"""The local store: the durable record of an experiment, always on disk.

experiments/<name>_<YYYYmmdd_HHMMSS>/
    config.json     name, project, group, tags, notes, config, system info
    results.jsonl   one line per row, written (one `write` syscall) before the call returns;
                    metrics joined later are extra lines with the same `_step` and `"_join": true`
    calls.jsonl     every call, nested ones too, written from a background thread
    summary.json    totals, status, children; rewritten at finish
    files/          copies of files given to `exp.save()`
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from .._values import dumps_bytes

__all__ = ["LocalStore", "read_jsonl", "read_rows", "safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]+")


def safe_name(name: str) -> str:
    """A file-name-safe version of an experiment name."""
    cleaned = _UNSAFE.sub("_", name).strip("._-")
    return cleaned[:100] or "experiment"


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    # Write then rename: a reader never sees half a file, a crash leaves the old one.
    tmp = path.with_name(path.name + ".tmp")
    try:
        text = json.dumps(data, indent=2, ensure_ascii=False, default=repr).encode("utf-8")
    except UnicodeEncodeError:  # not valid Unicode somewhere: JSON escapes read back the same
        text = json.dumps(data, indent=2, ensure_ascii=True, default=repr).encode("ascii")
    with open(tmp, "wb") as f:
        f.write(text + b"\n")
    os.replace(tmp, path)


class LocalStore:
    """Writes one experiment's directory. Row writes happen on the caller's thread, call records
    on the experiment's pump thread."""

    def __init__(self, root: Path, name: str, started: float, *, exact: Path | None = None) -> None:
        if exact is not None:  # a worker process's part of an experiment
            exact.mkdir(parents=True)
            path = exact
        else:
            base = root / "experiments"
            base.mkdir(parents=True, exist_ok=True)
            stamp = datetime.fromtimestamp(started).strftime("%Y%m%d_%H%M%S")
            stem = f"{safe_name(name)}_{stamp}"
            # Two experiments of the same name in the same second: the second gets a suffix.
            for i in range(1, 10_000):
                path = base / (stem if i == 1 else f"{stem}_{i}")
                try:
                    path.mkdir()
                except FileExistsError:
                    continue
                break
            else:  # pragma: no cover - ten thousand in one second
                raise FileExistsError(f"cannot make a directory for {name!r} under {base}")
        self.path = path
        self._rows_fd = os.open(path / "results.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._calls = open(path / "calls.jsonl", "ab")

    def write_config(self, config: Mapping[str, Any]) -> None:
        _write_json(self.path / "config.json", config)

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        _write_json(self.path / "summary.json", summary)

    def write_row(self, row: Mapping[str, Any]) -> None:
        data = dumps_bytes(row) + b"\n"
        # One write() of an O_APPEND file: the line is whole in the OS before the call returns,
        # which is what survives the process being killed.
        written = os.write(self._rows_fd, data)
        while written < len(data):  # pragma: no cover - short writes on odd file systems
            written += os.write(self._rows_fd, data[written:])

    def write_calls(self, records: Iterable[Mapping[str, Any]]) -> None:
        self._calls.write(b"".join(dumps_bytes(r) + b"\n" for r in records))
        self._calls.flush()

    def save(self, src: Path, name: str) -> Path:
        dest = self.path / "files" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)  # a copy: later changes to the user's file do not alter the record
        return dest

    def close(self) -> None:
        try:
            os.close(self._rows_fd)
        finally:
            self._calls.close()


def read_jsonl(path: Path, *, warn: Any = None) -> Iterator[dict[str, Any]]:
    """Lines of a JSONL file; a torn or unreadable line (a crash mid-write) is skipped with a warning."""
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
                if warn is not None:
                    warn(f"{path}:{n}: skipped a torn or unreadable line")
                continue
            if isinstance(record, dict):
                yield record


def read_rows(path: Path, *, warn: Any = None) -> list[dict[str, Any]]:
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
