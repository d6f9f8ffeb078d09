"""The W&B sink: one `wandb` run per experiment, on a thread of its own (a background sink).

Everything W&B-specific is here: the mode (online, offline, disabled), the `wandb.init` arguments,
adopting a run that `wandb agent` started for a sweep, the calls table. `wandb` is imported only
here, when a run is created. Runs are made with `reinit="create_new"` and the run object is held:
the global `wandb.run` and `wandb.log` are never used. `tracked sync` replays stored experiments
through this same sink.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

from .._config import config, warn_once
from .._forksafe import loading, loading_unless_imported
from .._totals import metric_value
from ._tables import CALL_COLUMNS, TASK_COLUMNS, Tables
from .protocol import RunEnd, RunInfo

__all__ = [
    "CALL_COLUMNS", "TASK_COLUMNS", "WandbSink", "active_sweep_run", "has_credentials", "resolve_mode", "wandb_system",
]  # fmt: skip

#: How long a new experiment's run waits to start for a child experiment to open (which makes it a
#: parent of grouped runs, with no run of its own unless it logs rows): its Created is this late at most.
START_GRACE_S = 0.25

#: The characters of a W&B run id (as `wandb.util.generate_id` makes them).
_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"

#: Summary keys about the run rather than its results, kept under `tracked/` in W&B's summary
#: (W&B shows its own State, Name, Created and Runtime): they stay as they are in `summary.json`.
BOOKKEEPING = frozenset({"status", "name", "started_at", "finished_at", "sinks", "wandb", "children", "workers"})


def _leaves(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The keys of a logged row as `define_metric` names them: nested dicts as dotted leaves, a dot
    inside a key escaped (`acc.top1` is `acc\\.top1`, else W&B reads it as a nested path)."""
    out: list[str] = []
    for key, value in data.items():
        name = prefix + str(key).replace(".", "\\.")
        if isinstance(value, Mapping):
            out.extend(_leaves(value, f"{name}."))
        else:
            out.append(name)
    return out


def wandb_system(system: Mapping[str, Any]) -> dict[str, Any]:
    """What W&B's config keeps of the system information: tracked's and the price data's versions,
    the git commit and dirty flag, and the parent experiments as one path. W&B records the host,
    Python and platform itself; those, the pid and argv stay in the local store's `config.json`
    (in W&B's run comparer they would make every run differ)."""
    versions = system.get("versions") or {}
    out: dict[str, Any] = {"version": versions.get("tracked"), "price_data": versions.get("genai-prices")}
    git = system.get("git") or {}
    if git:
        out["git_commit"] = git.get("commit")
        out["git_dirty"] = git.get("dirty")
    parents = system.get("parents")
    if parents:
        out["parents"] = "/".join(parents)
    return {k: v for k, v in out.items() if v is not None}


def has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    # imported here, not by `import tracked`; on any thread: no fork meanwhile
    with loading_unless_imported("netrc"):
        import netrc

    try:
        auth = netrc.netrc(os.environ.get("NETRC") or None).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])


def resolve_mode(requested: bool | None) -> str:
    """ "disabled", "offline" or "online": `wandb=False` or WANDB_MODE=disabled turn W&B off;
    WANDB_MODE wins otherwise; else online when credentials exist, else offline (the line a
    top-level experiment prints when it ends says how to upload). Never prompts."""
    if requested is False:
        return "disabled"
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in ("disabled", "offline", "online"):
        return env
    if env == "dryrun":
        return "offline"
    if env == "run":
        return "online"
    if has_credentials():
        return "online"
    return "offline"


def active_sweep_run() -> Any:
    """The run a `wandb agent` (or the user) already started for a sweep, or None. Never imports wandb."""
    wandb = sys.modules.get("wandb")
    run = getattr(wandb, "run", None) if wandb is not None else None
    if run is not None and getattr(run, "sweep_id", None):
        return run
    return None


class StartGate:
    """W&B's start policy, shared by the sink in this process and the writer's stand-in: a new
    experiment's run waits at most `START_GRACE_S` for a first row or its end (`nudge`), and a child
    experiment opened before any row (`child_opened`) leaves it to the end (a parent of grouped
    runs gets no run of its own)."""

    def __init__(self) -> None:
        self._woken = threading.Event()  # a row or the end came: no more waiting to start the run
        self._children_first = False  # a child experiment opened before any row: maybe no run

    def nudge(self) -> None:
        """A first row, or the end (any thread): a run waiting to start does not wait longer."""
        self._woken.set()

    def child_opened(self) -> None:
        """A child experiment opened (any thread): before any row, this run is left to the end."""
        if not self._woken.is_set():
            self._children_first = True
            self._woken.set()


class WandbSink(StartGate):
    """A W&B run for one experiment. Every method but `create` and `open` runs on the sink's own
    thread, none on the caller's path. The run is created with the first row (or at the end)."""

    name: ClassVar[str] = "wandb"
    durable: ClassVar[bool] = False
    label: ClassVar[str] = "W&B"

    def __init__(
        self,
        mode: str,
        *,
        adopted: Any = None,
        init: Mapping[str, Any] | None = None,
        fallback: bool = True,
        init_timeout: bool = True,
    ) -> None:
        """A sink writing in `mode` ("online" or "offline"); `adopted` is a run someone else
        started (a sweep's), `init` extra `wandb.init` arguments (`id`, `resume`). With
        `fallback`, an online init that fails writes offline instead (a live experiment); without
        it, it raises (`tracked sync`, which must not call a run uploaded that was not).
        `init_timeout` applies `configure(wandb_init_timeout_s=...)`, else W&B's own."""
        self.mode = mode
        self._fallback = fallback
        self._init_timeout = init_timeout
        self._extra = dict(init or {})
        self._init_kwargs: dict[str, Any] | None = None
        self.run: Any = adopted
        self.adopted = adopted is not None
        self._tables = Tables(config.table_max_rows)
        self._flushed = time.monotonic()  # when the tables were last sent
        self._files: dict[str, Path] = {}  # saved files: name in the artifact -> the copy to add
        self._starting = threading.Lock()
        super().__init__()
        self._eager = False  # a child experiment's run starts with it (a top-level one's at its first row)
        self._defined: set[str] = set()  # history keys given a metric definition
        self._names: list[str] = []  # the top-level call names seen, in order
        self._running_cost = 0.0
        self._running: dict[str, list[float]] = {}  # metric -> [sum, n]

    @classmethod
    def create(cls, run: RunInfo) -> WandbSink | None:
        """The sink for `run`, or None when W&B is off (`wandb=False`, `WANDB_MODE=disabled`, a
        worker process)."""
        if run.worker_of is not None:
            return None
        mode = resolve_mode(run.requested.get("wandb"))
        if mode == "disabled":
            return None
        adopted = active_sweep_run()
        sink = cls(mode, adopted=adopted)
        here = run.in_process or adopted is not None or bool(os.environ.get("WANDB_SWEEP_ID"))
        if here or config.wandb_writer != "process":
            return sink  # the run lives in this process (see `_writer`)
        from ._writer import RemoteWandbSink, writer

        try:
            writer()
        except Exception as exc:
            warn_once(
                ("wandb-writer-start", type(exc)),
                f"tracked: the W&B writer process could not start ({type(exc).__name__}: {exc}); "
                "W&B runs are written by a thread of this process instead",
            )
            return sink
        return RemoteWandbSink(sink)  # type: ignore[return-value]

    def state(self) -> dict[str, Any]:
        """What the writer process needs to make this sink's run (after `open`)."""
        return {
            "mode": self.mode, "init": self._extra, "init_kwargs": self._init_kwargs, "fallback": self._fallback,
            "init_timeout": self._init_timeout,
        }  # fmt: skip

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> WandbSink:
        """The sink `state()` describes, in the writer process."""
        sink = cls(state["mode"], init=state["init"], fallback=state["fallback"], init_timeout=state["init_timeout"])
        sink._init_kwargs = state["init_kwargs"]
        return sink

    def open(self, run: RunInfo) -> Mapping[str, Any] | None:
        # A child experiment is (almost always) a leaf: its run starts with it. A top-level one may
        # be a parent that only opens children after some set-up, and such a parent gets no run of
        # its own: its run starts with its first row.
        self._eager = run.parent_dir is not None or bool(run.system and run.system.get("parents"))
        config = dict(run.config)
        if run.system is not None:
            config["_tracked"] = wandb_system(run.system)
        # W&B's environment is read now, for each experiment, and passed explicitly: wandb keeps
        # the settings it read first for the life of the process.
        kwargs: dict[str, Any] = {
            "project": run.project or os.environ.get("WANDB_PROJECT") or None,
            "entity": run.entity or os.environ.get("WANDB_ENTITY") or None,
            "name": run.name,
            "group": run.group,
            "job_type": run.job_type,
            "tags": list(run.tags),
            "notes": run.notes,
            "config": config,
        }
        # W&B's directory: WANDB_DIR when set (W&B's own setting), else the experiment's `dir=`,
        # else wandb's default (the working directory).
        # Absolute, as the working directory is now: wandb keeps the one it read first, and a run
        # written by another process (W&B's writer) or later must land where this one would.
        if os.environ.get("WANDB_DIR"):
            kwargs["dir"] = os.path.abspath(os.environ["WANDB_DIR"])
        elif run.dir is not None:
            kwargs["dir"] = os.path.abspath(run.dir)
        else:
            kwargs["dir"] = os.getcwd()
        self._init_kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if not self.adopted and not os.environ.get("WANDB_SWEEP_ID"):
            # The run's id is chosen now and kept in the local store's config.json, so that
            # `tracked sync` finds this run again if the process is killed (see `_sync`).
            run_id = self._extra.get("id") or os.environ.get("WANDB_RUN_ID")
            if not run_id:
                # imported here, not by `import tracked`: no fork meanwhile
                with loading_unless_imported("secrets"):
                    import secrets

                run_id = self._extra["id"] = "".join(secrets.choice(_ID_CHARS) for _ in range(8))
            run.refs["wandb"] = {"id": run_id, "root": kwargs.get("dir") or os.getcwd()}
        if self.adopted or os.environ.get("WANDB_SWEEP_ID"):
            # Under a sweep the parameters come from W&B: the run is needed now, so that the
            # experiment's config has them.
            started = self.start()
            return {k: v for k, v in dict(started.config).items() if not k.startswith("_")}
        return None

    # --- the run ----------------------------------------------------------------------------

    def start(self) -> Any:
        """The run, created now if it was not (importing `wandb` the first time), with no fork
        meanwhile (`_forksafe`)."""
        with self._starting:  # the sink's thread and the older tracker's (make_current) may both ask
            if self.run is not None and not self.adopted:
                return self.run
            with loading():
                return self._start()

    def _start(self) -> Any:
        if self.run is not None:
            if self.adopted and self._init_kwargs is not None:
                self._adopt(self.run)
            return self.run
        import atexit

        import wandb

        from .. import _lifecycle

        # wandb's own exit hook, registered on import, must run after ours finishes open runs.
        atexit.unregister(_lifecycle.finish_open_experiments)
        atexit.register(_lifecycle.finish_open_experiments)
        _no_weave_suggestion(wandb)
        kwargs = {**(self._init_kwargs or {}), **self._extra}
        if "dir" in kwargs:
            Path(kwargs["dir"]).mkdir(parents=True, exist_ok=True)
        timeout = {"init_timeout": config.wandb_init_timeout_s} if self._init_timeout else {}
        settings = wandb.Settings(console="off", silent=True, **timeout)  # type: ignore[arg-type]
        try:
            self.run = wandb.init(mode=self.mode, reinit="create_new", settings=settings, **kwargs)  # type: ignore[arg-type]
        except Exception as exc:
            if self.mode != "online" or not self._fallback:
                raise
            warn_once(
                ("wandb-online-failed", type(exc)),
                f"tracked: W&B online init failed ({type(exc).__name__}: {exc}); writing offline instead, "
                "upload later with `tracked sync`",
            )
            self.mode = "offline"
            settings = wandb.Settings(console="off", silent=True)
            self.run = wandb.init(mode="offline", reinit="create_new", settings=settings, **kwargs)
        return self.run

    def _adopt(self, run: Any) -> None:
        """A run started by `wandb agent` (or the user): it keeps its name and the sweep's
        parameters, and gets the experiment's other config keys, tags and notes."""
        kwargs, self._init_kwargs = self._init_kwargs or {}, None
        ours = kwargs.get("config") or {}
        run.config.update({k: v for k, v in ours.items() if k not in run.config}, allow_val_change=False)
        tags = [*run.tags, *[t for t in kwargs.get("tags") or () if t not in run.tags]]
        run.tags = tuple(tags)
        if kwargs.get("notes") and not run.notes:
            run.notes = kwargs["notes"]

    def start_soon(self) -> None:
        """On the sink's thread, as the experiment starts: start the run now, so that W&B's Created
        and Runtime are the experiment's. The only wait is `START_GRACE_S` for a first child
        experiment: a parent that opens a child before any row of its own gets no run (its
        children have theirs); a row or the end cuts the wait short."""
        if self.run is not None or not self._eager:
            return
        began = time.monotonic()
        with loading():
            import wandb  # noqa: F401  (the first import takes a while: during the wait, not after it)

        self._woken.wait(max(0.0, START_GRACE_S - (time.monotonic() - began)))
        if not self._children_first:
            self.start()

    def work_began(self) -> None:
        """On the sink's thread: the experiment's first top-level call began, so its run starts now
        (W&B's Created is when the work began, not when its first row came)."""
        self.start()

    @property
    def started(self) -> bool:
        return self.run is not None

    def info(self) -> dict[str, Any]:
        """The run's mode, id, project and directory (and URL online), for the summary."""
        run = self.run
        if run is None:
            return {"mode": self.mode}
        out: dict[str, Any] = {"mode": self.mode, "id": run.id, "project": run.project}
        try:
            out["dir"] = str(Path(run.dir).parent)
            if self.mode == "online":
                out["url"] = run.url
        except Exception:
            pass
        return out

    # --- what the experiment sends ----------------------------------------------------------

    def write_row(self, step: int, row: Mapping[str, Any]) -> None:
        run = self.start()
        if "call" in row or "latency_s" in row:  # a top-level call (or an older tracker's result): a task
            self._tables.add_task(step, row)
        data = self._history(row)
        if not self._defined:
            # No automatic summary for any key (the runs table would show the last row's value
            # as the experiment's): a glob for all, which also covers names W&B cannot define one
            # by one (with a `*`), and each key by name below. The summary gets explicit aggregates.
            self._define(run, "*", hidden=False)
        for key in _leaves(data):
            if key not in self._defined and "*" not in key:
                self._define(run, key, hidden=_hidden(key, len(self._names)))
        run.log(data)
        self._send_tables()

    def _send_tables(self) -> None:
        """Every `table_flush_s` seconds while rows come: the tables' new rows, to the run's summary."""
        every = config.table_flush_s
        if not every or time.monotonic() - self._flushed < every or self.run is None:
            return
        try:
            tables = self._tables.send(_make_table, final=False)
            if tables:
                self._flushed = time.monotonic()
                self.run.summary.update(tables)
        except Exception as exc:  # the run keeps its rows; the tables are written at the end
            warn_once(
                ("wandb-live-table", type(exc)),
                f"tracked: the W&B tables could not be updated while the run goes on ({type(exc).__name__}: {exc}); "
                "they are written at its end",
            )
            self._flushed = float("inf")

    def _define(self, run: Any, key: str, *, hidden: bool, overwrite: bool = False) -> None:
        self._defined.add(key)
        try:
            run.define_metric(key, summary="none", hidden=hidden or None, overwrite=overwrite or None)
        except Exception as exc:  # a name W&B cannot define: that key alone keeps W&B's summary
            warn_once(("define-metric", type(exc)), f"tracked: W&B could not define the metric {key!r} ({exc})")

    def _history(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A row as W&B's history holds it: its numbers (text goes to the tasks table), with the
        running cost (`running/cost_usd`), each call name's figures under its own keys
        (`call/<name>/<figure>`, so that a strategy and its judge can be charted apart; hidden in the
        app while there is only one name) and running means of the user's metrics
        (`running/<m>/mean`)."""
        # Numbers only: text (a call's name, its output, a model, an error type) is in the tasks table.
        data = _numbers({k: v for k, v in row.items() if k != "call_id"})
        cost = row.get("cost_usd")
        if isinstance(cost, (int, float)):
            self._running_cost += cost
        data["running/cost_usd"] = self._running_cost
        metrics = {k: m for k, v in row.items() if (m := metric_value(k, v)) is not None}
        for key, value in metrics.items():
            if math.isfinite(value):
                slot = self._running.setdefault(key, [0.0, 0])
                slot[0] += value
                slot[1] += 1
                data[f"running/{key}/mean"] = slot[0] / slot[1]
        name = row.get("call")
        if isinstance(name, str):
            if name not in self._names:
                self._names.append(name)
                if len(self._names) == 2:
                    # The per-name series hidden so far are shown from now on, and the flat figures,
                    # which would alternate between a strategy's rows and its judge's on one line,
                    # are hidden (they stay in the history, and in the tasks table).
                    for key in [k for k in self._defined if k.startswith("call/") or k in FLAT_FIGURES]:
                        self._define(self.run, key, hidden=_hidden(key, 2), overwrite=True)
            for key in ("latency_s", "tokens_in", "tokens_out", "cost_usd", "llm_calls", *metrics):
                if key in data:  # (`<name>/...` in the summary is that name's aggregate)
                    data[f"call/{name}/{key}"] = data[key]
        return data

    def join(self, step: int, metrics: Mapping[str, Any]) -> None:
        pass  # a background sink gets whole rows

    def write_calls(self, records: Sequence[Mapping[str, Any]]) -> None:
        for rec in records:
            self._tables.add_call(rec)
        self._send_tables()

    def set_notes(self, notes: str | None) -> None:
        if self.run is not None:
            self.run.notes = notes or ""
        elif self._init_kwargs is not None:  # not created yet: it will be created with these
            self._init_kwargs["notes"] = notes

    def set_tags(self, tags: Sequence[str]) -> None:
        if self.run is not None:
            self.run.tags = tuple(tags)
        elif self._init_kwargs is not None:
            self._init_kwargs["tags"] = list(tags)

    def save(self, path: Path, name: str) -> None:
        """Kept for the run's files artifact, logged at the end: under its relative path, taken
        literally (no glob), apart from W&B's own run files. `path` is a copy that stays as it is."""
        self.start()
        self._files[name] = path

    def flush(self) -> None:
        pass  # its queue is worked through before finish

    def finish(self, end: RunEnd) -> Mapping[str, Any]:
        """Write the summary and the calls table, then end the run. A run with no rows of its own
        whose experiment only opened children is not created."""
        if self.run is None and end.only_children:
            return {"wandb": self.info()}

        run = self.start()
        try:
            run.summary.update(
                {
                    (f"tracked/{k}" if k in BOOKKEEPING or k.startswith("sinks/") else k): v
                    for k, v in end.summary.items()
                    if v is not None
                }
            )
            try:
                self._tables.finish_rows()
                run.summary.update(self._tables.send(_make_table, final=True))
            except Exception as exc:  # the run, its rows and summary are kept without the tables
                warn_once(
                    ("wandb-table", type(exc)),
                    f"tracked: the W&B tables could not be written ({type(exc).__name__}: {exc}); "
                    "the run keeps its rows and summary",
                )
            if self._files:
                self._log_files(run)
            for table in (self._tables.calls, self._tables.tasks):
                if table.left_out:  # the rest are in the local store's calls.jsonl and results.jsonl
                    run.summary[f"tracked/{table.key}_table_left_out"] = table.left_out
        finally:
            # The run is ended even when the summary could not be written.
            if not self.adopted:
                run.finish(exit_code=end.exit_code)
        for table in self._tables.made:
            _forget_table(table)
        extra: dict[str, Any] = {"wandb": self.info()}
        if self._tables.calls.left_out:
            extra["calls_table_truncated"] = self._tables.calls.left_out
        if self._tables.tasks.left_out:
            extra["tasks_table_truncated"] = self._tables.tasks.left_out
        return extra

    def _log_files(self, run: Any) -> None:
        """The saved files as one artifact of the run (`run-<id>-files`, type `run-files`)."""
        import wandb

        try:
            artifact = wandb.Artifact(f"run-{run.id}-files", type="run-files")
            for name, path in self._files.items():
                artifact.add_file(str(path), name=name, policy="immutable")
            run.log_artifact(artifact)
        except Exception as exc:
            warn_once(
                ("wandb-files", type(exc)),
                f"tracked: the saved files could not be added to the W&B run ({type(exc).__name__}: {exc}); "
                "the local store keeps them",
            )

    def close(self) -> None:
        """After the end: the tables are not kept in memory."""
        self._tables, self._files = Tables(0), {}

    def references(self) -> Mapping[str, Any]:
        if self.run is None:
            return {}
        return {"wandb_id": self.run.id, "wandb_mode": self.mode}


#: A row's own figures: with two or more top-level call names, hidden in the app in favour of each
#: name's `call/<name>/<figure>`.
FLAT_FIGURES = frozenset({
    "latency_s", "ttft_s", "tokens_in", "tokens_out", "cost_usd", "llm_calls", "error", "unpriced_calls",
    "usage_unknown_calls",
})  # fmt: skip


def _hidden(key: str, names: int) -> bool:
    """Whether a history key is hidden in the app when the run has had `names` top-level call names."""
    if key.startswith("call/"):
        return names < 2
    return key in FLAT_FIGURES and names >= 2


def _numbers(data: Mapping[str, Any]) -> dict[str, Any]:
    """What of a row goes to W&B's history: numbers and booleans, nested dicts of them; text and
    lists (in the tasks table) and None left out."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            inner = _numbers(value)
            if inner:
                out[key] = inner
        elif isinstance(value, (int, float)):  # bool is an int
            out[key] = value
    return out


def _no_weave_suggestion(wandb: Any) -> None:
    """wandb prints an advertisement for Weave ("Detected [openai] in use. Use W&B Weave ...") at
    its first run when a provider library is imported: not for tracked's runs. Weave itself, when
    the code imported it, is still initialised for the run as wandb does. Best effort: wandb's
    internals may change, and then the lines are printed again."""
    try:
        from wandb.integration.weave import weave

        if hasattr(weave, "_maybe_suggest_weave_installation"):
            weave._maybe_suggest_weave_installation = lambda: None
    except Exception:
        pass


def _make_table(columns: list[str], rows: list[list[Any]], incremental: bool) -> Any:
    import wandb

    return wandb.Table(
        columns=list[str | int](columns),
        data=rows,
        allow_mixed_types=True,
        log_mode="INCREMENTAL" if incremental else "IMMUTABLE",
    )


def _forget_table(table: Any) -> None:
    """Let the calls table go once its run has ended, so memory is back where it was.

    wandb keeps the last 100 artifacts it made in a process-wide cache, and the summary table's
    artifact holds the table with every row, and a temporary directory. Its file was copied to
    wandb's staging area when it was added, so the directory is not needed any more. This reaches
    into wandb's internals, so it is best effort: if they change, the memory is only kept longer.
    """
    try:
        from wandb.sdk.artifacts import artifact_instance_cache as cache

        for registry in (cache.artifact_instance_cache_by_client_id, cache.artifact_instance_cache):
            for key, artifact in list(registry.items()):
                added = getattr(artifact, "_added_objs", None) or {}
                if not any(obj is table for obj, _entry in added.values()):
                    continue
                registry.pop(key, None)
                tmp = getattr(artifact, "_tmp_dir", None)
                if tmp is not None:
                    tmp.cleanup()
                    artifact._tmp_dir = None
                added.clear()
    except Exception as exc:  # pragma: no cover - depends on wandb's internals
        warn_once(("forget-table", type(exc)), f"tracked: could not release W&B's copy of the calls table ({exc!r})")
