"""The local store sink: the durable record of an experiment, always on disk.

Writes the layout `_store` describes. A row is one `write` of an `O_APPEND` file on the caller's
thread, so it is whole in the OS before the call returns: that is what survives the process being
killed. Call records come in batches from the experiment's calls thread.

It writes only through the descriptors it holds open: once closed, a write raises rather than going
to the descriptor number, which the OS may since have given to another file (another experiment's,
or the user's). The write and the close hold one lock, so that neither happens during the other.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from .. import _store
from .._values import dumps_bytes, fast_dumps
from .protocol import RunEnd, RunInfo

__all__ = ["LocalSink"]


class LocalSink:
    """One experiment's directory in the local store (`experiments/<name>_<YYYYmmdd_HHMMSS>/`)."""

    name: ClassVar[str] = "local"
    durable: ClassVar[bool] = True
    label: ClassVar[str] = "the local store"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._info: RunInfo | None = None
        self._rows_fd = os.open(path / _store.RESULTS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._calls = open(path / _store.CALLS, "ab")
        self._closed = False
        self._lock = threading.Lock()  # a row's write, and the close
        fast_dumps()  # imported here, on the caller's thread, not on the calls thread's first batch

    @classmethod
    def create(cls, run: RunInfo) -> LocalSink | None:
        """The store of `run`, or None when it is off (`local=False`). Its directory is made now."""
        if run.requested.get("local") is False:
            return None
        if run.worker_of is not None:  # a worker process's part of an experiment
            return cls(_store.new_worker_dir(run.worker_of))
        root = run.dir or Path(os.environ.get("TRACKED_DIR") or os.getcwd())
        return cls(_store.new_experiment_dir(root, run.name, run.started_at))

    def open(self, run: RunInfo) -> None:
        self._info = run
        self._write_config()

    def _write_config(self) -> None:
        if self._info is not None:
            _store.write_json(self.path / _store.CONFIG, self._info.record())

    def write_row(self, step: int, row: Mapping[str, Any]) -> None:
        self._append({"_step": step, "_timestamp": time.time(), **row})

    def join(self, step: int, metrics: Mapping[str, Any]) -> None:
        self._append({"_step": step, "_join": True, **metrics})

    def _append(self, row: Mapping[str, Any]) -> None:
        data = dumps_bytes(row) + b"\n"
        with self._lock:
            if self._closed:
                raise ValueError(f"the local store of {self.path.name} is closed; the row is not written")
            # One write() of an O_APPEND file: the line is whole in the OS before the call returns.
            written = os.write(self._rows_fd, data)
            while written < len(data):  # pragma: no cover - short writes on odd file systems
                written += os.write(self._rows_fd, data[written:])

    def write_calls(self, records: Iterable[Mapping[str, Any]]) -> None:
        self._calls.write(b"".join(dumps_bytes(r) + b"\n" for r in records))
        self._calls.flush()

    def set_notes(self, notes: str | None) -> None:
        if self._info is not None:
            self._info = replace(self._info, notes=notes)

    def set_tags(self, tags: Sequence[str]) -> None:
        if self._info is not None:
            self._info = replace(self._info, tags=tuple(tags))

    def save(self, path: Path, name: str) -> Path:
        dest = self.path / _store.FILES / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)  # a copy: later changes to the user's file do not alter the record
        return dest

    def flush(self) -> None:
        if not (self.path / _store.RESULTS).exists():
            raise FileNotFoundError(f"{self.path} was removed while it ran")
        self._write_config()  # notes, tags and config as they are at the end

    def finish(self, end: RunEnd) -> Mapping[str, Any]:
        # The summary last: its presence says the experiment ended.
        _store.write_json(self.path / _store.SUMMARY, end.summary)
        return {}

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                os.close(self._rows_fd)
            finally:
                self._calls.close()

    def references(self) -> Mapping[str, Any]:
        return {}
