"""Where an experiment goes: the registered sinks, and the set of them one experiment writes to.

`SINKS` lists every destination; each is a class following the `Sink` protocol with a `create(run)`
class method that returns a sink, or None when it is off for that run. A new destination is its
module plus one line here. `SinkSet` is what an experiment holds: it fans each operation out to
the sinks, runs the background sinks and the calls thread through `Dispatcher`s, and handles a
sink's failure once for all of them (warn once, switch that sink off, record it under `sinks`).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from .. import _dispatch
from .._config import internal_error, warn_once
from .._dispatch import Dispatcher
from .._forksafe import loading
from .._values import clean
from .local import LocalSink
from .memory import MemorySink
from .protocol import RunEnd, RunInfo, Sink, deliver

# Not `from .wandb import ...`: that asks the import system for a module named "wandb".
from . import wandb as _wandb  # isort: skip

__all__ = ["SINKS", "RunEnd", "RunInfo", "Sink", "SinkSet"]

# Every destination, in the order their statuses are listed under `sinks` in a summary.
SINKS: tuple[Any, ...] = (LocalSink, _wandb.WandbSink, MemorySink)

# Call records are handed to the sinks in batches of at most this many.
_CALLS_BATCH = 512


class SinkSet:
    """The sinks of one experiment.

    Durable sinks are called on the caller's thread; each background sink has a thread of its own.
    Call records go through one calls thread, which turns ended calls into records in batches.

    Args:
        experiment: The experiment's name, for warnings and thread names.
        warm: Run once on the calls thread when it starts (loads data off the caller's path).
    """

    def __init__(self, experiment: str, *, warm: Callable[[], None] | None = None) -> None:
        self._experiment = experiment
        self.opened: list[Sink] = []
        self.durable: list[Sink] = []  # active durable sinks
        self.background: dict[str, Sink] = {}  # active background sinks
        self.errors: dict[str, str] = {}
        self.closed = False
        self._listed: list[str] = []
        self._threads: dict[str, Dispatcher] = {}
        self._extras: dict[str, Mapping[str, Any]] = {}
        self._calls: list[Any] = []
        self._calls_lock = threading.Lock()
        self._calls_thread = Dispatcher(
            f"tracked-calls-{experiment}",
            self._on_calls_item,
            on_error=lambda exc: internal_error("the calls thread", exc),
            idle=self._flush_calls,
            first=warm,
        )

    # --- opening ----------------------------------------------------------------------------

    def open(self, run: RunInfo) -> None:
        """Create and open every registered sink that is on for `run`, then start the threads.
        Config values a sink imposes (a W&B sweep's parameters) are cleaned and merged into
        `run.config` before the next sinks open."""
        created: list[Sink] = []
        failures: list[tuple[str, BaseException]] = []
        for cls in SINKS:
            listed = getattr(cls, "listed_when_off", True)
            try:
                sink = cls.create(run)
            except Exception as exc:
                failures.append((cls.name, exc))
                sink, listed = None, True
            if sink is not None:
                created.append(sink)
                listed = True
            if listed:
                self._listed.append(cls.name)
        # Background sinks first: what they impose on the config reaches the durable ones.
        created.sort(key=lambda s: s.durable)
        for sink in created:
            self.opened.append(sink)
            if sink.durable:
                self.durable.append(sink)
            else:
                self.background[sink.name] = sink
                self._threads[sink.name] = Dispatcher(
                    f"tracked-{sink.name}-{self._experiment}",
                    _handler(sink, self),
                    on_error=lambda exc, sink=sink: self.failed(sink, exc),  # type: ignore[misc]
                    idle=getattr(sink, "idle", None),
                )
        for name, error in failures:  # warned once the others are known, to say which keep going
            self._record_failure(name, error)
        for sink in created:
            try:
                imposed = sink.open(run)
                if imposed:
                    run.config.update(clean(dict(imposed), "config"))
            except Exception as exc:
                self.failed(sink, exc)
        self._calls_thread.start()
        for thread in self._threads.values():
            thread.start()
        # A run starts with its experiment (its Created and Runtime are the experiment's), made on
        # the sink's own thread; unless the experiment turns out to be a parent that only opens
        # children (see `Sink.start_soon`).
        self._to_background("start", None)

    def child_opened(self) -> None:
        """A child experiment started inside this one: a sink waiting to start a run that has no
        rows yet leaves it to the end (a parent that only opens children gets no run)."""
        for sink in self.background.values():
            hint = getattr(sink, "child_opened", None)
            if hint is not None:
                hint()

    def work_began(self) -> None:
        """The experiment's first top-level call began: the background sinks start their runs."""
        self._nudge()
        self._to_background("work", None)

    def _nudge(self) -> None:
        for sink in self.background.values():
            nudge = getattr(sink, "nudge", None)
            if nudge is not None:
                nudge()

    def get(self, name: str) -> Any:
        """The opened sink of that name (active or failed), or None."""
        return next((s for s in self.opened if s.name == name), None)

    # --- while it runs ----------------------------------------------------------------------

    @property
    def ordered(self) -> bool:
        """Whether a background sink needs rows whole and in step order."""
        return bool(self.background)

    def write_row(self, step: int, row: Mapping[str, Any]) -> None:
        """A new row, to the durable sinks (on the caller's thread)."""
        for sink in self.durable:  # written out: the hot path
            try:
                sink.write_row(step, row)
            except Exception as exc:
                self.failed(sink, exc)

    def join(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Metrics joined to row `step`, to the durable sinks."""
        self._to_durable("join", step, metrics)

    def emit(self, step: int, row: Mapping[str, Any]) -> None:
        """A complete row, in step order, to the background sinks."""
        if step == 0:
            self._nudge()  # a run waiting for its grace period starts now
        self._to_background("row", (step, row))

    def add_call(self, call: Any) -> None:
        """An ended call: its record reaches every sink from the calls thread."""
        self._calls_thread.put("call", call)

    def calls_on_caller(self) -> None:
        """From now on call records are written on the caller's thread, the whole batch as each
        top-level call ends (a worker process, which its pool may end with SIGTERM as soon as its
        task has returned)."""
        self.add_call = self._add_call_now  # type: ignore[method-assign]

    def _add_call_now(self, call: Any) -> None:
        with self._calls_lock:
            self._calls.append(call)
        if getattr(call, "_outer", False):
            self._flush_calls()

    def add_records(self, records: list[dict[str, Any]]) -> None:
        """Call records read back (a worker process's), to every sink from the calls thread."""
        self._calls_thread.put("records", records)

    def wait_if_behind(self) -> None:
        """Wait (never while holding a lock) for any thread that has fallen too far behind."""
        self._calls_thread.wait_if_behind()
        for thread in self._threads.values():
            thread.wait_if_behind()

    def backlog(self) -> dict[str, int]:
        """Items waiting per thread: "calls", and each background sink's name."""
        return {"calls": self._calls_thread.qsize(), **{n: t.qsize() for n, t in self._threads.items()}}

    def set_notes(self, notes: str | None) -> None:
        self._to_durable("set_notes", notes)
        self._to_background("notes", notes)

    def set_tags(self, tags: Sequence[str]) -> None:
        self._to_durable("set_tags", tags)
        self._to_background("tags", list(tags))

    def save(self, src: Path, name: str) -> None:
        """Keep a copy of `src`: the durable sinks copy it now; the background sinks read a copy
        later, so they get the file as it is now."""
        stored = None
        for sink in self.durable:
            try:
                kept = sink.save(src, name)
            except Exception as exc:
                self.failed(sink, exc)
                continue
            if stored is None and kept is not None:
                stored = kept
        if self.background:
            if stored is None:
                stored = Path(tempfile.mkdtemp(prefix="tracked-save-")) / name
                stored.parent.mkdir(parents=True, exist_ok=True)  # (a name keeps its folders: "a/b.json")
                shutil.copy2(src, stored)
            self._to_background("save", (stored, name))

    def _to_durable(self, method: str, *args: Any) -> None:
        """Call `method` of each durable sink on this thread; a sink that raises is switched off."""
        for sink in self.durable:
            try:
                getattr(sink, method)(*args)
            except Exception as exc:
                self.failed(sink, exc)

    def _to_background(self, kind: str, payload: Any) -> None:
        for name in self.background:
            self._threads[name].put(kind, payload)

    def _on_calls_item(self, kind: str, payload: Any) -> None:
        if kind == "call":
            self._calls.append(payload)
            if len(self._calls) >= _CALLS_BATCH:
                self._flush_calls()
        elif kind == "records":
            self._flush_calls()
            self._write_calls(payload)

    def _flush_calls(self) -> None:
        with self._calls_lock:  # (from the calls thread, and from the callers' with `calls_on_caller`)
            calls, self._calls = self._calls, []
        if calls and (self.durable or self.background):
            self._write_calls([c.to_record() for c in calls])

    def _write_calls(self, records: list[dict[str, Any]]) -> None:
        self._to_durable("write_calls", records)
        self._to_background("calls", records)

    # --- failures ---------------------------------------------------------------------------

    def failed(self, sink: Sink, exc: BaseException) -> None:
        """`sink` failed: warn once, switch it off for this experiment, record the error."""
        if sink.name in self.errors or self.closed:
            return  # one warning per sink; nothing after the end (a call that came back late)
        # Rebound, not changed in place: other threads may be iterating over them.
        self.durable = [s for s in self.durable if s is not sink]
        self.background = {n: s for n, s in self.background.items() if s is not sink}
        self._record_failure(sink.name, exc)
        try:
            sink.close()
        except Exception:
            pass

    def _record_failure(self, name: str, exc: BaseException) -> None:
        self.errors[name] = f"{type(exc).__name__}: {exc}"
        others = [s for s in (*self.durable, *self.background.values()) if s.name != name]
        if any(s.name == "local" for s in others):
            going = "the local store keeps everything"
        elif others:
            going = f"{' and '.join(s.label for s in others)} {'keeps' if len(others) == 1 else 'keep'} going"
        else:
            going = "nothing else records it"
        warn_once(
            ("sink", id(self), name),
            f"tracked: the {name} sink of experiment {self._experiment!r} failed ({type(exc).__name__}: {exc}); "
            f"it is off for this experiment, {going}",
        )

    # --- the end ----------------------------------------------------------------------------

    def finish(self, summary: dict[str, Any], status: str, *, only_children: bool) -> dict[str, Any]:
        """End every sink and return the summary as written: every call record delivered, the
        durable sinks flushed, the background sinks finished (their keys added), then the durable
        ones finished with every sink's status under `sinks`."""
        self._nudge()
        if not self._calls_thread.stop():
            warn_once(
                ("calls-stuck", id(self)),
                f"tracked: the calls thread of experiment {self._experiment!r} made no progress for "
                f"{_dispatch.FINISH_TIMEOUT_S:g} s; call records still queued are not written",
            )
        self._to_durable("flush")
        for name, error in self.errors.items():
            if _is_durable(name):
                summary[f"sinks/{name}"] = f"failed: {error}"
        end = RunEnd(dict(summary), status, only_children)
        self._to_background("finish", end)
        for name, thread in self._threads.items():
            if not thread.stop() and name in self.background:
                sink = self.background[name]
                self.failed(sink, TimeoutError(f"{sink.label} made no progress for {_dispatch.FINISH_TIMEOUT_S:g} s"))
        for name in self.background:
            summary.update(self._extras.get(name, {}))
        summary["sinks"] = self.statuses()
        end = RunEnd(summary, status, only_children)
        for sink in list(self.durable):
            try:
                sink.finish(end)
            except Exception as exc:
                self.failed(sink, exc)
                summary["sinks"][sink.name] = self.errors.get(sink.name, "failed")
        return summary

    def statuses(self) -> dict[str, str]:
        """Per sink: "ok", "off", or the error that switched it off."""
        opened = {s.name for s in self.opened}
        return {name: self.errors.get(name) or ("ok" if name in opened else "off") for name in self._listed}

    def references(self) -> dict[str, Any]:
        """What a parent records of this experiment, from each working sink."""
        out: dict[str, Any] = {}
        for sink in (*self.durable, *self.background.values()):
            out.update(sink.references())
        return out

    def close(self) -> None:
        """Release every sink; later failures and waits are ignored."""
        self.closed = True
        self._calls_thread.closed = True
        for thread in self._threads.values():
            thread.closed = True
        for sink in self.opened:
            try:
                sink.close()
            except Exception:
                pass

    def forget(self) -> None:
        """In a forked child: drop every sink without touching it (they belong to the parent)."""
        self.closed = True
        self.opened, self.durable, self.background = [], [], {}


def _handler(sink: Sink, sinks: SinkSet) -> Callable[[str, Any], None]:
    """What a background sink's thread does with each item; nothing once the sink has failed.
    No fork happens while it handles one (W&B imports modules as it goes: `_forksafe`), except
    while it waits to start its run, which holds the lock itself only to import and start."""

    # A sink written by another process (W&B's writer) loads nothing here: no lock to take.
    lock: Any = nullcontext() if getattr(sink, "remote", False) else loading()

    def handle(kind: str, payload: Any) -> None:
        if sinks.background.get(sink.name) is not sink:
            return  # failed: its queue is drained without calling it again
        if kind == "start":
            start_soon = getattr(sink, "start_soon", None)
            if start_soon is not None:
                start_soon()
            return
        with lock:
            if deliver(sink, kind, payload):
                return
            if kind == "work":
                began = getattr(sink, "work_began", None)
                if began is not None:
                    began()
            elif kind == "finish":
                sinks._extras[sink.name] = sink.finish(payload)

    return handle


def _is_durable(name: str) -> bool:
    return any(cls.name == name and cls.durable for cls in SINKS)
