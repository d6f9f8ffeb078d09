"""How tracked scales, one point per subject process (`scale-calls-N`, `scale-depth-N`,
`scale-threads-N`): calls in one experiment, depth of nesting, threads. Each point also reads the
memory it holds, the time in the cyclic GC and the CPU each of tracked's threads used.
"""

from __future__ import annotations

import gc
import resource
import threading
import time
from collections.abc import Callable
from time import perf_counter, perf_counter_ns
from typing import Any

from experiment import exp_dir, sinks_of, tracked_chat, warm_up
from harness import call_stats, make_response, peak_above, reset_peak, rss, settle, time_calls
from subjects import minimum_kit

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


def run_point(name: str, quick: bool) -> dict[str, Any]:
    """One scaling subject, in its own process."""
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


# --- calls in one experiment ----------------------------------------------------------------------------


def scale_calls(n: int, response: Any) -> dict[str, Any]:
    import tracked

    chat = tracked_chat(response)
    root = exp_dir()
    warm_up(chat, root, 100)
    before = settle()
    has_peak = reset_peak()
    t_start = perf_counter()
    with GcClock() as gclock, tracked.experiment("scale", dir=root) as exp:
        cpu0 = thread_cpu()
        times, total = time_calls(chat, n)
        cpu1 = thread_cpu()
        t_loop = perf_counter()
        queues = exp._sinks.backlog()  # items waiting per background thread
        backlog = {"pump_queue": queues.get("calls"), "wandb_queue": queues.get("wandb")}
        rss_end_of_loop = rss()
    t_done = perf_counter()
    peak = peak_above(before, has_peak)
    summary = sinks_of(exp)
    stats = call_stats(times)
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
        "peak": peak,
        "retained_after_finish": after - before,
        **summary,
        "gc": gclock.as_dict(),
        # CPU seconds each thread used during the loop: what the W&B and pump threads took from the
        # caller, through the GIL, is in the caller's wall time.
        "thread_cpu_during_loop": {k: cpu1[k] - cpu0[k] for k in cpu1 if k in cpu0},
    }


# --- depth ----------------------------------------------------------------------------------------------


def chain(deco_at: Callable[[int], Callable[[Any], Any]], depth: int, response: Any) -> Callable[[Any], Any]:
    """depth nested functions, level i decorated by `deco_at(i)`; the innermost returns `response`."""

    def leaf(x: Any) -> Any:
        return response

    fn = deco_at(depth - 1)(leaf)
    for level in reversed(range(depth - 1)):

        def step(x: Any, _inner: Callable[[Any], Any] = fn) -> Any:
            return _inner(x)

        fn = deco_at(level)(step)
    return fn


def _loop_ns(fn: Callable[[Any], Any], n: int) -> int:
    """n calls of `fn` in a plain loop, the range made inside the timing: the ns of the loop."""
    t0 = perf_counter_ns()
    for _ in range(n):
        fn(1)
    return perf_counter_ns() - t0


def scale_depth(depth: int, total_calls: int, response: Any) -> dict[str, Any]:
    import tracked

    top = chain(lambda level: tracked.tracked(name=f"level{level}"), depth, response)
    k = max(total_calls // depth, 10)
    root = exp_dir()
    warm_up(top, root, 20)
    out: dict[str, Any] = {"depth": depth, "top_level_calls": k, "calls": k * depth}
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    best = min(_loop_ns(top, k) for _ in range(3))
    # Page faults per top-level call: CPython 3.11 maps and unmaps a 16 kB chunk of its frame
    # stack each time a call chain crosses a chunk's end, which shows here.
    out["faults_per_top"] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / (3 * k)
    out["outside_ns_per_call"] = best / (k * depth)
    out["outside_ns_per_top"] = best / k
    # Control: the same chain under the hand-written minimum, to tell the SDK from the interpreter.
    minimum = minimum_kit().sync
    control = chain(lambda level: minimum, depth, response)
    out["minimum_ns_per_call"] = min(_loop_ns(control, k) for _ in range(3)) / (k * depth)
    with GcClock() as gclock, tracked.experiment("depth", dir=root) as exp:
        dt = _loop_ns(top, k)
        t_loop = perf_counter()
    out["finish_s"] = perf_counter() - t_loop
    out["ns"] = dt / (k * depth)
    out["ns_per_top"] = dt / k
    out.update(sinks_of(exp))
    out["gc"] = gclock.as_dict()
    return out


# --- threads --------------------------------------------------------------------------------------------


def _calls_of(fn: Callable[[Any], Any]) -> Callable[[int], int]:
    """A thread's share of the work: n calls of `fn`."""

    def work(n: int) -> int:
        for _ in range(n):
            fn(1)
        return n

    return work


def _pool_ns(pool: Any, work: Callable[[int], int], threads: int, per: int) -> float:
    """`work(per)` on each of `threads` threads of the pool: wall ns per call."""
    t0 = perf_counter_ns()
    futures = [pool.submit(work, per) for _ in range(threads)]
    done = sum(f.result() for f in futures)
    return (perf_counter_ns() - t0) / done


def scale_threads(threads: int, total_calls: int, response: Any) -> dict[str, Any]:
    import tracked

    work = _calls_of(tracked_chat(response))
    work_minimum = _calls_of(minimum_kit().sync(lambda x: response))
    per = max(total_calls // threads, 1)
    root = exp_dir()
    out: dict[str, Any] = {"threads": threads, "calls": per * threads}
    with tracked.ThreadPoolExecutor(max_workers=threads) as pool:
        pool.submit(work, 10).result()
        out["outside_ns"] = min(_pool_ns(pool, work, threads, per) for _ in range(3))
        out["minimum_ns"] = min(_pool_ns(pool, work_minimum, threads, per) for _ in range(3))
        with tracked.experiment("warm", dir=root):
            run_small = [pool.submit(work, 10) for _ in range(threads)]
            for f in run_small:
                f.result()
        with GcClock() as gclock, tracked.experiment("threads", dir=root) as exp:
            out["ns"] = _pool_ns(pool, work, threads, per)
            t_loop = perf_counter()
        out["finish_s"] = perf_counter() - t_loop
    out.update(sinks_of(exp))
    out["gc"] = gclock.as_dict()
    return out
