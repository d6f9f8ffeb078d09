"""The in-memory sink: what an experiment sent, kept in memory for tests.

Off unless a `tracked.testing.capture()` block is open; then every experiment started inside it
(nested ones and worker parts included) gets one, and the block's `Captured` lists them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from .protocol import RunEnd, RunInfo

__all__ = ["Captured", "MemorySink", "capture"]


class MemorySink:
    """Everything one experiment sent to its sinks.

    Attributes:
        run: The run's metadata (`RunInfo`) as it opened: name, config, tags, group, ...
        notes, tags: As they are now (changes while it ran included).
        calls: Every call record (`Call.to_record()`), in the order the calls ended.
        files: What `exp.save()` kept: file name -> its bytes.
        summary: The final summary (None until the experiment finished); its `sinks` key says
            which sinks worked.
        status: "running", then "finished", "failed" or "interrupted".
    """

    name: ClassVar[str] = "memory"
    durable: ClassVar[bool] = True
    label: ClassVar[str] = "the in-memory sink"
    listed_when_off: ClassVar[bool] = False  # not under `sinks` in summaries unless capturing

    def __init__(self) -> None:
        self.run: RunInfo | None = None
        self.notes: str | None = None
        self.tags: tuple[str, ...] = ()
        self.calls: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.summary: dict[str, Any] | None = None
        self.status = "running"
        self.closed = False
        self._rows: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @classmethod
    def create(cls, run: RunInfo) -> MemorySink | None:
        """A sink for `run` when a `capture()` block is open, else None."""
        if not _capturing:
            return None
        sink = cls()
        for captured in list(_capturing):
            captured.experiments.append(sink)
        return sink

    @property
    def experiment_name(self) -> str:
        """The experiment's name."""
        return self.run.name if self.run is not None else ""

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The rows in step order, each with its metrics (joined ones included)."""
        with self._lock:
            return [dict(self._rows[step]) for step in sorted(self._rows)]

    def open(self, run: RunInfo) -> None:
        self.run = run
        self.notes = run.notes
        self.tags = run.tags

    def write_row(self, step: int, row: Mapping[str, Any]) -> None:
        with self._lock:
            self._rows[step] = dict(row)

    def join(self, step: int, metrics: Mapping[str, Any]) -> None:
        with self._lock:
            self._rows.setdefault(step, {}).update(metrics)

    def write_calls(self, records: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            self.calls.extend(dict(r) for r in records)

    def set_notes(self, notes: str | None) -> None:
        self.notes = notes

    def set_tags(self, tags: Sequence[str]) -> None:
        self.tags = tuple(tags)

    def save(self, path: Path, name: str) -> None:
        self.files[name] = path.read_bytes()

    def flush(self) -> None:
        pass

    def finish(self, end: RunEnd) -> Mapping[str, Any]:
        self.summary = dict(end.summary)
        self.status = end.status
        return {}

    def close(self) -> None:
        self.closed = True

    def references(self) -> Mapping[str, Any]:
        return {}

    def __repr__(self) -> str:
        return f"<MemorySink {self.experiment_name!r} {self.status}: {len(self._rows)} rows, {len(self.calls)} calls>"


class Captured:
    """The experiments started inside one `capture()` block, in the order they started."""

    def __init__(self) -> None:
        self.experiments: list[MemorySink] = []

    def __getitem__(self, name: str) -> MemorySink:
        """The last experiment of that name. Raises KeyError if there is none."""
        for sink in reversed(self.experiments):
            if sink.experiment_name == name:
                return sink
        names = [s.experiment_name for s in self.experiments]
        raise KeyError(f"no experiment named {name!r} was captured (captured: {names})")

    def __len__(self) -> int:
        return len(self.experiments)

    def __iter__(self) -> Iterator[MemorySink]:
        return iter(self.experiments)


_capturing: list[Captured] = []


@contextmanager
def capture() -> Iterator[Captured]:
    """Record every experiment started inside the block in memory, besides its other sinks."""
    captured = Captured()
    _capturing.append(captured)
    try:
        yield captured
    finally:
        _capturing.remove(captured)
