"""Which experiment a context belongs to, which row a metric joins, and what plain threads carry,
for every way of running code: threads, asyncio tasks, `asyncio.run`, async generators left by
`break`, notebook cells (tasks that share one context), plain thread pools."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import warnings

import pytest

import tracked
from helpers import wandb_run
from tracked.testing import read_experiment
from workloads import work


@tracked.tracked(name="llm")
def llm(prompt: str) -> dict:
    """An LLM call of 10 tokens in and 2 out at a cost of 0.001."""
    return {"tokens_in": 10, "tokens_out": 2, "cost_usd": 0.001, "model": "m"}


# --- 1d: concurrent experiments are siblings -------------------------------------------------------


def _root_checks(exps: list[tracked.Experiment], calls_each: int) -> None:
    for i, exp in enumerate(exps):
        assert exp.parent is None
        assert exp.tags == (f"t{i}",)
        assert exp.group is None
        assert exp.final_summary["total/calls"] == calls_each
        assert exp.final_summary["total/tokens_in"] == sum(10 * i + j for j in range(calls_each))
        run = wandb_run(exp)
        assert run.group == "" and run.tags == [f"t{i}"]
        assert [r["tokens_in"] for r in run.rows()] == [10 * i + j for j in range(calls_each)]


def test_experiments_started_in_plain_threads_are_roots_with_exact_totals(tmp_path):
    """Four plain threads each starting an experiment, all open at once, give four root runs with their own totals."""
    n, barrier = 4, threading.Barrier(4, timeout=30)
    exps: list = [None] * n
    opened = [threading.Event() for _ in range(n)]

    def run(i: int) -> None:
        if i:
            assert opened[i - 1].wait(30)  # each starts once the one before is open
        with tracked.experiment(f"run{i}", tags=[f"t{i}"], dir=tmp_path) as exp:
            exps[i] = exp
            opened[i].set()
            barrier.wait()  # all are open before any calls
            for j in range(5):
                work(10 * i + j)
                barrier.wait()
            barrier.wait()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _root_checks(exps, 5)


def test_experiments_started_in_asyncio_tasks_are_roots_with_exact_totals(tmp_path):
    """Four asyncio tasks each starting an experiment, all open at once, give four root runs with their own totals."""
    from workloads import awork

    async def run(i: int, barrier: asyncio.Barrier) -> tracked.Experiment:
        await asyncio.sleep(0.01 * i)  # each starts once the one before is open
        async with tracked.experiment(f"run{i}", tags=[f"t{i}"], dir=tmp_path) as exp:
            await barrier.wait()
            for j in range(5):
                await awork(10 * i + j)
                await barrier.wait()
        return exp

    async def main() -> list:
        barrier = asyncio.Barrier(4)
        return list(await asyncio.gather(*(run(i, barrier) for i in range(4))))

    _root_checks(asyncio.run(main()), 5)


def test_children_started_in_plain_threads_are_the_parents_and_add_up(tmp_path):
    """Children opened at once in plain threads under a parent are its children, siblings of each other: 20 calls."""
    n, barrier = 4, threading.Barrier(4, timeout=30)
    children: list = [None] * n
    opened = [threading.Event() for _ in range(n)]

    def run(i: int) -> None:
        if i:
            assert opened[i - 1].wait(30)  # each starts once the one before is open
        with tracked.experiment(f"child{i}", tags=[f"c{i}"]) as exp:
            children[i] = exp
            opened[i].set()
            barrier.wait()
            for j in range(5):
                work(10 * i + j)
                barrier.wait()

    with tracked.experiment("parent", tags=["p"], dir=tmp_path) as parent:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert parent.final_summary["total/calls"] == 20
    assert parent.final_summary["total/tokens_in"] == sum(10 * i + j for i in range(n) for j in range(5))
    for i, child in enumerate(children):
        assert child.parent is parent
        assert child.tags == ("p", f"c{i}")
        assert child.group == "parent" and child.job_type is None
        assert child.final_summary["total/calls"] == 5


def test_a_plain_threads_call_goes_to_the_only_open_experiment_and_to_none_of_several(tmp_path):
    """A plain thread's call lands in the only open experiment; with others open in other threads, in none, warned."""
    b_open, b_done = threading.Event(), threading.Event()
    exps: dict = {}

    def in_plain_thread(prompt: str) -> None:
        t = threading.Thread(target=llm, args=(prompt,))
        t.start()
        t.join()

    def run_a() -> None:
        with tracked.experiment("a", dir=tmp_path, wandb=False) as exps["a"]:
            in_plain_thread("only a is open")
            run_b_thread.start()
            assert b_open.wait(30)
            in_plain_thread("a and b are open")
            b_done.set()

    def run_b() -> None:
        with tracked.experiment("b", dir=tmp_path, wandb=False) as exps["b"]:
            b_open.set()
            assert b_done.wait(30)

    run_b_thread = threading.Thread(target=run_b)
    with pytest.warns(tracked.TrackedWarning, match="it is in none of them"):
        run_a_thread = threading.Thread(target=run_a)
        run_a_thread.start()
        run_a_thread.join()
        run_b_thread.join()
    assert exps["a"].final_summary["total/calls"] == 1
    assert exps["b"].final_summary["total/calls"] == 0


# --- 2: which row a metric joins -------------------------------------------------------------------


@tracked.tracked(name="solve")
async def solve(i: int) -> int:
    """A tracked coroutine: one LLM call."""
    llm(f"q{i}")
    await asyncio.sleep(0)
    return i


def test_log_after_asyncio_run_joins_that_coroutines_row(tmp_path):
    """After `asyncio.run(solve(i))`, `exp.log()` joins solve's row: four rows, accuracy -1, 1, 2, 3, mean 1.25."""
    with tracked.experiment("arun", dir=tmp_path) as exp:
        llm("warm-up")
        exp.log({"accuracy": -1})
        for i in range(3):
            asyncio.run(solve(i))
            exp.log({"accuracy": i + 1})
    rows = read_experiment(exp.path).rows
    assert [(r["call"], r["accuracy"]) for r in rows] == [("llm", -1), ("solve", 1), ("solve", 2), ("solve", 3)]
    assert exp.final_summary["accuracy/mean"] == 1.25
    assert [(r["call"], r["accuracy"]) for r in wandb_run(exp).rows()] == [(r["call"], r["accuracy"]) for r in rows]


def test_log_after_a_gather_of_several_calls_is_a_row_of_its_own(tmp_path):
    """After `asyncio.run(gather(...))` of two overlapping calls, a log is a row of its own (about which, unknown)."""

    async def both() -> None:
        await asyncio.gather(solve(1), solve(2))

    with tracked.experiment("gathered", dir=tmp_path, wandb=False) as exp:
        asyncio.run(solve(0))
        exp.log({"accuracy": 0})
        asyncio.run(both())
        exp.log({"accuracy": 1})  # about the two, or either: not joined to any
    rows = read_experiment(exp.path).rows
    assert [(r.get("call"), r.get("accuracy")) for r in rows] == [
        ("solve", 0),
        ("solve", None),
        ("solve", None),
        (None, 1),
    ]


def test_log_in_a_later_notebook_cell_joins_the_last_calls_row(tmp_path):
    """Cells run as tasks sharing one context (as in ipykernel 7): a later cell's log joins the last call's row."""
    ctx = contextvars.copy_context()
    loop = asyncio.new_event_loop()

    def cell(code) -> None:
        async def run() -> None:
            code()

        loop.run_until_complete(loop.create_task(run(), context=ctx))

    exp_box: list = []
    try:
        cell(lambda: exp_box.append(tracked.experiment("nb", dir=tmp_path, wandb=False).start()))
        for i in range(3):
            cell(lambda i=i: llm(f"q{i}"))
            cell(lambda i=i: exp_box[0].log({"accuracy": i}))
        cell(lambda: exp_box[0].log({"alone": 1}))  # a second log after the same call joins it too
        cell(lambda: exp_box[0].finish())
    finally:
        loop.close()
    rows = read_experiment(exp_box[0].path).rows
    assert [(r["call"], r["accuracy"]) for r in rows] == [("llm", 0), ("llm", 1), ("llm", 2)]
    assert rows[2]["alone"] == 1


def test_log_between_the_items_of_a_generator_joins_its_row(tmp_path):
    """`exp.log()` while iterating a top-level tracked generator joins the generator's row, not the one before."""

    @tracked.tracked(name="stream")
    def stream(n: int):
        llm("s")
        yield from range(n)

    with tracked.experiment("gen", dir=tmp_path, wandb=False) as exp:
        llm("before")
        for k in stream(2):
            exp.log({f"item{k}": k})
    rows = read_experiment(exp.path).rows
    assert [r["call"] for r in rows] == ["llm", "stream"]
    assert "item0" not in rows[0] and (rows[1]["item0"], rows[1]["item1"]) == (0, 1)


# --- 3: async generators left early ------------------------------------------------------------------


@tracked.tracked(name="astream")
async def astream(q: int):
    """A tracked async generator: one LLM call, then chunks."""
    llm(f"q{q}")
    for k in range(3):
        await asyncio.sleep(0)
        yield f"{q}.{k}"


def test_async_for_left_by_break_joins_its_row_and_is_recorded_every_time(tmp_path):
    """Three times `async for ... break` then `exp.log()` in `async with experiment`: 3 rows, 3 calls, 200 runs."""

    async def main(k: int) -> tracked.Experiment:
        async with tracked.experiment(f"brk{k}", dir=tmp_path, wandb=False) as exp:
            for i in range(3):
                async for _ in astream(i):
                    break
                exp.log({"i": i})
        return exp

    for k in range(200):
        exp = asyncio.run(main(k))
        run = read_experiment(exp.path)
        assert [(r["call"], r["i"], r["llm_calls"]) for r in run.rows] == [("astream", i, 1) for i in range(3)], k
        assert sorted(c["name"] for c in run.calls) == ["astream"] * 3 + ["llm"] * 3, k
        assert exp.final_summary["total/calls"] == 3 and exp.final_summary["total/llm_calls"] == 3, k


def test_async_for_left_by_break_is_in_w_and_b_with_its_metric(tmp_path):
    """The rows of generators left by `break`, with the metric logged after each, reach W&B whole."""

    async def main() -> tracked.Experiment:
        async with tracked.experiment("brk_wandb", dir=tmp_path) as exp:
            for i in range(3):
                async for _ in astream(i):
                    break
                exp.log({"i": i})
        return exp

    exp = asyncio.run(main())
    assert [(r["call"], r["i"]) for r in wandb_run(exp).rows()] == [("astream", i) for i in range(3)]


def test_async_for_left_by_break_in_a_plain_with_block_is_recorded(tmp_path):
    """`async for ... break` in a plain `with experiment` in async code: the call is a row with its LLM call."""

    async def main() -> tracked.Experiment:
        with tracked.experiment("brk_plain", dir=tmp_path, wandb=False) as exp:
            async for _ in astream(7):
                break
            exp.log({"i": 7})
        await asyncio.sleep(0.01)  # the loop closes the generator after the experiment ended
        return exp

    exp = asyncio.run(main())
    run = read_experiment(exp.path)
    assert [(r["call"], r["i"], r["llm_calls"]) for r in run.rows] == [("astream", 7, 1)]
    assert sorted(c["name"] for c in run.calls) == ["astream", "llm"]
    assert exp.final_summary["total/llm_calls"] == 1


# --- 5: thread pools -----------------------------------------------------------------------------------


@tracked.tracked(name="strategy")
def debate(task: int) -> str:
    """Three debaters in a plain stdlib pool, then a judge: four LLM calls."""
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda k: llm(f"{task}.{k}"), range(3)))
    llm(f"judge {task} {len(answers)}")
    return "ok"


def test_debate_with_debaters_in_a_plain_pool_is_one_row_per_task(tmp_path):
    """A strategy running its debaters in a plain stdlib `ThreadPoolExecutor`: 3 tasks, 3 rows, llm_calls 4 each."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", tracked.TrackedWarning)
        with tracked.experiment("debate", dir=tmp_path) as exp:
            for task in range(3):
                debate(task)
                exp.log({"accuracy": task})
    rows = read_experiment(exp.path).rows
    assert [(r["call"], r["llm_calls"], r["accuracy"]) for r in rows] == [("strategy", 4, t) for t in range(3)]
    assert [(r["call"], r["llm_calls"]) for r in wandb_run(exp).rows()] == [("strategy", 4)] * 3
    assert exp.final_summary["total/llm_calls"] == 12


def test_plain_thread_calls_during_a_call_warn_once_per_experiment(tmp_path):
    """Plain `threading.Thread` calls arriving while a top-level call runs warn once per experiment."""

    @tracked.tracked(name="strategy")
    def threaded(task: int) -> None:
        threads = [threading.Thread(target=llm, args=(f"{task}.{k}",)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    for name in ("first", "second"):
        with pytest.warns(tracked.TrackedWarning, match="does not carry the context") as caught:
            with tracked.experiment(name, dir=tmp_path, wandb=False) as exp:
                alone = threading.Thread(target=llm, args=("alone",))  # no other call running: no warning
                alone.start()
                alone.join()
                assert not caught
                threaded(0)
                threaded(1)
        assert sum("does not carry the context" in str(w.message) for w in caught) == 1
        assert f"experiment {name!r}" in str(caught[0].message)
        assert exp.final_summary["total/calls"] == 7  # each thread's call a row of its own


def test_a_task_logs_to_its_own_row_when_another_task_called_and_ended_meanwhile():
    """Task A's `exp.log` after its call joins A's row even though task B's call began and ended since."""

    @tracked.tracked
    async def solve(i: int) -> dict:
        return {"tokens_in": i + 1, "tokens_out": 1, "cost_usd": 0.0, "model": "m"}

    async def main() -> tracked.Experiment:
        a_done, b_done = asyncio.Event(), asyncio.Event()
        async with tracked.experiment("seq", wandb=False) as exp:

            async def a() -> None:
                await solve(0)
                a_done.set()
                await b_done.wait()
                exp.log({"acc": 1})

            async def b() -> None:
                await a_done.wait()
                await solve(1)
                b_done.set()
                exp.log({"acc": 2})

            await asyncio.gather(a(), b())
        return exp

    exp = asyncio.run(main())
    rows = read_experiment(exp.dir).rows
    assert [(r["tokens_in"], r.get("acc")) for r in rows] == [(1, 1), (2, 2)]


def test_twenty_tasks_each_logging_after_its_call_give_twenty_rows_with_their_own_metric():
    """`gather` of 20 workers that each `await solve(i); exp.log(...)`: 20 rows, each with its own task's value."""

    @tracked.tracked
    async def solve(i: int) -> dict:
        await asyncio.sleep(0.001 * (i % 3))
        return {"tokens_in": i + 1, "tokens_out": 1, "cost_usd": 0.0, "model": "m"}

    async def main() -> tracked.Experiment:
        async with tracked.experiment("many", wandb=False) as exp:

            async def worker(i: int) -> None:
                await solve(i)
                await asyncio.sleep(0.001 * ((i * 7) % 5))
                exp.log({"i": i + 1})

            await asyncio.gather(*(worker(i) for i in range(20)))
        return exp

    for _ in range(5):
        rows = read_experiment(asyncio.run(main()).dir).rows
        assert len(rows) == 20
        assert all(r["tokens_in"] == r["i"] for r in rows)


@pytest.mark.parametrize("block", ["async with", "with"])
def test_a_stream_left_by_break_inside_an_async_call_is_in_that_calls_row(server, block):
    """An instrumented async stream left by `break` in a coroutine or an async generator ends within that call:
    each row holds its one LLM call (usage unknown), as the sync version does, and nothing is late."""
    client = server.openai(async_=True)
    tracked.instrument(client, provider="openai")
    server.ledger.clear()
    messages = [{"role": "user", "content": "Where will Sally look?"}]

    @tracked.tracked
    async def coro() -> int:
        stream = await client.chat.completions.create(model="gpt-4o-mini", stream=True, messages=messages)
        async for _chunk in stream:
            break
        return 1

    @tracked.tracked
    async def astream():
        stream = await client.chat.completions.create(model="gpt-4o-mini", stream=True, messages=messages)
        async for chunk in stream:
            yield chunk

    async def body(exp: tracked.Experiment) -> None:
        await coro()
        for i in range(2):
            async for _chunk in astream():
                break
            exp.log({"i": i})

    async def main() -> tracked.Experiment:
        if block == "async with":
            async with tracked.experiment("left", wandb=False) as exp:
                await body(exp)
        else:
            with tracked.experiment("left", wandb=False) as exp:
                await body(exp)
        return exp

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            exp = asyncio.run(main())
    finally:
        tracked.uninstrument(client)
    assert not [w for w in caught if "ended after" in str(w.message)]  # no late child
    rows = read_experiment(exp.dir).rows
    assert [(r["call"], r["llm_calls"], r.get("i")) for r in rows] == [
        ("coro", 1, None),
        ("astream", 1, 0),
        ("astream", 1, 1),
    ]
    assert len(server.ledger.sent) == 3 == exp.final_summary["total/llm_calls"]
