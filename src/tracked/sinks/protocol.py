"""The `Sink` protocol: what an experiment needs of a destination (the local store, W&B, memory).

An experiment talks to its destinations only through this protocol; what is particular to one
destination (W&B's init arguments and sweeps, the local store's files) lives in its sink module.
A new destination is one module plus one line in `sinks/__init__.py`'s `SINKS`.

Two kinds of sink, told apart by `durable`:

- **durable** (the local store, the in-memory sink): called on the caller's thread. A row is
  stored before the call that made it returns, metrics joined to it later arrive with `join`,
  and call records arrive in batches from the experiment's calls thread.
- **background** (W&B): called on a thread of its own, one per sink, through a bounded queue. It
  gets each row whole (joined metrics included) once its row is complete, in step order, and
  never holds up the user's code.

Any method may raise: the experiment then warns once, switches that sink off for the rest of the
experiment and records the error under `sinks` in the summary. The other sinks keep going.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = ["RunEnd", "RunInfo", "Sink", "deliver"]


@dataclass(frozen=True)
class RunInfo:
    """What a sink is told of an experiment when it opens: the run's metadata.

    Attributes:
        name: The experiment's name (W&B's run name).
        project, entity, group, job_type, notes: As given to `experiment(...)` or inherited.
        tags: The run's tags, ancestors' first.
        config: The run's config (a parent's keys merged under the child's). The experiment's own
            dict: a sink that writes it at the end sees later changes.
        system: Host, versions, git commit and the chain of parent experiments (`parents`);
            None when unknown (an older tracker's experiment replayed by `tracked sync`).
        started_at: Unix time (s) the experiment started.
        dir: The root directory the user chose (`dir=`), or None for the default.
        parent_dir: The local store directory name of the parent experiment, if any.
        sweep: The trial of a `tracked sweep` this experiment is, if any.
        requested: Per sink name, what the user asked for: True, False (off) or None (default).
        worker_of: In a worker process (`experiment.attach`), the local store directory of the
            experiment it records into; None otherwise.
        refs: Where other destinations keep this run, known when they open (W&B's run id and
            directory), per sink name: in `config.json` from the start, so that `tracked sync` finds
            the W&B run of an experiment whose process was killed.
        in_process: A sink that can write from another process (W&B's writer) writes from this
            one: the older tracker makes the experiment's W&B run wandb's current run.
    """

    name: str
    project: str | None = None
    entity: str | None = None
    group: str | None = None
    job_type: str | None = None
    notes: str | None = None
    tags: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    system: dict[str, Any] | None = None
    started_at: float = 0.0
    dir: Path | None = None
    parent_dir: str | None = None
    sweep: dict[str, Any] | None = None
    requested: Mapping[str, bool | None] = field(default_factory=dict)
    worker_of: Path | None = None
    refs: dict[str, Any] = field(default_factory=dict)
    in_process: bool = False

    def record(self) -> dict[str, Any]:
        """The run's metadata as one JSON-ready dict (the local store's `config.json`)."""
        return {
            "name": self.name,
            "project": self.project,
            "entity": self.entity,
            "group": self.group,
            "job_type": self.job_type,
            "tags": list(self.tags),
            "notes": self.notes,
            "config": self.config,
            "parent": self.parent_dir,
            "started_at": self.started_at,
            "system": self.system,
            **({"sweep": self.sweep} if self.sweep else {}),
            **({"refs": self.refs} if self.refs else {}),
        }


@dataclass(frozen=True)
class RunEnd:
    """What a sink is told when its experiment finishes.

    Attributes:
        summary: The final summary: status, totals, the user's `exp.summary`, children.
        status: "finished", "failed" or "interrupted".
        only_children: The experiment made no rows and opened child experiments: a sink may
            leave out a run of its own (W&B does, so a parent of grouped runs is not an empty run).
    """

    summary: Mapping[str, Any]
    status: str
    only_children: bool = False

    @property
    def exit_code(self) -> int:
        """0 for a finished experiment, else 1 (W&B's exit code)."""
        return 0 if self.status == "finished" else 1


@runtime_checkable
class Sink(Protocol):
    """A destination of one experiment's rows, calls, files and summary."""

    #: The sink's name: its key under `sinks` in the summary and in `RunInfo.requested`.
    name: ClassVar[str]
    #: Durable sinks are called on the caller's thread (a row is stored before the call returns);
    #: the others on a thread of their own, with whole rows in step order.
    durable: ClassVar[bool]
    #: What the warning calls it when it fails ("the local store", "W&B").
    label: ClassVar[str]

    def open(self, run: RunInfo) -> Mapping[str, Any] | None:
        """Called once, on the caller's thread, before anything else. Returns config values the
        destination imposes (a W&B sweep's parameters), which win over the experiment's, or None."""
        ...

    def write_row(self, step: int, row: Mapping[str, Any]) -> None:
        """One row (a top-level call's figures and metrics). Steps start at 0 and grow by one."""
        ...

    def join(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Metrics logged after row `step` was written (durable sinks only; the others get whole rows)."""
        ...

    def write_calls(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Call records (`Call.to_record()`), nested calls included, in the order they ended."""
        ...

    def set_notes(self, notes: str | None) -> None:
        """The run's notes changed."""
        ...

    def set_tags(self, tags: Sequence[str]) -> None:
        """The run's tags changed."""
        ...

    def save(self, path: Path, name: str) -> Path | None:
        """Keep a copy of the file at `path` under `name`. A durable sink returns its copy (the
        background sinks read that copy later, so they get the file as it was), or None."""
        ...

    def flush(self) -> None:
        """Before the end: everything sent so far is stored. Raises if the destination was lost."""
        ...

    def finish(self, end: RunEnd) -> Mapping[str, Any]:
        """The end of the run, with its summary. Returns keys to add to the summary (W&B: its run
        id and directory under `wandb`), or {}. Background sinks finish before durable ones, so a
        durable sink's summary includes those keys and every sink's status."""
        ...

    def close(self) -> None:
        """Release what the sink holds (files, memory). Called once at the end, also after a failure."""
        ...

    def references(self) -> Mapping[str, Any]:
        """What a parent experiment records of this one in its `children` (W&B: the run id)."""
        ...


def deliver(sink: Sink, kind: str, payload: Any) -> bool:
    """Hand a background sink one item of its queue: a row (`(step, row)`), call records, notes,
    tags or a saved file (`(path, name)`). False for any other kind (the caller's own)."""
    if kind == "row":
        sink.write_row(*payload)
    elif kind == "calls":
        sink.write_calls(payload)
    elif kind == "notes":
        sink.set_notes(payload)
    elif kind == "tags":
        sink.set_tags(payload)
    elif kind == "save":
        sink.save(*payload)
    else:
        return False
    return True
