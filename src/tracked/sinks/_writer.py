"""W&B written by a process of its own: the user's process sends rows and call records in batches.

wandb spends 0.1 to 0.7 ms of Python per row in the process that calls `run.log` (flattening,
typing every table cell, building protobufs), and on a thread of the user's process that time is
taken from the user's code through the GIL. So by default (`configure(wandb_writer="process")`) an
experiment's W&B run is written by the **writer**: one process per user process, started with the
first experiment that has W&B on (`python -P -c ...`, calling `main` below), serving every run of that
process with the same `WandbSink` a thread would use.

- **The user's side** (`RemoteWandbSink`, a background sink like `WandbSink`) chooses the run's id
  and `wandb.init` arguments as the experiment opens (W&B's environment read then, as in-thread),
  keeps W&B's start policy (a run starts with its work; a parent that only opens children gets
  none), and on its thread only appends items to a batch, pickled and sent each time its queue is
  empty (every 20 ms at most) over a socket pair.
- **The writer** takes batches in order and hands each item to that experiment's `WandbSink`; it
  sends back when a run started, the warnings it gave, a sink's failure, and what `finish` returns
  (the run's id, mode and directory for the summary). It ignores SIGINT, SIGTERM and SIGHUP (Ctrl-C,
  Slurm and containers signal every process of a group or job; the user's process finishes its
  experiments as "interrupted" and the writer writes them), and ends with the user's process. When the
  user's process ends without finishing a run (SIGKILL), the writer reads the batches left on the
  socket, ends those runs with exit code 1 and exits.
- **A writer that dies** is noticed at the next item or at `finish` (the socket closes): the sink
  fails as any sink does (one warning, `sinks/wandb` in the summary says why), the local store
  keeps every row, and `tracked sync` writes the W&B run again from it.

Runs that must live in the user's process stay on a thread there: a run `wandb agent` started for
a sweep (adopted), and the older tracker's, which it makes wandb's current run (`wandb.log`).
`configure(wandb_writer="thread")` keeps every run there; a writer that cannot start does too,
with one warning.
"""

from __future__ import annotations

import io
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, ClassVar

from .._config import config, warn_once
from .protocol import RunEnd, RunInfo, deliver
from .wandb import START_GRACE_S, StartGate

__all__ = ["RemoteWandbSink", "WriterGone", "writer"]

#: Items a batch holds at most before it is sent without waiting for the queue to empty.
BATCH_ITEMS = 256

#: The settings the writer needs, sent with each batch (they are read as items are handled).
_SETTINGS = ("table_max_rows", "table_flush_s", "wandb_init_timeout_s")


#: The writer's entry point (`python -P -c _BOOT <socket fd> <directory of tracked>`).
_BOOT = (
    "import signal; [signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]; "
    "import sys; here = sys.argv.pop(); here in sys.path or sys.path.insert(0, here); "
    "from tracked.sinks._writer import main; main(sys.argv[1:])"
)


class WriterGone(RuntimeError):
    """The writer process ended (killed, or out of memory) before a run was finished."""


def _remote_error(name: str, message: str) -> Exception:
    """The writer's exception in this process: its type's name and message, as a thread's would
    read in the warning and in `sinks/wandb` (the class itself may not exist here)."""
    cls: type[Exception] = type(name, (Exception,), {"__module__": __name__})
    return cls(message)


def _encoded(item: tuple[int, str, Any]) -> tuple[int, str, bytes]:
    """`item` with its payload pickled on its own, so that one the writer cannot read fails alone.
    A row's or call record's value that cannot be pickled is sent as its `repr` (one warning), as
    the local store keeps it."""
    sid, kind, payload = item
    try:
        return sid, kind, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        if kind == "row":
            step, row = payload
            payload = (step, _clean(row))
        elif kind == "calls":
            payload = [_clean(record) for record in payload]
        else:
            raise
    return sid, kind, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)


def _clean(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        try:
            pickle.dumps(value)
            out[key] = value
        except Exception as exc:
            if isinstance(value, Mapping):
                out[key] = _clean(value)
                continue
            warn_once(
                ("writer-pickle", key),
                f"tracked: {key!r} cannot be sent to W&B's writer process ({type(exc).__name__}: {exc}); "
                "W&B gets its repr, as the local store does",
            )
            out[key] = repr(value)
    return out


class _Reader(pickle.Unpickler):
    """Reads what the user's process sent; a class the writer cannot import (one defined in the
    user's `__main__`, a notebook's) is read as a stand-in showing its name, with one warning."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return _stand_in(module, name)


_stand_ins: dict[tuple[str, str], type] = {}


def _stand_in(module: str, name: str) -> type:
    cls = _stand_ins.get((module, name))
    if cls is None:
        warn_once(
            ("writer-class", module, name),
            f"tracked: W&B's writer process cannot import {module}.{name} (defined where only your program "
            "sees it); W&B gets a stand-in naming it, the local store has its repr",
        )

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            pass

        def setstate(self: Any, state: Any) -> None:
            pass

        def show(self: Any) -> str:
            return f"<{module}.{name}>"

        cls = type(name, (), {"__init__": init, "__setstate__": setstate, "__repr__": show, "__str__": show})
        cls.__module__ = module
        _stand_ins[(module, name)] = cls
    return cls


def _wandb_environment() -> dict[str, str]:
    """W&B's settings from the environment as they are now: the writer applies them to each run."""
    return {k: v for k, v in os.environ.items() if k.startswith("WANDB_") and k != "WANDB_SERVICE"}


class _Writer:
    """The user's side of the writer process: the socket, the process, and a thread reading replies."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        # Its own wandb-core: a service the user's process started would end with that process.
        env.pop("WANDB_SERVICE", None)
        # `-P`: the working directory is not on its path (a `wandb.py` there must not be imported);
        # the directory this `tracked` came from is, when the interpreter would not find it.
        here = str(Path(__file__).resolve().parents[2])
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-c", _BOOT, str(theirs.fileno()), here],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
                close_fds=True,
                start_new_session=True,  # a terminal's Ctrl-C and SIGHUP are not for it (see `main`)
            )
        finally:
            theirs.close()
        self.pid = os.getpid()  # the process it serves (a forked child starts its own)
        self._conn = Connection(ours.detach())
        self._send_lock = threading.Lock()
        self._register_lock = threading.Lock()
        self._sinks: dict[int, RemoteWandbSink] = {}
        self._next = 0
        self.gone: str | None = None  # why the writer is gone, once it is
        self._reader = threading.Thread(target=self._read, name="tracked-wandb-writer", daemon=True)
        from .._dispatch import start_without_signals

        start_without_signals(self._reader)

    def register(self, sink: RemoteWandbSink) -> int:
        with self._register_lock:  # (not the send lock: a send may wait for a writer that is stuck)
            self._next += 1
            self._sinks[self._next] = sink
            return self._next

    def send(self, items: list[tuple[int, str, Any]]) -> None:
        """Send one batch; raises `WriterGone` when the writer has ended."""
        if self.gone is not None:
            raise WriterGone(self.gone)
        settings = tuple(getattr(config, k) for k in _SETTINGS)
        data = pickle.dumps((settings, [_encoded(item) for item in items]), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            with self._send_lock:
                self._conn.send_bytes(data)
        except OSError:
            raise WriterGone(self._ended()) from None

    def _ended(self) -> str:
        code = self.process.poll()
        if code is None:
            try:
                code = self.process.wait(1.0)
            except subprocess.TimeoutExpired:
                pass
        how = "still running" if code is None else f"signal {-code}" if code < 0 else f"exit code {code}"
        self.gone = f"the W&B writer process (pid {self.process.pid}) ended ({how})"
        return self.gone

    def _read(self) -> None:
        while True:
            try:
                sid, kind, payload = pickle.loads(self._conn.recv_bytes())
            except (EOFError, OSError):
                self._ended()
                for waiting in list(self._sinks.values()):
                    waiting._reply("gone", self.gone)
                return
            except Exception as exc:  # pragma: no cover - a reply that cannot be read
                warn_once(("writer-reply", type(exc)), f"tracked: a W&B writer's reply could not be read ({exc!r})")
                continue
            sink = self._sinks.get(sid)
            if kind == "warn":
                warn_once(("writer", payload), payload)
            elif sink is not None:
                if kind in ("done", "failed"):
                    self._sinks.pop(sid, None)
                sink._reply(kind, payload)

    def kill(self) -> None:
        """End a writer that is stuck."""
        self.gone = self.gone or f"the W&B writer process (pid {self.process.pid}) made no progress and was ended"
        try:
            self.process.kill()
        except OSError:
            pass

    def forget(self) -> None:
        """In a forked child: the child's copy of the socket is closed (the writer serves the parent,
        and must see its end when the parent ends); the process object is the parent's."""
        try:
            self._conn.close()
        except OSError:
            pass


_writer: _Writer | None = None
_writer_lock = threading.Lock()


def writer() -> _Writer:
    """This process's writer, started now if it was not (or if the one it had is gone)."""
    global _writer
    with _writer_lock:
        current = _writer
        if current is None or current.pid != os.getpid() or current.gone or current.process.poll() is not None:
            current = _writer = _Writer()
        return current


def _after_fork_in_child() -> None:
    global _writer, _writer_lock
    _writer_lock = threading.Lock()
    if _writer is not None:
        _writer.forget()
        _writer = None


os.register_at_fork(after_in_child=_after_fork_in_child)


class RemoteWandbSink(StartGate):
    """A W&B run written by the writer process. On the user's side it only batches items.

    Every method but `open`, `nudge` and `child_opened` runs on the sink's own thread in the
    user's process, as `WandbSink`'s do; they append to a batch that `idle` sends.
    """

    name: ClassVar[str] = "wandb"
    durable: ClassVar[bool] = False
    label: ClassVar[str] = "W&B"
    #: Its items need no fork lock: nothing is imported or loaded in this process.
    remote: ClassVar[bool] = True

    def __init__(self, local: Any) -> None:
        """`local` is the `WandbSink` that chooses the run's id and arguments in this process."""
        self._local = local
        self.mode: str = local.mode
        self._writer: _Writer | None = None
        self._sid = 0
        self._batch: list[tuple[int, str, Any]] = []
        super().__init__()
        self._eager = False
        self._start_sent = False
        self._finishing = False
        self._sending = False  # blocked in a send while the writer takes no more
        self._done = threading.Event()
        self._result: tuple[str, Any] | None = None
        self._error: Exception | None = None
        self._info: dict[str, Any] | None = None

    def open(self, run: RunInfo) -> Mapping[str, Any] | None:
        # the id (in config.json's refs) and wandb.init's arguments, chosen here
        # (absolute there: the writer's working directory is the one this process had first)
        imposed: Mapping[str, Any] | None = self._local.open(run)
        self._eager = self._local._eager
        self._writer = writer()
        self._sid = self._writer.register(self)
        opening = {"state": self._local.state(), "env": _wandb_environment(), "cwd": os.getcwd()}
        self._batch.append((self._sid, "open", opening))
        return imposed

    # --- replies (on the reader thread) -------------------------------------------------------

    def _reply(self, kind: str, payload: Any) -> None:
        if kind == "started":
            self._info = dict(payload)
        elif kind == "gone":
            self._error = WriterGone(payload)
            self._result = (kind, payload)
            self._done.set()
        elif kind == "failed":
            self._error = _remote_error(*payload)
            self._result = (kind, payload)
            self._done.set()
        elif kind == "done":
            self._info = dict(payload.get("wandb") or {}) or self._info
            self._result = (kind, payload)
            self._done.set()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    # --- items (on the sink's thread) ---------------------------------------------------------

    def _add(self, kind: str, payload: Any = None) -> None:
        self._check()
        self._batch.append((self._sid, kind, payload))
        if len(self._batch) >= BATCH_ITEMS:
            self.idle()

    def idle(self) -> None:
        """Send the batch (the sink's queue is empty, or the batch is full)."""
        if self._batch and self._writer is not None:
            batch, self._batch = self._batch, []
            self._sending = True
            try:
                self._writer.send(batch)
            finally:
                self._sending = False

    def start_soon(self) -> None:
        """As `WandbSink.start_soon`: the run starts as the experiment does, unless a child
        experiment opens within `START_GRACE_S` before any row (a parent of grouped runs)."""
        if not self._eager:
            return
        self._woken.wait(START_GRACE_S)
        if not self._children_first:
            self._start()

    def _start(self) -> None:
        if not self._start_sent:
            self._start_sent = True
            self._add("start")

    def work_began(self) -> None:
        self._start()

    @property
    def started(self) -> bool:
        return self._info is not None and "id" in self._info

    def write_row(self, step: int, row: Mapping[str, Any]) -> None:
        self._start_sent = True  # the writer starts the run with its first row
        self._add("row", (step, row))

    def join(self, step: int, metrics: Mapping[str, Any]) -> None:
        pass  # a background sink gets whole rows

    def write_calls(self, records: Sequence[Mapping[str, Any]]) -> None:
        self._add("calls", records)

    def set_notes(self, notes: str | None) -> None:
        self._add("notes", notes)

    def set_tags(self, tags: Sequence[str]) -> None:
        self._add("tags", list(tags))

    def save(self, path: Path, name: str) -> None:
        self._add("save", (Path(path).resolve(), name))

    def flush(self) -> None:
        pass  # its queue is worked through before finish

    def finish(self, end: RunEnd) -> Mapping[str, Any]:
        """Send the end and wait for the writer to finish the run (its tables, its summary), as
        long as the writer lives. Returns what `WandbSink.finish` returned there. A parent that
        only opened children and never started a run has nothing to ask it (it may be gone)."""
        if end.only_children and not self._start_sent:
            try:  # (the writer forgets it: best effort, not waited for)
                self._batch.append((self._sid, "finish", end))
                self.idle()
            except Exception:
                pass
            if self._writer is not None:
                self._writer._sinks.pop(self._sid, None)
            return {"wandb": {"mode": self.mode}}
        self._add("finish", end)
        self._finishing = True
        self.idle()
        assert self._writer is not None
        while not self._done.wait(0.5):
            if self._writer.process.poll() is not None and not self._done.wait(0.5):
                raise WriterGone(self._writer._ended())
        self._check()
        assert self._result is not None
        return dict(self._result[1])

    def close(self) -> None:
        """After the end. A finish still unanswered, or a send still waiting, means the writer made
        no progress for `FINISH_TIMEOUT_S` (a hung `wandb.init`): it is ended, and the next
        experiment starts another (those it was serving are told, and keep their local stores)."""
        self._batch = []
        if (self._finishing or self._sending) and not self._done.is_set() and self._writer is not None:
            self._writer.kill()

    def references(self) -> Mapping[str, Any]:
        info = self._info
        if not info or "id" not in info:
            return {}
        return {"wandb_id": info["id"], "wandb_mode": info.get("mode", self.mode)}

    def info(self) -> dict[str, Any]:
        return dict(self._info or {"mode": self.mode})


# --- the writer process -------------------------------------------------------------------------


def serve(conn: Connection, broken: BaseException | None = None) -> None:
    """The writer's loop: batches in, each item to its experiment's `WandbSink`, replies out.
    With `broken` (wandb could not be imported), every run fails with that error."""
    import warnings

    from .. import _config
    from .wandb import WandbSink

    sinks: dict[int, WandbSink] = {}
    started: set[int] = set()
    failed: set[int] = set()
    current = [0]
    reply_lock = threading.Lock()

    def reply(sid: int, kind: str, payload: Any) -> None:
        data = pickle.dumps((sid, kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            with reply_lock:
                conn.send_bytes(data)
        except OSError:
            pass  # the user's process is gone: what it would be told no longer matters

    show = warnings.showwarning

    def showwarning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, _config.TrackedWarning):
            reply(current[0], "warn", str(message))  # warned (once) in the user's process
        else:
            show(message, category, *args, **kwargs)

    warnings.showwarning = showwarning

    def handle(sid: int, kind: str, payload: Any) -> None:
        if kind == "open":
            if broken is not None:
                raise broken
            if os.path.isdir(payload["cwd"]):  # relative paths as the user's process reads them
                os.chdir(payload["cwd"])
            os.environ.update(payload["env"])
            for key in [k for k in os.environ if k.startswith("WANDB_") and k not in payload["env"]]:
                if key != "WANDB_SERVICE":
                    del os.environ[key]
            sinks[sid] = WandbSink.restore(payload["state"])
            return
        sink = sinks[sid]
        if kind == "start":
            sink.start()
        elif deliver(sink, kind, payload):
            pass
        elif kind == "finish":
            extras = sink.finish(payload)
            del sinks[sid]
            try:
                sink.close()
            finally:
                reply(sid, "done", dict(extras))
            return
        if sid not in started and sink.run is not None:
            started.add(sid)
            reply(sid, "started", sink.info())

    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            break
        settings, items = pickle.loads(data)  # (tuples, numbers and bytes: always readable)
        for key, value in zip(_SETTINGS, settings, strict=True):
            setattr(_config.config, key, value)
        for sid, kind, blob in items:
            if sid in failed:
                if kind == "finish":
                    reply(sid, "failed", ("RuntimeError", "the W&B sink failed earlier"))
                continue
            current[0] = sid
            try:
                handle(sid, kind, _Reader(io.BytesIO(blob)).load())
            except Exception as exc:
                failed.add(sid)
                sink = sinks.pop(sid, None)
                reply(sid, "failed", (type(exc).__name__, str(exc)))
                if sink is not None and sink.run is not None and not sink.adopted:
                    try:
                        sink.run.finish(exit_code=1)
                    except Exception:
                        pass
    # The user's process ended without finishing these runs (killed): what reached the writer is
    # written, and each run ends as failed. The local store has every row; `tracked sync` the rest.
    for sink in sinks.values():
        if sink.run is not None:
            try:
                sink.run.finish(exit_code=1)
            except Exception:
                pass


def main(argv: Sequence[str]) -> None:
    # Ctrl-C, a closed terminal, Slurm's or a container's SIGTERM reach every process of the group
    # or job: the user's process finishes its experiments as "interrupted", and this one must be
    # there to write them. It ends when the user's process does (the socket closes).
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    conn = Connection(int(argv[0]))
    try:
        import wandb  # loaded while the first experiment gets going
    except Exception as exc:  # each run fails with it, as it would in the user's process
        serve(conn, exc)
        return
    try:
        wandb.setup()  # its service too, so that the first run starts as soon as its work does
    except Exception:
        pass  # the first `wandb.init` starts it, or says why it cannot
    serve(conn)
