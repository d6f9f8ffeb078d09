"""Load: 8 threads x 10,000 calls and 1,000 concurrent asyncio tasks with nested calls, in one experiment each.

Totals are exact, every call has the right parent, no row is lost or mixed with another, and the memory
an experiment holds does not grow with the number of calls once they are on disk. Run with `-s` to see
the sizes and memory measured.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

import pytest

import tracked
from helpers import genai_cost
from tracked import current_call
from tracked._store import read_jsonl, read_rows
from tracked.testing import read_wandb_run

pytestmark = pytest.mark.slow  # tens of thousands of calls per test

MODEL = "gpt-4o"
THREADS = 8
CALLS_PER_THREAD = 10_000
TASKS = 1_000


def expected_cost(tokens_in: int, tokens_out: int) -> float:
    """The cost of this much gpt-4o usage, straight from genai-prices (gpt-4o is priced linearly)."""
    return genai_cost(None, MODEL, tokens_in, tokens_out)


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def wait_for_lines(path: Path, n: int, timeout_s: float = 60.0) -> None:
    """Wait until the experiment's background writer has put `n` call records on disk."""
    deadline = time.monotonic() + timeout_s
    while count_lines(path) < n:
        assert time.monotonic() < deadline, f"{path.name} has {count_lines(path)} of {n} lines after {timeout_s} s"
        time.sleep(0.02)  # polling another thread's disk writes


def check_parents(calls: list[dict], n_top: int) -> None:
    """Each "outer" call (tokens_in = i * n, tokens_out = n) has exactly n "inner" children, each with tokens_in = i."""
    by_id = {c["id"]: c for c in calls}
    assert len(by_id) == len(calls), "duplicate call ids"
    outers = [c for c in calls if c["name"] == "outer"]
    assert len(outers) == n_top
    assert all(c["parent_id"] is None for c in outers)
    children: dict[str, list[dict]] = defaultdict(list)
    for c in calls:
        if c["name"] == "inner":
            children[c["parent_id"]].append(c)
    assert set(children) == {c["id"] for c in outers}, "an inner call whose parent is not an outer call"
    for outer in outers:
        n = outer["tokens_out"]
        i = outer["tokens_in"] // n
        assert outer["tokens_in"] == i * n
        kids = children[outer["id"]]
        assert len(kids) == n == outer["llm_calls"]
        assert [k["tokens_in"] for k in kids] == [i] * n, (outer, kids)
        assert all(k["tokens_out"] == 1 and k["model"] == MODEL and k["error"] is None for k in kids)


# --- 8 threads x 10,000 top-level calls ---------------------------------------------------------------


@tracked.tracked(name="inner")
def inner(i: int) -> None:
    current_call().add_usage(tokens_in=i, tokens_out=1, model=MODEL)


@tracked.tracked(name="outer")
def outer(i: int) -> None:
    for _ in range(1 + i % 2):
        inner(i)


def test_eight_threads_of_ten_thousand_calls_keep_exact_totals_parents_and_rows():
    """8 threads x 10,000 top-level calls (1-2 nested each, then exp.log): exact totals, parents and rows."""
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # switch threads often: calls and rows of different threads interleave
    start = threading.Barrier(THREADS)

    def work(t: int, exp: tracked.Experiment) -> int:
        start.wait()
        for j in range(CALLS_PER_THREAD):
            i = t * CALLS_PER_THREAD + j + 1
            outer(i)
            exp.log({"k": i})
        return t

    t0 = time.perf_counter()
    try:
        with tracked.experiment("load-threads", wandb=False) as exp:
            with tracked.ThreadPoolExecutor(max_workers=THREADS) as pool:
                done = [f.result() for f in [pool.submit(work, t, exp) for t in range(THREADS)]]
    finally:
        sys.setswitchinterval(old_interval)
    elapsed = time.perf_counter() - t0
    assert done == list(range(THREADS))

    n = THREADS * CALLS_PER_THREAD
    ks = range(1, n + 1)
    tokens_in = sum(i * (1 + i % 2) for i in ks)
    llm_calls = sum(1 + i % 2 for i in ks)
    summary = exp.final_summary
    assert summary["sinks"] == {"local": "ok", "wandb": "off"}
    assert summary["total/calls"] == n and "outer/calls" not in summary  # one call name
    assert summary["total/errors"] == 0
    assert summary["total/llm_calls"] == llm_calls
    assert summary["total/tokens_in"] == tokens_in
    assert summary["total/tokens_out"] == llm_calls
    assert summary["total/unpriced_calls"] == 0
    assert summary["total/cost_usd"] == pytest.approx(expected_cost(tokens_in, llm_calls), rel=1e-9)
    assert summary["k/mean"] == pytest.approx((n + 1) / 2, rel=1e-12)

    # results.jsonl: one line per row and one per log() call, none torn; rows whole and unmixed.
    results = exp.path / "results.jsonl"
    torn: list[str] = []
    assert count_lines(results) == 2 * n
    rows = read_rows(results, warn=torn.append)
    assert torn == []
    call_rows = [r for r in rows if "call" in r]
    assert len(call_rows) == n
    assert sorted(r["_step"] for r in rows) == list(range(len(rows)))
    assert sorted(r["k"] for r in rows if "k" in r) == list(ks), "a logged metric lost or logged twice"
    mixed = [
        r
        for r in call_rows
        if r["call"] != "outer"
        or r["tokens_out"] != 1 + (r["tokens_in"] // r["tokens_out"]) % 2
        or ("k" in r and r["tokens_in"] != r["k"] * r["tokens_out"])
    ]
    assert mixed == []
    # A row held open while other threads made 1,000 more is closed early (see the xfail test below):
    # its metric is then a row of its own, but never lands in another call's row.
    split = [r for r in rows if "call" not in r]
    assert all(set(r) == {"_step", "_timestamp", "k"} for r in split)
    assert sorted(r["k"] for r in split) == sorted(r["tokens_in"] // r["tokens_out"] for r in call_rows if "k" not in r)

    # calls.jsonl: every call, each nested one under the right top-level call.
    calls = list(read_jsonl(exp.path / "calls.jsonl"))
    assert len(calls) == n + llm_calls
    check_parents(calls, n)
    assert sorted(c["tokens_in"] // c["tokens_out"] for c in calls if c["name"] == "outer") == list(ks)
    print(
        f"\nthreads: {THREADS} x {CALLS_PER_THREAD} top-level calls, {len(calls)} calls, {len(rows)} rows "
        f"({len(split)} metrics split from their call's row) "
        f"({results.stat().st_size / 1e6:.1f} MB results.jsonl, "
        f"{(exp.path / 'calls.jsonl').stat().st_size / 1e6:.1f} MB calls.jsonl) in {elapsed:.2f} s"
    )


# --- 1,000 concurrent asyncio tasks -------------------------------------------------------------------


def test_thousand_concurrent_asyncio_tasks_keep_exact_totals_parents_and_wandb_rows(tmp_path):
    """1,000 tasks at once, each an async call with 2 concurrent nested ones: exact totals, parents, W&B rows whole."""
    state = {"open_outer": 0, "peak_outer": 0, "inner_started": 0}

    async def main() -> tracked.Experiment:
        all_in = asyncio.Event()  # set once every inner call has started: all 3,000 calls are open at once

        @tracked.tracked(name="inner")
        async def ainner(i: int) -> None:
            state["inner_started"] += 1
            if state["inner_started"] == 2 * TASKS:
                all_in.set()
            await all_in.wait()
            await asyncio.sleep(0)
            current_call().add_usage(tokens_in=i, tokens_out=1, model=MODEL)

        @tracked.tracked(name="outer")
        async def aouter(i: int) -> None:
            state["open_outer"] += 1
            state["peak_outer"] = max(state["peak_outer"], state["open_outer"])
            await asyncio.sleep(0)
            await asyncio.gather(ainner(i), ainner(i))
            state["open_outer"] -= 1

        async def task(i: int, exp: tracked.Experiment) -> None:
            await aouter(i)
            await asyncio.sleep(0)  # other tasks' calls end in between
            exp.log({"k": i})

        async with tracked.experiment("load-async", dir=tmp_path) as exp:
            await asyncio.gather(*(task(i, exp) for i in range(1, TASKS + 1)))
        return exp

    t0 = time.perf_counter()
    exp = asyncio.run(main())
    elapsed = time.perf_counter() - t0
    assert state["peak_outer"] == TASKS and state["open_outer"] == 0

    tokens_in = sum(2 * i for i in range(1, TASKS + 1))
    summary = exp.final_summary
    assert summary["sinks"] == {"local": "ok", "wandb": "ok"}
    assert summary["total/calls"] == TASKS and "outer/calls" not in summary  # one call name
    assert summary["total/llm_calls"] == summary["total/tokens_out"] == 2 * TASKS
    assert summary["total/tokens_in"] == tokens_in
    assert summary["total/cost_usd"] == pytest.approx(expected_cost(tokens_in, 2 * TASKS), rel=1e-9)

    rows = read_rows(exp.path / "results.jsonl")
    assert len(rows) == TASKS
    assert sorted(r["k"] for r in rows) == list(range(1, TASKS + 1))
    assert all(r["tokens_in"] == 2 * r["k"] and r["tokens_out"] == 2 == r["llm_calls"] for r in rows)
    calls = list(read_jsonl(exp.path / "calls.jsonl"))
    assert len(calls) == 3 * TASKS
    check_parents(calls, TASKS)

    run = read_wandb_run(summary["wandb"]["dir"])
    assert run.exit_code == 0
    assert len(run.history) == TASKS
    assert sorted(h["_step"] for h in run.history) == list(range(TASKS))
    assert sorted(h["k"] for h in run.history) == list(range(1, TASKS + 1))
    mixed = [
        h
        for h in run.rows()
        if h["call"] != "outer" or h["tokens_in"] != 2 * h["k"] or h["tokens_out"] != 2 or h["llm_calls"] != 2
    ]
    assert mixed == []
    assert run.summary["total/calls"] == TASKS and run.summary["total/tokens_in"] == tokens_in
    table = run.table()
    assert len(table) == 3 * TASKS
    check_parents(table, TASKS)
    print(f"\nasyncio: {TASKS} concurrent tasks, {len(calls)} calls, {len(run.history)} W&B rows in {elapsed:.2f} s")


# --- memory -----------------------------------------------------------------------------------------


@tracked.tracked(name="llm")
def llm(i: int) -> None:
    current_call().add_usage(tokens_in=i, tokens_out=1, model=MODEL)


def test_memory_does_not_grow_with_calls_once_they_are_on_disk():
    """20,000 calls then 100,000 more: retained memory grows by < 2 MB, and finish() gives it back."""
    first, more = 20_000, 100_000
    with tracked.experiment("warm-up", wandb=False) as warm:  # imports, price data, caches: once
        for i in range(200):
            llm(i)
            warm.log({"k": i})
    del warm
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        exp = tracked.experiment("memory", wandb=False).start()
        calls_file = exp.path / "calls.jsonl"
        for i in range(first):
            llm(i)
            if i % 10 == 0:  # a metric joined to every tenth row
                exp.log({"k": i})
        wait_for_lines(calls_file, first)
        gc.collect()
        after_first = tracemalloc.get_traced_memory()[0]
        for i in range(first, first + more):
            llm(i)
            if i % 10 == 0:  # a metric joined to every tenth row
                exp.log({"k": i})
        wait_for_lines(calls_file, first + more)
        gc.collect()
        after_more = tracemalloc.get_traced_memory()[0]
        exp.finish()
        elapsed = time.perf_counter() - t0
        summary = exp.final_summary
        del exp
        gc.collect()
        after_finish, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(
        f"\nmemory: baseline {baseline / 1e3:.1f} kB, after {first} calls {after_first / 1e3:.1f} kB, "
        f"after {more} more {after_more / 1e3:.1f} kB (growth {(after_more - after_first) / 1e3:.1f} kB), after finish "
        f"{after_finish / 1e3:.1f} kB, peak {peak / 1e6:.2f} MB (mostly calls queued for the writer thread, "
        f"slowed by tracemalloc); {first + more} calls in {elapsed:.1f} s under tracemalloc"
    )
    assert summary["total/calls"] == first + more
    assert summary["total/tokens_in"] == sum(range(first + more))
    assert summary["k/mean"] == pytest.approx(sum(range(0, first + more, 10)) / ((first + more) // 10))
    assert after_more - after_first < 2_000_000
    assert after_finish - baseline < 1_000_000


@tracked.tracked(name="step")
def step(i: int) -> None:
    current_call().add_usage(tokens_in=i, tokens_out=1, model=MODEL)


def test_metrics_logged_after_a_call_join_its_row_while_other_threads_make_many_rows():
    """A thread logging right after its call joins that call's row, however many rows other threads made meanwhile."""
    ended, resume = threading.Event(), threading.Event()
    with tracked.experiment("held-row", wandb=False) as exp:

        def slow_thread() -> None:
            step(0)
            ended.set()
            resume.wait()  # descheduled between its call and its log(), as under load
            exp.log({"k": 0})

        thread = threading.Thread(target=tracked.bind(slow_thread))
        thread.start()
        assert ended.wait(10)
        for i in range(1, 1_100):
            step(i)
        resume.set()
        thread.join()
    rows = read_rows(exp.path / "results.jsonl")
    (first,) = [r for r in rows if r.get("tokens_in") == 0]
    assert first.get("k") == 0
    assert len(rows) == 1_100


def test_queues_to_the_background_threads_are_bounded(monkeypatch, tmp_path, wandb_in_thread):
    """When W&B falls behind, calls wait for it: its queue stays near the bound, and every row arrives."""
    import threading

    from tracked import _dispatch
    from tracked.sinks.wandb import WandbSink

    monkeypatch.setattr(_dispatch, "MAX_QUEUED", 50)
    real_log = WandbSink.write_row
    seen = []

    def slow_log(self, step, row):
        time.sleep(0.001)  # a W&B slower than the calls
        seen.append(row["n"])
        real_log(self, step, row)

    monkeypatch.setattr(WandbSink, "write_row", slow_log)
    largest = 0

    @tracked.tracked
    def step(n):
        return n

    with tracked.experiment("bounded", dir=tmp_path) as exp:
        for n in range(600):
            step(n)
            exp.log({"n": n})
            if n == 0:  # W&B's run started (its import and init, seconds on a loaded machine, are not a stall)
                deadline = time.monotonic() + 60
                while not exp._sinks.background["wandb"].started and time.monotonic() < deadline:
                    time.sleep(0.01)
            largest = max(largest, exp._sinks._threads["wandb"].qsize())
    assert largest <= 50 + 5
    assert seen == list(range(600))
    assert exp.final_summary["sinks"]["wandb"] == "ok"
    assert threading.active_count() < 50


def test_a_stuck_wandb_is_not_waited_for_by_the_calls(monkeypatch, tmp_path, wandb_in_thread):
    """A W&B call that hangs does not make the user's calls wait beyond about a second, however many rows queue up."""
    import threading

    from tracked import _dispatch
    from tracked.sinks.wandb import WandbSink

    monkeypatch.setattr(_dispatch, "MAX_QUEUED", 20)
    monkeypatch.setattr(_dispatch, "FINISH_TIMEOUT_S", 1.0)
    release = threading.Event()

    def hang(self, step, row):
        release.wait(30)
        raise RuntimeError("released")

    monkeypatch.setattr(WandbSink, "write_row", hang)

    @tracked.tracked
    def step(n):
        return n

    start = time.monotonic()
    with pytest.warns(tracked.TrackedWarning, match="no progress"):
        with tracked.experiment("stuck", dir=tmp_path) as exp:
            results = [step(n) for n in range(300)]
    release.set()
    assert results == list(range(300))
    assert time.monotonic() - start < 10
    assert exp.final_summary["total/calls"] == 300
    assert exp.final_summary["sinks"]["local"] == "ok"
