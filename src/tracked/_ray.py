"""Worker parts that travel through Ray: an experiment's calls in Ray tasks, actors and Ray Data.

Imported only when an experiment hands out a Ray handle (`exp.handle()` with Ray initialized, or
`transport="ray"`) or a worker attaches one; `import tracked` never imports it, nor Ray.

How the records travel (no shared filesystem is needed):

- **In the worker** (`experiment.attach(handle)` in a Ray task, actor or `map_batches` function),
  the part is written to the node's own local store first, as a process worker's is:
  `<TRACKED_DIR or the working directory>/experiments/<experiment dir>/workers/<pid>_<hex>/`. A
  row is on disk before the call that made it returns and a top-level call's records as it ends,
  so a worker that dies loses only its calls still running. A `Shipper` thread sends what was
  appended to the part's files to the experiment's `Collector` actor, about every 50 ms, one
  batch in flight at a time, with the part's status (how many of its top-level calls are running).
- **The collector** is a Ray actor (no CPU reserved) made by the driver's first Ray handle, on the
  driver's node, and shared by its later experiments. It only keeps each experiment's batches
  until the driver takes them.
- **In the driver**, a `Receiver` thread takes them every 0.2 s and appends them to
  `<experiment>/workers/<part>/` of its local store: what reached the driver is on its disk (if
  the driver dies, `tracked sync` merges it). When the experiment finishes, the receiver takes
  what is left; for a part that has not ended (an actor still alive, a worker that died) it waits
  while the part has calls running (`configure(worker_wait_s=...)`, bounded), then reads what the part's node has
  on disk beyond what arrived, with a Ray task on that node. The parts then merge like process
  workers' (`_workers.merge_workers`), and `summary["workers"]` says for each where its records
  came from and what, if anything, is missing.

When a worker's node-local directory is the driver's own (one machine, the same `TRACKED_DIR` or
working directory, or a shared filesystem) the worker's files are already in place: the driver
counts the batches but does not write them again.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _store
from ._config import internal_error, warn_once
from ._dispatch import start_without_signals

__all__ = ["EXTRA_HINT", "Receiver", "Shipper", "collector", "import_ray", "node_local_dir", "ray_is_initialized"]

EXTRA_HINT = "Ray handles need Ray: pip install 'tracked[ray]'"
#: How often a worker's shipper looks for new lines (seconds).
SHIP_POLL_S = 0.05
#: How often the driver takes the collector's batches (seconds).
TAKE_POLL_S = 0.2
#: At most this many bytes of one file in one batch.
CHUNK_BYTES = 4 << 20
#: How long a worker's end waits for its last batch to reach the collector (seconds).
END_WAIT_S = 10.0
#: How long reading a part's files on its node may take before it is given up (seconds).
RECOVER_WAIT_S = 30.0

_FILES = (_store.RESULTS, _store.CALLS)


def import_ray() -> Any:
    """Ray, or ImportError naming the extra."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(EXTRA_HINT) from exc
    return ray


def ray_is_initialized() -> bool:
    """Whether this process is connected to Ray (a driver after `ray.init()`, or a Ray worker),
    without importing Ray when it is not imported yet."""
    import sys

    ray = sys.modules.get("ray")
    try:
        return ray is not None and bool(ray.is_initialized())
    except Exception:
        return False


def node_local_dir(experiment_dir: str) -> Path:
    """Where a worker on this node keeps its part of the experiment whose local store directory
    is `experiment_dir` (on the driver's machine): the same layout under this node's root,
    `TRACKED_DIR` or the working directory (a Ray worker's is its raylet's; when it cannot be
    written, the system's temporary directory)."""
    root = Path(os.environ.get("TRACKED_DIR") or os.getcwd())
    if not os.access(root, os.W_OK):
        import tempfile

        root = Path(tempfile.gettempdir()) / "tracked"
    return root / _store.EXPERIMENTS / Path(experiment_dir).name


# --- the collector actor -----------------------------------------------------------------------------------


class Collector:
    """The mailbox in Ray of a driver's experiments: batches of worker parts' lines, kept per
    experiment (its local store directory) until the driver takes them."""

    def __init__(self) -> None:
        self._pending: dict[str, list[tuple[Any, ...]]] = {}
        self._ended: set[str] = set()

    def put(
        self, key: str, part: str, info: dict[str, Any], chunks: dict[str, tuple[int, bytes]], status: dict[str, Any]
    ) -> None:
        if key in self._ended:
            raise RuntimeError(f"the experiment {Path(key).name} has ended")
        self._pending.setdefault(key, []).append((part, info, chunks, status))

    def take(self, key: str) -> list[tuple[Any, ...]]:
        return self._pending.pop(key, [])

    def end(self, key: str) -> list[tuple[Any, ...]]:
        """The last batches of an experiment that ends: later ones are refused (their worker warns)."""
        self._ended.add(key)
        return self._pending.pop(key, [])


_collector_cls: Any = None
_collector: tuple[Any, Any] | None = None  # (the Ray job it was made in, the actor)
_collector_lock = threading.Lock()


def collector() -> Any:
    """This driver's collector actor, on its node: made once per Ray instance and job (starting an
    actor takes a worker process, about a second), shared by its experiments."""
    global _collector_cls, _collector
    ray = import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    with _collector_lock:
        context = ray.get_runtime_context()
        # A job id alone repeats after `ray.shutdown()` and a new local `ray.init()`; the node's does not.
        job = (context.get_node_id(), context.get_job_id())
        if _collector is not None and _collector[0] == job:
            return _collector[1]
        if _collector_cls is None:
            _collector_cls = ray.remote(num_cpus=0, max_restarts=0)(Collector)
        actor = _collector_cls.options(scheduling_strategy=NodeAffinitySchedulingStrategy(job[0], soft=True)).remote()
        _collector = (job, actor)
        return actor


# --- the worker's side ---------------------------------------------------------------------------------------


class Shipper:
    """Sends what a worker part appends to its files to the collector (see the module's docstring).

    Args:
        experiment: The worker's experiment (attached); its local store directory is the part.
        collector: The collector actor of the handle.
        key: The experiment's key at the collector (its local store directory, on the driver).
    """

    def __init__(self, experiment: Any, collector: Any, key: str) -> None:
        self._ray = import_ray()
        self._exp = experiment
        self._collector = collector
        self._key = key
        self.path: Path = experiment.path
        self.part = self.path.name
        context = self._ray.get_runtime_context()
        self._info = {
            "node_id": context.get_node_id(),
            "node_ip": self._ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "path": str(self.path),
        }
        self._at = dict.fromkeys(_FILES, 0)
        # This node sees the driver's own directory (one machine, or a shared filesystem): the part
        # is written in place, and only its status needs to travel.
        self.shared = (self.path.parent.parent / _store.CONFIG).exists()
        self._files: dict[str, Any] = {}
        self._in_flight: Any = None
        self._last_status: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one batch made at a time (the thread's, or the end's)
        self.failed: BaseException | None = None
        self._send(final=False, force=True)  # the part is known to the driver before its first call ends
        self._thread = threading.Thread(target=self._run, name=f"tracked-ray-{self.part}", daemon=True)
        start_without_signals(self._thread)

    def _read(self, name: str) -> tuple[int, bytes]:
        """New whole lines of one of the part's files since the last batch: (offset, bytes)."""
        if self.shared:
            return self._at[name], b""
        fh = self._files.get(name)
        if fh is None:
            try:
                fh = self._files[name] = open(self.path / name, "rb")
            except FileNotFoundError:
                return self._at[name], b""
        at = self._at[name]
        fh.seek(at)
        data = fh.read(CHUNK_BYTES)
        end = data.rfind(b"\n") + 1  # whole lines only: a line being written waits for the next batch
        return at, data[:end]

    def _send(self, *, final: bool, force: bool = False) -> None:
        # Batches are waited for through `ObjectRef.future()`: `ray.get` in an asyncio actor warns
        # of a blocked event loop even from this thread, which blocks none.
        with self._lock:
            if self._in_flight is not None:
                if not final and not self._in_flight.done():
                    return  # one batch in flight at a time: lines wait for the next
                self._in_flight.result(timeout=END_WAIT_S)  # raises what the put raised
                self._in_flight = None
            while True:
                chunks = {name: self._read(name) for name in _FILES}
                # Counted after the files are read: a call begun is in `started` or after this batch.
                status = {"running": len(self._exp._running), "started": self._exp._started, "ended": False}
                more = any(len(data) == CHUNK_BYTES for _, data in chunks.values())
                if final and not more:
                    status["ended"] = True
                if not force and not any(data for _, data in chunks.values()) and status == self._last_status:
                    return
                sent = self._collector.put.remote(self._key, self.part, self._info, chunks, status).future()
                for name, (_, data) in chunks.items():
                    self._at[name] += len(data)
                self._last_status = status
                force = False
                if not final:
                    self._in_flight = sent
                    return
                sent.result(timeout=END_WAIT_S)
                if status["ended"]:
                    return

    def _run(self) -> None:
        while not self._stop.wait(SHIP_POLL_S):
            try:
                self._send(final=False)
            except Exception as exc:
                self.failed = exc
                warn_once(("ray-ship", self.part), self._lost_message(exc))
                return

    def _lost_message(self, exc: BaseException) -> str:
        if "has ended" in str(exc):
            why = "the experiment ended before this worker's calls did (wait for the tasks with ray.get first)"
        else:
            why = f"{type(exc).__name__}: {str(exc)[:300]}"
        return (
            f"tracked: this worker's records no longer reach the experiment through Ray: {why}; "
            f"they are in {self.path} on this node"
        )

    def close(self) -> None:
        """The part has ended (its files are complete): send the rest and say so, waiting for the
        collector to have it (up to `END_WAIT_S`)."""
        self._stop.set()
        self._thread.join()
        try:
            if self.failed is None:
                self._send(final=True)
        except Exception as exc:
            warn_once(("ray-ship", self.part), self._lost_message(exc))
        finally:
            for fh in self._files.values():
                fh.close()


# --- the driver's side ---------------------------------------------------------------------------------------


@dataclass
class Part:
    """What the driver knows of one worker part."""

    name: str
    info: dict[str, Any]
    dir: Path
    shared: bool  # the worker writes into the driver's directory itself
    at: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_FILES, 0))
    status: dict[str, Any] = field(default_factory=dict)
    source: str = "ray"  # where its records came from: "ray", or "ray+node" (read on its node at the end)
    missing: str | None = None  # what could not be had, in words
    from_node: dict[str, int] | None = None  # lines read on its node at the end, per file

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "transport": "files (shared)" if self.shared else self.source,
            "node_ip": self.info.get("node_ip"),
            "pid": self.info.get("pid"),
            "ended": bool(self.status.get("ended")),
        }
        if self.from_node is not None:
            out["read_on_node"] = {"rows": self.from_node[_store.RESULTS], "calls": self.from_node[_store.CALLS]}
        if self.missing:
            out["missing"] = self.missing
        return out


def _read_tail(path: str, at: dict[str, int], pid: int) -> tuple[bool, dict[str, bytes]]:
    """On a part's node: whether its process still runs, and its files' whole lines from `at`."""
    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    except PermissionError:
        alive = True
    out: dict[str, bytes] = {}
    for name, offset in at.items():
        try:
            with open(Path(path) / name, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            data = b""
        out[name] = data[: data.rfind(b"\n") + 1]
    return alive, out


class Receiver:
    """The driver's end: takes the collector's batches into the experiment's `workers/` directory.

    Args:
        experiment_dir: The experiment's local store directory.
        name: The experiment's name (the thread's).
    """

    def __init__(self, experiment_dir: Path, name: str) -> None:
        self._ray = import_ray()
        self.dir = experiment_dir / _store.WORKERS
        self.key = str(experiment_dir)
        self.collector = collector()
        self._node_id = self._ray.get_runtime_context().get_node_id()
        self.parts: dict[str, Part] = {}
        self._lock = threading.Lock()  # one take at a time
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"tracked-ray-{name}", daemon=True)
        start_without_signals(self._thread)

    def _run(self) -> None:
        while not self._stop.wait(TAKE_POLL_S):
            try:
                self.take()
            except Exception as exc:
                internal_error("taking the Ray workers' records", exc)

    def take(self, end: bool = False) -> int:
        """Take every batch the collector holds into the local store (`end`: and refuse later
        ones). Returns how many."""
        with self._lock:
            method = self.collector.end if end else self.collector.take
            batches = self._ray.get(method.remote(self.key), timeout=60)
            for name, info, chunks, status in batches:
                self._write(name, info, chunks, status)
            return len(batches)

    def _part(self, name: str, info: dict[str, Any]) -> Part:
        part = self.parts.get(name)
        if part is None:
            where = self.dir / name
            # The worker's own directory is this one (one machine, or a shared filesystem): its
            # local store opened it (config.json) before its first batch was sent.
            shared = (where / _store.CONFIG).exists()
            if not shared:
                where.mkdir(parents=True, exist_ok=True)
            part = self.parts[name] = Part(name, info, where, shared)
        return part

    def _write(
        self, name: str, info: dict[str, Any], chunks: dict[str, tuple[int, bytes]], status: dict[str, Any]
    ) -> None:
        part = self._part(name, info)
        part.status = status
        for file, (offset, data) in chunks.items():
            if not data:
                continue
            if offset != part.at[file]:  # pragma: no cover - the collector keeps a part's batches in order
                internal_error(
                    "Ray worker records", RuntimeError(f"{name}/{file}: got bytes from {offset}, had {part.at[file]}")
                )
                continue
            if not part.shared:
                with open(part.dir / file, "ab") as fh:
                    fh.write(data)
            part.at[file] += len(data)

    def close(self, wait_s: float) -> list[Part]:
        """Take the rest: wait (up to `wait_s`) for parts with calls running, refuse later batches,
        and read what parts that have not ended left on their nodes. Returns every part."""
        if self._closed:
            return list(self.parts.values())
        self._closed = True
        self._stop.set()
        self._thread.join()
        self.take()
        # Parts with calls running: wait for them to end, while their process is alive. A part's
        # status is at most a poll old (its last calls may have just ended): its process is asked
        # about only after a second.
        start = time.monotonic()
        deadline, probe_at = start + wait_s, start + 1.0
        dead: set[str] = set()
        while True:
            waiting = [
                p for p in self.parts.values()
                if p.status.get("running") and not p.status.get("ended") and p.name not in dead
            ]  # fmt: skip
            now = time.monotonic()
            if not waiting or now > deadline:
                break
            if now >= probe_at:
                dead.update(p.name for p in waiting if self._alive(p) is False)
                probe_at = time.monotonic() + 1.0
            time.sleep(TAKE_POLL_S)
            self.take()
        self.take(end=True)
        for part in self.parts.values():
            if part.status.get("ended"):
                continue
            alive = self._recover(part) if not part.shared else self._alive(part)
            if part.missing is None:
                begun = (part.status.get("started") or 0) - _top_level_calls(part.dir)
                if begun > 0:
                    calls = f"{begun} call{'s' if begun != 1 else ''}"
                    part.missing = (
                        f"its process ended with {calls} begun and not ended: not recorded"
                        if alive is False
                        else f"{calls} begun in it had not ended when the experiment finished"
                    )
        return list(self.parts.values())

    def _on_node(self, part: Part, fn: Any, *args: Any) -> Any:
        """`fn(*args)` on the part's node: here when it is this process's node, else in a Ray task
        there (no CPU reserved; a busy node may take long to start a worker for it)."""
        if part.info.get("node_id") == self._node_id:
            return fn(*args)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = self._ray.remote(num_cpus=0, max_retries=0)(fn).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(part.info["node_id"], soft=False)
        )
        return self._ray.get(task.remote(*args), timeout=RECOVER_WAIT_S)

    def _alive(self, part: Part) -> bool | None:
        """Whether a part's process still runs (None: its node could not be asked)."""
        try:
            return bool(self._on_node(part, _read_tail, part.info["path"], {}, part.info["pid"])[0])
        except Exception:
            return None

    def _recover(self, part: Part) -> bool | None:
        """Read on its node what a part that has not ended wrote beyond what arrived. Returns
        whether its process still runs (None: its node could not be reached)."""
        try:
            alive, tails = self._on_node(part, _read_tail, part.info["path"], dict(part.at), part.info["pid"])
        except Exception as exc:
            part.missing = (
                f"its node {part.info.get('node_ip')} could not be reached ({type(exc).__name__}): what it wrote "
                f"after its last batch is only in {part.info.get('path')} there"
            )
            return None
        for file, data in tails.items():
            if data:
                with open(part.dir / file, "ab") as fh:
                    fh.write(data)
                part.at[file] += len(data)
        part.source = "ray+node"
        part.from_node = {file: data.count(b"\n") for file, data in tails.items()}
        return bool(alive)


def _top_level_calls(part_dir: Path) -> int:
    """How many top-level calls a part's `calls.jsonl` has records of (whose parent is not in it)."""
    records = _store.read_calls(part_dir, warn=lambda _: None)
    ids = {r.get("id") for r in records}
    return sum(1 for r in records if r.get("parent_id") not in ids)
