"""`experiment()`: a run, with its rows, totals and sinks (W&B, the local store).

The facade: what the user calls, and the entry points the call layer and the older tracker use.
The jobs are in their own modules: options and inheritance (`_options`), rows (`_rows`), the sinks
and their threads (`sinks`, `_dispatch`), worker processes (`_workers`), the open experiments of
the process (`_lifecycle`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import _lifecycle, pricing
from ._call import Call, RemoteParent, check_metrics
from ._config import config as settings
from ._config import internal_error, warn_once
from ._context import Here, _current, _current_exp, _last_row, current_experiment, lane, reachable
from ._forksafe import loading_unless_imported
from ._instrument import end_open_requests
from ._options import Summary, check_str, check_tags, inherit, join_sweep, parents_of, status_for
from ._results import Results
from ._rows import Rows
from ._sysinfo import system_info
from ._totals import Totals
from ._values import clean, cost_text, redact

if TYPE_CHECKING:
    from ._workers import ExperimentHandle
    from .sinks import SinkSet

__all__ = ["Experiment", "attach", "experiment"]

F = TypeVar("F", bound=Callable[..., Any])


class Experiment:
    """One run: its rows, totals, W&B run and local store. Make one with `experiment(...)`.

    Use it as a context manager (`with` / `async with`), as a decorator, or with `.start()` and
    `.finish()` (in notebooks, where a block cannot span cells).
    """

    _with = False  # opened by `with` / `async with` (else by `.start()`)
    _in_process = False  # W&B's run written in this process (the older tracker: wandb's current run)
    _rerun = False  # finished because the notebook cell that started it ran again

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
        self.name = check_str("name", name) or name
        self.project = check_str("project", project)
        self.entity = check_str("entity", entity)
        self.group = check_str("group", group)
        self.job_type = check_str("job_type", job_type)
        self._notes = check_str("notes", notes)
        self._tags = check_tags(tags)
        self.config: dict[str, Any] = redact(clean(dict(config or {}), "config"))
        self._dir = Path(dir) if dir is not None else None
        self._wandb_requested = wandb
        self._local_requested = local
        self._args: dict[str, Any] = {
            "project": project, "entity": entity, "config": config, "tags": tags, "group": group,
            "job_type": job_type, "notes": notes, "dir": dir, "wandb": wandb, "local": local,
        }  # fmt: skip
        self.summary: Summary = Summary()
        self.parent: Experiment | None = None
        self.children: list[dict[str, Any]] = []
        self.status = "created"
        self.started = False
        self.finished = False
        self.path: Path | None = None
        self.sweep: dict[str, Any] | None = None  # the trial of a `tracked sweep` this is
        self.system: dict[str, Any] = {}
        self._token: Any = None
        self._started_at = 0.0
        self._worker_of: Path | None = None  # set by attach(): this is a worker's part
        self._receiver: Any = None  # the driver's end of the Ray transport (`_ray.Receiver`), if any
        self._ray_lock = threading.Lock()
        self._collector: Any = None  # in a Ray worker: the collector its records go to, and their key
        self._shipper: Any = None  # ... and what sends them (`_ray.Shipper`)
        # The parent of its top-level calls: in a worker, the call of another process it works for.
        self.parent_call: Call | None = None
        self._sinks: SinkSet = _sink_set(name)
        self._rows = Rows(self._sinks)
        self._totals_children = Totals()
        # The older tracker's open result: calls that would be top-level rows become its children.
        self._adopt: Call | None = None
        self._results: Results | None = None
        self._running: dict[int, Call] = {}  # top-level calls not ended yet
        self._started = 0  # top-level calls begun (a Ray worker's part tells its driver)
        self._working = False  # a top-level call of its own has begun
        self._requests: dict[int, Any] = {}  # instrumented requests not ended yet (`_instrument`)
        self._runs_below: list[dict[str, Any]] = []  # the W&B runs of its descendants: id, mode
        self.summarised = False
        # The thread and task that started it: a context holding no experiment takes it as its own
        # only from there, or when that is the main thread (`_context.ambient`).
        self._home: tuple[Any, Any] = (None, None)
        self._here = Here()  # per thread: the top-level call that began there last
        self._warned_uncarried = False
        self.forked_away = False  # in a forked child: an experiment of the parent process

    # --- the three ways to use it --------------------------------------------------------

    def __enter__(self) -> Experiment:
        self._with = True
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.finish(status=status_for(exc))

    async def __aenter__(self) -> Experiment:
        self._with = True
        return self.start()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._leave_context()
        await self._let_left_generators_close()
        await asyncio.get_running_loop().run_in_executor(None, self._close, status_for(exc))

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
        if parent is not None and not self._with and self._reruns(parent):
            # The notebook cell that started `parent` ran again: a new top-level run, not a child.
            parent._rerun = True  # its end line says so
            parent.finish()
            parent = current_experiment()
        self.parent = parent
        loop = asyncio._get_running_loop()
        self._home = (threading.current_thread(), asyncio.current_task(loop) if loop is not None else None)
        if parent is not None:
            inherit(self, parent)
            if parent._rows.count == 0:
                parent._sinks.child_opened()
        if self._local_requested is None:
            self._local_requested = True
        if parent is None and self._worker_of is None:
            join_sweep(self)
        self._open_sinks()
        if self._worker_of is not None:
            self._sinks.calls_on_caller()  # on disk as each task ends: a pool may end the worker then
            if self._collector is not None and self.path is not None:
                from ._ray import Shipper

                try:
                    self._shipper = Shipper(self, *self._collector)
                except Exception as exc:  # Ray unusable here: the node's own copy is still written
                    warn_once(
                        ("ray-ship", str(self.path)),
                        f"tracked: this worker's records cannot reach the experiment through Ray ({exc}); "
                        f"they are kept in {self.path} on this node",
                    )
        self._token = _current_exp.set(self)
        _lifecycle.register(self)
        return self

    def _reruns(self, other: Experiment) -> bool:
        """Whether this `.start()` re-runs the notebook cell that started `other`: in an IPython
        kernel, `other` was also started by `.start()` (not `with`), under the same name."""
        if other._with or other.name != self.name or "ipykernel" not in sys.modules:
            return False
        try:
            from IPython import get_ipython

            return get_ipython() is not None
        except Exception:
            return False

    def finish(self, status: str = "finished") -> None:
        """Close the experiment: rows are flushed, totals written, the W&B run ended. Idempotent."""
        self._leave_context()
        self._close(status)

    # --- what the user does while it runs ------------------------------------------------

    def log(self, metrics: Mapping[str, Any]) -> None:
        """Log metrics. They join the row of the top-level call this code is in, is iterating (a
        generator), or came right after (before the next top-level call of this thread or task;
        also after `asyncio.run(...)` of it, after an `async for` over it left by `break`, and in
        a later notebook cell); otherwise they are a row of their own. The README's "Which row a
        metric joins" has every case.

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
        if self.join_last_row(checked) is None:
            self._rows.add(checked)

    @property
    def notes(self) -> str | None:
        return self._notes

    @notes.setter
    def notes(self, value: str | None) -> None:
        self._notes = check_str("notes", value)
        self._sinks.set_notes(self._notes)

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self._tags)

    @tags.setter
    def tags(self, value: Iterable[str]) -> None:
        self._tags = check_tags(value)
        self._sinks.set_tags(list(self._tags))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Keep a copy of a file, as it is now, with the run: in the local store's `files/` and in
        the W&B run's files artifact (`run-<id>-files`), under its path relative to the working
        directory (`results/a.json`; a file outside it under its absolute path without the root),
        so that two files of the same name do not collide.

        Raises:
            FileNotFoundError: `path` is not a file.
        """
        src = Path(path)
        if src.is_dir():
            raise IsADirectoryError(f"exp.save: {src} is a directory; save the files in it one by one")
        if not src.is_file():
            raise FileNotFoundError(f"exp.save: no such file: {src}")
        self._sinks.save(src, saved_name(src))

    def handle(self, transport: str | None = None) -> ExperimentHandle:
        """A handle to pass to workers, where `with experiment.attach(handle):` records their calls
        in this experiment. Their rows are added to this one's rows and totals when it finishes.
        Made inside a call of this experiment, that call is the parent of the workers' top-level
        calls in `calls.jsonl`; otherwise they have none.

        Args:
            transport: How the workers' records reach this experiment. "files": worker processes
                of this machine (`multiprocessing`, `ProcessPoolExecutor`, fork, forkserver or
                spawn) or of a cluster sharing this directory (Slurm on NFS) write into its
                `workers/` directory. "ray": Ray tasks, actors and Ray Data functions, on any node,
                send them through Ray (README, "Scaling out"). Default: "ray" when this process
                is connected to Ray (`ray.init()` was called), else "files".

        Raises:
            RuntimeError: the experiment is not running, or has no local store (`local=False`).
            ValueError: an unknown `transport`.
            ImportError: "ray" without Ray installed (the `tracked[ray]` extra).

        Example:
            >>> def work(handle, task):
            ...     with experiment.attach(handle):
            ...         return run_strategy("debate", task)
            >>> with experiment("parallel") as exp, ProcessPoolExecutor() as pool:
            ...     results = list(pool.map(work, [exp.handle()] * len(tasks), tasks))
        """
        if transport not in (None, "files", "ray"):
            raise ValueError(f"exp.handle(transport=...) takes 'files' or 'ray', got {transport!r}")
        if not self.started or self.finished:
            raise RuntimeError("exp.handle() needs a running experiment")
        if self.path is None:
            raise RuntimeError("exp.handle() needs the local store (local=True): workers write their rows there")
        call = _current.get()
        parent_call = call.id if call is not None and call.experiment is self else None
        # worker processes' module, imported on first use: no fork meanwhile
        with loading_unless_imported("tracked._workers"):
            from ._workers import ExperimentHandle
        collector = None
        if transport is None:
            from ._ray import ray_is_initialized

            transport = "ray" if ray_is_initialized() else "files"
        if transport == "ray":
            receiver = self._ray_receiver()
            collector = (receiver.collector, receiver.key)
        return ExperimentHandle(
            self.name, str(self.path), dict(self.config), tuple(self._tags), parent_call, transport, collector
        )

    def _ray_receiver(self) -> Any:
        """The driver's end of the Ray transport, made with the first Ray handle."""
        with self._ray_lock:
            if self._receiver is None:
                with loading_unless_imported("tracked._ray"):
                    from ._ray import Receiver

                assert self.path is not None
                self._receiver = Receiver(self.path, self.name)
            return self._receiver

    @property
    def totals(self) -> dict[str, Any]:
        """Live totals: `total/calls`, `total/tokens_in`, ..., `latency_s/p95`, per call name, and
        the mean of each custom numeric metric; a parent's include its children's."""
        with self._rows.lock:
            totals = Totals()
            totals.merge(self._rows.totals)
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

    # --- the entry points of the call layer and the older tracker ------------------------

    def _work_began(self) -> None:
        """Its first top-level call began (any thread): its W&B run, if not started yet, starts now,
        so that W&B's Created and Runtime are the experiment's work (a parent that only opens
        children never gets here, and gets no run)."""
        if not self._working:
            self._working = True
            try:
                self._sinks.work_began()
            except Exception as exc:
                internal_error("starting the runs", exc)
        # The price data loads (once per process) on the calls thread as the experiment opens. Had
        # a call waited for it to price, the wait (0.3 to 1 s) would count in the latency of every
        # call around it: the first top-level calls wait now, before their clocks start.
        pricing.wait_for_data(PRICE_DATA_WAIT_S)

    def _on_call_end(self, call: Call) -> None:
        """Every call of this experiment ends here; top-level ones (`call._row` set) are rows."""
        if call._outer:
            self._running.pop(id(call), None)
        if self.summarised:
            return  # cut short when the experiment finished, and counted then (or warned about)
        sinks = self._sinks
        sinks.add_call(call)
        if "_leaf" in call.__dict__:
            self._rows.add_model(call)
            if call.ttft_s is not None and not call._outer:
                # A streamed LLM call inside a top-level one: the row's time to first token is its
                # first streamed LLM call's.
                top = call.parent
                while top is not None and not top._outer:
                    top = top.parent
                if top is not None and top.experiment is self:
                    top.__dict__.setdefault("_first_ttft", call.ttft_s)
        if call._row is not None:
            call._row = self._rows.add_call(call)
            if call._seal_at_end:
                self._rows.seal(call._row)
        elif call.late:
            self._rows.add_late(call)
        sinks.wait_if_behind()

    def _join(self, call: Call, metrics: dict[str, Any]) -> bool:
        """Metrics logged after the top-level `call` returned join its row, unless it was sealed."""
        return self._rows.join(call._row, metrics)

    def _seal(self, call: Call) -> None:
        """The row of `call` is complete (code that came after it started another top-level call).
        A call still running (a generator left and not closed yet) is sealed when its row is made."""
        if call._row is True:
            call._seal_at_end = True
        else:
            self._rows.seal(call._row)

    def last_call_here(self) -> Call | None:
        """The top-level call whose row metrics logged here (outside any call) join, if any: the
        later of the last one that ended in this context and the last one begun in this thread,
        when this code comes after it (`_context.reachable`). Still running, it is a generator
        this code is iterating, or has left (`async for ... break`) and not closed yet. None when
        the last one of this thread ran alongside another of its tasks' (`gather`): which of them
        the metrics are about is not known."""
        here = lane()
        calls = [c for c in (_last_row.get(), self._here.last) if c is not None and c.experiment is self]
        if here[1] is not None and any(c._lane == here for c in calls):
            # In a task that made top-level calls of its own: its metrics are about those, never
            # about a call another task of this thread made meanwhile (even one that has ended).
            calls = [c for c in calls if c._lane == here]
        best = None
        for call in calls:
            if reachable(call._lane, here) and (best is None or call._n > best._n):
                best = call
        if best is not None and best._overlap and best._lane != here:
            return None
        return best

    def join_last_row(self, metrics: dict[str, Any], *, unless: Call | None = None) -> Call | None:
        """Join checked `metrics` to the row of `last_call_here()`, if it is still open (and is not
        `unless`). Returns the call joined, or None."""
        call = self.last_call_here()
        if call is None or call is unless:
            return None
        if call._row is True and not call._seal_at_end:  # still running: its row will have them
            if call.metrics is None:
                call.metrics = dict(metrics)
            else:
                call.metrics.update(metrics)
            if call._row is True:
                return call
            # it ended meanwhile (in another thread): its row is made, join it there
        return call if self._join(call, metrics) else None

    def _uncarried(self, call: Call) -> None:
        """`call` came from a thread that does not carry the context (a `threading.Thread` target)
        while a top-level call made where the context is carried was running: most likely the call
        that started the thread, of which it is not a child. Warned once per experiment. (Plain
        threads that each make their own top-level calls, side by side, are not warned about.)"""
        if self._warned_uncarried:
            return
        running = next((c for c in list(self._running.values()) if not c._adrift and c is not call), None)
        if running is None:
            return
        self._warned_uncarried = True
        pools = settings.propagate_threads
        where = "" if pools else ", or a thread pool with configure(propagate_threads=False)"
        warn_once(
            ("uncarried", id(self), self._started_at),
            f"tracked: {call.name} was called from a thread that does not carry the context (a threading.Thread "
            f"target{where}) while {running.name} was running in experiment {self.name!r}: it is a row of its "
            f"own, not a child of {running.name}; start the thread with target=tracked.bind(fn)"
            + (
                ", or submit it to a concurrent.futures.ThreadPoolExecutor, which carries it"
                if pools
                else ", or submit it to a tracked.ThreadPoolExecutor"
            ),
        )

    def collect_results(self) -> Results:
        """From now on, calls that would be top-level rows are children of one open "result" call,
        ended by `Results.end` (the older tracker's `log_result`) or when the experiment ends."""
        if self._results is None:
            self._results = Results(self)
        return self._results

    def add_result(
        self,
        metrics: dict[str, Any],
        *,
        latency_s: float,
        model: str | None,
        tokens_in: int,
        tokens_out: int,
        cost_usd: float | None,
        llm_calls: int,
        unpriced: int = 0,
    ) -> Call:
        """A row for a result measured elsewhere (the older tracker's `log_result`), counted in
        the totals like a call named "result". `cost_usd` None is unknown; `unpriced` counts it
        as a figure of unknown cost; `metrics` are checked values. Returns the row's call, open for
        metrics until it is sealed (`_seal`)."""
        call = Call("result", None, self, time.perf_counter())
        call._set_figures(
            latency_s=latency_s,
            model=model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=cost_usd,
            cost_source="reported" if cost_usd is not None else None,
            llm_calls=llm_calls,
            unpriced_calls=unpriced,
        )
        call.metrics = metrics
        call._row = True
        if tokens_in or tokens_out or cost_usd:
            call.__dict__["_leaf"] = True  # its reported usage counts under its model too
        self._on_call_end(call)
        return call

    # --- opening and closing ----------------------------------------------------------------

    def _open_sinks(self) -> None:
        from .sinks import RunInfo  # imported by `_sink_set`, when this experiment was made

        self.system = system_info()
        info = RunInfo(
            name=self.name,
            project=self.project,
            entity=self.entity,
            group=self.group,
            job_type=self.job_type,
            notes=self._notes,
            tags=tuple(self._tags),
            config=self.config,
            system=self._system_info(),
            started_at=self._started_at,
            dir=self._dir,
            parent_dir=self.parent.path.name if self.parent is not None and self.parent.path else None,
            sweep=self.sweep,
            requested={"local": self._local_requested, "wandb": self._wandb_requested},
            worker_of=self._worker_of,
            in_process=self._in_process,
        )
        self._sinks.open(info)  # a W&B sweep's parameters are merged into self.config
        local = self._sinks.get("local")
        self.path = local.path if local is not None else None

    def _system_info(self) -> dict[str, Any]:
        info = dict(self.system)
        parents = parents_of(self)
        if parents:
            info["parents"] = parents
        return info

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
        with _lifecycle.finishing():  # a SIGTERM meanwhile lets it end first
            self._finish_now(status)

    def _finish_now(self, status: str) -> None:
        try:
            if self.path is not None and self._worker_of is None:
                with loading_unless_imported("tracked._workers"):  # imported on first use: no fork meanwhile
                    from ._workers import merge_workers

                parts = self._close_ray()
                merged = merge_workers(self.path, self._rows, self._sinks)
                for entry in merged:
                    if entry["dir"] in parts:
                        entry.update(parts[entry["dir"]])
                if merged:
                    self.summary["workers"] = merged
            end_open_requests(self)
            self._end_left_generators()
            self._cut_short_running()
            if self._results is not None:
                self._results.close()
            self._rows.seal_all()
            summary = self._final_summary()
            self.summarised = True  # a call ending from now on is in none of its figures
            only_children = bool(self.children) and self._rows.count == 0
            self.final_summary = self._sinks.finish(summary, status, only_children=only_children)
            if self.parent is None and self._worker_of is None and (self._rerun or not settings.quiet):
                line = self._end_line()
                if self._rerun:
                    line += "; finished as the cell that started it ran again, which starts a new one"
                print(line, file=sys.stderr)
        except Exception as exc:
            internal_error("finishing an experiment", exc)
        finally:
            self._here = Here()  # the calls it held in each thread
            self._home = (None, None)  # nor the task that started it
            self.summarised = True  # even when the summary could not be made: nothing is added after
            self._sinks.close()
            if self._shipper is not None:
                self._shipper.close()  # the part's files are complete: the rest goes to the driver
            _lifecycle.unregister(self)
            if self.parent is not None:
                self.parent._absorb(self)

    def _close_ray(self) -> dict[str, dict[str, Any]]:
        """The Ray workers' records still on their way, taken into `workers/`; per part, how they
        came and what is missing (warned once)."""
        if self._receiver is None:
            return {}
        try:
            parts = self._receiver.close(settings.worker_wait_s)
        except Exception as exc:  # Ray shut down or unreachable: what reached this process still merges
            warn_once(
                ("ray-close", id(self)),
                f"tracked: {self.name}: the Ray workers' last records could not be taken ({type(exc).__name__}: "
                f"{exc}); those that reached this process are merged, the rest are in each worker's node-local store",
            )
            return {p.name: p.report() for p in self._receiver.parts.values()}
        lost = [p for p in parts if p.missing]
        if lost:
            warn_once(
                ("ray-missing", id(self)),
                f"tracked: {self.name}: records of {len(lost)} Ray worker part(s) are incomplete: "
                + "; ".join(f"{p.name} ({p.info.get('node_ip')}, pid {p.info.get('pid')}): {p.missing}" for p in lost),
            )
        return {p.name: p.report() for p in parts}

    def _end_line(self) -> str:
        """One line for stderr: what the experiment measured, where its local store and W&B runs
        are, and how to upload runs written offline."""
        s = self.final_summary
        cost = cost_text(s.get("total/cost_usd"), s.get("total/unpriced_calls"))
        parts = [
            f"tracked: {self.name} {self.status}: {s.get('total/calls', 0):,} calls, "
            f"{s.get('total/llm_calls', 0):,} LLM calls, {cost}"
        ]
        if self.path is not None:
            parts.append(f"local store {self.path}")
        runs = [s["wandb"]] if isinstance(s.get("wandb"), dict) and s["wandb"].get("id") else []
        runs += self._runs_below  # children's and their children's
        offline = [r for r in runs if r.get("mode") == "offline"]
        if len(runs) == 1 and runs[0].get("url"):
            parts.append(f"W&B {runs[0]['url']}")
        elif runs:
            parts.append(f"W&B {len(runs)} run{'s' if len(runs) > 1 else ''}" + (", offline" if offline else ""))
        failed = (s.get("sinks") or {}).get("wandb", "ok")
        if failed not in ("ok", "off") and self.path is not None:
            # Its W&B run is cut short (or missing): the local store has every row.
            parts.append(f"W&B failed ({failed}): write its run with `tracked sync {self.path.parent}`")
        elif offline:
            where = self.path.parent if self.path is not None else None
            wandb_dir = next((Path(r["dir"]).parent for r in runs if r.get("dir")), None)  # `wandb sync` reads it whole
            parts.append(
                f"upload with `tracked sync {where}`"
                if where
                else f"upload with `wandb sync{f' {wandb_dir}' if wandb_dir else ''}`"
            )
        return "; ".join(parts)

    async def _let_left_generators_close(self) -> None:
        """Before `async with` ends it: async generators its code left (`async for ... break`, a
        `return` inside one) are closed by the event loop soon after, in a task of their own. The
        loop first runs what it has scheduled (a closing that does not wait ends within a few
        turns), and tracked generators that were left are given up to a second to end, so that
        they end as they would have without the experiment ending."""
        for _ in range(3):
            await asyncio.sleep(0)
        deadline = time.perf_counter() + 1.0
        spins = 0
        while any(call._left is not None for call in list(self._running.values())):
            if time.perf_counter() > deadline:
                return  # ended by `_close` as they were when left
            await asyncio.sleep(0 if spins < 20 else 0.005)
            spins += 1

    def _end_left_generators(self) -> None:
        """Async generators its code left and the event loop has not closed yet (a plain `with`
        block ends before the loop runs again) end now, as they were when left."""
        for call in list(self._running.values()):
            if call._left is not None:
                try:
                    call._left.end_now()
                except Exception as exc:
                    internal_error("ending a generator that was left", exc)

    def _cut_short_running(self) -> None:
        """Top-level calls still running as the experiment finishes (work in a thread or task it
        did not wait for): each is a row of what it had done, marked `StillRunning` (so its LLM
        calls that had ended are in the totals, and their records' parent is on record), and a
        warning says that what it does after is not counted."""
        for call in list(self._running.values()):
            figures = call._cut_short()
            if call._row is not True:  # the older tracker's open result: its LLM calls count, no row
                if figures is not None:
                    tokens_in, tokens_out, cost, llm_calls, unpriced, unknown = figures
                    with self._rows.lock:
                        self._rows.totals.add_late("result", llm_calls, tokens_in, tokens_out, cost, unpriced, unknown)
            else:
                tokens_in, tokens_out, cost, llm_calls, unpriced, unknown = figures or (0, 0, None, 0, 0, 0)
                call._set_figures(
                    latency_s=time.perf_counter() - call._t0, tokens_in=tokens_in, tokens_out=tokens_out,
                    cost_usd=cost, cost_source="children" if cost is not None else None, llm_calls=llm_calls,
                    unpriced_calls=unpriced, usage_unknown_calls=unknown,
                )  # fmt: skip
                call.incomplete = True
                call.error_type = "StillRunning"
                call.error_message = "still running when the experiment finished: what it did after is not counted"
                self._on_call_end(call)
            warn_once(  # (also when it had made none: it is named, and its end is not recorded)
                ("cut-short", call.name),
                f"tracked: {call.name} was still running when experiment {self.name!r} finished: its row holds "
                "what it had done (error_type StillRunning), what it does after is not counted; wait for the work "
                "an experiment starts",
            )

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
        with self._rows.lock:
            self._totals_children.merge(child._rows.totals)
            self._totals_children.merge(child._totals_children)
            entry: dict[str, Any] = {"name": child.name, "status": child.status}
            if child.path is not None:
                entry["dir"] = child.path.name
            entry.update(child._sinks.references())
            self.children.append(entry)
            self._runs_below.extend(child._runs_below)
            if entry.get("wandb_id"):
                self._runs_below.append({"id": entry["wandb_id"], "mode": entry.get("wandb_mode")})

    def _after_fork(self) -> None:
        """In a forked child: this experiment belongs to the parent process; nothing is written,
        and no lock a thread of the parent may have held at the fork is taken."""
        self.finished = self.summarised = self.forked_away = True
        self._rows.lock = threading.RLock()
        self._sinks.forget()


def saved_name(path: Path) -> str:
    """The name a saved file is kept under: its path relative to the working directory, else its
    absolute path without the root (`/data/x/notes.json` is `data/x/notes.json`)."""
    full = path.resolve()
    try:
        return full.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return full.relative_to(full.anchor).as_posix()


def _sink_set(name: str) -> SinkSet:
    """A new experiment's sinks. The sink modules (W&B's, the local store's) and the workers' (its
    finish merges theirs) are imported by the first experiment made, not by `import tracked`; on the
    caller's thread, any thread: no fork meanwhile (`_forksafe`). Not at its finish: a W&B thread
    may then hold the lock for long (an init that does not answer)."""
    with loading_unless_imported("tracked.sinks", "tracked._workers"):
        from . import _workers  # noqa: F401
        from .sinks import SinkSet

    # The price data loads on the calls thread, rather than in the first priced call.
    return SinkSet(name, warm=pricing.load_data)


#: How long an experiment's first calls wait, at most, for the price data to load (seconds).
PRICE_DATA_WAIT_S = 30.0


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
    # imported on first use (or by unpickling the handle): no fork meanwhile
    with loading_unless_imported("tracked._workers"):
        from ._workers import ExperimentHandle

    if not isinstance(handle, ExperimentHandle):
        raise TypeError(f"experiment.attach takes the handle from exp.handle(), got {type(handle).__name__}")
    worker = Experiment(handle.name, config=handle.config, tags=handle.tags, wandb=False)
    if getattr(handle, "transport", "files") == "ray":
        from ._ray import import_ray, node_local_dir

        import_ray()
        # This node's own copy, in the driver's layout; its records travel through Ray.
        worker._worker_of = node_local_dir(handle.path)
        worker._collector = handle.collector
    else:
        worker._worker_of = Path(handle.path)
    parent_call = getattr(handle, "parent_call", None)  # (a handle pickled by an older version has none)
    if parent_call is not None:
        worker.parent_call = RemoteParent(parent_call)
    return worker


experiment.attach = attach  # type: ignore[attr-defined]
