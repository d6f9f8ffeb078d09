"""The end-to-end benchmark (`bench.py --e2e`, issue 15 item 1): the figure users feel.

An async eval: `tasks` tasks, each a strategy making two calls (an answer, then a judge) through an
`openai.AsyncOpenAI` client to the loopback server of `tests/loopback.py`, which answers every
request after `delay_s` (about 5 ms) from a process of its own; `in_flight` tasks at a time (a
fixed pool of worker coroutines, all in one `asyncio.run`), and the task's accuracy logged after
each. The same code runs for every subject, each in a fresh process (`worker.py`):

- `e2e-untraced`: no SDK (no decorator, no instrumented client, no experiment; the accuracy kept
  in a list);
- `e2e-tracked`: `@tracked` on the strategy, `tracked.instrument(client)`, one
  `with tracked.experiment(...)` with W&B offline and the local store (`tracked.configure()` as it
  is by default), `exp.log(accuracy=...)` per task;
- `e2e-tracked-local`: the same with `experiment(..., wandb=False)`;
- `e2e-tracked-thread`: the same as `e2e-tracked` after `tracked.configure(wandb_writer="thread")`
  (W&B written on a thread of the user's process); skipped by a build without that option;
- each installed peer in its local configuration, its decorator on the strategy and its OpenAI
  integration on the client (logfire, Langfuse, Weave, MLflow's OpenAI autolog).

Each subject's process measures the eval's wall time (from entering the experiment to having left
it: `finish()` included; for a peer, to the end of its flush), the rows per second, the CPU of the
process and of each of its threads (`/proc/self/task`, sampled), of its child processes (W&B's
`wandb-core`, a writer process), peak RSS of the process and of its children, and, for tracked,
reads back what was written: the rows of the local store and of the W&B run.

`bench.py` runs the subjects in rounds (`run_rounds`): every round runs the untraced eval and then
each subject, the order rotated from round to round, so that the ratio to the untraced time is
taken round by round, against the untraced run of the same round. The server's CPU per request is
read between subjects. Only the standard library is imported at the top.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
URL_ENV = "TRACKED_BENCH_E2E_URL"  # the loopback server's address, for the subjects' processes
PLAN_ENV = "TRACKED_BENCH_E2E_PLAN"  # "tasks,in_flight", for the subjects' processes
MODEL = "gpt-4o-mini"
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class E2EPlan:
    tasks: int
    in_flight: int
    rounds: int  # rounds of tracked's subjects, each against an untraced run of the same round
    peer_tasks: int  # the peers' round: its size (untraced, tracked and each peer, interleaved)
    delay_s: float  # the server's answer delay


# 20,000 tasks take about 110 s untraced here (the client is CPU-bound: 2.5 ms of CPU per task, most
# of it httpcore's connection pool, which scans all 256 connections for every request), so two
# rounds of tracked's subjects fit in about 15 minutes. The peers are slower (Weave about 45 ms of
# CPU per task: 20,000 tasks would take 15 minutes alone), so they run in a round of their own with
# fewer tasks, against untraced and tracked runs of that size.
FULL = E2EPlan(tasks=20_000, in_flight=256, rounds=2, peer_tasks=2_000, delay_s=0.005)
QUICK = E2EPlan(tasks=200, in_flight=64, rounds=1, peer_tasks=200, delay_s=0.005)

# name -> label, in the order of the table.
TRACKED = {
    "e2e-untraced": "untraced (no SDK)",
    "e2e-tracked": "tracked, both sinks (default)",
    "e2e-tracked-local": "tracked, local store only",
    "e2e-tracked-thread": "tracked, W&B on a thread",
}
PEERS = {
    "e2e-logfire": "logfire",
    "e2e-langfuse": "Langfuse",
    "e2e-weave": "W&B Weave",
    "e2e-mlflow": "MLflow autolog",
}
LABELS = {**TRACKED, **PEERS}
SUBJECTS = [*TRACKED, *PEERS]
PACKAGES = {"e2e-logfire": "logfire", "e2e-langfuse": "langfuse", "e2e-weave": "weave", "e2e-mlflow": "mlflow"}


def plan_of(quick: bool) -> E2EPlan:
    return QUICK if quick else FULL


# --- the server --------------------------------------------------------------------------------------------


def serve(delay_s: float) -> None:
    """The loopback server answering after `delay_s`, until stdin closes: its address is the first
    line on stdout."""
    from instrumented import load_loopback

    loopback = load_loopback()

    class Tally(loopback.Ledger):  # type: ignore[name-defined,misc]
        """Counts the responses: a ledger of every one would grow with the run."""

        count = 0

        def add(self, entry: Any) -> None:
            Tally.count += 1

    # 256 clients connect at once: socketserver's listen backlog of 5 would drop their SYNs (and
    # each would wait a second to retry).
    loopback._Server.request_queue_size = 1024
    lb = loopback.Loopback()
    lb._server.ledger = Tally()
    lb._server.handle_error = lambda request, address: None  # a client leaving at the end is no error
    lb.set_delay(delay_s)
    print(lb.url, flush=True)
    try:
        sys.stdin.read()
    finally:
        lb.close()


class Server:
    """The loopback server in a process of its own; `cpu_s()` reads its CPU time so far."""

    def __init__(self, delay_s: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", str(delay_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.close()
            raise RuntimeError(f"the loopback server did not start (exit {self.proc.poll()})")

    def cpu_s(self) -> float | None:
        return _proc_cpu(self.proc.pid)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def loopback_server(delay_s: float) -> Iterator[Server]:
    server = Server(delay_s)
    try:
        yield server
    finally:
        server.close()


# --- /proc ----------------------------------------------------------------------------------------------------


def _stat_fields(path: str) -> list[str] | None:
    """The fields of a /proc .../stat file after the command name (field 3 onwards), or None."""
    try:
        with open(path) as fh:
            raw = fh.read()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _proc_cpu(pid: int, task: int | None = None) -> float | None:
    """CPU seconds (user + system) of a process, or of one of its threads."""
    fields = _stat_fields(f"/proc/{pid}/stat" if task is None else f"/proc/{pid}/task/{task}/stat")
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _hwm_bytes(pid: int) -> int | None:
    """Peak RSS of a live process (VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def descendants(root: int) -> list[int]:
    """The live processes below `root` (children, grandchildren, ...)."""
    parent: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(f"/proc/{entry.name}/stat")
            if fields is not None:
                parent[int(entry.name)] = int(fields[1])
    out, frontier = [], {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier}
        out.extend(sorted(frontier))
    return out


class Sampler:
    """Samples, every `interval_s` on a thread of its own, the CPU of every thread of this process
    (by its Python name) and of every process below it (by pid: name, CPU, peak RSS), keeping the
    last reading of each, so that a thread or process gone before the end keeps its CPU to within
    one interval. The sampler's own thread is left out of the figures."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.pid = os.getpid()
        self.threads: dict[int, tuple[str, float]] = {}  # native id -> (name, CPU s)
        self.children: dict[int, tuple[str, float, int | None]] = {}  # pid -> (comm, CPU s, peak RSS)
        self.base_threads: dict[int, float] = {}
        self.base_children: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> Sampler:
        """The first reading is the baseline: the figures are what was spent after it."""
        self.sample()
        self.base_threads = {tid: cpu for tid, (_, cpu) in self.threads.items()}
        self.base_children = {pid: cpu for pid, (_, cpu, _) in self.children.items()}
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        names = {t.native_id: t.name for t in threading.enumerate()}
        for entry in os.scandir(f"/proc/{self.pid}/task"):
            tid = int(entry.name)
            cpu = _proc_cpu(self.pid, tid)
            if cpu is not None:
                seen = self.threads.get(tid)
                self.threads[tid] = (names.get(tid) or (seen[0] if seen else f"thread {tid}"), cpu)
        for pid in descendants(self.pid):
            cpu = _proc_cpu(pid)
            if cpu is not None:
                old = self.children.get(pid)
                hwm = _hwm_bytes(pid)
                self.children[pid] = (_comm(pid), cpu, hwm if hwm is not None else (old[2] if old else None))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def by_kind(self) -> dict[str, float]:
        """CPU seconds of this process's threads: the main thread, tracked's (`tracked-*`), wandb's
        and the rest (the sampler's own left out)."""
        out = {"main": 0.0, "tracked": 0.0, "other": 0.0}
        main = threading.main_thread().native_id
        for tid, (name, cpu) in self.threads.items():
            if name == "bench-sampler":
                continue
            kind = "main" if tid == main else "tracked" if name.startswith("tracked-") else "other"
            out[kind] += cpu - self.base_threads.get(tid, 0.0)
        return out

    def tracked_threads(self) -> dict[str, float]:
        """CPU seconds of each of tracked's threads, by name."""
        out: dict[str, float] = {}
        for tid, (name, cpu) in self.threads.items():
            if name.startswith("tracked-"):
                out[name] = out.get(name, 0.0) + cpu - self.base_threads.get(tid, 0.0)
        return out


# --- the eval ---------------------------------------------------------------------------------------------------


def messages_of(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Answer in one short sentence."},
        {"role": "user", "content": f"Task {i}: Sally puts the marble in the basket and leaves. Where will she look?"},
    ]


async def solve(client: Any, i: int) -> Any:
    """The strategy: an answer, then a judge of that answer."""
    create = client.chat.completions.create
    answer = await create(model=MODEL, messages=messages_of(i))
    text = answer.choices[0].message.content
    return await create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are a judge. Reply 'correct' or 'wrong'."},
            {"role": "user", "content": f"Question {i}: where will Sally look? Answer: {text}"},
        ],
    )


def score(judged: Any) -> float:
    """The task's accuracy, from the judge's reply (the loopback server's words)."""
    return 1.0 if "answer" in (judged.choices[0].message.content or "") else 0.0


async def run_eval(
    client: Any, strategy: Callable[[Any, int], Any], log: Callable[[float], Any], tasks: int, in_flight: int
) -> None:
    """`tasks` tasks, `in_flight` at a time: a fixed pool of worker coroutines taking the next task."""
    pending = iter(range(tasks))

    async def worker() -> None:
        for i in pending:
            log(score(await strategy(client, i)))

    await asyncio.gather(*(worker() for _ in range(in_flight)))


# --- the subject's process ---------------------------------------------------------------------------------------


def run_point(name: str, quick: bool) -> dict[str, Any]:
    """One subject, in its own process: one eval, measured."""
    url = os.environ.get(URL_ENV)
    if name not in LABELS:
        return {"subject": name, "skipped": "unknown subject"}
    if not url:
        return {"subject": name, "skipped": f"no loopback server ({URL_ENV} unset: run through bench.py --e2e)"}
    plan = plan_of(quick)
    tasks, in_flight = plan.tasks, plan.in_flight
    if os.environ.get(PLAN_ENV):
        tasks, in_flight = (int(x) for x in os.environ[PLAN_ENV].split(","))
    package = "tracked" if name in TRACKED else PACKAGES[name]
    for needed in ("openai", package):
        if importlib.util.find_spec(needed) is None:
            return {"subject": name, "skipped": "not installed"}
    t0 = time.perf_counter()
    import openai

    try:
        import httpx2 as httpx  # openai 3's HTTP client
    except ImportError:
        import httpx  # type: ignore[no-redef]

    # Keep-alive for every connection in flight (httpx keeps 100 by default): without it the server
    # opens a thread for a new connection on most requests, and its CPU, not the client's, is what
    # is measured.
    limits = httpx.Limits(max_connections=in_flight + 16, max_keepalive_connections=in_flight + 16)

    def make(cls: Any = openai.AsyncOpenAI) -> Any:
        return cls(
            base_url=f"{url}/v1",
            api_key="sk-loopback",
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(limits=limits),
        )

    try:
        setup = _setup(name, make, tasks)
    except _Skip as exc:
        return {"subject": name, "skipped": str(exc)}
    setup_s = time.perf_counter() - t0
    client, strategy, log, enter, leave = setup.client, setup.strategy, setup.log, setup.enter, setup.leave
    times: dict[str, float] = {}

    async def main() -> None:
        t_start = time.perf_counter()
        enter()
        t_in = time.perf_counter()
        await run_eval(client, strategy, log, tasks, in_flight)
        t_loop = time.perf_counter()
        leave()
        t_end = time.perf_counter()
        times.update(enter_s=t_in - t_start, loop_s=t_loop - t_in, finish_s=t_end - t_loop, eval_s=t_end - t_start)
        await client.close()

    rss_before = _rss_bytes()
    sampler = Sampler().start()
    self0, kids0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    asyncio.run(main())
    self1, kids1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler.stop()
    # The processes below this one: alive (wandb-core until this process exits), or ended and
    # reaped (RUSAGE_CHILDREN), or ended and reaped by another (their last sample).
    reaped_cpu = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    children: list[dict[str, Any]] = [
        {"pid": pid, "name": comm, "cpu_s": cpu - sampler.base_children.get(pid, 0.0), "peak_rss": hwm}
        for pid, (comm, cpu, hwm) in sampler.children.items()
    ]
    live = set(descendants(os.getpid()))
    gone_unreaped = sum(c["cpu_s"] for c in children if c["pid"] not in live)
    result: dict[str, Any] = {
        "subject": name,
        "tasks": tasks,
        "in_flight": in_flight,
        "setup_s": setup_s,
        **times,
        "rows_per_s": tasks / times["eval_s"],
        "cpu_s": (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime),
        "threads_cpu_s": sampler.by_kind(),
        "tracked_threads_cpu_s": sampler.tracked_threads(),
        "children": children,
        "children_cpu_s": sum(c["cpu_s"] for c in children if c["pid"] in live) + max(reaped_cpu, gone_unreaped),
        "children_peak_rss": sum(c["peak_rss"] or 0 for c in children) or None,  # each one's peak, summed
        "peak_rss": self1.ru_maxrss * 1024,
        "rss_before": rss_before,
        "version": setup.version,
        "config": setup.config,
        "accuracy": setup.accuracy(),
    }
    try:
        result.update(setup.check())
    except Exception as exc:  # a figure is still a figure: say what could not be read
        result["rows"] = f"not read: {type(exc).__name__}: {str(exc)[:200]}"
    return result


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Skip(Exception):
    """The subject cannot run here: why."""


@dataclass
class _Setup:
    client: Any
    strategy: Callable[[Any, int], Any]
    log: Callable[[float], Any]
    enter: Callable[[], Any]
    leave: Callable[[], Any]
    version: str
    config: str
    accuracy: Callable[[], float | None]
    check: Callable[[], dict[str, Any]]


def _setup(name: str, make: Callable[..., Any], tasks: int) -> _Setup:
    """The subject's client, strategy, per-task log, experiment (or flush) and read-back."""
    from harness import dist_version

    scores: list[float] = []

    def mean() -> float | None:
        return sum(scores) / len(scores) if scores else None

    def nothing() -> None:
        return None

    def no_check() -> dict[str, Any]:
        return {}

    if name == "e2e-untraced":
        return _Setup(make(), solve, scores.append, nothing, nothing, dist_version("openai") or "",
                      "openai.AsyncOpenAI, no SDK; accuracy kept in a list", mean, no_check)  # fmt: skip
    if name in TRACKED:
        return _tracked(name, make, tasks)
    if name == "e2e-logfire":
        import logfire
        from peers.logfire import CONFIG, _configure

        counted = _configure()
        client = make()
        logfire.instrument_openai(client)

        def flush() -> None:
            logfire.force_flush(timeout_millis=60_000)

        def spans() -> dict[str, Any]:
            return {"rows": f"spans exported: {counted():,} (expected {3 * tasks:,}: a strategy and its 2 calls)"}

        return _Setup(client, logfire.instrument("solve")(solve), scores.append, nothing, flush,
                      dist_version("logfire") or "", CONFIG + "; logfire.instrument_openai(client); "
                      "@logfire.instrument on the strategy; accuracy kept in a list", mean, spans)  # fmt: skip
    if name == "e2e-langfuse":
        from harness import quiet

        quiet("langfuse", "opentelemetry", "urllib3", "requests")
        from langfuse import get_client, observe
        from langfuse.openai import AsyncOpenAI  # type: ignore[attr-defined]  # patches openai's classes

        lf = get_client()
        return _Setup(make(AsyncOpenAI), observe(name="solve")(solve), scores.append, nothing, lf.flush,
                      dist_version("langfuse") or "", "from langfuse.openai import AsyncOpenAI; @observe() on the "
                      "strategy; dummy keys, LANGFUSE_HOST on a dead port (export fails, retried in the background)",
                      mean, no_check)  # fmt: skip
    if name == "e2e-weave":
        os.environ["WEAVE_IMPLICITLY_PATCH_INTEGRATIONS"] = "true"
        from harness import quiet

        quiet("weave")
        import weave
        from weave.integrations.patch import patch_openai
        from weave.trace import weave_client, weave_init
        from weave.trace.context import weave_client_context

        wc = weave_client.WeaveClient(
            "bench", "bench", weave_init.init_weave_get_server(None), ensure_project_exists=False
        )
        weave_client_context.set_weave_client_global(wc)
        patch_openai()

        def calls_written() -> dict[str, Any]:
            wal = Path.home() / ".weave" / "wal"
            n = 0
            for path in wal.rglob("*.jsonl"):
                with open(path, "rb") as fh:
                    n += sum(1 for line in fh if b'"call_end"' in line)
            return {"rows": f"calls in Weave's write-ahead log: {n:,} (expected {3 * tasks:,})"}

        return _Setup(make(), weave.op(name="solve")(solve), scores.append, nothing, wc.flush,
                      dist_version("weave") or "", "WeaveClient as in peers/weave.py (WAL on, sender off, server on "
                      "a dead port) + weave.integrations.patch_openai(); @weave.op on the strategy", mean,
                      calls_written)  # fmt: skip
    if name == "e2e-mlflow":
        from harness import quiet

        quiet("mlflow", "alembic", "sqlalchemy")
        try:
            import mlflow
            import mlflow.openai
        except ImportError as exc:
            raise _Skip(f"mlflow-skinny {dist_version('mlflow-skinny')} cannot import mlflow.openai "
                        f"({type(exc).__name__}: {str(exc)[:120]}): MLflow's OpenAI autolog needs the full "
                        "mlflow package") from None  # fmt: skip
        uri = os.environ["MLFLOW_TRACKING_URI"]
        mlflow.set_tracking_uri(uri)
        mlflow.config.enable_async_logging(True)  # type: ignore[no-untyped-call]
        mlflow.set_experiment("bench")
        mlflow.openai.autolog()

        def traces() -> dict[str, Any]:
            import sqlite3

            with sqlite3.connect(uri.removeprefix("sqlite:///")) as db:
                n = int(db.execute("select count(*) from trace_info").fetchone()[0])
            return {"rows": f"traces in sqlite: {n:,} (expected {tasks:,})"}

        return _Setup(make(), mlflow.trace(name="solve")(solve), scores.append, nothing,
                      mlflow.flush_trace_async_logging, dist_version("mlflow-skinny") or "",
                      "mlflow.openai.autolog(); @mlflow.trace on the strategy; sqlite tracking store, async trace "
                      "logging", mean, traces)  # fmt: skip
    raise _Skip("unknown subject")


def _tracked(name: str, make: Callable[..., Any], tasks: int) -> _Setup:
    """tracked's subjects: `@tracked` strategy, instrumented client, one experiment around the eval."""
    import inspect

    from experiment import exp_dir

    import tracked

    writer_option = "wandb_writer" in inspect.signature(tracked.configure).parameters
    if name == "e2e-tracked-thread":
        try:
            tracked.configure(wandb_writer="thread")  # type: ignore[call-arg]
        except TypeError:
            raise _Skip("this build has no wandb_writer option") from None
    from tracked import _config

    writer = getattr(_config.config, "wandb_writer", None)
    if name == "e2e-tracked-local":
        where = "local store only (wandb=False)"
    elif writer_option:
        where = f"W&B offline (wandb_writer={writer!r}) + local store"
    else:
        where = "W&B offline (written on a thread of this process: this build has no wandb_writer option) + local store"
    sinks: dict[str, Any] = {"wandb": name != "e2e-tracked-local", "local": True}
    client = make()
    # A loopback address is a local provider (cost 0): priced as OpenAI's, as in `--client`.
    tracked.instrument(client, provider="openai")
    strategy = tracked.tracked(name="solve")(solve)
    holder: dict[str, Any] = {}

    def enter() -> None:
        holder["cm"] = tracked.experiment("e2e", dir=exp_dir(), **sinks)
        holder["exp"] = holder["cm"].__enter__()

    def leave() -> None:
        holder["cm"].__exit__(None, None, None)

    def log(accuracy: float) -> None:
        holder["exp"].log({"accuracy": accuracy})

    def accuracy() -> float | None:
        value = holder["exp"].final_summary.get("accuracy/mean")
        return None if value is None else float(value)

    def check() -> dict[str, Any]:
        exp = holder["exp"]
        summary = exp.final_summary
        local: Any = "-"
        if exp.dir is not None:  # a row and the metrics later joined to it are lines of one step
            from tracked._store import read_rows

            local = len(read_rows(Path(exp.dir) / "results.jsonl"))
        w: Any = "-"
        if sinks["wandb"]:
            from tracked.testing import read_wandb_run

            w = len(read_wandb_run(summary["wandb"]["dir"]).history)
        return {
            "rows_local": local,
            "rows_wandb": w,
            "rows": f"rows: local {local}, W&B {w} (tasks {tasks:,}); summary total/calls "
            f"{summary.get('total/calls')}, total/llm_calls {summary.get('total/llm_calls')}, accuracy/mean "
            f"{summary.get('accuracy/mean')}; sinks {summary.get('sinks')}",
        }

    return _Setup(client, strategy, log, enter, leave, tracked.__version__,
                  f"@tracked strategy, tracked.instrument(client, provider='openai'), exp.log(accuracy=...) per task, "
                  f"one `with tracked.experiment(...)`: {where}", accuracy, check)  # fmt: skip


# --- the parent: rounds ----------------------------------------------------------------------------------------


def run_rounds(names: list[str], quick: bool, timeout_s: float) -> dict[str, Any]:
    """tracked's subjects in `names` once per round, each round with an untraced run, the order
    rotated per round; then the peers' round (untraced, tracked and each peer, at `peer_tasks`), or,
    when that is the same size, the peers in the first round. The server's CPU is read around each
    subject. Returns {"plan", "runs": {name: [result per round]}, "peer_runs": {...}}."""
    plan = plan_of(quick)
    tracked_names = [n for n in names if n in TRACKED and n != "e2e-untraced"]
    peer_names = [n for n in names if n in PEERS]
    unknown = [n for n in names if n not in LABELS]
    together = plan.peer_tasks == plan.tasks
    out: dict[str, Any] = {"plan": plan, "runs": {}, "peer_runs": {}, "unknown": unknown}
    with loopback_server(plan.delay_s) as server:
        os.environ[URL_ENV] = server.url
        try:
            for r in range(plan.rounds):
                todo = ["e2e-untraced", *tracked_names, *(peer_names if together and r == 0 else [])]
                _round(server, todo, r, plan.tasks, plan.in_flight, quick, timeout_s, out["runs"])
            if peer_names and not together:
                todo = ["e2e-untraced", *(["e2e-tracked"] if "e2e-tracked" in names else []), *peer_names]
                _round(server, todo, 0, plan.peer_tasks, plan.in_flight, quick, timeout_s, out["peer_runs"])
        finally:
            del os.environ[URL_ENV]
            os.environ.pop(PLAN_ENV, None)
    return out


def _round(
    server: Server,
    names: list[str],
    r: int,
    tasks: int,
    in_flight: int,
    quick: bool,
    timeout_s: float,
    runs: dict[str, list[dict[str, Any]]],
) -> None:
    """One round: each subject of `names` in a fresh process, the order rotated by `r`."""
    from harness import rotated
    from worker import run_subject

    os.environ[PLAN_ENV] = f"{tasks},{in_flight}"
    for name in rotated(names, r):
        past = runs.setdefault(name, [])
        if past and "skipped" in past[-1]:
            continue
        now = time.strftime("%H:%M:%S")
        print(f"  [{now}] {tasks:,} tasks, round {r + 1}: {name} ...", file=sys.stderr, flush=True)
        cpu0 = server.cpu_s()
        result = run_subject(name, quick, timeout_s)
        cpu1 = server.cpu_s()
        if cpu0 is not None and cpu1 is not None and "eval_s" in result:
            result["server_cpu_s"] = cpu1 - cpu0
        result["round"] = r
        past.append(result)
        state = f"skipped: {result['skipped']}" if "skipped" in result else f"eval {result.get('eval_s', 0):.1f} s"
        print(f"  [{time.strftime('%H:%M:%S')}] {name}: {state}", file=sys.stderr, flush=True)


def save(results: dict[str, Any], path: str) -> None:
    """The figures of `run_rounds` as JSON (`load` reads them back, for `report.print_e2e`)."""
    import dataclasses
    import json

    Path(path).write_text(json.dumps({**results, "plan": dataclasses.asdict(results["plan"])}, default=repr))


def load(path: str) -> dict[str, Any]:
    import json

    results: dict[str, Any] = json.loads(Path(path).read_text())
    results["plan"] = E2EPlan(**results["plan"])
    return results


def ratios(runs: dict[str, list[dict[str, Any]]], name: str) -> list[float]:
    """Subject `name`'s eval time over the untraced eval time of the same round, round by round."""
    base = {r["round"]: r["eval_s"] for r in runs.get("e2e-untraced", []) if "eval_s" in r}
    return [r["eval_s"] / base[r["round"]] for r in runs.get(name, []) if "eval_s" in r and r["round"] in base]


def summary_of(runs: dict[str, list[dict[str, Any]]], name: str) -> dict[str, Any] | None:
    """The median over rounds of each figure of one subject, with its ratios round by round."""
    ok = [r for r in runs.get(name, []) if "eval_s" in r]
    if not ok:
        return None

    def med(key: str) -> float | None:
        values = [r[key] for r in ok if isinstance(r.get(key), (int, float))]
        return statistics.median(values) if values else None

    rs = ratios(runs, name)
    tasks = ok[0]["tasks"]
    threads = [r["threads_cpu_s"] for r in ok]
    per_thread: dict[str, list[float]] = {}
    for r in ok:
        for t, cpu in r.get("tracked_threads_cpu_s", {}).items():
            per_thread.setdefault(t, []).append(cpu)
    return {
        "n": len(ok),
        "tasks": tasks,
        "in_flight": ok[0]["in_flight"],
        "eval_s": med("eval_s"),
        "evals": [r["eval_s"] for r in ok],
        "ratio": statistics.median(rs) if rs else None,
        "ratios": rs,
        "rows_per_s": med("rows_per_s"),
        "finish_s": med("finish_s"),
        "enter_s": med("enter_s"),
        "peak_rss": med("peak_rss"),
        "rss_before": med("rss_before"),
        "children_peak_rss": med("children_peak_rss"),
        "cpu_per_row": (med("cpu_s") or 0) / tasks,
        "children_cpu_per_row": (med("children_cpu_s") or 0) / tasks,
        "tracked_cpu_per_row": statistics.median(t["tracked"] for t in threads) / tasks,
        "other_cpu_per_row": statistics.median(t["other"] for t in threads) / tasks,
        "main_cpu_per_row": statistics.median(t["main"] for t in threads) / tasks,
        "tracked_threads_per_row": {t: statistics.median(v) / tasks for t, v in per_thread.items()},
        "server_cpu_per_req": (med("server_cpu_s") or 0) / (2 * tasks),
        "last": ok[-1],
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        sys.path.insert(0, str(HERE))
        serve(float(sys.argv[2]) if len(sys.argv) > 2 else 0.005)
    else:
        raise SystemExit("usage: e2e.py --serve [DELAY_S] (the loopback server of bench.py --e2e)")
