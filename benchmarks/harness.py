"""How a subject is measured: the plans, the `Kit` each subject provides, the timed loops, the
statistics and the memory readings.

A subject's process (`worker.py`) and the in-process table (`bench.py`) time their calls with the
loops here. Only the standard library is imported at the top, so that a subject's process holds
only its own SDK: its import time and memory are its own.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import statistics
import threading
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter, perf_counter_ns
from typing import Any, TypeVar

T = TypeVar("T")


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


# --- what a subject provides --------------------------------------------------------------------------


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


def dist_version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def quiet(*names: str) -> None:
    """Silence these loggers: a peer retrying against the dead port must not flood the output."""
    for name in names:
        lg = logging.getLogger(name)
        lg.setLevel(logging.CRITICAL + 1)
        lg.propagate = False


# --- timed blocks: each runs n iterations and returns the total ns --------------------------------------


def sync_block(fn: Callable[[Any], Any]) -> Callable[[int], int]:
    """A timed block: n calls of `fn` in a plain loop, returning the total ns."""

    def block(n: int) -> int:
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            fn(1)
        return perf_counter_ns() - t0

    return block


def async_block(fn: Callable[[Any], Any], loop: asyncio.AbstractEventLoop) -> Callable[[int], int]:
    """n awaited calls of the coroutine function `fn`, in one coroutine run on `loop`."""

    async def timed(n: int) -> int:
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            await fn(1)
        return perf_counter_ns() - t0

    def block(n: int) -> int:
        return loop.run_until_complete(timed(n))

    return block


def gen_block(fn: Callable[[Any], Any]) -> Callable[[int], int]:
    """n generators made by `fn`, each run to the end."""

    def block(n: int) -> int:
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            for _item in fn(1):
                pass
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

        blocks["async"] = async_block(asingle, loop)

    if kit.gen is not None:

        @kit.gen
        def gen10(x: Any) -> Any:
            yield from range(10)

        blocks["gen"] = gen_block(gen10)
    return blocks


def time_calls(fn: Callable[[Any], Any], n: int) -> tuple[array[int], int]:
    """n calls of `fn`, each timed: (the ns of every call, the ns of the whole loop)."""
    out = array("q", bytes(8 * n))
    pc = perf_counter_ns
    start = pc()
    for i in range(n):
        t0 = pc()
        fn(1)
        out[i] = pc() - t0
    return out, pc() - start


# --- statistics -------------------------------------------------------------------------------------------


def rotated(items: Sequence[T], r: int) -> list[T]:
    """`items` rotated by round `r`: each round starts with another subject."""
    k = r % len(items)
    return [*items[k:], *items[:k]]


def lowest_and_noise(medians: Sequence[float]) -> tuple[float, float]:
    """The lowest round median, and the noise: the median round over the best one, minus 1."""
    lowest = min(medians)
    return lowest, statistics.median(medians) / lowest - 1.0


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
        order = rotated(names, r)
        samples: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(plan.blocks):
            for name in order:
                samples[name].append(blocks[name](sizes[name]) / sizes[name])
        for name in names:
            medians[name].append(statistics.median(samples[name]))
    out = {}
    for name in names:
        ns, noise = lowest_and_noise(medians[name])
        out[name] = {"ns": ns, "noise": noise, "calls": sizes[name] * plan.blocks * plan.rounds}
    return out


def call_stats(times: array[int]) -> dict[str, float]:
    """Median, p99 and max of per-call times, and the mean of the first and of the last tenth."""
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


# --- memory -----------------------------------------------------------------------------------------------


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


def peak_above(before: int, has_peak: bool) -> int | None:
    """The peak RSS since `reset_peak()` above `before`, or None where it cannot be read."""
    peak = peak_rss() if has_peak else None
    return None if peak is None else peak - before


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


def bounded(fn: Callable[[], Any] | None, timeout_s: float) -> float | None:
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


def memory_after(kit: Kit, calls: int, flush_s: float) -> dict[str, Any]:
    """RSS still held after `calls` calls of the single workload (and the subject's flush)."""

    @kit.sync
    def single_mem(x: Any) -> Any:
        return x

    for _ in range(100):
        single_mem(1)
    bounded(kit.flush, flush_s)
    before = settle()
    has_peak = reset_peak()
    t0 = perf_counter()
    for _ in range(calls):
        single_mem(1)
    loop_s = perf_counter() - t0
    flushed = bounded(kit.flush, flush_s)
    peak = peak_above(before, has_peak)
    after = settle()
    out: dict[str, Any] = {
        "calls": calls,
        "retained": after - before,
        "peak": peak,
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
