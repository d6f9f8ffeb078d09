"""`experiment()`: a run, with its rows, totals, W&B run and local store."""

from __future__ import annotations

import asyncio
import atexit
import functools
import heapq
import inspect
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import _signals
from ._call import Call, check_metrics
from ._config import internal_error, warn_once
from ._context import _current, _current_exp, _last_row, _open, current_experiment, lane
from ._sysinfo import system_info
from ._totals import ROW_FIELDS, Totals
from ._values import clean, is_number, redact
from .sinks.local import LocalStore, read_jsonl, read_rows
from .sinks.wandb import WandbSink, active_sweep_run, resolve_mode

__all__ = ["Experiment", "experiment"]

F = TypeVar("F", bound=Callable[..., Any])

# A row that stays open (its thread never made another top-level call) holds back later rows from
# W&B, which needs them in order. Past this many waiting rows it is closed; metrics logged for it
# afterwards become a row of their own. Without W&B nothing waits.
MAX_WAITING_ROWS = 10_000
FINISH_TIMEOUT_S = 120.0
# Bounded buffers: past this many items waiting for a background thread (W&B logs 5,000 to 8,000
# rows a second offline), calls wait for it to catch up, so memory stays bounded (about 25 MB at
# the peak) and nothing is dropped. A thread that makes no progress at all (a hung W&B) is not
# waited for.
MAX_QUEUED = 10_000


@dataclass(frozen=True)
class ExperimentHandle:
    """What a worker process needs to record its calls in an experiment; picklable.

    Made by `exp.handle()`, used in the worker with `with experiment.attach(handle):`.
    """

    name: str
    path: str
    config: dict[str, Any]
    tags: tuple[str, ...]


class _Row:
    __slots__ = ("data", "sealed", "step")

    def __init__(self, step: int, data: dict[str, Any]) -> None:
        self.step = step
        self.data = data
        self.sealed = False

    def __lt__(self, other: _Row) -> bool:
        return self.step < other.step


class _Summary(dict[str, Any]):
    """`exp.summary`: the user's own summary values, checked when set."""

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str) or not key:
            raise TypeError(f"summary keys must be non-empty strings, got {key!r}")
        super().__setitem__(key, clean(value, "summary"))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __ior__(self, other: Any) -> _Summary:  # type: ignore[override,misc]
        self.update(other)
        return self


def _check_tags(tags: Any) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise TypeError(f"tags must be a list of strings, got {tags!r}")
    out = []
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"tags must be non-empty strings, got {tag!r}")
        if len(tag) > 64:
            raise ValueError(f"tag {tag[:20]!r}... is {len(tag)} characters; W&B allows at most 64")
        if tag not in out:
            out.append(tag)
    return out


def _check_str(label: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"experiment({label}=...) must be a string, got {type(value).__name__}")
    return value


class Experiment:
    """One run: its rows, totals, W&B run and local store. Make one with `experiment(...)`.

    Use it as a context manager (`with` / `async with`), as a decorator, or with `.start()` and
    `.finish()` (in notebooks, where a block cannot span cells).
    """

    def __init__(
        self,
        name: str,
        *,
        project: str | None = None,
        entity: str | None = None,
        config: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        group: str | None = None,
        job_type: str | None = None,
        notes: str | None = None,
        dir: str | os.PathLike[str] | None = None,
        wandb: bool | None = None,
        local: bool | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"experiment name must be a non-empty string, got {name!r}")
        if config is not None and not isinstance(config, Mapping):
            raise TypeError(f"config must be a mapping, got {type(config).__name__}")
        if wandb is not None and not isinstance(wandb, bool):
            raise TypeError(f"wandb must be True, False or None, got {wandb!r}")
        if local is not None and not isinstance(local, bool):
            raise TypeError(f"local must be True, False or None, got {local!r}")
        self.name = name
        self.project = _check_str("project", project)
        self.entity = _check_str("entity", entity)
        self.group = _check_str("group", group)
        self.job_type = _check_str("job_type", job_type)
        self._notes = _check_str("notes", notes)
        self._tags = _check_tags(tags)
        self.config: dict[str, Any] = redact(clean(dict(config or {}), "config"))
        self._dir = Path(dir) if dir is not None else None
        self._wandb_requested = wandb
        self._local_requested = local
        self._args: dict[str, Any] = {
            "project": project, "entity": entity, "config": config, "tags": tags, "group": group,
            "job_type": job_type, "notes": notes, "dir": dir, "wandb": wandb, "local": local,
        }  # fmt: skip
        self.summary: _Summary = _Summary()
        self.parent: Experiment | None = None
        self.children: list[dict[str, Any]] = []
        self.status = "created"
        self.started = False
        self.finished = False
        self.path: Path | None = None
        self.totals_own = Totals()
        self._totals_children = Totals()
        # Re-entrant: the SIGTERM handler may finish the experiment on a thread that holds it.
        self._lock = threading.RLock()
        self._next_step = 0
        self._next_emit = 0
        self._open_rows: dict[int, _Row] = {}
        self._ready: list[_Row] = []
        self._token: Any = None
        self._local: LocalStore | None = None
        self._wandb: WandbSink | None = None
        self._sink_errors: dict[str, str] = {}
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._pump_thread: threading.Thread | None = None
        self._wandb_queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._wandb_thread: threading.Thread | None = None
        self._wandb_progress = 0  # items the W&B thread has taken: finish() waits while it grows
        self._pump_progress = 0
        self._stalled: dict[str, int] = {}
        self._closed = False
        self._started_at = 0.0
        self._had_rows = False
        self._worker_dir: Path | None = None  # set by attach(): this is a worker's part
        self.sweep: dict[str, Any] | None = None  # the trial of a `tracked sweep` this is

    # --- the three ways to use it --------------------------------------------------------

    def __enter__(self) -> Experiment:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.finish(status=_status_for(exc))

    async def __aenter__(self) -> Experiment:
        return self.start()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._leave_context()
        await asyncio.get_running_loop().run_in_executor(None, self._close, _status_for(exc))

    def __call__(self, fn: F) -> F:
        """Use as a decorator: every call of `fn` runs in a new experiment with these arguments."""
        if not callable(fn):
            raise TypeError(f"experiment(...) decorates functions, got {type(fn).__name__}")
        make = functools.partial(Experiment, self.name, **self._args)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with make():
                    return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with make():
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    def start(self) -> Experiment:
        """Open the experiment: it becomes current here, and stays current (for notebooks) until
        `finish()`. Returns itself."""
        if self.started:
            raise RuntimeError(f"experiment {self.name!r} was already started; make a new one with experiment(...)")
        self.started = True
        self.status = "running"
        self._started_at = time.time()
        parent = current_experiment()
        self.parent = parent
        if parent is not None:
            # Children inherit config and tags (the child wins on a key).
            self.config = {**parent.config, **self.config}
            self._tags = _check_tags([*parent._tags, *self._tags])
            if self.project is None:
                self.project = parent.project
            if self.entity is None:
                self.entity = parent.entity
            if self._dir is None:
                self._dir = parent._dir
            # A parent that turned a sink off turns it off for its children, unless they ask.
            if self._wandb_requested is None and parent._wandb_requested is False:
                self._wandb_requested = False
            if self._local_requested is None:
                self._local_requested = parent._local_requested
        if self._local_requested is None:
            self._local_requested = True
        if parent is None and self._worker_dir is None:
            self._join_sweep()
        self._open_sinks()
        self._token = _current_exp.set(self)
        _open.append(self)
        _signals.install()
        return self

    def finish(self, status: str = "finished") -> None:
        """Close the experiment: rows are flushed, totals written, the W&B run ended. Idempotent."""
        self._leave_context()
        self._close(status)

    # --- what the user does while it runs ------------------------------------------------

    def log(self, metrics: Mapping[str, Any]) -> None:
        """Log metrics. During a top-level call they join its row; right after one (before the
        next top-level call of this thread or task) too; otherwise they are a row of their own.

        Example:
            >>> result = run_strategy("debate", task)
            >>> exp.log({"accuracy": score(result)})
        """
        checked = {k: clean(v, "log") for k, v in check_metrics(metrics, "Experiment.log").items()}
        if self.finished:
            raise RuntimeError(f"experiment {self.name!r} has finished; log() is not possible any more")
        call = _current.get()
        if call is not None and call.experiment is self:
            while call.parent is not None and call.parent.experiment is self:
                call = call.parent
            if call.metrics is None:
                call.metrics = checked
            else:
                call.metrics.update(checked)
            return
        last = _last_row.get()
        if last is not None and last.experiment is self and last._lane == lane() and self._join(last, checked):
            return
        with self._lock:
            row = self._new_row(checked)
            self._count_metrics({}, checked)
            self._write_row(row)
            self._seal_row(row)

    @property
    def notes(self) -> str | None:
        return self._notes

    @notes.setter
    def notes(self, value: str | None) -> None:
        self._notes = _check_str("notes", value)
        self._send("notes", self._notes)

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self._tags)

    @tags.setter
    def tags(self, value: Iterable[str]) -> None:
        self._tags = _check_tags(value)
        self._send("tags", list(self._tags))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Keep a copy of a file with the run (in the local store's `files/` and the W&B run)."""
        src = Path(path)
        if not src.is_file():
            raise FileNotFoundError(f"exp.save: no such file: {src}")
        name = src.name
        stored = src
        if self._local is not None:
            try:
                stored = self._local.save(src, name)
            except Exception as exc:
                self._sink_failed("local", exc)
        elif self._wandb is not None:
            # W&B copies from the pump thread later: copy now, so the run gets today's content.
            import shutil
            import tempfile

            tmp = Path(tempfile.mkdtemp(prefix="tracked-save-")) / name
            shutil.copy2(src, tmp)
            stored = tmp
        self._send("save", (stored, name))

    def handle(self) -> ExperimentHandle:
        """A handle to pass to worker processes (`multiprocessing`, `ProcessPoolExecutor`, fork or
        spawn), where `with experiment.attach(handle):` records their calls in this experiment.
        Their rows are added to this one's rows and totals when it finishes.

        Example:
            >>> def work(handle, task):
            ...     with experiment.attach(handle):
            ...         return run_strategy("debate", task)
            >>> with experiment("parallel") as exp, ProcessPoolExecutor() as pool:
            ...     results = list(pool.map(work, [exp.handle()] * len(tasks), tasks))
        """
        if not self.started or self.finished:
            raise RuntimeError("exp.handle() needs a running experiment")
        if self.path is None:
            raise RuntimeError("exp.handle() needs the local store (local=True): workers write their rows there")
        return ExperimentHandle(self.name, str(self.path), dict(self.config), tuple(self._tags))

    @property
    def totals(self) -> dict[str, Any]:
        """Live totals: `total/calls`, `total/tokens_in`, ..., `latency_s/p95`, per call name, and
        the mean of each custom numeric metric; a parent's include its children's."""
        with self._lock:
            totals = Totals()
            totals.merge(self.totals_own)
            totals.merge(self._totals_children)
            return totals.as_dict()

    @property
    def dir(self) -> Path | None:
        """The local store directory of this experiment (None with `local=False`)."""
        return self.path

    def __repr__(self) -> str:
        return f"<Experiment {self.name!r} {self.status}>"

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(
            f"<tr><td>{escape(k)}</td><td>{escape(_fmt(v))}</td></tr>"
            for k, v in self.totals.items()
            if k.startswith(("total/", "latency_s/")) or (k.endswith("/mean") and "/" not in k[:-5])
        )
        where = f"<br><code>{escape(str(self.path))}</code>" if self.path else ""
        return f"<b>{escape(self.name)}</b> ({escape(self.status)}){where}<table>{rows}</table>"

    # --- rows -------------------------------------------------------------------------------

    def _new_row(self, data: dict[str, Any]) -> _Row:
        step = self._next_step
        self._next_step += 1
        self._had_rows = True
        return _Row(step, data)

    def _write_row(self, row: _Row) -> None:
        if self._local is not None:
            try:
                self._local.write_row({"_step": row.step, "_timestamp": time.time(), **row.data})
            except Exception as exc:
                self._sink_failed("local", exc)

    def _on_call_end(self, call: Call) -> None:
        """Every call of this experiment ends here; top-level ones are rows."""
        q = self._queue
        q.put(("call", call))
        if q.qsize() > MAX_QUEUED:
            self._catch_up(q, "_pump_progress")
        if call._row is None:
            return
        data: dict[str, Any] = {
            "call": call.name,
            "latency_s": call.latency_s,
            "tokens_in": call.tokens_in,
            "tokens_out": call.tokens_out,
            "cost_usd": call.cost_usd,
            "llm_calls": call.llm_calls,
            "error": 1 if call.error_type else 0,
        }
        if call.ttft_s is not None:
            data["ttft_s"] = call.ttft_s
        if call.model is not None:
            data["model"] = call.model
        if call.error_type is not None:
            data["error_type"] = call.error_type
        if call.unpriced_calls:
            data["unpriced_calls"] = call.unpriced_calls
        if call.metrics:
            data.update(call.metrics)
        with self._lock:
            row = call._row = self._new_row(data)
            self.totals_own.add_call(
                call.name, call.latency_s or 0.0, call.error_type is not None, call.llm_calls,
                call.tokens_in, call.tokens_out, call.cost_usd, call.unpriced_calls,
            )  # fmt: skip
            self._count_metrics({}, call.metrics or {})
            self._open_rows[row.step] = row
        # Outside the lock: the write is one syscall that other threads need not wait for. Metrics
        # joined later come from this same thread or task, after this returns.
        self._write_row(row)
        if self._wandb is not None and self._wandb_queue.qsize() > MAX_QUEUED:
            self._catch_up(self._wandb_queue, "_wandb_progress")

    def _catch_up(self, q: queue.SimpleQueue[tuple[str, Any]], progress: str) -> None:
        """Wait until a background thread has worked its queue a little below the bound, as long
        as it makes progress: many short waits rather than a few long ones."""
        seen, since = getattr(self, progress), time.monotonic()
        if self._stalled.get(progress) == seen:
            return  # found stuck before and still is: not waited for again
        while q.qsize() > MAX_QUEUED - MAX_QUEUED // 20 and not self._closed:
            time.sleep(0.005)
            now = getattr(self, progress)
            if now != seen:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since > 1.0:
                self._stalled[progress] = now  # stuck: memory grows rather than the user's code waiting
                return

    def _count_metrics(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        """Keep the metric means right when a row's metrics are set or replaced."""
        for key, value in new.items():
            before = old.get(key)
            if is_number(before):
                self.totals_own.add_metric(key, before, -1)
            if is_number(value):
                self.totals_own.add_metric(key, value)

    def _join(self, call: Call, metrics: dict[str, Any]) -> bool:
        """Metrics logged after a top-level call returned join its row, unless it was closed."""
        with self._lock:
            row = call._row
            if not isinstance(row, _Row) or row.sealed:
                return False
            self._count_metrics(row.data, metrics)
            row.data.update(metrics)
            if self._local is not None:
                try:
                    self._local.write_row({"_step": row.step, "_join": True, **metrics})
                except Exception as exc:
                    self._sink_failed("local", exc)
            return True

    def _seal(self, call: Call) -> None:
        """The row of `call` is complete (its thread or task started another top-level call)."""
        row = call._row
        if isinstance(row, _Row) and not row.sealed:
            with self._lock:
                self._seal_row(row)

    def _seal_row(self, row: _Row) -> None:
        # Holding self._lock. Rows reach W&B whole and in step order.
        if row.sealed:
            return
        row.sealed = True
        self._open_rows.pop(row.step, None)
        if self._wandb is None and not self._ready:
            self._next_emit = max(self._next_emit, row.step + 1)
            return
        heapq.heappush(self._ready, row)
        while self._ready:
            if self._ready[0].step == self._next_emit:
                ready = heapq.heappop(self._ready)
                self._next_emit += 1
                self._send("row", ready.data)
            elif len(self._ready) > MAX_WAITING_ROWS and self._next_emit in self._open_rows:
                self._seal_row(self._open_rows[self._next_emit])
            else:
                break

    # --- sinks and the pump thread ---------------------------------------------------------

    def _open_sinks(self) -> None:
        info = system_info()
        parent = self.parent
        if parent is not None:
            root = parent
            while root.parent is not None:
                root = root.parent
            # W&B has one level of groups: every descendant is in the root's group; deeper
            # levels are told apart by job_type (the parent's name) and config `_tracked.parents`.
            if self.group is None:
                self.group = root.group or root.name
            if self.job_type is None and parent is not root:
                self.job_type = parent.name
        self.system = info
        sweep_run = active_sweep_run()
        if self._local_requested:
            try:
                root_dir = self._dir or Path(os.environ.get("TRACKED_DIR") or os.getcwd())
                exact = None
                if self._worker_dir is not None:
                    exact = self._worker_dir / f"{os.getpid()}_{os.urandom(3).hex()}"
                self._local = LocalStore(root_dir, self.name, self._started_at, exact=exact)
                self.path = self._local.path
            except Exception as exc:
                self._sink_failed("local", exc)
        mode = "disabled" if self._worker_dir is not None else resolve_mode(self._wandb_requested)
        if mode != "disabled":
            kwargs: dict[str, Any] = {
                "project": self.project or os.environ.get("WANDB_PROJECT") or None,
                "entity": self.entity,
                "name": self.name,
                "group": self.group,
                "job_type": self.job_type,
                "tags": list(self._tags),
                "notes": self._notes,
                "config": {**self.config, "_tracked": self._tracked_info()},
            }
            if self._dir is not None:
                kwargs["dir"] = str(self._dir)
            self._wandb = WandbSink(mode, {k: v for k, v in kwargs.items() if v is not None}, adopted=sweep_run)
            if sweep_run is not None or os.environ.get("WANDB_SWEEP_ID"):
                # Under a sweep the parameters come from W&B: the run is needed now, so that
                # exp.config has them.
                try:
                    run = self._wandb.start()
                    params = {k: v for k, v in dict(run.config).items() if not k.startswith("_")}
                    self.config.update(clean(params, "config"))
                except Exception as exc:
                    self._sink_failed("wandb", exc)
        self._write_config()
        self._start_threads()

    def _join_sweep(self) -> None:
        """Under `tracked sweep`, the trial's parameters win over the config in the code, and the
        experiment is in the sweep's group."""
        params = os.environ.get("TRACKED_SWEEP_PARAMS")
        if not params:
            return
        try:
            values = json.loads(params)
            sweep = json.loads(os.environ.get("TRACKED_SWEEP") or "{}")
        except ValueError:
            warn_once("bad-sweep-env", "tracked: TRACKED_SWEEP_PARAMS is not JSON; ignored")
            return
        if isinstance(values, dict):
            self.config.update(clean(values, "config"))
        if isinstance(sweep, dict):
            self.sweep = {**sweep, "params": values}
            if self.group is None and isinstance(sweep.get("name"), str):
                self.group = sweep["name"]

    def _tracked_info(self) -> dict[str, Any]:
        info = dict(self.system)
        chain = []
        p = self.parent
        while p is not None:
            chain.append(p.name)
            p = p.parent
        if chain:
            info["parents"] = chain[::-1]
        return info

    def _config_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "project": self.project,
            "entity": self.entity,
            "group": self.group,
            "job_type": self.job_type,
            "tags": list(self._tags),
            "notes": self._notes,
            "config": self.config,
            "parent": self.parent.path.name if self.parent is not None and self.parent.path else None,
            "started_at": self._started_at,
            "system": self._tracked_info(),
            **({"sweep": self.sweep} if self.sweep else {}),
        }

    def _write_config(self) -> None:
        if self._local is not None:
            try:
                self._local.write_config(self._config_record())
            except Exception as exc:
                self._sink_failed("local", exc)

    def _send(self, kind: str, payload: Any) -> None:
        """Queue work for the W&B thread (nothing when W&B is off or has failed)."""
        if self._wandb is not None:
            self._wandb_queue.put((kind, payload))

    def _sink_failed(self, sink: str, exc: BaseException) -> None:
        if sink in self._sink_errors or self._closed:
            return  # one warning per sink; nothing after the end (a W&B call that came back late)
        self._sink_errors[sink] = f"{type(exc).__name__}: {exc}"
        other = "the local store keeps everything" if sink == "wandb" else "W&B keeps going"
        warn_once(
            ("sink", id(self), sink),
            f"tracked: the {sink} sink of experiment {self.name!r} failed ({type(exc).__name__}: {exc}); "
            f"it is off for this experiment, {other}",
        )
        if sink == "local" and self._local is not None:
            local, self._local = self._local, None
            try:
                local.close()
            except Exception:
                pass
        if sink == "wandb":
            self._wandb = None

    def _start_threads(self) -> None:
        self._pump_thread = threading.Thread(target=self._pump, name=f"tracked-calls-{self.name}", daemon=True)
        self._pump_thread.start()
        if self._wandb is not None:
            self._wandb_thread = threading.Thread(
                target=self._wandb_loop, name=f"tracked-wandb-{self.name}", daemon=True
            )
            self._wandb_thread.start()

    def _pump(self) -> None:
        """Off the caller's path: call records to calls.jsonl, and on to the W&B thread's table."""
        q = self._queue
        try:
            # Load the price data now rather than in the first priced call.
            from genai_prices import data_snapshot

            data_snapshot.get_snapshot()
        except Exception:
            pass
        while True:
            kind, payload = _next_batch_start(q)
            self._pump_progress += 1
            calls: list[Call] = []
            try:
                while True:
                    if kind == "call":
                        calls.append(payload)
                        if len(calls) >= 512:
                            self._flush_calls(calls)
                            calls = []
                    else:
                        if calls:
                            self._flush_calls(calls)
                            calls = []
                        if kind == "stop":
                            return
                        self._flush_records(payload)
                    try:
                        kind, payload = q.get_nowait()
                    except queue.Empty:
                        break
                if calls:
                    self._flush_calls(calls)
            except Exception as exc:  # pragma: no cover - each step guards itself
                internal_error("the experiment's pump thread", exc)

    def _flush_calls(self, calls: list[Call]) -> None:
        self._pump_progress += 1
        if self._local is not None or self._wandb is not None:
            self._flush_records([c.to_record() for c in calls])

    def _flush_records(self, records: list[dict[str, Any]]) -> None:
        if self._local is not None:
            try:
                self._local.write_calls(records)
            except Exception as exc:
                self._sink_failed("local", exc)
        self._send("calls", records)

    def _wandb_loop(self) -> None:
        """The W&B thread: every W&B call happens here, so a slow or stuck W&B holds up nothing else."""
        q = self._wandb_queue
        while True:
            kind, payload = _next_batch_start(q)
            self._wandb_progress += 1
            if kind == "stop":
                return
            sink = self._wandb
            if sink is None:
                continue  # failed: drain without calling it again
            try:
                if kind == "row":
                    sink.log(payload)
                elif kind == "calls":
                    sink.calls(payload)
                elif kind == "notes":
                    sink.set_notes(payload)
                elif kind == "tags":
                    sink.set_tags(payload)
                elif kind == "save":
                    sink.save(*payload)
                elif kind == "finish":
                    sink.finish(*payload)
            except Exception as exc:
                self._sink_failed("wandb", exc)

    # --- the end ----------------------------------------------------------------------------

    def _leave_context(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                _current_exp.reset(token)
            except ValueError:
                # Finished from another context (another cell, thread or task): that context
                # falls back to the open-experiments stack, which no longer holds this one.
                pass
        last = _last_row.get()
        if last is not None and last.experiment is self:
            _last_row.set(None)  # the finished experiment is not kept alive by this context

    def _close(self, status: str) -> None:
        if self.finished or not self.started:
            return
        self.finished = True
        self.status = status
        try:
            if self.path is not None and self._worker_dir is None:
                self._merge_workers(self.path / "workers")
            with self._lock:
                for step in sorted(self._open_rows):
                    self._seal_row(self._open_rows[step])
            # 1. Every call record to calls.jsonl (and on to the W&B thread).
            self._queue.put(("stop", None))
            if self._pump_thread is not None:
                self._pump_thread.join(FINISH_TIMEOUT_S)
            # 2. The local store's state is known before W&B is told.
            if self._local is not None:
                if not (self._local.path / "results.jsonl").exists():
                    self._sink_failed("local", FileNotFoundError(f"{self._local.path} was removed while it ran"))
                else:
                    self._write_config()
            summary = self._final_summary()
            if "local" in self._sink_errors:
                summary["sinks/local"] = f"failed: {self._sink_errors['local']}"
            # 3. W&B: summary, calls table, end of the run; bounded.
            exit_code = 0 if status == "finished" else 1
            force = not self.children or self._had_rows
            self._send("finish", (dict(summary), exit_code, force))
            if self._wandb_thread is not None:
                self._wandb_queue.put(("stop", None))
                self._wait_for_wandb()
            if self._wandb is not None:
                summary["wandb"] = self._wandb.info()
                if self._wandb.table_truncated:
                    summary["calls_table_truncated"] = self._wandb.table_truncated
            summary["sinks"] = {
                "local": self._sink_errors.get("local", "ok") if self._local_requested else "off",
                "wandb": self._sink_errors.get("wandb", "ok")
                if self._wandb is not None or "wandb" in self._sink_errors
                else "off",
            }
            # 4. The summary last: its presence says the experiment ended.
            if self._local is not None:
                try:
                    self._local.write_summary(summary)
                    self._local.close()
                except Exception as exc:
                    self._sink_failed("local", exc)
                    summary["sinks"]["local"] = self._sink_errors.get("local", "failed")
            self.final_summary = summary
        except Exception as exc:
            internal_error("finishing an experiment", exc)
        finally:
            self._closed = True
            if self._wandb is not None:
                self._wandb.release()
            if self in _open:
                _open.remove(self)
            if self.parent is not None:
                self.parent._absorb(self)

    def _wait_for_wandb(self) -> None:
        """Wait while W&B works through its backlog; give up only when it has made no progress
        for FINISH_TIMEOUT_S (an init or a call that hangs)."""
        thread = self._wandb_thread
        assert thread is not None
        seen, since = self._wandb_progress, time.monotonic()
        while thread.is_alive():
            thread.join(min(1.0, FINISH_TIMEOUT_S))
            if self._wandb_progress != seen:
                seen, since = self._wandb_progress, time.monotonic()
            elif time.monotonic() - since >= FINISH_TIMEOUT_S and thread.is_alive():
                self._sink_failed("wandb", TimeoutError(f"W&B made no progress for {FINISH_TIMEOUT_S:g} s"))
                return

    def _merge_workers(self, workers: Path) -> None:
        """Rows and calls that worker processes wrote under `workers/` become this experiment's."""
        if not workers.is_dir():
            return
        merged = []
        for part in sorted(p for p in workers.iterdir() if p.is_dir()):
            rows = read_rows(part / "results.jsonl", warn=lambda m: warn_once(("torn", m), f"tracked: {m}"))
            with self._lock:
                for stored in rows:
                    data = {k: v for k, v in stored.items() if not k.startswith("_")}
                    data["worker"] = part.name
                    self.totals_own.add_row(data)
                    self._count_metrics({}, {k: v for k, v in data.items() if k not in ROW_FIELDS})
                    row = self._new_row(data)
                    self._write_row(row)
                    self._seal_row(row)
            calls = list(read_jsonl(part / "calls.jsonl"))
            if calls:
                self._queue.put(("records", calls))
            merged.append({"dir": part.name, "rows": len(rows), "calls": len(calls)})
        if merged:
            self.summary["workers"] = merged

    def _final_summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "status": self.status,
            "name": self.name,
            "started_at": self._started_at,
            "finished_at": time.time(),
        }
        # The user's own keys first: they cannot overwrite the status or the totals.
        summary = {**self.summary, **summary, **self.totals}
        if self.children:
            summary["children"] = list(self.children)
        return summary

    def _absorb(self, child: Experiment) -> None:
        with self._lock:
            self._totals_children.merge(child.totals_own)
            self._totals_children.merge(child._totals_children)
            entry: dict[str, Any] = {"name": child.name, "status": child.status}
            if child.path is not None:
                entry["dir"] = child.path.name
            if child._wandb is not None and child._wandb.started:
                entry["wandb_id"] = child._wandb.run.id
                entry["wandb_mode"] = child._wandb.mode
            self.children.append(entry)


# How long the background threads sleep when their queue is empty. They drain it in batches
# rather than waking on every call, which would take the GIL from the caller at each one.
_POLL_S = 0.02


def _next_batch_start(q: queue.SimpleQueue[tuple[str, Any]]) -> tuple[str, Any]:
    """The next item, polling: a put() does not wake the thread."""
    while True:
        try:
            return q.get_nowait()
        except queue.Empty:
            time.sleep(_POLL_S)


def _status_for(exc: BaseException | None) -> str:
    if exc is None:
        return "finished"
    if isinstance(exc, SystemExit) and exc.code in (0, None):
        return "finished"  # sys.exit(0) is a normal end
    if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        return "interrupted"
    return "failed"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def experiment(
    name: str,
    *,
    project: str | None = None,
    entity: str | None = None,
    config: Mapping[str, Any] | None = None,
    tags: Iterable[str] | None = None,
    group: str | None = None,
    job_type: str | None = None,
    notes: str | None = None,
    dir: str | os.PathLike[str] | None = None,
    wandb: bool | None = None,
    local: bool | None = None,
) -> Experiment:
    """An experiment: every top-level `@tracked` call inside it is a row, sent to a W&B run and
    written to a local store (`experiments/<name>_<YYYYmmdd_HHMMSS>/`).

    Args:
        name: The run's name.
        project: W&B project (default: `WANDB_PROJECT`, else W&B's default).
        entity: W&B entity.
        config: Hyperparameters: strategy, model, temperature, ...
        tags: Strings of at most 64 characters.
        group: W&B group; experiments opened inside this one are grouped under it (or its name).
        job_type: W&B job type.
        notes: A description; can be changed while it runs (`exp.notes = ...`).
        dir: Where `experiments/` (and W&B's `wandb/`) go (default: `TRACKED_DIR`, else the working
            directory, and W&B's own default).
        wandb: False turns W&B off (so does `WANDB_MODE=disabled`); the local store stays on.
            Children of an experiment with `wandb=False` inherit it unless they say otherwise.
        local: False turns the local store off (inherited by children likewise; default on).

    Example:
        >>> with experiment("tombench_debate", config={"strategy": "debate"}, tags=["strategy:debate"]) as exp:
        ...     for task in tasks:
        ...         result = run_strategy("debate", task)
        ...         exp.log({"accuracy": score(result)})
    """
    return Experiment(
        name, project=project, entity=entity, config=config, tags=tags, group=group,
        job_type=job_type, notes=notes, dir=dir, wandb=wandb, local=local,
    )  # fmt: skip


def attach(handle: ExperimentHandle) -> Experiment:
    """In a worker process: an experiment that records this process's calls into the experiment
    `handle` came from (`exp.handle()`). Use it as `with experiment.attach(handle):`.
    """
    if not isinstance(handle, ExperimentHandle):
        raise TypeError(f"experiment.attach takes the handle from exp.handle(), got {type(handle).__name__}")
    worker = Experiment(handle.name, config=handle.config, tags=handle.tags, wandb=False)
    worker._worker_dir = Path(handle.path) / "workers"
    return worker


experiment.attach = attach  # type: ignore[attr-defined]


def finish_all(status: str) -> None:
    """Finish every open experiment, innermost first."""
    for exp in reversed(list(_open)):
        try:
            exp._close(status)
        except Exception:
            pass


@atexit.register
def _finish_open_experiments() -> None:
    """At exit, experiments left open (a notebook, a script without `with`) are finished."""
    last = getattr(sys, "last_value", None)
    finish_all("finished" if last is None else "interrupted" if isinstance(last, KeyboardInterrupt) else "failed")


def _forget_in_child() -> None:
    # A forked child inherits the parent's open experiments but not their threads: its calls
    # must not write into the parent's store. Workers join an experiment with experiment.attach().
    for exp in _open:
        exp.finished = True
        exp._local = None
        exp._wandb = None
    _open.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
