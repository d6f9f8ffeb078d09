"""Late children: calls that end after the call they ran in had returned are counted exactly once."""

from __future__ import annotations

import asyncio
import threading
import warnings
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracked
from tracked.testing import read_experiment

MODEL = "gpt-4o-mini"


@tracked.tracked
def llm(tokens_in: int, tokens_out: int) -> None:
    """An LLM call that reports its usage by hand."""
    tracked.current_call().add_usage(tokens_in=tokens_in, tokens_out=tokens_out, model=MODEL)


@tracked.tracked
async def allm(tokens_in: int, tokens_out: int) -> None:
    """The same, async."""
    await asyncio.sleep(0)
    tracked.current_call().add_usage(tokens_in=tokens_in, tokens_out=tokens_out, model=MODEL)


@dataclass
class Node:
    """A call tree: a leaf LLM call (`usage`) or a step with children, each run in a `mode`."""

    usage: tuple[int, int] | None = None
    children: list[tuple[str, Node]] = field(default_factory=list)


MODES = ("sync", "wait", "late", "late_blocked")  # run inline; in a thread/task waited for; not waited for


def trees(max_leaves: int = 12) -> st.SearchStrategy[Node]:
    leaf = st.tuples(st.integers(1, 5000), st.integers(1, 500)).map(lambda u: Node(usage=u))
    return st.recursive(
        leaf,
        lambda kids: st.lists(st.tuples(st.sampled_from(MODES), kids), min_size=1, max_size=4).map(
            lambda cs: Node(children=cs)
        ),
        max_leaves=max_leaves,
    )


def check_totals(exp: tracked.Experiment) -> None:
    """The experiment's totals equal the sums over the leaf LLM calls in calls.jsonl."""
    leaves = [c for c in read_experiment(exp.path).calls if c["name"] in ("llm", "allm")]
    summary = exp.final_summary
    assert summary["total/llm_calls"] == len(leaves)
    assert summary["total/tokens_in"] == sum(c["tokens_in"] for c in leaves)
    assert summary["total/tokens_out"] == sum(c["tokens_out"] for c in leaves)
    assert summary["total/cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in leaves), rel=1e-9, abs=1e-15)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees())
def test_threads_any_tree_totals_equal_the_leaves(tmp_path, tree):
    """Over random trees of inline, waited and unwaited thread-pool children, totals equal the sum over leaves."""
    release = threading.Event()
    pending = []

    with tracked.ThreadPoolExecutor(max_workers=8) as pool:

        def run(node: Node) -> None:
            if node.usage is not None:
                llm(*node.usage)
                return
            step(node)

        def blocked(node: Node) -> None:
            release.wait(10)
            run(node)

        @tracked.tracked
        def step(node: Node) -> None:
            for mode, child in node.children:
                if mode == "sync":
                    run(child)
                elif mode == "wait":
                    pool.submit(run, child).result()
                elif mode == "late":
                    pending.append(pool.submit(run, child))
                else:
                    pending.append(pool.submit(blocked, child))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", tracked.TrackedWarning)  # the warnings about late calls
            with tracked.experiment("late_threads", dir=tmp_path, wandb=False) as exp:
                run(tree)
                release.set()  # the blocked ones end only now, after every step has returned
                while pending:  # futures may add more while others run
                    pending.pop().result()
    check_totals(exp)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees())
def test_tasks_any_tree_totals_equal_the_leaves(tmp_path, tree):
    """Over random trees of inline, awaited and unawaited asyncio task children, totals equal the sum over leaves."""

    async def main() -> tracked.Experiment:
        release = asyncio.Event()
        pending: list[asyncio.Task[None]] = []

        async def run(node: Node) -> None:
            if node.usage is not None:
                await allm(*node.usage)
                return
            await step(node)

        async def blocked(node: Node) -> None:
            await release.wait()
            await run(node)

        @tracked.tracked
        async def step(node: Node) -> None:
            for mode, child in node.children:
                if mode == "sync":
                    await run(child)
                elif mode == "wait":
                    await asyncio.create_task(run(child))
                elif mode == "late":
                    pending.append(asyncio.create_task(run(child)))
                else:
                    pending.append(asyncio.create_task(blocked(child)))

        async with tracked.experiment("late_tasks", dir=tmp_path, wandb=False) as exp:
            await run(tree)
            release.set()
            while pending:
                await pending.pop()
        return exp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tracked.TrackedWarning)
        exp = asyncio.run(main())
    check_totals(exp)


def test_a_late_child_is_flagged_warned_once_and_its_parents_row_is_kept(tmp_path):
    """Two steps each leave one LLM call running: the calls are counted once, flagged late, with one warning."""
    release = threading.Event()
    futures = []
    with tracked.ThreadPoolExecutor(max_workers=2) as pool:

        def later() -> None:
            release.wait(10)
            llm(1000, 100)

        @tracked.tracked
        def step() -> None:
            llm(1000, 100)
            futures.append(pool.submit(later))

        @tracked.tracked
        def judge() -> None:
            llm(10, 1)

        with pytest.warns(tracked.TrackedWarning, match="llm ended after step") as caught:
            with tracked.experiment("late_flag", dir=tmp_path, wandb=False) as exp:
                step()
                step()
                judge()  # a second call name: per-name figures are in the summary
                release.set()
                for f in futures:
                    f.result()
    assert len([w for w in caught if "ended after" in str(w.message)]) == 1
    summary = exp.final_summary
    assert summary["total/llm_calls"] == 5
    assert summary["total/tokens_in"] == 4010
    assert summary["step/llm_calls"] == 4  # the late calls count under the row they belong to
    assert summary["judge/llm_calls"] == 1
    assert summary["total/calls"] == 3
    stored = read_experiment(exp.path)
    assert [r["llm_calls"] for r in stored.rows] == [1, 1, 1]  # each step's row as it was when it returned
    late = [c for c in stored.calls if c.get("late")]
    assert len(late) == 2 and all(c["name"] == "llm" for c in late)
    check_totals(exp)


# --- calls that end after their experiment finished: written into no other file ---------------------


def test_a_closed_local_store_writes_nothing_through_the_descriptor_it_had(tmp_path):
    """A row for a closed local store raises, and the file the OS gave its descriptor number to is unchanged."""
    from tracked.sinks.local import LocalSink

    (tmp_path / "exp").mkdir()
    sink = LocalSink(tmp_path / "exp")
    number = sink._rows_fd
    sink.close()
    with open(tmp_path / "user.log", "ab") as user:
        assert user.fileno() == number  # the store's old descriptor number is the user's file now
        with pytest.raises(ValueError, match="closed"):
            sink.write_row(0, {"x": 1})
        with pytest.raises(ValueError, match="closed"):
            sink.join(0, {"x": 2})
    assert (tmp_path / "user.log").read_bytes() == b""


def test_a_late_stream_and_a_late_thread_write_into_no_other_file(tmp_path):
    """A stream still held and a thread not joined end after their experiment finished, once another
    experiment and a user file were opened: neither file changes, and a warning names each late call."""

    @tracked.tracked
    def stream():
        yield llm(10, 1)
        yield llm(20, 2)  # begins after the experiment finished: inside a call of it

    release = threading.Event()

    @tracked.tracked
    def worker() -> None:
        release.wait(10)
        llm(30, 3)  # begins after the experiment finished: in a thread bound to it

    with pytest.warns(tracked.TrackedWarning) as caught:
        first = tracked.experiment("first", dir=tmp_path, wandb=False).start()
        llm(1, 1)
        held = stream()
        next(held)
        thread = threading.Thread(target=tracked.bind(worker))
        thread.start()
        first.finish()
        first_rows = (first.path / "results.jsonl").read_bytes()
        with open(tmp_path / "user.log", "ab") as user:
            user.write(b"the user's own line\n")
            user.flush()
            with tracked.experiment("second", dir=tmp_path, wandb=False) as second:
                llm(5, 5)
                results = second.path / "results.jsonl"
                before = results.read_bytes()
                list(held)  # the stream ends now
                release.set()
                thread.join()
                assert results.read_bytes() == before
            assert (tmp_path / "user.log").read_bytes() == b"the user's own line\n"
    assert (first.path / "results.jsonl").read_bytes() == first_rows
    assert second.final_summary["total/calls"] == 1
    assert second.final_summary["total/tokens_in"] == 5
    assert [r["tokens_in"] for r in read_experiment(second.path).rows] == [5]
    assert {c["tokens_in"] for c in read_experiment(second.path).calls} == {5}
    messages = [str(w.message) for w in caught]
    assert any("stream was still running when experiment 'first' finished" in m for m in messages)
    assert any("worker was still running when experiment 'first' finished" in m for m in messages)
    assert sum("llm started after its experiment 'first' had finished" in m for m in messages) == 1


def test_a_strategy_still_running_at_the_end_is_a_row_of_what_it_had_done_with_its_record(tmp_path):
    """A strategy mid-call in an unjoined thread at the end: a StillRunning row holding its ended LLM call, its record
    on file (no child points at a missing parent), and the rows' LLM calls add up to the totals."""
    first_done, go_on = threading.Event(), threading.Event()

    @tracked.tracked(name="strategy")
    def strategy() -> None:
        llm(10, 2)  # ended before the experiment does
        first_done.set()
        go_on.wait(10)  # still running when it finishes
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (warned: begun after its experiment finished)
            llm(5, 1)  # after: counted nowhere

    with pytest.warns(tracked.TrackedWarning, match="strategy was still running"):
        with tracked.experiment("cut", dir=tmp_path, wandb=False) as exp:
            llm(1, 1)
            worker = threading.Thread(target=tracked.bind(strategy))
            worker.start()
            assert first_done.wait(10)
    go_on.set()
    worker.join()
    stored = read_experiment(exp.dir)
    assert [(r["call"], r["llm_calls"], r.get("error_type")) for r in stored.rows] == [
        ("llm", 1, None), ("strategy", 1, "StillRunning"),
    ]  # fmt: skip
    assert sum(r["llm_calls"] for r in stored.rows) == exp.final_summary["total/llm_calls"] == 2
    assert exp.final_summary["total/tokens_in"] == 11
    ids = {c["id"] for c in stored.calls}
    assert all(c["parent_id"] in ids for c in stored.calls if c["parent_id"] is not None)
    (record,) = [c for c in stored.calls if c["name"] == "strategy"]
    assert record["incomplete"] is True and record["llm_calls"] == 1
