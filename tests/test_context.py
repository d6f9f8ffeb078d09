"""Nesting of calls through the ContextVar, across tasks and threads, and the roll-up of usage."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracked
from tracked import current_call, pricing

GPT4O_IN = 2.5 / 1e6  # USD per input token
GPT4O_OUT = 10.0 / 1e6  # USD per output token


@tracked.tracked
def leaf(record: list, tokens_in: int = 0, tokens_out: int = 0, model: str = "gpt-4o") -> None:
    """A tracked LLM call that reports usage by hand."""
    call = current_call()
    record.append(call)
    call.add_usage(tokens_in=tokens_in, tokens_out=tokens_out, model=model)


@tracked.tracked
def plain(record: list) -> None:
    """A tracked call that reports no usage."""
    record.append(current_call())


# --- simple nesting ------------------------------------------------------------------------------


def test_child_has_parent_id_of_enclosing_call():
    """A tracked call made inside another one has the outer call as parent."""
    record: list = []

    @tracked.tracked
    def outer():
        record.append(current_call())
        plain(record)
        plain(record)
        assert current_call() is record[0]

    outer()
    parent, first, second = record
    assert parent.parent_id is None
    assert first.parent_id == parent.id
    assert second.parent_id == parent.id
    assert first.parent is parent
    assert len({parent.id, first.id, second.id}) == 3
    assert current_call() is None


def test_three_levels_of_nesting():
    """Grandchildren point at their parent, not at the root."""
    record: list = []

    @tracked.tracked
    def middle():
        record.append(current_call())
        plain(record)

    @tracked.tracked
    def root():
        record.append(current_call())
        middle()

    root()
    r, m, g = record
    assert (r.parent_id, m.parent_id, g.parent_id) == (None, r.id, m.id)


def test_context_restored_after_child_raises():
    """After a child raises, `current_call()` in the parent is the parent again."""
    record: list = []

    @tracked.tracked
    def failing():
        raise ValueError("x")

    @tracked.tracked
    def outer():
        me = current_call()
        with pytest.raises(ValueError):
            failing()
        record.append(current_call() is me)

    outer()
    assert record == [True]


# --- asyncio -------------------------------------------------------------------------------------


def test_gather_children_have_outer_parent_and_interleave():
    """Concurrent siblings under `asyncio.gather` all have the outer call as parent, never each other."""
    record: dict = {}
    grandchildren: dict = {}

    @tracked.tracked
    async def grandchild(tag):
        grandchildren[tag] = current_call()

    @tracked.tracked
    async def child(tag, mine: asyncio.Event, other: asyncio.Event):
        record[tag] = current_call()
        mine.set()
        await other.wait()  # the sibling has started and is running too
        assert current_call() is record[tag]
        await grandchild(tag)
        assert current_call() is record[tag]

    @tracked.tracked
    async def outer():
        record["outer"] = current_call()
        a, b = asyncio.Event(), asyncio.Event()
        await asyncio.gather(child("a", a, b), child("b", b, a))
        assert current_call() is record["outer"]

    asyncio.run(outer())
    outer_id = record["outer"].id
    assert record["a"].parent_id == outer_id
    assert record["b"].parent_id == outer_id
    assert grandchildren["a"].parent_id == record["a"].id
    assert grandchildren["b"].parent_id == record["b"].id


def test_create_task_child_has_creator_as_parent():
    """A task created inside a tracked call makes children of that call."""
    record: dict = {}

    @tracked.tracked
    async def child(tag):
        record[tag] = current_call()
        await asyncio.sleep(0)

    @tracked.tracked
    async def outer():
        record["outer"] = current_call()
        t1 = asyncio.create_task(child("t1"))
        t2 = asyncio.create_task(child("t2"))
        await t1
        await t2

    asyncio.run(outer())
    assert record["t1"].parent_id == record["outer"].id
    assert record["t2"].parent_id == record["outer"].id


def test_task_group_children_have_outer_parent():
    """Children started in an `asyncio.TaskGroup` inside a tracked call have it as parent."""
    record: dict = {}
    started = {}

    @tracked.tracked
    async def child(tag):
        record[tag] = current_call()
        started[tag].set()
        for ev in started.values():
            await ev.wait()  # every sibling is running at the same time
        assert current_call() is record[tag]

    @tracked.tracked
    async def outer():
        record["outer"] = current_call()
        for tag in "abc":
            started[tag] = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            for tag in "abc":
                tg.create_task(child(tag))

    asyncio.run(outer())
    assert {record[t].parent_id for t in "abc"} == {record["outer"].id}
    assert len({record[t].id for t in "abc"}) == 3


def test_task_created_outside_any_call_has_no_parent():
    """A tracked coroutine run in a task started outside any call is a root call."""
    record: dict = {}

    @tracked.tracked
    async def child():
        record["child"] = current_call()

    async def main():
        await asyncio.create_task(child())

    asyncio.run(main())
    assert record["child"].parent_id is None


def test_coroutine_parent_is_the_awaiting_context():
    """An awaited tracked coroutine's parent is the call running where it is awaited."""
    record: dict = {}

    @tracked.tracked
    async def child():
        record["child"] = current_call()

    @tracked.tracked
    async def outer(coro):
        record["outer"] = current_call()
        await coro

    async def main():
        coro = child()  # created outside any call
        await outer(coro)

    asyncio.run(main())
    assert record["child"].parent_id == record["outer"].id


# --- threads -------------------------------------------------------------------------------------


def test_tracked_thread_pool_carries_parent_and_siblings_stay_apart():
    """Work submitted to `tracked.ThreadPoolExecutor` nests under the submitter, never under a sibling."""
    n = 4
    barrier = threading.Barrier(n, timeout=10)
    record: dict = {}
    grandchildren: dict = {}

    @tracked.tracked
    def grandchild(i):
        grandchildren[i] = current_call()

    @tracked.tracked
    def child(i):
        record[i] = current_call()
        barrier.wait()  # all siblings are running at once
        assert current_call() is record[i]
        grandchild(i)
        return i

    @tracked.tracked
    def outer():
        record["outer"] = current_call()
        with tracked.ThreadPoolExecutor(max_workers=n) as pool:
            futures = [pool.submit(child, i) for i in range(n)]
            assert sorted(f.result() for f in futures) == list(range(n))

    outer()
    for i in range(n):
        assert record[i].parent_id == record["outer"].id
        assert grandchildren[i].parent_id == record[i].id


def test_tracked_thread_pool_map_carries_parent():
    """`tracked.ThreadPoolExecutor.map` also runs the work in the submitter's context."""
    record: list = []

    @tracked.tracked
    def child(i):
        record.append(current_call())
        return i * i

    @tracked.tracked
    def outer():
        record.append(current_call())
        with tracked.ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(child, range(4)))

    assert outer() == [0, 1, 4, 9]
    parent = record[0]
    assert [c.parent_id for c in record[1:]] == [parent.id] * 4


def test_plain_thread_does_not_carry_parent_and_a_stdlib_pool_does():
    """A tracked call in a plain `threading.Thread` started inside a call is a root call; in a stdlib pool, a child."""
    record: dict = {}

    @tracked.tracked
    def child(tag):
        record[tag] = current_call()

    @tracked.tracked
    def outer():
        record["outer"] = current_call()
        t = threading.Thread(target=child, args=("thread",))
        t.start()
        t.join()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(child, "stdlib-pool").result()
            assert list(pool.map(child, ["stdlib-map"])) == [None]

    outer()
    assert record["thread"].parent_id is None
    assert record["stdlib-pool"].parent is record["outer"]
    assert record["stdlib-map"].parent is record["outer"]


def test_propagate_threads_false_leaves_stdlib_pools_alone():
    """With `propagate_threads=False` a stdlib pool's calls are roots; `tracked.ThreadPoolExecutor` still carries."""
    tracked.configure(propagate_threads=False)
    record: dict = {}

    @tracked.tracked
    def child(tag):
        record[tag] = current_call()

    @tracked.tracked
    def outer():
        record["outer"] = current_call()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(child, "stdlib-pool").result()
        with tracked.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(child, "tracked-pool").result()

    outer()
    assert record["stdlib-pool"].parent_id is None
    assert record["tracked-pool"].parent is record["outer"]


def test_a_stdlib_pool_carries_only_trackeds_own_state():
    """A stdlib pool's worker sees the submitter's call but not the submitter's other context variables, as before."""
    import contextvars

    mine = contextvars.ContextVar("mine", default="unset")
    seen: dict = {}

    def work():
        seen["call"] = current_call()
        seen["mine"] = mine.get()

    @tracked.tracked
    def outer():
        mine.set("submitter")
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(work).result()
        return current_call()

    call = outer()
    assert seen == {"call": call, "mine": "unset"}


def test_bind_carries_parent_into_threads_concurrently():
    """`tracked.bind(fn)` nests calls in other threads under the call where it was bound, even run concurrently."""
    n = 3
    barrier = threading.Barrier(n, timeout=10)
    record: dict = {}
    errors: list = []

    @tracked.tracked
    def child(i):
        record[i] = current_call()
        barrier.wait()
        assert current_call() is record[i]

    def worker(i):
        try:
            child(i)
        except BaseException as exc:  # surface failures from the thread
            errors.append(exc)

    @tracked.tracked
    def outer():
        record["outer"] = current_call()
        bound = tracked.bind(worker)
        threads = [threading.Thread(target=bound, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    outer()
    assert errors == []
    assert [record[i].parent_id for i in range(n)] == [record["outer"].id] * n


def test_bind_keeps_name_and_binds_at_bind_time():
    """`bind` keeps the function's name and uses the context where it was bound, not where it runs."""
    record: dict = {}

    def worker():
        """Work."""
        return current_call()

    bound_outside = tracked.bind(worker)
    assert bound_outside.__name__ == "worker"
    assert bound_outside.__doc__ == "Work."

    @tracked.tracked
    def outer():
        record["outer"] = current_call()
        record["bound_inside"] = tracked.bind(worker)
        record["outside_result"] = bound_outside()

    outer()
    assert record["outside_result"] is None
    assert record["bound_inside"]() is record["outer"]


# --- roll-up -------------------------------------------------------------------------------------


def test_parent_without_usage_sums_children():
    """A parent that reports nothing gets the sum of its children's tokens and cost."""
    record: list = []

    @tracked.tracked
    def outer():
        record.append(current_call())
        leaf(record, 1000, 500)
        leaf(record, 2000, 100)
        plain(record)  # no usage: not an LLM call

    outer()
    parent, a, b, _ = record
    assert parent.tokens_in == 3000
    assert parent.tokens_out == 600
    assert a.cost_usd == pytest.approx(0.0075)
    assert parent.cost_usd == pytest.approx(a.cost_usd + b.cost_usd)
    assert parent.cost_usd == pytest.approx(3000 * GPT4O_IN + 600 * GPT4O_OUT)
    assert parent.cost_source == "children"
    assert parent.llm_calls == 2
    assert parent.unpriced_calls == 0
    assert parent.model is None


def test_rollup_through_several_levels():
    """Usage rolls up through intermediate calls that report nothing themselves."""
    record: list = []

    @tracked.tracked
    def middle(n):
        for _ in range(n):
            leaf(record, 100, 10)

    @tracked.tracked
    def outer():
        record.append(current_call())
        middle(2)
        middle(3)

    outer()
    root = record[0]
    assert root.tokens_in == 500
    assert root.tokens_out == 50
    assert root.llm_calls == 5
    assert root.cost_usd == pytest.approx(sum(c.cost_usd for c in record[1:]))


def test_rollup_from_threads():
    """Children ending concurrently in pool threads are all added to the parent."""
    record: list = []
    n = 8
    barrier = threading.Barrier(n, timeout=10)

    @tracked.tracked
    def child(i):
        barrier.wait()
        current_call().add_usage(tokens_in=10 + i, tokens_out=1, model="gpt-4o")

    @tracked.tracked
    def outer():
        record.append(current_call())
        with tracked.ThreadPoolExecutor(max_workers=n) as pool:
            list(pool.map(child, range(n)))

    outer()
    root = record[0]
    assert root.tokens_in == sum(10 + i for i in range(n))
    assert root.tokens_out == n
    assert root.llm_calls == n


def test_rollup_from_async_children():
    """Concurrent async children are all added to the parent."""
    record: list = []

    @tracked.tracked
    async def child(i):
        await asyncio.sleep(0)
        current_call().add_usage(tokens_in=i, tokens_out=2 * i, model="gpt-4o")

    @tracked.tracked
    async def outer():
        record.append(current_call())
        await asyncio.gather(*(child(i) for i in range(1, 6)))

    asyncio.run(outer())
    root = record[0]
    assert root.tokens_in == 15
    assert root.tokens_out == 30
    assert root.llm_calls == 5


@dataclass
class HarnessResult:
    """A harness's own totals for a run."""

    answer: str
    tokens_in: int
    tokens_out: int
    cost_usd: float


def test_parent_with_own_totals_is_not_counted_twice():
    """A parent returning its own totals is not counted twice: its figures are its children's, which it matches."""
    record: list = []

    @tracked.tracked
    def outer():
        record.append(current_call())
        leaf(record, 1000, 500)
        leaf(record, 1000, 500)
        plain(record)
        return HarnessResult("42", tokens_in=2000, tokens_out=1000, cost_usd=0.015)

    result = outer()
    assert result.answer == "42"
    parent = record[0]
    assert parent.tokens_in == 2000  # not 4000
    assert parent.tokens_out == 1000
    assert parent.cost_usd == pytest.approx(0.015)
    assert parent.cost_source == "children"  # measured; the report agrees, so it is not kept
    assert parent.reported is None
    assert parent.llm_calls == 2


def test_parent_with_own_dict_totals_and_a_grandparent():
    """A report that disagrees with the calls measured under it is overruled with a warning; a grandparent sums once."""
    record: list = []

    @tracked.tracked
    def aggregate():
        record.append(current_call())
        leaf(record, 100, 10)
        leaf(record, 100, 10)
        leaf(record, 100, 10)
        return {"tokens_in": 300, "tokens_out": 30, "cost_usd": 0.5}

    @tracked.tracked
    def root():
        record.insert(0, current_call())
        aggregate()
        leaf(record, 1, 1)

    with pytest.warns(tracked.TrackedWarning, match=r"aggregate .*cost_usd 0\.5 reported, 0\.00105 measured"):
        root()
    top, middle = record[0], record[1]
    measured = 3 * (100 * GPT4O_IN + 10 * GPT4O_OUT)
    assert middle.cost_usd == pytest.approx(measured)
    assert middle.reported == {"cost_usd": 0.5}
    assert middle.to_record()["reported_cost_usd"] == 0.5
    assert top.tokens_in == 301
    assert top.tokens_out == 31
    assert top.llm_calls == 4
    assert top.cost_usd == pytest.approx(measured + 1 * GPT4O_IN + 1 * GPT4O_OUT)


def test_a_report_of_zero_cost_does_not_hide_priced_llm_calls():
    """A strategy result with `cost_usd=0.0` (a dataclass default) and its tokens filled in gets its children's cost."""
    record: list = []

    @tracked.tracked
    def strategy():
        record.append(current_call())
        leaf(record, 1000, 100)
        leaf(record, 2000, 200)
        return HarnessResult("42", tokens_in=3000, tokens_out=300, cost_usd=0.0)

    with pytest.warns(tracked.TrackedWarning, match="cost_usd 0.0 reported"):
        strategy()
    parent = record[0]
    assert parent.cost_usd == pytest.approx(3000 * GPT4O_IN + 300 * GPT4O_OUT)
    assert parent.tokens_in == 3000 and parent.llm_calls == 2
    assert parent.reported == {"cost_usd": 0.0}


def test_parent_of_unpriced_children_has_no_cost():
    """A parent whose children are all unpriced has cost None and counts them as unpriced."""
    record: list = []

    @tracked.tracked
    def outer():
        record.append(current_call())
        leaf(record, 10, 10, model="no-such-model-xyz")
        leaf(record, 10, 10, model="no-such-model-xyz")

    with pytest.warns(tracked.TrackedWarning, match="no-such-model-xyz"):
        outer()
    parent = record[0]
    assert parent.cost_usd is None
    assert parent.cost_source is None
    assert parent.tokens_in == 20
    assert parent.llm_calls == 2
    assert parent.unpriced_calls == 2


def test_parent_of_mixed_children_counts_unpriced():
    """A parent sums the priced children's cost and counts the unpriced ones."""
    record: list = []

    @tracked.tracked
    def outer():
        record.append(current_call())
        leaf(record, 1000, 500)
        leaf(record, 10, 10, model="no-such-model-abc")

    with pytest.warns(tracked.TrackedWarning):
        outer()
    parent = record[0]
    assert parent.cost_usd == pytest.approx(0.0075)
    assert parent.llm_calls == 2
    assert parent.unpriced_calls == 1


def test_parent_of_local_children_is_local():
    """A parent whose LLM calls are all local is local with cost 0."""
    record: list = []

    @tracked.tracked(provider="ollama")
    def local_llm():
        current_call().add_usage(tokens_in=50, tokens_out=20, model="llama3.2:3b")

    @tracked.tracked
    def outer():
        record.append(current_call())
        local_llm()
        local_llm()

    outer()
    parent = record[0]
    assert parent.local is True
    assert parent.cost_usd == 0.0
    assert parent.tokens_in == 100
    assert parent.llm_calls == 2


def test_parent_of_local_and_remote_children_is_not_local():
    """A parent with one remote LLM call among local ones is not local."""
    record: list = []

    @tracked.tracked(provider="ollama")
    def local_llm():
        current_call().add_usage(tokens_in=50, tokens_out=20, model="llama3.2:3b")

    @tracked.tracked
    def outer():
        record.append(current_call())
        local_llm()
        leaf(record, 1000, 500)

    outer()
    parent = record[0]
    assert parent.local is False
    assert parent.cost_usd == pytest.approx(0.0075)


# --- property: roll-up over arbitrary trees -----------------------------------------------------

# A tree is a leaf with usage `(tokens_in, tokens_out)`, a leaf without usage `None`, or an
# internal node `(parallel, [children])` whose children run in order or in a tracked thread pool.
usage_leaf = st.tuples(st.integers(0, 10**6), st.integers(0, 10**6))
trees = st.recursive(
    st.one_of(st.none(), usage_leaf),
    lambda children: st.tuples(st.booleans(), st.lists(children, max_size=4)),
    max_leaves=20,
)


def is_internal(node) -> bool:
    return isinstance(node, tuple) and len(node) == 2 and isinstance(node[1], list)


def usage_leaves(node) -> list:
    if node is None:
        return []
    if is_internal(node):
        return [u for child in node[1] for u in usage_leaves(child)]
    return [node]


@tracked.tracked
def run_node(node, leaves: list) -> None:
    """Execute one node of a tree as a tracked call."""
    if node is None:
        return
    if is_internal(node):
        parallel, children = node
        if parallel and children:
            with tracked.ThreadPoolExecutor(max_workers=len(children)) as pool:
                for f in [pool.submit(run_node, child, leaves) for child in children]:
                    f.result()
        else:
            for child in children:
                run_node(child, leaves)
        return
    call = current_call()
    call.add_usage(tokens_in=node[0], tokens_out=node[1], model="gpt-4o")
    leaves.append(call)


@tracked.tracked
def run_tree(node, record: list, leaves: list) -> None:
    """The root call of a tree."""
    record.append(current_call())
    run_node(node, leaves)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees)
def test_rollup_over_arbitrary_trees(tree):
    """For any call tree, the root's tokens, cost and llm_calls are the sums over leaves that reported usage."""
    record: list = []
    leaves: list = []
    run_tree(tree, record, leaves)
    root = record[0]
    expected = usage_leaves(tree)
    assert root.ended
    assert len(leaves) == len(expected)
    assert root.tokens_in == sum(u[0] for u in expected)
    assert root.tokens_out == sum(u[1] for u in expected)
    assert root.llm_calls == len(expected)
    assert root.unpriced_calls == 0
    if expected:
        assert root.cost_usd == pytest.approx(sum(c.cost_usd for c in leaves), rel=1e-9, abs=1e-12)
        assert root.cost_usd == pytest.approx(
            sum(pricing.price(None, "gpt-4o", i, o).cost_usd for i, o in expected), rel=1e-9, abs=1e-12
        )
        assert root.cost_usd == pytest.approx(
            sum(i * GPT4O_IN + o * GPT4O_OUT for i, o in expected), rel=1e-9, abs=1e-12
        )
    else:
        assert root.cost_usd is None
    assert current_call() is None


def test_experiment_made_while_another_thread_loads():
    """Once the sink modules are imported, making an experiment does not wait for the load lock another thread holds."""
    import threading

    from tracked import experiment
    from tracked._forksafe import loading

    experiment("first", wandb=False, local=False)  # imports the sink modules
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with loading():  # as W&B's thread does during its init
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    done = threading.Event()
    maker = threading.Thread(target=lambda: (experiment("second", wandb=False, local=False), done.set()))
    maker.start()
    try:
        assert done.wait(10), "experiment() waited for the load lock"
    finally:
        release.set()
        holder.join()
        maker.join()


def test_trackeds_context_variables_and_settings_pickle_by_name_and_no_other_context_variable_does():
    """tracked's context variables and settings unpickle as the process's own (a `@tracked`
    function sent by value carries them); any other ContextVar still refuses to be pickled."""
    import contextvars
    import pickle

    from tracked import _config, _context

    assert pickle.loads(pickle.dumps(_context._current)) is _context._current
    assert pickle.loads(pickle.dumps(_context._current_exp)) is _context._current_exp
    assert pickle.loads(pickle.dumps(_config.config)) is _config.config
    with pytest.raises(TypeError, match=r"^cannot pickle '_contextvars\.ContextVar' object$"):
        pickle.dumps(contextvars.ContextVar("tracked_call"))  # same name, not tracked's
