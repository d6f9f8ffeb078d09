#!/usr/bin/env python
"""The worker behind `bench.py --peers`, `--scaling` and `--import-time`: one subject per process.

    python benchmarks/compare.py --subject NAME --out FILE [--quick]

Run it through `bench.py`, which starts one process per subject with a sandboxed environment (see
`subject_env`) and prints the tables. A subject is a hand-written minimum, tracked, or one peer
(logfire, Langfuse, Weave, MLflow tracing, Opik) in its local configuration, or one point of
tracked's scaling. This module imports nothing but the standard library at the top, so a subject's
process holds only that subject's SDK: its import time and memory are its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import gc
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter, perf_counter_ns
from typing import Any

HERE = Path(__file__).resolve().parent
LOOPBACK_DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection is refused at once

# --- subjects ------------------------------------------------------------------------------------

# The peers' table: every workload, for the hand-written minimum, tracked and each peer.
PEERS = ["minimum", "tracked", "logfire", "langfuse", "weave", "mlflow", "opik"]
# The disabled table: one plain call, for a wrapt passthrough and each SDK switched off.
DISABLED = ["wrapt", "tracked-disabled", "langfuse-disabled", "weave-disabled", "mlflow-disabled", "opik-disabled"]

WORKLOADS = [
    ("single", "single call, trivial function"),
    ("openai", "call returning an OpenAI response (usage + pricing)"),
    ("nested", "outer call + 3 nested OpenAI calls, per call (/4)"),
    ("async", "async call"),
    ("gen", "generator of 10 items (per generator)"),
    ("experiment", "top-level OpenAI call in an experiment, W&B offline + local store (mean, caller-visible)"),
]

# The scaling subjects: tracked only.
SCALE_CALLS = [1_000, 10_000, 100_000, 1_000_000]
SCALE_DEPTHS = [1, 10, 50]
SCALE_THREADS = [1, 4, 16]


def scaling_subjects(quick: bool) -> list[str]:
    if quick:  # one point per dimension: the code paths, not the figures
        return ["scale-calls-1000", "scale-depth-10", "scale-threads-4"]
    return (
        [f"scale-calls-{n}" for n in SCALE_CALLS]
        + [f"scale-depth-{d}" for d in SCALE_DEPTHS]
        + [f"scale-threads-{t}" for t in SCALE_THREADS]
    )


# --- the sandbox every subject runs in -------------------------------------------------------------


def subject_env(tmp: Path) -> dict[str, str]:
    """The environment of a subject's process: every SDK local, offline or pointed at a dead
    loopback port, telemetry off, HOME and caches in `tmp`; and proxies on the dead port, so that
    a request to any host but 127.0.0.1 fails at once instead of leaving the machine."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "LANGFUSE_", "LOGFIRE_", "OPIK_", "WEAVE_", "WF_", "MLFLOW_", "WANDB_"))
        and k not in ("TRACKED_DISABLED", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")
    }
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "TMPDIR": str(tmp),
            # Anything that would leave the machine goes to a dead local proxy instead.
            "HTTP_PROXY": LOOPBACK_DEAD,
            "HTTPS_PROXY": LOOPBACK_DEAD,
            "ALL_PROXY": LOOPBACK_DEAD,
            "http_proxy": LOOPBACK_DEAD,
            "https_proxy": LOOPBACK_DEAD,
            "all_proxy": LOOPBACK_DEAD,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "DO_NOT_TRACK": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            # W&B (tracked's sink; also what Weave would log in to): offline, silent, in tmp.
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "WANDB_DIR": str(tmp),
            "WANDB_CONFIG_DIR": str(tmp / "wandb-config"),
            "WANDB_CACHE_DIR": str(tmp / "wandb-cache"),
            "WANDB_DATA_DIR": str(tmp / "wandb-data"),
            "WANDB_BASE_URL": LOOPBACK_DEAD,
            "WANDB_ERROR_REPORTING": "false",
            # logfire: nothing sent, nothing printed.
            "LOGFIRE_SEND_TO_LOGFIRE": "false",
            "LOGFIRE_CONSOLE": "false",
            # Langfuse: dummy keys, its OTLP exporter pointed at the dead port.
            "LANGFUSE_PUBLIC_KEY": "pk-lf-bench",
            "LANGFUSE_SECRET_KEY": "sk-lf-bench",
            "LANGFUSE_HOST": LOOPBACK_DEAD,
            "LANGFUSE_BASE_URL": LOOPBACK_DEAD,
            # Weave: its trace server on the dead port, every call written to its local write-ahead
            # log (under HOME) and never sent; no integration patching, no links printed.
            "WF_TRACE_SERVER_URL": LOOPBACK_DEAD,
            "WEAVE_ENABLE_WAL": "true",
            "WEAVE_DISABLE_WAL_SENDER": "true",
            "WEAVE_PRINT_CALL_LINK": "false",
            "WEAVE_IMPLICITLY_PATCH_INTEGRATIONS": "false",
            "WEAVE_LOG_LEVEL": "ERROR",
            # MLflow: sqlite store in tmp, traces logged asynchronously, no telemetry.
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
            "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # Opik: its backend on the dead port; no Sentry, no analytics.
            "OPIK_URL_OVERRIDE": LOOPBACK_DEAD + "/api",
            "OPIK_PROJECT_NAME": "bench",
            "OPIK_WORKSPACE": "default",
            "OPIK_SENTRY_ENABLE": "false",
            "OPIK_ANALYTICS_ENABLE": "false",
            "OPIK_CONSOLE_LOGGING_LEVEL": "CRITICAL",
            "OPIK_FILE_LOGGING_LEVEL": "CRITICAL",
        }
    )
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_subject(name: str, quick: bool, timeout_s: float) -> dict[str, Any]:
    """One subject in a fresh process; its JSON result, or {"skipped": reason}."""
    tmp = Path(tempfile.mkdtemp(prefix=f"tracked-bench-{name}-"))
    out = tmp / "result.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--subject", name, "--out", str(out)]
    if quick:
        cmd.append("--quick")
    t0 = perf_counter()
    try:
        proc = subprocess.run(
            cmd, env=subject_env(tmp), cwd=tmp, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if out.exists():
            result = json.loads(out.read_text())
        else:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            result = {"skipped": f"crashed (exit {proc.returncode}): {' | '.join(tail)[:300]}"}
    except subprocess.TimeoutExpired:
        result = {"skipped": f"did not finish within {timeout_s:.0f} s"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.setdefault("subject", name)
    result["wall_s"] = perf_counter() - t0
    return result


# --- measuring, inside a subject's process ------------------------------------------------------------


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak() -> bool:
    """Reset VmHWM (the peak RSS) so that a later read is the peak since now (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def settle() -> int:
    """gc, give free heap back to the OS (glibc), then the RSS: what is really still held."""
    gc.collect()
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:
        pass
    return rss()


@dataclass
class Plan:
    rounds: int
    blocks: int  # blocks per round
    block_s: float  # target duration of a timed block
    warm_s: float  # warm-up per workload
    memory_calls: int
    exp_calls: int
    exp_rounds: int
    flush_s: float  # how long a peer's flush may take before memory is read


FULL = Plan(
    rounds=7, blocks=3, block_s=0.04, warm_s=0.3, memory_calls=100_000, exp_calls=10_000, exp_rounds=5, flush_s=60.0
)
QUICK = Plan(rounds=1, blocks=1, block_s=0.002, warm_s=0.0, memory_calls=1_000, exp_calls=50, exp_rounds=1, flush_s=1.0)


def make_response() -> Any:
    """A chat completion with usage, as the OpenAI SDK returns it (a pydantic model)."""
    data = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "logprobs": None,
                "message": {"role": "assistant", "content": "The answer is 42."},
            }
        ],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
    }
    try:
        from openai.types.chat import ChatCompletion

        return ChatCompletion.model_validate(data)
    except ImportError:  # the same shape without the openai package
        import pydantic

        class Usage(pydantic.BaseModel):
            prompt_tokens: int
            completion_tokens: int
            total_tokens: int

        class Message(pydantic.BaseModel):
            role: str
            content: str

        class Choice(pydantic.BaseModel):
            index: int
            finish_reason: str
            logprobs: Any = None
            message: Message

        class ChatCompletion(pydantic.BaseModel):  # type: ignore[no-redef]
            id: str
            object: str
            created: int
            model: str
            choices: list[Choice]
            usage: Usage

        return ChatCompletion.model_validate(data)


@dataclass
class Kit:
    """How one subject decorates functions, and what it needs around the calls."""

    version: str
    config: str
    sync: Callable[[Any], Any]  # decorator for plain functions
    async_: Callable[[Any], Any] | None = None
    gen: Callable[[Any], Any] | None = None
    flush: Callable[[], Any] | None = None
    recorded: Callable[[], int | None] | None = None  # how many calls the subject's output holds
    notes: list[str] = field(default_factory=list)


_min_var: contextvars.ContextVar[Any] = contextvars.ContextVar("bench_minimum", default=None)
_MARK = object()


def _minimum_kit() -> Kit:
    """The hand-written minimum as a decorator: two clock reads and a ContextVar set/reset."""

    def sync(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _min_var.set(_MARK)
            t0 = perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                _latency = perf_counter() - t0
                _min_var.reset(token)

        return wrapper

    def async_(fn: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _min_var.set(_MARK)
            t0 = perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                _latency = perf_counter() - t0
                _min_var.reset(token)

        return wrapper

    def gen(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _min_var.set(_MARK)
            t0 = perf_counter()
            try:
                return (yield from fn(*args, **kwargs))
            finally:
                _latency = perf_counter() - t0
                _min_var.reset(token)

        return wrapper

    return Kit(
        version="-",
        config="a closure: perf_counter() twice and a ContextVar set/reset around the call",
        sync=sync,
        async_=async_,
        gen=gen,
    )


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def _quiet(*names: str) -> None:
    for name in names:
        lg = logging.getLogger(name)
        lg.setLevel(logging.CRITICAL + 1)
        lg.propagate = False


def _tracked_kit(enabled: bool = True) -> Kit:
    import tracked

    tracked.configure(enabled=enabled)
    return Kit(
        version=tracked.__version__,
        config=(
            "@tracked; outside an experiment the call is measured, usage extracted and priced, rolled up "
            "to its parent, and kept in memory only; the experiment workload writes both sinks"
            if enabled
            else "tracked.configure(enabled=False)"
        ),
        sync=tracked.tracked,
        async_=tracked.tracked,
        gen=tracked.tracked,
    )


def _wrapt_kit() -> Kit:
    import wrapt

    @wrapt.decorator
    def passthrough(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return wrapped(*args, **kwargs)

    return Kit(version=_version("wrapt"), config="@wrapt.decorator passthrough", sync=passthrough)


def _logfire_kit() -> Kit:
    import logfire
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class LocalExporter(SpanExporter):
        """Takes every finished span and keeps only a count: the cheapest local output."""

        count = 0

        def export(self, spans: Any) -> SpanExportResult:
            LocalExporter.count += len(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    _quiet("opentelemetry")
    logfire.configure(
        send_to_logfire=False,
        console=False,
        service_name="bench",
        additional_span_processors=[BatchSpanProcessor(LocalExporter())],
    )
    return Kit(
        version=_version("logfire"),
        config="logfire.configure(send_to_logfire=False, console=False) + an OTel BatchSpanProcessor "
        "whose exporter counts the spans; @logfire.instrument() (allow_generator=True for the generator)",
        sync=lambda fn: logfire.instrument()(fn),
        async_=lambda fn: logfire.instrument()(fn),
        gen=lambda fn: logfire.instrument(allow_generator=True)(fn),
        flush=lambda: logfire.force_flush(timeout_millis=30_000),
        recorded=lambda: LocalExporter.count,
    )


def _langfuse_kit(enabled: bool = True) -> Kit:
    if not enabled:
        os.environ["LANGFUSE_TRACING_ENABLED"] = "false"
    _quiet("langfuse", "opentelemetry", "urllib3", "requests")
    from langfuse import get_client, observe

    client = get_client()
    return Kit(
        version=_version("langfuse"),
        config=(
            "@observe(); dummy keys, LANGFUSE_HOST=http://127.0.0.1:9 (nothing listens): spans are made and "
            "batched, export fails and is retried in the background, full queues drop spans"
            if enabled
            else "LANGFUSE_TRACING_ENABLED=false"
        ),
        sync=observe(),
        async_=observe(),
        gen=observe(),
        flush=client.flush if enabled else None,
    )


def _weave_kit(enabled: bool = True) -> Kit:
    if not enabled:
        os.environ["WEAVE_DISABLED"] = "true"
    _quiet("weave")
    import weave
    from weave.trace import weave_client, weave_init
    from weave.trace.context import weave_client_context

    if enabled:
        # weave.init() needs a W&B login and the trace server's version: neither exists offline. The
        # client is made as weave.init() makes it, with the server on the dead port and the
        # write-ahead log on (every call written to a JSONL file under HOME, the sender off).
        client = weave_client.WeaveClient(
            "bench", "bench", weave_init.init_weave_get_server(None), ensure_project_exists=False
        )
    else:
        client = weave_init.init_weave_disabled()
    weave_client_context.set_weave_client_global(client)

    def recorded() -> int | None:
        wal = Path.home() / ".weave" / "wal"
        n = 0
        for path in wal.rglob("*.jsonl"):
            with open(path, "rb") as fh:
                n += sum(1 for line in fh if b'"call_end"' in line)
        return n

    return Kit(
        version=_version("weave"),
        config=(
            "@weave.op; WeaveClient made without weave.init() (which needs a W&B login and a live server): "
            "trace server on http://127.0.0.1:9, WEAVE_ENABLE_WAL=true + WEAVE_DISABLE_WAL_SENDER=true, so "
            "every call is written to Weave's local write-ahead log and never sent"
            if enabled
            else "WEAVE_DISABLED=true (weave.init's disabled client)"
        ),
        sync=weave.op,
        async_=weave.op,
        gen=weave.op,
        flush=client.flush if enabled else None,
        recorded=recorded if enabled else None,
    )


def _mlflow_kit(enabled: bool = True) -> Kit:
    _quiet("mlflow", "alembic", "sqlalchemy")
    import mlflow

    uri = os.environ["MLFLOW_TRACKING_URI"]
    mlflow.set_tracking_uri(uri)
    if enabled:
        mlflow.config.enable_async_logging(True)
        mlflow.set_experiment("bench")
    else:
        mlflow.tracing.disable()

    def recorded() -> int | None:
        import sqlite3

        with sqlite3.connect(uri.removeprefix("sqlite:///")) as db:
            return int(db.execute("select count(*) from trace_info").fetchone()[0])

    return Kit(
        version=_version("mlflow-skinny"),
        config=(
            "@mlflow.trace; tracking URI sqlite:///<tmp>/mlflow.db, MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=true "
            "(traces written to sqlite by a background queue, which drops traces when full)"
            if enabled
            else "mlflow.tracing.disable()"
        ),
        sync=mlflow.trace,
        async_=mlflow.trace,
        gen=mlflow.trace,
        flush=mlflow.flush_trace_async_logging if enabled else None,
        recorded=recorded if enabled else None,
    )


def _opik_kit(enabled: bool = True) -> Kit:
    if not enabled:
        os.environ["OPIK_TRACK_DISABLE"] = "true"
    _quiet("opik", "urllib3", "httpx")
    import opik

    return Kit(
        version=_version("opik"),
        config=(
            "@opik.track; OPIK_URL_OVERRIDE=http://127.0.0.1:9/api (Opik has no local store: its local mode "
            "is a local server); messages are queued and sent by background workers, which fail"
            if enabled
            else "OPIK_TRACK_DISABLE=true"
        ),
        sync=opik.track,
        async_=opik.track,
        gen=opik.track,
        flush=opik.flush_tracker if enabled else None,
    )


KITS: dict[str, Callable[[], Kit]] = {
    "minimum": _minimum_kit,
    "tracked": _tracked_kit,
    "logfire": _logfire_kit,
    "langfuse": _langfuse_kit,
    "weave": _weave_kit,
    "mlflow": _mlflow_kit,
    "opik": _opik_kit,
    "wrapt": _wrapt_kit,
    "tracked-disabled": lambda: _tracked_kit(False),
    "langfuse-disabled": lambda: _langfuse_kit(False),
    "weave-disabled": lambda: _weave_kit(False),
    "mlflow-disabled": lambda: _mlflow_kit(False),
    "opik-disabled": lambda: _opik_kit(False),
}
# The package a subject needs: a subject whose package is missing is skipped.
PACKAGES = {
    "tracked": "tracked",
    "logfire": "logfire",
    "langfuse": "langfuse",
    "weave": "weave",
    "mlflow": "mlflow",
    "opik": "opik",
    "wrapt": "wrapt",
}


def _bounded(fn: Callable[[], Any] | None, timeout_s: float) -> float | None:
    """Run a flush for at most timeout_s (some retry against the dead port); its duration, or None."""
    if fn is None:
        return None
    t0 = perf_counter()
    th = threading.Thread(target=lambda: _swallow(fn), daemon=True)
    th.start()
    th.join(timeout_s)
    return perf_counter() - t0


def _swallow(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:
        pass


# --- the workloads -----------------------------------------------------------------------------------


def sync_block(fn: Callable[[Any], Any]) -> Callable[[int], int]:
    """A timed block: n calls of `fn` in a plain loop, returning the total ns."""

    def block(n: int) -> int:
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            fn(1)
        return perf_counter_ns() - t0

    return block


def build_blocks(kit: Kit, response: Any, loop: asyncio.AbstractEventLoop) -> dict[str, Callable[[int], int]]:
    """The timed blocks of one subject: each runs n iterations and returns the total ns."""
    deco = kit.sync

    @deco
    def single(x: Any) -> Any:
        return x

    @deco
    def chat(x: Any) -> Any:
        return response

    @deco
    def inner(x: Any) -> Any:
        return response

    @deco
    def outer(x: Any) -> Any:
        inner(x)
        inner(x)
        inner(x)
        return x

    blocks = {"single": sync_block(single), "openai": sync_block(chat), "nested": sync_block(outer)}

    if kit.async_ is not None:

        @kit.async_
        async def asingle(x: Any) -> Any:
            return x

        async def timed(n: int) -> int:
            r = range(n)
            t0 = perf_counter_ns()
            for _ in r:
                await asingle(1)
            return perf_counter_ns() - t0

        blocks["async"] = lambda n: loop.run_until_complete(timed(n))

    if kit.gen is not None:

        @kit.gen
        def gen10(x: Any) -> Any:
            yield from range(10)

        def gen_block(n: int) -> int:
            r = range(n)
            t0 = perf_counter_ns()
            for _ in r:
                for _item in gen10(1):
                    pass
            return perf_counter_ns() - t0

        blocks["gen"] = gen_block
    return blocks


def measure(blocks: dict[str, Callable[[int], int]], plan: Plan) -> dict[str, dict[str, float]]:
    """Min over rounds of the median block, blocks interleaved and the order rotated per round."""
    sizes: dict[str, int] = {}
    for name, block in blocks.items():
        n = 3
        spent = 0
        while True:  # warm-up, which also calibrates the block size
            ns = block(n)
            spent += ns
            if spent >= plan.warm_s * 1e9 or plan.warm_s == 0:
                break
            n = min(n * 2, 10_000)
        per = max(ns / n, 1.0)
        sizes[name] = max(3, min(100_000, int(plan.block_s * 1e9 / per)))
    names = list(blocks)
    medians: dict[str, list[float]] = {name: [] for name in names}
    for r in range(plan.rounds):
        gc.collect()
        order = names[r % len(names) :] + names[: r % len(names)]
        samples: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(plan.blocks):
            for name in order:
                samples[name].append(blocks[name](sizes[name]) / sizes[name])
        for name in names:
            medians[name].append(statistics.median(samples[name]))
    return {
        name: {
            "ns": min(medians[name]),
            "noise": statistics.median(medians[name]) / min(medians[name]) - 1.0,
            "calls": sizes[name] * plan.blocks * plan.rounds,
        }
        for name in names
    }


def memory_after(kit: Kit, calls: int, flush_s: float) -> dict[str, Any]:
    """RSS still held after `calls` calls of the single workload (and the subject's flush)."""

    @kit.sync
    def single_mem(x: Any) -> Any:
        return x

    for _ in range(100):
        single_mem(1)
    _bounded(kit.flush, flush_s)
    before = settle()
    has_peak = reset_peak()
    t0 = perf_counter()
    for _ in range(calls):
        single_mem(1)
    loop_s = perf_counter() - t0
    flushed = _bounded(kit.flush, flush_s)
    peak = peak_rss() if has_peak else None
    after = settle()
    out: dict[str, Any] = {
        "calls": calls,
        "retained": after - before,
        "peak": None if peak is None else peak - before,
        "loop_s": loop_s,
        "flush_s": flushed,
        "flush_limit_s": flush_s,
    }
    if kit.recorded is not None:
        try:
            out["recorded"] = kit.recorded()
        except Exception as exc:
            out["recorded_error"] = repr(exc)[:200]
    return out


# --- tracked in an experiment -------------------------------------------------------------------------


def _exp_dir() -> str:
    path = Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / "exp"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _time_calls(fn: Callable[[Any], Any], n: int) -> tuple[array[int], int]:
    out = array("q", bytes(8 * n))
    pc = perf_counter_ns
    start = pc()
    for i in range(n):
        t0 = pc()
        fn(1)
        out[i] = pc() - t0
    return out, pc() - start


def experiment_workload(response: Any, plan: Plan) -> dict[str, Any]:
    """Top-level calls of an OpenAI function, one experiment per round (W&B offline, local store on)."""
    import tracked

    @tracked.tracked
    def chat(x: Any) -> Any:
        return response

    root = _exp_dir()
    if plan is FULL:  # W&B's service started before any timed round
        with tracked.experiment("warm", dir=root):
            for _ in range(200):
                chat(1)
    rounds = []
    for _ in range(plan.exp_rounds):
        outside, _ = _time_calls(chat, plan.exp_calls)
        gc.collect()
        with tracked.experiment("bench", dir=root) as exp:
            times, total = _time_calls(chat, plan.exp_calls)
            t_end = perf_counter()
        finish_s = perf_counter() - t_end
        rounds.append(
            {
                "mean": total / plan.exp_calls,
                "median": float(statistics.median(times)),
                "outside_median": float(statistics.median(outside)),
                "finish_s": finish_s,
                "rows": exp.final_summary.get("total/calls"),
                "sinks": exp.final_summary.get("sinks"),
            }
        )
        del exp
    mean = statistics.median(r["mean"] for r in rounds)
    out: dict[str, Any] = {
        "ns": mean,
        "noise": mean / min(r["mean"] for r in rounds) - 1.0,
        "calls": plan.exp_calls * plan.exp_rounds,
        "median_call": statistics.median(r["median"] for r in rounds),
        "outside_median_call": statistics.median(r["outside_median"] for r in rounds),
        "finish_s": statistics.median(r["finish_s"] for r in rounds),
        "rows": rounds[-1]["rows"],
        "sinks": rounds[-1]["sinks"],
    }
    out["wandb_on_caller"] = wandb_on_caller_thread(chat, root, min(plan.exp_calls, 2000))
    if plan is FULL:
        out["tracemalloc"] = experiment_tracemalloc(chat, root, 10_000)
    return out


def wandb_on_caller_thread(chat: Callable[[Any], Any], root: str, n: int) -> dict[str, Any]:
    """Which functions of the wandb package ran on the caller's thread during the calls."""
    import cProfile
    import pstats

    import tracked

    wandb_dir = None
    try:
        import wandb

        wandb_dir = str(Path(wandb.__file__).resolve().parent)
    except ImportError:
        return {"calls": n, "wandb_functions": None}
    prof = cProfile.Profile()
    with tracked.experiment("bench-caller-thread", dir=root):
        prof.enable()
        for _ in range(n):
            chat(1)
        prof.disable()
    st = pstats.Stats(prof)
    hits = sorted(
        f"{Path(f).name}:{fn}"
        for (f, _line, fn) in st.stats  # type: ignore[attr-defined]
        if wandb_dir and str(Path(f).resolve()).startswith(wandb_dir)
    )
    return {"calls": n, "wandb_functions": len(hits), "examples": hits[:5]}


def experiment_tracemalloc(chat: Callable[[Any], Any], root: str, n: int) -> dict[str, Any]:
    """Python memory held after an experiment's finish(), against before it (tracemalloc)."""
    import tracemalloc
    import weakref

    import tracked

    gc.collect()
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        with tracked.experiment("bench-memory", dir=root) as exp:
            for _ in range(n):
                chat(1)
        ref = weakref.ref(exp)
        del exp
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
        snap = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    top = []
    for stat in snap.statistics("filename")[:40]:
        frame = stat.traceback[0]
        top.append((frame.filename, stat.size))
    return {
        "calls": n,
        "retained": after - before,
        "peak": peak - before,
        "experiment_alive": ref() is not None,
        "top_files": [(_short(f), s) for f, s in top if s > 100_000][:8],
    }


def _short(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("site-packages", "src", "lib"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1 :])
    return filename


# --- scaling (tracked only) -------------------------------------------------------------------------------


class GcClock:
    """Time spent in the cyclic GC per generation while it is on."""

    def __init__(self) -> None:
        self.spent = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self.worst = 0.0
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = perf_counter()
        else:
            dt = perf_counter() - self._t0
            gen = info["generation"]
            self.spent[gen] += dt
            self.count[gen] += 1
            self.worst = max(self.worst, dt)

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        gc.callbacks.remove(self)

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": self.spent, "collections": self.count, "worst_s": self.worst}


def _stats(times: array[int]) -> dict[str, float]:
    n = len(times)
    ordered = sorted(times)
    tenth = max(n // 10, 1)
    return {
        "median": float(ordered[n // 2]),
        "p99": float(ordered[min(n - 1, int(n * 0.99))]),
        "max": float(ordered[-1]),
        "first_tenth_mean": sum(times[:tenth]) / tenth,
        "last_tenth_mean": sum(times[-tenth:]) / tenth,
    }


def scale_calls(n: int, response: Any) -> dict[str, Any]:
    import tracked

    @tracked.tracked
    def chat(x: Any) -> Any:
        return response

    root = _exp_dir()
    with tracked.experiment("warm", dir=root):
        for _ in range(100):
            chat(1)
    before = settle()
    has_peak = reset_peak()
    t_start = perf_counter()
    with GcClock() as gclock, tracked.experiment("scale", dir=root) as exp:
        cpu0 = thread_cpu()
        times, total = _time_calls(chat, n)
        cpu1 = thread_cpu()
        t_loop = perf_counter()
        backlog = {
            "pump_queue": _qsize(getattr(exp, "_queue", None)),
            "wandb_queue": _qsize(getattr(exp, "_wandb_queue", None)),
        }
        rss_end_of_loop = rss()
    t_done = perf_counter()
    peak = peak_rss() if has_peak else None
    summary = exp.final_summary
    stats = _stats(times)
    del exp, times  # the timings (8 bytes a call) are the benchmark's memory, not tracked's
    after = settle()
    return {
        "calls": n,
        "ns": total / n,
        **stats,
        "loop_s": total / 1e9,
        "finish_s": t_done - t_loop,
        "rows_per_s": n / (t_done - t_start),
        "backlog_at_end_of_loop": backlog,
        "rss_end_of_loop": rss_end_of_loop - before,
        "peak": None if peak is None else peak - before,
        "retained_after_finish": after - before,
        "rows": summary.get("total/calls"),
        "sinks": summary.get("sinks"),
        "gc": gclock.as_dict(),
        # CPU seconds each thread used during the loop: what the W&B and pump threads took from the
        # caller, through the GIL, is in the caller's wall time.
        "thread_cpu_during_loop": {k: cpu1[k] - cpu0[k] for k in cpu1 if k in cpu0},
    }


def thread_cpu() -> dict[str, float]:
    """CPU seconds used so far by the caller's thread and tracked's threads (by role)."""
    out: dict[str, float] = {}
    for th in threading.enumerate():
        if th is threading.main_thread():
            role = "caller"
        elif th.name.startswith("tracked-wandb-"):
            role = "wandb"
        elif th.name.startswith("tracked-calls-"):
            role = "pump"
        else:
            continue
        try:
            out[role] = out.get(role, 0.0) + time.clock_gettime(time.pthread_getcpuclockid(th.ident))  # type: ignore[arg-type]
        except (OSError, AttributeError, TypeError):
            pass
    return out


def _qsize(q: Any) -> int | None:
    try:
        return int(q.qsize())
    except Exception:
        return None


def _chain(tracked: Any, depth: int, response: Any) -> Callable[[Any], Any]:
    """depth nested tracked functions; the innermost returns an OpenAI response."""

    def leaf(x: Any) -> Any:
        return response

    fn = tracked.tracked(name=f"level{depth - 1}")(leaf)
    for level in reversed(range(depth - 1)):

        def step(x: Any, _inner: Callable[[Any], Any] = fn) -> Any:
            return _inner(x)

        fn = tracked.tracked(name=f"level{level}")(step)
    return fn


def _chain_with(deco: Callable[[Any], Any], depth: int, response: Any) -> Callable[[Any], Any]:
    def leaf(x: Any) -> Any:
        return response

    fn = deco(leaf)
    for _ in range(depth - 1):

        def step(x: Any, _inner: Callable[[Any], Any] = fn) -> Any:
            return _inner(x)

        fn = deco(step)
    return fn


def _loop_ns(fn: Callable[[Any], Any], n: int) -> int:
    t0 = perf_counter_ns()
    for _ in range(n):
        fn(1)
    return perf_counter_ns() - t0


def scale_depth(depth: int, total_calls: int, response: Any) -> dict[str, Any]:
    import tracked

    top = _chain(tracked, depth, response)
    k = max(total_calls // depth, 10)
    root = _exp_dir()
    with tracked.experiment("warm", dir=root):
        for _ in range(20):
            top(1)
    out: dict[str, Any] = {"depth": depth, "top_level_calls": k, "calls": k * depth}
    best = None
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        t0 = perf_counter_ns()
        for _ in range(k):
            top(1)
        dt = perf_counter_ns() - t0
        best = dt if best is None else min(best, dt)
    assert best is not None
    # Page faults per top-level call: CPython 3.11 maps and unmaps a 16 kB chunk of its frame
    # stack each time a call chain crosses a chunk's end, which shows here.
    out["faults_per_top"] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / (3 * k)
    out["outside_ns_per_call"] = best / (k * depth)
    out["outside_ns_per_top"] = best / k
    # Control: the same chain under the hand-written minimum, to tell the SDK from the interpreter.
    control = _chain_with(_minimum_kit().sync, depth, response)
    best_control = min(_loop_ns(control, k) for _ in range(3))
    out["minimum_ns_per_call"] = best_control / (k * depth)
    with GcClock() as gclock, tracked.experiment("depth", dir=root) as exp:
        t0 = perf_counter_ns()
        for _ in range(k):
            top(1)
        dt = perf_counter_ns() - t0
        t_loop = perf_counter()
    out["finish_s"] = perf_counter() - t_loop
    out["ns"] = dt / (k * depth)
    out["ns_per_top"] = dt / k
    out["rows"] = exp.final_summary.get("total/calls")
    out["sinks"] = exp.final_summary.get("sinks")
    out["gc"] = gclock.as_dict()
    return out


def scale_threads(threads: int, total_calls: int, response: Any) -> dict[str, Any]:
    import tracked

    @tracked.tracked
    def chat(x: Any) -> Any:
        return response

    per = max(total_calls // threads, 1)

    def work(n: int) -> int:
        for _ in range(n):
            chat(1)
        return n

    def run(pool: Any) -> float:
        t0 = perf_counter_ns()
        futures = [pool.submit(work, per) for _ in range(threads)]
        done = sum(f.result() for f in futures)
        return (perf_counter_ns() - t0) / done

    minimum = _minimum_kit().sync(lambda x: response)

    def work_minimum(n: int) -> int:
        for _ in range(n):
            minimum(1)
        return n

    def run_minimum(pool: Any) -> float:
        t0 = perf_counter_ns()
        futures = [pool.submit(work_minimum, per) for _ in range(threads)]
        done = sum(f.result() for f in futures)
        return (perf_counter_ns() - t0) / done

    root = _exp_dir()
    out: dict[str, Any] = {"threads": threads, "calls": per * threads}
    with tracked.ThreadPoolExecutor(max_workers=threads) as pool:
        pool.submit(work, 10).result()
        out["outside_ns"] = min(run(pool) for _ in range(3))
        out["minimum_ns"] = min(run_minimum(pool) for _ in range(3))
        with tracked.experiment("warm", dir=root):
            run_small = [pool.submit(work, 10) for _ in range(threads)]
            for f in run_small:
                f.result()
        with GcClock() as gclock, tracked.experiment("threads", dir=root) as exp:
            out["ns"] = run(pool)
            t_loop = perf_counter()
        out["finish_s"] = perf_counter() - t_loop
    out["rows"] = exp.final_summary.get("total/calls")
    out["sinks"] = exp.final_summary.get("sinks")
    out["gc"] = gclock.as_dict()
    return out


# --- the parent: running subjects, printing tables ---------------------------------------------------------

LABELS = {
    "minimum": "hand-written minimum",
    "tracked": "tracked",
    "logfire": "logfire",
    "langfuse": "Langfuse",
    "weave": "W&B Weave",
    "mlflow": "MLflow tracing",
    "opik": "Opik",
    "wrapt": "wrapt passthrough",
    "tracked-disabled": "tracked, disabled",
    "langfuse-disabled": "Langfuse, tracing disabled",
    "weave-disabled": "W&B Weave, disabled",
    "mlflow-disabled": "MLflow, tracing disabled",
    "opik-disabled": "Opik, tracking disabled",
}
PEER_NAMES = ["logfire", "langfuse", "weave", "mlflow", "opik"]


def run_many(names: list[str], quick: bool, timeout_s: float) -> dict[str, dict[str, Any]]:
    results = {}
    for name in names:
        print(f"  [{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
        results[name] = run_subject(name, quick, timeout_s)
        r = results[name]
        state = f"skipped: {r['skipped']}" if "skipped" in r else "done"
        print(f"  [{time.strftime('%H:%M:%S')}] {name}: {state} ({r['wall_s']:.1f} s)", file=sys.stderr, flush=True)
    return results


def fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "-"
    return f"{ns:,.0f}" if ns >= 100 else f"{ns:.1f}"


def fmt_x(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:,.0f}x" if r >= 100 else f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


def fmt_mb(b: float | None) -> str:
    return "-" if b is None else f"{b / 1e6:+,.1f} MB"


def _ns(results: dict[str, dict[str, Any]], subject: str, workload: str) -> float | None:
    w = results.get(subject, {}).get("workloads", {}).get(workload)
    return None if w is None else w.get("ns")


def print_peers(results: dict[str, dict[str, Any]], plan: Plan) -> None:
    print("peers: the same workloads for each subject, one process per subject, one after the other")
    print(
        f"figure = ns per call, the lowest of {plan.rounds} round medians ({plan.blocks} interleaved blocks of "
        f"~{plan.block_s * 1000:.0f} ms per round);"
    )
    print("caller-visible time: a subject's background threads share the 2 cores and the GIL with the caller")
    print("x min = / the hand-written minimum on the same workload; x tracked = / tracked on the same workload")
    print()
    header = f"{'workload / subject':<34} {'ns/call':>14} {'x min':>8} {'x tracked':>10} {'noise':>6}"
    print(header)
    print("-" * len(header))
    for key, label in WORKLOADS:
        print(label)
        base = _ns(results, "minimum", key)
        ours = _ns(results, "tracked", key)
        for name in PEERS:
            r = results.get(name)
            if r is None:
                continue
            shown = LABELS.get(name, name)
            if "skipped" in r:
                print(f"  {shown:<32} skipped: {r['skipped']}")
                continue
            w = r.get("workloads", {}).get(key)
            if w is None:
                if key == "experiment" and name != "minimum":
                    print(f"  {shown:<32} {'-':>14}   (no equivalent: tracked's experiments only)")
                continue
            ns = w["ns"]
            noise = f"{w['noise'] * 100:.0f}%" if w.get("noise") is not None else "-"
            print(
                f"  {shown:<32} {fmt_ns(ns):>14} {fmt_x(ns / base if base else None):>8} "
                f"{fmt_x(ns / ours if ours else None):>10} {noise:>6}"
            )
        if key == "experiment":
            w = results.get("tracked", {}).get("workloads", {}).get("experiment")
            if w:
                print(
                    f"  {'':<32} tracked: median call {fmt_ns(w['median_call'])} ns (the same call outside an "
                    f"experiment: {fmt_ns(w['outside_median_call'])} ns); finish() {w['finish_s']:.2f} s for "
                    f"{plan.exp_calls:,} rows; sinks {w.get('sinks')}"
                )
    print()
    print(
        f"memory: RSS still held after {plan.memory_calls:,} single calls and the subject's flush (at most "
        f"{plan.flush_s:.0f} s), gc and malloc_trim, against before them; peak = highest RSS during them"
    )
    header = (
        f"{'subject':<24} {'retained':>11} {'peak':>11} {'loop s':>8} {'flush s':>8} {'recorded':>9} "
        f"{'import+init s':>13} {'import RSS':>11}"
    )
    print(header)
    print("-" * len(header))
    for name in PEERS:
        r = results.get(name)
        if r is None:
            continue
        shown = LABELS.get(name, name)
        if "skipped" in r:
            print(f"{shown:<24} skipped: {r['skipped']}")
            continue
        m = r.get("memory") or {}
        flush = m.get("flush_s")
        flush_txt = "-" if flush is None else f"{flush:.1f}" + ("+" if flush >= m.get("flush_limit_s", 1e9) else "")
        recorded = m.get("recorded")
        print(
            f"{shown:<24} {fmt_mb(m.get('retained')):>11} {fmt_mb(m.get('peak')):>11} "
            f"{m.get('loop_s', 0):>8.1f} {flush_txt:>8} {'-' if recorded is None else f'{recorded:,}':>9} "
            f"{r.get('init_s', 0):>13.2f} {fmt_mb(r.get('import_rss')):>11}"
        )
    w = results.get("tracked", {}).get("workloads", {}).get("experiment", {})
    tm = w.get("tracemalloc")
    if tm:
        print(
            f"tracked, one experiment of {tm['calls']:,} calls (tracemalloc): held after finish() and `del exp` "
            f"{fmt_mb(tm['retained'])}, peak during it {fmt_mb(tm['peak'])}; Experiment still reachable: "
            f"{tm['experiment_alive']}"
        )
        if tm.get("top_files"):
            print("  largest holders after finish(): " + ", ".join(f"{f} {s / 1e6:.1f} MB" for f, s in tm["top_files"]))
    print()
    print("configuration:")
    for name in PEERS:
        r = results.get(name)
        if r is None or "skipped" in r:
            continue
        print(f"  {LABELS.get(name, name)} {r.get('version', '')}: {r.get('config', '')}")
    print()


def print_disabled(results: dict[str, dict[str, Any]]) -> None:
    print("disabled: one call of a trivial function with each SDK switched off (x wrapt = / the wrapt passthrough)")
    header = f"{'subject':<30} {'ns/call':>10} {'x wrapt':>8}  how"
    print(header)
    print("-" * len(header))
    base = _ns(results, "wrapt", "single")
    for name in DISABLED:
        r = results.get(name)
        if r is None:
            continue
        shown = LABELS.get(name, name)
        if "skipped" in r:
            print(f"{shown:<30} skipped: {r['skipped']}")
            continue
        ns = _ns(results, name, "single")
        print(f"{shown:<30} {fmt_ns(ns):>10} {fmt_x(ns / base if base and ns else None):>8}  {r.get('config', '')}")
    print("logfire has no switch that turns its instrumentation off: not in this table")
    print()


def _gc2(r: dict[str, Any]) -> str:
    g = r.get("gc") or {}
    secs, counts = g.get("seconds") or [0, 0, 0], g.get("collections") or [0, 0, 0]
    return f"{sum(secs):.2f} s ({counts[2]} full)"


def _sinks(r: dict[str, Any]) -> str:
    sinks = r.get("sinks") or {}
    bad = {k: v for k, v in sinks.items() if v != "ok"}
    return "ok" if sinks and not bad else "; ".join(f"{k}: {v}" for k, v in bad.items())[:60] or "?"


def print_scaling(results: dict[str, dict[str, Any]]) -> None:
    print("scaling: tracked, top-level calls of an OpenAI function in ONE experiment (W&B offline + local store),")
    print("each call timed; ns = loop time / calls (caller-visible, incl. the GIL taken by the pump and W&B threads)")
    header = (
        f"{'calls':>10} {'ns/call':>8} {'median':>8} {'p99':>8} {'max ms':>7} {'1st 10%':>8} {'last 10%':>8} "
        f"{'finish s':>8} {'rows/s':>7} {'W&B backlog':>11} {'peak RSS':>10} {'held after':>10} {'gc':>16}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        if not name.startswith("scale-calls-"):
            continue
        if "skipped" in r:
            print(f"{name.removeprefix('scale-calls-'):>10} skipped: {r['skipped']}")
            continue
        backlog = (r.get("backlog_at_end_of_loop") or {}).get("wandb_queue")
        print(
            f"{r['calls']:>10,} {fmt_ns(r['ns']):>8} {fmt_ns(r['median']):>8} {fmt_ns(r['p99']):>8} "
            f"{r['max'] / 1e6:>7.1f} {fmt_ns(r['first_tenth_mean']):>8} {fmt_ns(r['last_tenth_mean']):>8} "
            f"{r['finish_s']:>8.1f} {r['rows_per_s']:>7,.0f} {'-' if backlog is None else f'{backlog:,}':>11} "
            f"{fmt_mb(r.get('peak')):>10} {fmt_mb(r.get('retained_after_finish')):>10} {_gc2(r):>16}"
        )
    print("  W&B backlog = rows queued for the W&B thread when the loop ended; held after = RSS after finish()")
    print("  (gc, malloc_trim) - before the experiment; gc = time in the cyclic GC during the experiment")
    for name, r in results.items():
        if not name.startswith("scale-calls-") or "skipped" in r:
            continue
        cpu = r.get("thread_cpu_during_loop") or {}
        g = r.get("gc") or {}
        print(
            f"  {r['calls']:>9,} calls: sinks {_sinks(r)}; CPU s during the loop ({r['loop_s']:.2f} s): caller "
            f"{cpu.get('caller', 0):.2f}, W&B thread {cpu.get('wandb', 0):.2f}, pump {cpu.get('pump', 0):.2f}; "
            f"longest gc pause {g.get('worst_s', 0) * 1000:.0f} ms"
        )
    print()
    print("depth: one chain of N nested tracked functions per top-level call, the innermost returning an OpenAI")
    print("response; ns per tracked call, outside any experiment and in one (both sinks)")
    header = (
        f"{'depth':>6} {'calls':>8} {'minimum ns/call':>16} {'outside ns/call':>16} {'in exp ns/call':>15} "
        f"{'in exp ns/top':>14} {'per extra level':>16} {'faults/top':>11} {'finish s':>9} {'sinks':>6}"
    )
    print(header)
    print("-" * len(header))
    one = results.get("scale-depth-1", {}).get("ns_per_top")
    for name, r in results.items():
        if not name.startswith("scale-depth-"):
            continue
        if "skipped" in r:
            print(f"{name.removeprefix('scale-depth-'):>6} skipped: {r['skipped']}")
            continue
        d = r["depth"]
        extra = (r["ns_per_top"] - one) / (d - 1) if one and d > 1 else None
        print(
            f"{d:>6} {r['calls']:>8,} {fmt_ns(r.get('minimum_ns_per_call')):>16} "
            f"{fmt_ns(r['outside_ns_per_call']):>16} {fmt_ns(r['ns']):>15} "
            f"{fmt_ns(r['ns_per_top']):>14} {fmt_ns(extra):>16} {r.get('faults_per_top', 0):>11.2f} "
            f"{r['finish_s']:>9.1f} {_sinks(r):>6}"
        )
    print("  minimum = the same chain under the hand-written minimum decorator (the interpreter's share)")
    print("  faults/top = minor page faults per top-level call outside an experiment: CPython 3.11 maps and unmaps")
    print("  a 16 kB chunk of its frame stack whenever a call chain crosses a chunk's end")
    print()
    print("threads: calls split over N threads of tracked.ThreadPoolExecutor; ns = wall time / calls")
    header = (
        f"{'threads':>8} {'calls':>8} {'minimum ns/call':>16} {'outside ns/call':>16} {'in exp ns/call':>15} "
        f"{'finish s':>9} {'in exp + finish':>16} {'sinks':>6}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        if not name.startswith("scale-threads-"):
            continue
        if "skipped" in r:
            print(f"{name.removeprefix('scale-threads-'):>8} skipped: {r['skipped']}")
            continue
        print(
            f"{r['threads']:>8} {r['calls']:>8,} {fmt_ns(r.get('minimum_ns')):>16} {fmt_ns(r['outside_ns']):>16} "
            f"{fmt_ns(r['ns']):>15} {r['finish_s']:>9.1f} {fmt_ns(_with_finish(r)):>16} {_sinks(r):>6}"
        )
    print("  in exp + finish = (loop + finish()) / calls: these calls outrun W&B, and how much of W&B's work (which")
    print("  shares the GIL) falls in the loop rather than in finish() varies from run to run; the sum does not")
    print()


def _with_finish(r: dict[str, Any]) -> float:
    return float(r["ns"] + r["finish_s"] * 1e9 / r["calls"])


def _importtime(stmt: str, env: dict[str, str]) -> tuple[float, list[tuple[int, int, str]]]:
    t0 = perf_counter()
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", stmt], capture_output=True, text=True, env=env, check=True
    )
    wall = perf_counter() - t0
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line.removeprefix("import time:").split("|")
        rows.append((int(parts[0]), int(parts[1]), parts[2][1:].rstrip()))
    return wall, rows


def import_times(quick: bool) -> dict[str, Any]:
    """`import wrapt` and `import tracked` in fresh processes, interleaved; medians."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACKED_", "PYTHONPROFILE")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["PYTHONPATH"] = str(HERE.parent / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # Bytecode cached for both, as after a wheel install, in a directory of our own: an editable
    # source tree (or PYTHONDONTWRITEBYTECODE) would otherwise make tracked compile on every import.
    cache = tempfile.mkdtemp(prefix="tracked-bench-pycache-")
    env["PYTHONPYCACHEPREFIX"] = cache
    n = 3 if quick else 15
    stmts = {"python": "pass", "wrapt": "import wrapt", "tracked": "import tracked"}
    wall: dict[str, list[float]] = {k: [] for k in stmts}
    for stmt in stmts.values():  # warm the file cache and .pyc files
        subprocess.run([sys.executable, "-c", stmt], env=env, check=True)
    for _ in range(n):
        for k, stmt in stmts.items():
            t0 = perf_counter()
            subprocess.run([sys.executable, "-c", stmt], env=env, check=True)
            wall[k].append(perf_counter() - t0)
    # -X importtime: tracked's cumulative import time with wrapt already imported (what it adds).
    cum_alone: dict[str, list[int]] = {"wrapt": [], "tracked": []}
    extra: list[int] = []
    subtree: list[tuple[int, int, str]] = []
    for _ in range(n):
        for k in ("wrapt", "tracked"):
            _, rows = _importtime(f"import {k}", env)
            cum_alone[k].append(next(c for s, c, name in rows if name == k))
        _, rows = _importtime("import wrapt; import tracked", env)
        idx = next(i for i, (_s, _c, name) in enumerate(rows) if name == "tracked")
        start = next(i for i, (_s, _c, name) in enumerate(rows) if name == "wrapt") + 1
        extra.append(rows[idx][1])
        subtree = rows[start : idx + 1]
    top_self = sorted(subtree, key=lambda r: r[0], reverse=True)[:12]
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "runs": n,
        "wall_ms": {k: statistics.median(v) * 1000 for k, v in wall.items()},
        "importtime_ms": {k: statistics.median(v) / 1000 for k, v in cum_alone.items()},
        "tracked_after_wrapt_ms": statistics.median(extra) / 1000,
        "top_self": [(name.strip(), s / 1000) for s, _c, name in top_self],
    }


def print_import(d: dict[str, Any]) -> None:
    w, it = d["wall_ms"], d["importtime_ms"]
    print(f"import time: fresh processes, median of {d['runs']} (interleaved), bytecode cached for both")
    print(
        f"  wall: python -c pass {w['python']:.1f} ms; import wrapt {w['wrapt']:.1f} ms; import tracked "
        f"{w['tracked']:.1f} ms; tracked - wrapt = {w['tracked'] - w['wrapt']:+.1f} ms"
    )
    print(
        f"  -X importtime, cumulative: wrapt {it['wrapt']:.1f} ms, tracked {it['tracked']:.1f} ms; "
        f"tracked imported after wrapt: {d['tracked_after_wrapt_ms']:.1f} ms"
    )
    print(
        "  what tracked adds over wrapt, by own (self) time, last run: "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in d["top_self"][:10])
        + " (ms)"
    )
    print()


def print_targets(
    peers: dict[str, dict[str, Any]] | None,
    scaling: dict[str, dict[str, Any]] | None,
    imports: dict[str, Any] | None,
    quick: bool,
) -> None:
    """The issue's targets, from the figures of this run."""
    lines: list[tuple[str, bool | None, str]] = []
    peers = peers or {}
    ours = _ns(peers, "tracked", "nested")
    base = _ns(peers, "minimum", "nested")
    if ours and base:
        lines.append(
            ("nested call with usage and pricing at most 5x the hand-written minimum", ours / base <= 5,
             f"{fmt_ns(ours)} ns per call = {ours / base:.2f}x of {fmt_ns(base)} ns")
        )  # fmt: skip
    if ours:
        ran = {p: _ns(peers, p, "nested") for p in PEER_NAMES}
        ran = {p: v for p, v in ran.items() if v}
        if ran:
            fastest = min(ran, key=lambda p: ran[p])
            lines.append(
                ("... and at least 10x faster than the fastest peer's active path", ran[fastest] / ours >= 10,
                 f"fastest peer {LABELS[fastest]} {fmt_ns(ran[fastest])} ns per call = {ran[fastest] / ours:.1f}x "
                 f"tracked's (peers run: {', '.join(LABELS[p] for p in ran)})")
            )  # fmt: skip
        else:
            lines.append(("... and at least 10x faster than the fastest peer's active path", None, "no peer ran"))
    exp = peers.get("tracked", {}).get("workloads", {}).get("experiment")
    if exp:
        lines.append(
            ("top-level call in an experiment with both sinks at most 50 us caller-visible", exp["ns"] <= 50_000,
             f"mean {exp['ns'] / 1000:.1f} us per call (median call {exp['median_call'] / 1000:.1f} us), "
             f"sinks {exp.get('sinks')}")
        )  # fmt: skip
        caller = exp.get("wandb_on_caller") or {}
        if caller.get("wandb_functions") is not None:
            lines.append(
                ("... with wandb's work off the caller's path", caller["wandb_functions"] == 0,
                 f"{caller['wandb_functions']} wandb functions ran on the caller's thread during "
                 f"{caller['calls']:,} calls (cProfile)")
            )  # fmt: skip
    off, wr = _ns(peers, "tracked-disabled", "single"), _ns(peers, "wrapt", "single")
    if off and wr:
        lines.append(
            ("disabled at most 1.5x a wrapt passthrough", off / wr <= 1.5,
             f"{fmt_ns(off)} ns = {off / wr:.2f}x of {fmt_ns(wr)} ns")
        )  # fmt: skip
    if imports:
        diff = imports["wall_ms"]["tracked"] - imports["wall_ms"]["wrapt"]
        lines.append(
            ("import tracked at most 20 ms more than import wrapt alone", diff <= 20,
             f"{diff:+.1f} ms wall (median of {imports['runs']}); -X importtime: tracked after wrapt adds "
             f"{imports['tracked_after_wrapt_ms']:.1f} ms")
        )  # fmt: skip
    tm = exp.get("tracemalloc") if exp else None
    if tm:
        lines.append(
            ("memory after finish() back to where it was before the experiment", tm["retained"] <= 1_000_000,
             f"tracemalloc: {fmt_mb(tm['retained'])} held after finish() of {tm['calls']:,} calls "
             f"(criterion: at most 1 MB, 100 B per call); peak during it {fmt_mb(tm['peak'])}")
        )  # fmt: skip
    if scaling:
        calls = [r for n, r in scaling.items() if n.startswith("scale-calls-") and "ns" in r]
        if len(calls) > 1:
            lo, hi = calls[0], calls[-1]
            lines.append(
                (f"scaling: ns per call flat from {lo['calls']:,} to {hi['calls']:,} calls in one experiment",
                 hi["ns"] <= 1.25 * lo["ns"] and hi["last_tenth_mean"] <= 1.25 * hi["first_tenth_mean"],
                 f"{fmt_ns(lo['ns'])} -> {fmt_ns(hi['ns'])} ns; within the {hi['calls']:,}: first tenth "
                 f"{fmt_ns(hi['first_tenth_mean'])}, last tenth {fmt_ns(hi['last_tenth_mean'])} ns "
                 "(criterion: at most +25%)")
            )  # fmt: skip
            held = [r.get("retained_after_finish") for r in calls]
            lines.append(
                ("scaling: memory held after finish() does not grow with the calls",
                 (held[-1] or 0) <= 1.25 * max(held[0] or 0, 16e6),
                 ", ".join(f"{r['calls']:,}: {fmt_mb(r.get('retained_after_finish'))}" for r in calls))
            )  # fmt: skip
        depth = [r for n, r in scaling.items() if n.startswith("scale-depth-") and "ns" in r]
        if len(depth) > 1:
            lo, hi = depth[0], depth[-1]
            # Outside an experiment: in one, every depth-1 call is a row, which would hide the rest.
            outside = [r["outside_ns_per_call"] for r in depth]
            lines.append(
                (f"scaling: ns per call flat from depth {lo['depth']} to {hi['depth']} (outside an experiment)",
                 max(outside) <= 1.25 * min(outside),
                 ", ".join(f"depth {r['depth']}: {fmt_ns(r['outside_ns_per_call'])}" for r in depth)
                 + f" ns per tracked call (criterion: highest at most +25% over lowest); "
                 f"in an experiment {fmt_ns(lo['ns'])} -> {fmt_ns(hi['ns'])}")
            )  # fmt: skip
        thr = [r for n, r in scaling.items() if n.startswith("scale-threads-") and "ns" in r]
        if len(thr) > 1:
            lo, hi = thr[0], thr[-1]
            lines.append(
                (f"scaling: ns per call flat from {lo['threads']} to {hi['threads']} threads",
                 hi["outside_ns"] <= 1.25 * lo["outside_ns"] and _with_finish(hi) <= 1.25 * _with_finish(lo),
                 f"outside an experiment {fmt_ns(lo['outside_ns'])} -> {fmt_ns(hi['outside_ns'])} ns per call; in one, "
                 f"(loop + finish) / calls {fmt_ns(_with_finish(lo))} -> {fmt_ns(_with_finish(hi))} ns "
                 f"(the loop alone {fmt_ns(lo['ns'])} -> {fmt_ns(hi['ns'])})")
            )  # fmt: skip
    print("targets" + (" (quick run: too few calls for the figures to mean anything)" if quick else "") + ":")
    for label, ok, detail in lines:
        tag = "n/a " if ok is None else "PASS" if ok else "MISS"
        print(f"  [{tag}] {label}: {detail}")
    print()


def versions() -> str:
    from importlib import metadata

    out = []
    for dist in ("tracked", "wandb", "wrapt", "genai-prices", "openai", "pydantic", "logfire", "langfuse", "weave",
                 "mlflow-skinny", "opik"):  # fmt: skip
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist} not installed")
    return ", ".join(out)


def machine() -> str:
    import platform

    load = os.getloadavg() if hasattr(os, "getloadavg") else (0, 0, 0)
    return (
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} | {platform.machine()} | nproc {os.cpu_count()} | "
        f"Python {platform.python_version()} | load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


# --- the subject's process -----------------------------------------------------------------------------


def subject_main(name: str, quick: bool) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    if name.startswith("scale-"):
        response = make_response()
        kind, _, value = name.removeprefix("scale-").partition("-")
        n = int(value)
        import tracked

        result: dict[str, Any] = {"subject": name, "version": tracked.__version__}
        if kind == "calls":
            result.update(scale_calls(n, response))
        elif kind == "depth":
            result.update(scale_depth(n, 500 if quick else 50_000, response))
        elif kind == "threads":
            result.update(scale_threads(n, 200 if quick else 50_000, response))
        else:
            raise SystemExit(f"unknown subject {name!r}")
        return result

    if name not in KITS:
        return {"subject": name, "skipped": "unknown subject"}
    package = PACKAGES.get(name.removesuffix("-disabled"))
    if package is not None:
        import importlib.util

        if importlib.util.find_spec(package) is None:
            return {"subject": name, "skipped": f"not installed (pip install {package}, or the `bench` extra)"}
    response = make_response()
    t0 = perf_counter()
    before_import = rss()
    try:
        kit = KITS[name]()
    except ImportError as exc:
        return {"subject": name, "skipped": f"not importable: {type(exc).__name__}: {str(exc)[:200]}"}
    except Exception as exc:
        return {
            "subject": name,
            "skipped": f"not runnable offline: {type(exc).__name__}: {str(exc)[:200]}",
            "trace": traceback.format_exc()[-2000:],
        }
    init_s = perf_counter() - t0
    loop = asyncio.new_event_loop()
    result = {
        "subject": name,
        "version": kit.version,
        "config": kit.config,
        "init_s": init_s,
        "import_rss": rss() - before_import,
    }
    if name in DISABLED:
        blocks = build_blocks(kit, response, loop)
        result["workloads"] = measure({"single": blocks["single"]}, plan)
        return result
    blocks = build_blocks(kit, response, loop)
    workloads = measure(blocks, plan)
    if "nested" in workloads:
        for key in ("ns",):
            workloads["nested"]["per_outer"] = workloads["nested"][key]
            workloads["nested"][key] = workloads["nested"][key] / 4
    if name == "tracked":
        workloads["experiment"] = experiment_workload(response, plan)
    result["workloads"] = workloads
    result["memory"] = memory_after(kit, plan.memory_calls, plan.flush_s)
    loop.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one benchmark subject (run by bench.py)")
    parser.add_argument("--subject", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = subject_main(args.subject, args.quick)
    except Exception as exc:
        result = {
            "subject": args.subject,
            "skipped": f"failed: {type(exc).__name__}: {str(exc)[:300]}",
            "trace": traceback.format_exc()[-3000:],
        }
    Path(args.out).write_text(json.dumps(result, default=repr))
    sys.stdout.flush()
    # Peers leave exporter threads behind that retry against the dead port: do not wait for them.
    os._exit(0)


if __name__ == "__main__":
    main()
