"""`experiment()`: the ways to open one, what a row is, how logged metrics join rows, totals, and
checks of bad input. W&B is off here (`wandb=False`) unless a test is about W&B; see
test_experiment_wandb.py for what reaches the W&B run."""

from __future__ import annotations

import asyncio
import math
import statistics
import threading

import pytest

import tracked
from tracked.testing import read_experiment
from workloads import awork, boom, llm, work

# --- tracked functions used by the tests -------------------------------------------------------


@tracked.tracked(name="alpha")
def alpha(n: int) -> int:
    tracked.current_call().add_usage(tokens_in=n, tokens_out=2 * n, model="test-model", cost_usd=0.5)
    return n


@tracked.tracked(name="beta")
def beta(n: int) -> int:
    tracked.current_call().add_usage(tokens_in=n, tokens_out=n, model="test-model", cost_usd=0.25)
    return n


@tracked.tracked(name="strategy")
def strategy(n: int) -> int:
    """A top-level call that makes two LLM calls."""
    return llm(n) + llm(n)


def rows_of(exp: tracked.Experiment) -> list[dict]:
    """The rows of an experiment's local store, joined metrics merged."""
    return read_experiment(exp.path).rows


# --- the ways to open an experiment --------------------------------------------------------


def test_with_block_makes_the_experiment_current_inside_only():
    """`with experiment(...)` yields the experiment, which is current inside the block and finished after it."""
    assert tracked.current_experiment() is None
    with tracked.experiment("ctx", wandb=False) as exp:
        assert isinstance(exp, tracked.Experiment)
        assert tracked.current_experiment() is exp
        assert exp.status == "running"
        work(3)
    assert tracked.current_experiment() is None
    assert exp.finished and exp.status == "finished"
    assert [r["tokens_in"] for r in rows_of(exp)] == [3]


def test_async_with_block_makes_the_experiment_current_inside_only():
    """`async with experiment(...)` works like `with`, and async tracked calls inside are its rows."""

    async def main() -> tracked.Experiment:
        async with tracked.experiment("actx", wandb=False) as exp:
            assert tracked.current_experiment() is exp
            await awork(4)
            exp.log({"accuracy": 1.0})
        assert tracked.current_experiment() is None
        return exp

    exp = asyncio.run(main())
    assert exp.status == "finished"
    rows = rows_of(exp)
    assert len(rows) == 1
    assert rows[0]["call"] == "awork" and rows[0]["tokens_in"] == 4 and rows[0]["accuracy"] == 1.0


def test_decorator_on_sync_function_runs_each_invocation_in_a_new_experiment():
    """A function decorated with `@experiment(...)` runs every invocation in its own, new experiment."""
    seen: list[tracked.Experiment] = []

    @tracked.experiment("decorated", config={"k": 1}, wandb=False)
    def run(task_id: int) -> int:
        exp = tracked.current_experiment()
        assert exp is not None
        seen.append(exp)
        work(task_id)
        return task_id * 10

    assert run.__name__ == "run"
    assert run(1) == 10
    assert run(2) == 20
    assert tracked.current_experiment() is None
    assert len(seen) == 2 and seen[0] is not seen[1]
    assert seen[0].path != seen[1].path
    assert all(e.finished and e.name == "decorated" and e.config == {"k": 1} for e in seen)
    assert [r["tokens_in"] for r in rows_of(seen[0])] == [1]
    assert [r["tokens_in"] for r in rows_of(seen[1])] == [2]


def test_decorator_on_async_function_runs_each_invocation_in_a_new_experiment():
    """An `async def` decorated with `@experiment(...)` stays a coroutine function, a new experiment per call."""
    seen: list[tracked.Experiment] = []

    @tracked.experiment("adecorated", wandb=False)
    async def run(task_id: int) -> int:
        exp = tracked.current_experiment()
        assert exp is not None
        seen.append(exp)
        await awork(task_id)
        return task_id

    assert asyncio.iscoroutinefunction(run)

    async def main() -> list[int]:
        return [await run(5), await run(6)]

    assert asyncio.run(main()) == [5, 6]
    assert len(seen) == 2 and seen[0] is not seen[1]
    assert all(e.finished for e in seen)
    assert [r["tokens_in"] for r in rows_of(seen[0])] == [5]
    assert [r["tokens_in"] for r in rows_of(seen[1])] == [6]


def test_start_and_finish_open_and_close_the_experiment():
    """`experiment(...).start()` returns the open, current experiment and `finish()` closes it (idempotently)."""
    exp = tracked.experiment("nb", wandb=False).start()
    try:
        assert tracked.current_experiment() is exp
        work(7)
        exp.log({"accuracy": 0.5})
    finally:
        exp.finish()
    assert tracked.current_experiment() is None
    assert exp.finished and exp.status == "finished"
    exp.finish()  # a second finish changes nothing
    assert exp.status == "finished"
    rows = rows_of(exp)
    assert len(rows) == 1 and rows[0]["tokens_in"] == 7 and rows[0]["accuracy"] == 0.5
    with pytest.raises(RuntimeError, match="already started"):
        exp.start()


def test_current_experiment_is_the_innermost_open_one():
    """`current_experiment()` returns the innermost open experiment and falls back to the outer one when it ends."""
    with tracked.experiment("outer", wandb=False) as outer:
        assert tracked.current_experiment() is outer
        with tracked.experiment("inner", wandb=False) as inner:
            assert tracked.current_experiment() is inner
            work(1)
        assert tracked.current_experiment() is outer
        work(2)
    assert tracked.current_experiment() is None
    assert [r["tokens_in"] for r in rows_of(inner)] == [1]
    assert [r["tokens_in"] for r in rows_of(outer)] == [2]


def test_log_after_finish_is_refused():
    """`exp.log()` on a finished experiment raises RuntimeError."""
    with tracked.experiment("done", wandb=False) as exp:
        pass
    with pytest.raises(RuntimeError, match="finished"):
        exp.log({"accuracy": 1.0})


# --- rows ---------------------------------------------------------------------------------------


def test_every_top_level_call_is_one_row_with_the_standard_fields():
    """Each top-level tracked call is one row: call, latency_s, tokens_in, tokens_out, cost_usd, llm_calls, error."""
    with tracked.experiment("rows", wandb=False) as exp:
        work(3, tokens_out=4, cost=0.125)
        work(5, tokens_out=6, cost=0.25)
    rows = rows_of(exp)
    assert [r["_step"] for r in rows] == [0, 1]
    for row, (tin, tout, cost) in zip(rows, [(3, 4, 0.125), (5, 6, 0.25)], strict=True):
        assert row["call"] == "work"
        assert row["tokens_in"] == tin and row["tokens_out"] == tout
        assert row["cost_usd"] == pytest.approx(cost)
        assert row["llm_calls"] == 1
        assert row["error"] == 0
        assert isinstance(row["latency_s"], float) and row["latency_s"] >= 0


def test_nested_calls_roll_up_into_the_row_of_their_top_level_call():
    """Calls nested in a top-level call are not rows of their own; their usage rolls up into its row."""
    with tracked.experiment("nested", wandb=False) as exp:
        strategy(10)
    rows = rows_of(exp)
    assert len(rows) == 1
    row = rows[0]
    assert row["call"] == "strategy"
    assert row["llm_calls"] == 2
    assert row["tokens_in"] == 20 and row["tokens_out"] == 2
    assert row["cost_usd"] == pytest.approx(0.02)


def test_failed_call_is_a_row_with_error_1():
    """A tracked call that raises is a row with error 1 and its exception type, and the exception reaches the caller."""
    with tracked.experiment("errors", wandb=False) as exp:
        with pytest.raises(ValueError, match="boom"):
            boom()
        work(1)
    rows = rows_of(exp)
    assert [(r["call"], r["error"]) for r in rows] == [("boom", 1), ("work", 0)]
    assert rows[0]["error_type"] == "ValueError"
    assert exp.totals["total/errors"] == 1


def test_exp_log_during_a_call_joins_its_row():
    """`exp.log()` inside a tracked call (also from a nested call) adds to that call's row."""

    @tracked.tracked(name="inner")
    def inner() -> None:
        tracked.current_experiment().log({"from_inner": 2})

    @tracked.tracked(name="outer")
    def outer() -> None:
        tracked.current_experiment().log({"from_outer": 1})
        inner()

    with tracked.experiment("log_during", wandb=False) as exp:
        outer()
        outer()
    rows = rows_of(exp)
    assert len(rows) == 2
    assert all(r["call"] == "outer" and r["from_outer"] == 1 and r["from_inner"] == 2 for r in rows)


def test_current_call_log_during_a_call_joins_its_row():
    """`current_call().log()` inside a top-level call adds to that call's row."""

    @tracked.tracked(name="scored")
    def scored(n: int) -> int:
        tracked.current_call().log({"score": n / 10})
        return n

    with tracked.experiment("call_log", wandb=False) as exp:
        scored(3)
        scored(4)
    assert [(r["call"], r["score"]) for r in rows_of(exp)] == [("scored", 0.3), ("scored", 0.4)]


def test_exp_log_after_a_call_joins_its_row_until_the_next_call():
    """`exp.log()` after a top-level call returns joins its row; after the next call it joins the next row."""
    with tracked.experiment("log_after", wandb=False) as exp:
        for i in range(3):
            result = work(i + 1)
            exp.log({"accuracy": result / 10})
            exp.log({"judge": result * 2})
    rows = rows_of(exp)
    assert len(rows) == 3
    assert [(r["tokens_in"], r["accuracy"], r["judge"]) for r in rows] == [(1, 0.1, 2), (2, 0.2, 4), (3, 0.3, 6)]


def test_exp_log_without_a_call_is_a_row_of_its_own():
    """`exp.log()` with no top-level call before it in this thread is a row of its own."""
    with tracked.experiment("log_alone", wandb=False) as exp:
        exp.log({"warmup": 1})
        exp.log({"warmup": 2})
        work(5)
    rows = rows_of(exp)
    assert [r["_step"] for r in rows] == [0, 1, 2]
    assert rows[0]["warmup"] == 1 and "call" not in rows[0]
    assert rows[1]["warmup"] == 2 and "call" not in rows[1]
    assert rows[2]["call"] == "work" and "warmup" not in rows[2]


def test_exp_log_in_a_thread_without_calls_does_not_join_another_threads_row():
    """A metric logged from a thread that made no call is its own row, not joined to another thread's open row."""
    with tracked.experiment("log_other_thread", wandb=False) as exp:
        work(1)
        t = threading.Thread(target=exp.log, args=({"other": 9},))
        t.start()
        t.join()
        exp.log({"mine": 1})
    rows = rows_of(exp)
    assert len(rows) == 2
    by_step = {r["_step"]: r for r in rows}
    assert by_step[0]["tokens_in"] == 1 and by_step[0]["mine"] == 1 and "other" not in by_step[0]
    assert by_step[1]["other"] == 9 and "call" not in by_step[1]


def test_calls_in_pool_workers_do_not_close_the_submitting_threads_row():
    """Top-level calls made in pool workers do not close the row of the call the submitting thread made before."""
    with tracked.experiment("pool_seal", wandb=False) as exp:
        result = work(1)
        with tracked.ThreadPoolExecutor(2) as pool:
            assert list(pool.map(work, [100, 200])) == [100, 200]
        exp.log({"accuracy": result})
    rows = rows_of(exp)
    assert len(rows) == 3
    main_row = next(r for r in rows if r.get("tokens_in") == 1)
    assert main_row["accuracy"] == 1


# --- totals -------------------------------------------------------------------------------


def test_totals_are_live_and_cover_calls_tokens_cost_latency_names_and_metric_means():
    """`exp.totals` is live: counts, tokens, cost, latency stats, per-name figures and metric means."""
    with tracked.experiment("totals", wandb=False) as exp:
        alpha(1)
        exp.log({"accuracy": 1.0})
        assert exp.totals["total/calls"] == 1
        assert exp.totals["total/tokens_in"] == 1
        assert exp.totals["accuracy/mean"] == 1.0
        alpha(2)
        exp.log({"accuracy": 0.0})
        beta(3)
        exp.log({"accuracy": 0.5})
        strategy(4)
        with pytest.raises(ValueError):
            boom()
        with pytest.warns(tracked.TrackedWarning, match="no model"):

            @tracked.tracked(name="unpriced")
            def unpriced() -> None:
                tracked.current_call().add_usage(tokens_in=7, tokens_out=7)

            unpriced()
        totals = exp.totals
    rows = rows_of(exp)
    assert len(rows) == 6
    assert totals["total/calls"] == 6
    assert totals["total/errors"] == 1
    assert totals["total/llm_calls"] == 1 + 1 + 1 + 2 + 0 + 1
    assert totals["total/tokens_in"] == 1 + 2 + 3 + 8 + 0 + 7
    assert totals["total/tokens_out"] == 2 + 4 + 3 + 2 + 0 + 7
    assert totals["total/cost_usd"] == pytest.approx(0.5 + 0.5 + 0.25 + 0.02)
    assert totals["total/unpriced_calls"] == 1
    latencies = [r["latency_s"] for r in rows]
    assert totals["latency_s/mean"] == pytest.approx(statistics.fmean(latencies))
    assert totals["latency_s/p50"] == pytest.approx(statistics.median(latencies))
    assert totals["latency_s/p95"] == pytest.approx(statistics.quantiles(latencies, n=20, method="inclusive")[18])
    assert totals["alpha/calls"] == 2 and totals["alpha/tokens_in"] == 3 and totals["alpha/cost_usd"] == 1.0
    assert totals["beta/calls"] == 1 and totals["beta/tokens_out"] == 3
    assert totals["strategy/llm_calls"] == 2
    assert totals["boom/errors"] == 1
    assert totals["unpriced/unpriced_calls"] == 1
    alpha_lat = [r["latency_s"] for r in rows if r["call"] == "alpha"]
    assert totals["alpha/latency_s/mean"] == pytest.approx(statistics.fmean(alpha_lat))
    assert totals["accuracy/mean"] == pytest.approx(0.5)
    # The nested llm calls are not counted as calls of their own.
    assert "llm/calls" not in totals
    assert exp.final_summary["total/calls"] == 6


def test_metric_mean_counts_a_value_replaced_in_the_same_row_once():
    """Logging the same metric twice into one row replaces it there, and its mean counts the row once."""
    with tracked.experiment("replace", wandb=False) as exp:
        work(1)
        exp.log({"accuracy": 0.0})
        exp.log({"accuracy": 1.0})
        work(2)
        exp.log({"accuracy": 0.0})
    assert [r["accuracy"] for r in rows_of(exp)] == [1.0, 0.0]
    assert exp.totals["accuracy/mean"] == pytest.approx(0.5)


def test_metric_mean_after_replacing_an_infinite_value_in_a_row():
    """Replacing an infinite metric in a row by a finite one gives the mean of the values the rows now hold."""
    with tracked.experiment("replace_inf", wandb=False) as exp:
        work(1)
        exp.log({"accuracy": float("inf")})
        exp.log({"accuracy": 1.0})
        work(2)
        exp.log({"accuracy": 0.0})
    assert [r["accuracy"] for r in rows_of(exp)] == [1.0, 0.0]
    assert exp.totals["accuracy/mean"] == pytest.approx(0.5)


def test_exp_summary_values_are_in_the_final_summary():
    """Values set with `exp.summary[key] = value` are in the final summary next to the totals."""
    with tracked.experiment("user_summary", wandb=False) as exp:
        work(1)
        exp.summary["best_strategy"] = "debate"
        exp.summary["score"] = 0.75
    assert exp.final_summary["best_strategy"] == "debate"
    assert exp.final_summary["score"] == 0.75
    assert exp.final_summary["total/calls"] == 1
    assert read_experiment(exp.path).summary["best_strategy"] == "debate"


# --- leaving with an exception ------------------------------------------------------------


def test_exception_in_with_block_propagates_unchanged_and_marks_the_experiment_failed():
    """An exception leaving the block is re-raised as the same object, the status is failed and rows are kept."""
    error = KeyError("stop")
    with pytest.raises(KeyError) as info:
        with tracked.experiment("fails", wandb=False) as exp:
            work(1)
            exp.log({"accuracy": 1.0})
            raise error
    assert info.value is error
    assert exp.status == "failed"
    assert exp.final_summary["status"] == "failed"
    assert [(r["tokens_in"], r["accuracy"]) for r in rows_of(exp)] == [(1, 1.0)]
    assert tracked.current_experiment() is None


def test_exception_in_async_with_block_propagates_unchanged_and_marks_the_experiment_failed():
    """An exception leaving an `async with` block is re-raised as the same object and the status is failed."""
    error = RuntimeError("async stop")
    holder: list[tracked.Experiment] = []

    async def main() -> None:
        async with tracked.experiment("afails", wandb=False) as exp:
            holder.append(exp)
            await awork(2)
            raise error

    with pytest.raises(RuntimeError) as info:
        asyncio.run(main())
    assert info.value is error
    assert holder[0].final_summary["status"] == "failed"
    assert [r["tokens_in"] for r in rows_of(holder[0])] == [2]


def test_exception_in_decorated_function_propagates_unchanged_and_marks_the_experiment_failed():
    """An exception from an `@experiment`-decorated function is re-raised as the same object; its experiment failed."""
    error = ValueError("decorated stop")
    seen: list[tracked.Experiment] = []

    @tracked.experiment("dfails", wandb=False)
    def run() -> None:
        seen.append(tracked.current_experiment())
        work(3)
        raise error

    with pytest.raises(ValueError) as info:
        run()
    assert info.value is error
    assert seen[0].status == "failed"
    assert read_experiment(seen[0].path).summary["status"] == "failed"


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_empty_or_non_string_name_is_a_value_error_at_the_call(name):
    """An empty or non-string experiment name raises ValueError from `experiment()`."""
    with pytest.raises(ValueError, match="name"):
        tracked.experiment(name, wandb=False)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"wandb": "yes"}, TypeError),
        ({"project": 1}, TypeError),
        ({"group": ["g"]}, TypeError),
        ({"job_type": 2.0}, TypeError),
        ({"notes": b"n"}, TypeError),
    ],
)
def test_wrongly_typed_arguments_are_rejected_at_the_call(kwargs, error):
    """Wrongly typed arguments (wandb not a bool, project/group/job_type/notes not strings) raise at the call."""
    with pytest.raises(error):
        tracked.experiment("typed", **kwargs)


def test_bad_notes_and_summary_keys_are_refused_while_running():
    """`exp.notes = <non-string>` and `exp.summary[<non-string>] = ...` raise TypeError and change nothing."""
    with tracked.experiment("bad_later", notes="kept", wandb=False) as exp:
        with pytest.raises(TypeError):
            exp.notes = 5
        with pytest.raises(TypeError):
            exp.summary[1] = "x"
        assert exp.notes == "kept"
        assert dict(exp.summary) == {}


@pytest.mark.parametrize("tags", [[1], ["ok", None], ["ok", b"bytes"], "single-string", 5])
def test_non_string_tags_are_a_type_error_at_the_call(tags):
    """Tags that are not a collection of strings raise TypeError from `experiment()` itself."""
    with pytest.raises(TypeError, match="tags"):
        tracked.experiment("bad_tags", tags=tags, wandb=False)


def test_tags_longer_than_64_characters_are_a_value_error_at_the_call():
    """A tag longer than 64 characters raises ValueError from `experiment()`; 64 characters are accepted."""
    with pytest.raises(ValueError, match="64"):
        tracked.experiment("long_tag", tags=["x" * 65], wandb=False)
    exp = tracked.experiment("ok_tag", tags=["x" * 64], wandb=False)
    assert exp.tags == ("x" * 64,)


def test_setting_bad_tags_while_running_is_refused():
    """Assigning non-string or too long tags to `exp.tags` raises and keeps the old tags."""
    with tracked.experiment("bad_tags_later", tags=["a"], wandb=False) as exp:
        with pytest.raises(TypeError):
            exp.tags = [1]
        with pytest.raises(ValueError):
            exp.tags = ["y" * 65]
        assert exp.tags == ("a",)


@pytest.mark.parametrize("config", [[("a", 1)], "a=1", 3])
def test_config_that_is_not_a_mapping_is_a_type_error_at_the_call(config):
    """A config that is not a mapping raises TypeError from `experiment()`."""
    with pytest.raises(TypeError, match="mapping"):
        tracked.experiment("bad_config", config=config, wandb=False)


@pytest.mark.parametrize("config", [{1: "a"}, {"outer": {2: "b"}}, {"outer": {"deeper": {None: 1}}}, {"l": [{3: 4}]}])
def test_non_string_config_keys_are_a_type_error_at_the_call(config):
    """A config key that is not a string, at any depth, raises TypeError from `experiment()`."""
    with pytest.raises(TypeError, match="keys must be strings"):
        tracked.experiment("bad_config_key", config=config, wandb=False)


def test_non_string_metric_keys_are_a_type_error_at_the_log_call():
    """`exp.log()` with a non-string metric name, or not a mapping, raises TypeError and logs nothing."""
    with tracked.experiment("bad_metric", wandb=False) as exp:
        with pytest.raises(TypeError, match="metric names must be strings"):
            exp.log({1: 0.5})
        with pytest.raises(TypeError, match="mapping"):
            exp.log([("accuracy", 0.5)])
        with pytest.raises(ValueError, match="reserves"):
            exp.log({"_step": 3})
    assert rows_of(exp) == []


def test_non_string_metric_keys_in_call_log_are_a_type_error():
    """`current_call().log()` with a non-string metric name raises TypeError inside the call."""

    @tracked.tracked(name="bad_call_log")
    def bad_call_log() -> None:
        tracked.current_call().log({("a", "tuple"): 1})

    with tracked.experiment("bad_call_metric", wandb=False) as exp:
        with pytest.raises(TypeError, match="metric names must be strings"):
            bad_call_log()
    assert [r["error"] for r in rows_of(exp)] == [1]


@pytest.mark.parametrize("value", [object(), b"raw-bytes"], ids=["object", "bytes"])
def test_unloggable_metric_values_are_stored_as_repr_with_one_warning(value):
    """A metric value W&B cannot take is stored as its repr, with one TrackedWarning for repeated logs of its type."""
    with tracked.experiment("repr_values", wandb=False) as exp:
        with pytest.warns(tracked.TrackedWarning, match="repr") as record:
            exp.log({"odd": value})
            exp.log({"odd": value, "fine": 1})
        assert len([w for w in record if issubclass(w.category, tracked.TrackedWarning)]) == 1
    rows = rows_of(exp)
    assert [r["odd"] for r in rows] == [repr(value), repr(value)]
    assert rows[1]["fine"] == 1


def test_unloggable_config_values_are_stored_as_repr_with_a_warning():
    """A config value W&B cannot take is stored as its repr, with a TrackedWarning, and the experiment opens."""
    value = object()
    with pytest.warns(tracked.TrackedWarning, match="repr"):
        exp = tracked.experiment("repr_config", config={"odd": value, "n": {"b": b"x"}}, wandb=False)
    assert exp.config == {"odd": repr(value), "n": {"b": repr(b"x")}}


def test_nan_and_inf_metrics_are_kept():
    """NaN, inf and -inf metric values are kept as they are in the rows."""
    with tracked.experiment("nan_inf", wandb=False) as exp:
        work(1)
        exp.log({"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")})
    row = rows_of(exp)[0]
    assert math.isnan(row["nan"])
    assert row["inf"] == math.inf and row["ninf"] == -math.inf
