"""Experiments inside experiments: W&B groups and job types, inherited config and tags, a parent
that only aggregates its children, and children running at once in threads and asyncio tasks.

wandb reads WANDB_DIR once per process, so tests that count run directories pass `dir=tmp_path`
(children inherit it). wandb-core writes the offline `.wandb` file asynchronously, so runs are read
with `read_finished_run`, which waits (bounded) for the exit record.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import tracked
from helpers import wandb_run
from helpers import wandb_run_dirs as run_dirs
from tracked.testing import read_experiment
from workloads import awork, work


def has_no_run(exp: tracked.Experiment) -> bool:
    info = exp.final_summary.get("wandb", {})
    return "id" not in info and "dir" not in info


# --- groups, job types, inheritance ---------------------------------------------------------------


def test_child_is_grouped_under_the_parents_name_and_inherits_config_and_tags(tmp_path):
    """A child's W&B group is its parent's name; it inherits the parent's config and tags, its own keys win."""
    with tracked.experiment(
        "study", config={"provider": "ollama", "temperature": 0.1}, tags=["study", "shared"], dir=tmp_path
    ) as parent:
        with tracked.experiment(
            "arm", config={"temperature": 0.7, "strategy": "debate"}, tags=["arm", "shared"]
        ) as child:
            assert child.config == {"provider": "ollama", "temperature": 0.7, "strategy": "debate"}
            assert child.tags == ("study", "shared", "arm")
            assert child.group == "study"
            work(1)
    assert parent.config == {"provider": "ollama", "temperature": 0.1}
    run = wandb_run(child)
    assert run.group == "study"
    assert run.job_type == ""
    assert run.config["provider"] == "ollama"
    assert run.config["temperature"] == 0.7
    assert run.config["strategy"] == "debate"
    assert run.tags == ["study", "shared", "arm"]
    assert run.config["_tracked"]["parents"] == "study"
    local = read_experiment(child.path).config
    assert local["group"] == "study"
    assert local["config"] == {"provider": "ollama", "temperature": 0.7, "strategy": "debate"}
    assert local["parent"] == parent.path.name
    assert child.path.parent == tmp_path / "experiments"  # dir is inherited
    assert has_no_run(parent)
    assert len(run_dirs(tmp_path)) == 1


def test_child_uses_the_parents_group_when_it_has_one(tmp_path):
    """When the parent has a group, its children are in that W&B group."""
    with tracked.experiment("parent_with_group", group="comparison", dir=tmp_path):
        with tracked.experiment("member") as child:
            work(1)
    assert wandb_run(child).group == "comparison"


def test_childs_own_group_and_job_type_win(tmp_path):
    """A child given its own group and job_type keeps them."""
    with tracked.experiment("p", group="pg", dir=tmp_path):
        with tracked.experiment("c", group="own", job_type="mine") as child:
            work(1)
    run = wandb_run(child)
    assert (run.group, run.job_type) == ("own", "mine")


def test_grandchild_is_in_the_roots_group_with_its_parents_name_as_job_type(tmp_path):
    """A grandchild's W&B group is the root's group (or name) and its job_type is its parent's name."""
    with tracked.experiment("root", config={"a": 1}, tags=["r"], dir=tmp_path) as root:
        with tracked.experiment("middle", config={"b": 2}, tags=["m"]) as middle:
            with tracked.experiment("leaf", config={"a": 3}) as leaf:
                assert tracked.current_experiment() is leaf
                work(5)
            assert tracked.current_experiment() is middle
    run = wandb_run(leaf)
    assert run.group == "root"
    assert run.job_type == "middle"
    assert run.config["a"] == 3 and run.config["b"] == 2
    assert run.tags == ["r", "m"]
    assert run.config["_tracked"]["parents"] == "root/middle"
    assert has_no_run(root) and has_no_run(middle)
    assert len(run_dirs(tmp_path)) == 1
    assert root.final_summary["total/calls"] == 1
    assert root.final_summary["total/tokens_in"] == 5


# --- the parent --------------------------------------------------------------------------------


def test_parent_with_only_children_has_no_run_and_its_summary_aggregates_them(tmp_path):
    """A parent with only children gets no W&B run; its summary.json sums their totals and lists them."""
    with tracked.experiment("parent", dir=tmp_path) as parent:
        with tracked.experiment("first") as first:
            work(1, tokens_out=10, cost=0.25)
            first.log({"accuracy": 1.0})
            work(2, tokens_out=20, cost=0.25)
            first.log({"accuracy": 0.0})
        with tracked.experiment("second") as second:
            work(4, tokens_out=40, cost=0.5)
            second.log({"accuracy": 1.0})
        live = parent.totals
        assert live["total/calls"] == 3
    assert has_no_run(parent)
    assert len(run_dirs(tmp_path)) == 2
    summary = read_experiment(parent.path).summary
    assert summary["status"] == "finished"
    assert summary["total/calls"] == 3
    assert summary["total/tokens_in"] == 7
    assert summary["total/tokens_out"] == 70
    assert summary["total/cost_usd"] == pytest.approx(1.0)
    assert not any(k.startswith("work/") for k in summary)  # one call name
    assert summary["accuracy/mean"] == pytest.approx(2 / 3)
    assert summary["accuracy/n"] == 3
    assert [c["name"] for c in summary["children"]] == ["first", "second"]
    assert [c["status"] for c in summary["children"]] == ["finished", "finished"]
    assert [c["dir"] for c in summary["children"]] == [first.path.name, second.path.name]
    assert [c["wandb_id"] for c in summary["children"]] == [
        first.final_summary["wandb"]["id"],
        second.final_summary["wandb"]["id"],
    ]
    assert read_experiment(parent.path).rows == []
    assert first.final_summary["total/calls"] == 2 and second.final_summary["total/calls"] == 1


def test_parent_with_its_own_rows_has_its_own_run(tmp_path):
    """A parent that makes calls itself gets a W&B run with only its own rows, and totals that include its children."""
    with tracked.experiment("busy_parent", dir=tmp_path) as parent:
        work(1)
        with tracked.experiment("kid") as kid:
            work(2)
        work(3)
    assert len(run_dirs(tmp_path)) == 2
    assert [h["tokens_in"] for h in wandb_run(parent).history] == [1, 3]
    assert [h["tokens_in"] for h in wandb_run(kid).history] == [2]
    assert parent.final_summary["total/calls"] == 3
    assert [c["name"] for c in parent.final_summary["children"]] == ["kid"]


def test_failed_child_is_listed_as_failed_in_the_parent(tmp_path):
    """A child left by an exception is failed (exit code 1), listed so in the parent, and the parent goes on."""
    error = ValueError("child broke")
    with tracked.experiment("tolerant", dir=tmp_path) as parent:
        with pytest.raises(ValueError) as info:
            with tracked.experiment("fragile") as child:
                work(1)
                raise error
        assert info.value is error
        with tracked.experiment("sturdy"):
            work(2)
    assert wandb_run(child).exit_code == 1
    assert [(c["name"], c["status"]) for c in parent.final_summary["children"]] == [
        ("fragile", "failed"),
        ("sturdy", "finished"),
    ]
    assert parent.final_summary["status"] == "finished"
    assert parent.final_summary["total/calls"] == 2


# --- children at the same time ------------------------------------------------------------------


def test_children_in_pool_threads_each_get_their_own_run_and_rows(tmp_path):
    """Children opened at once in tracked.ThreadPoolExecutor threads each get their own W&B run and rows."""
    n = 4
    barrier = threading.Barrier(n, timeout=30)

    def arm(i: int) -> tracked.Experiment:
        with tracked.experiment(f"arm{i}", config={"arm": i}) as child:
            assert tracked.current_experiment() is child
            barrier.wait()  # every child is open before any calls
            for j in range(3):
                result = work(10 * i + j)
                barrier.wait()  # all threads' rows are open at once
                child.log({"accuracy": result})
        return child

    with tracked.experiment("parallel", dir=tmp_path) as parent:
        with tracked.ThreadPoolExecutor(n) as pool:
            children = list(pool.map(arm, range(n)))
        assert tracked.current_experiment() is parent
    assert len(run_dirs(tmp_path)) == n
    assert len({c.final_summary["wandb"]["id"] for c in children}) == n
    for i, child in enumerate(children):
        run = wandb_run(child)
        assert run.name == f"arm{i}" and run.group == "parallel" and run.config["arm"] == i
        assert [(h["tokens_in"], h["accuracy"]) for h in run.rows()] == [(10 * i + j, 10 * i + j) for j in range(3)]
        assert [r["tokens_in"] for r in read_experiment(child.path).rows] == [10 * i + j for j in range(3)]
        assert child.final_summary["total/calls"] == 3
    assert has_no_run(parent)
    assert parent.final_summary["total/calls"] == 3 * n
    assert sorted(c["name"] for c in parent.final_summary["children"]) == [f"arm{i}" for i in range(n)]


def test_children_in_asyncio_tasks_each_get_their_own_run_and_rows(tmp_path):
    """Children opened at once in asyncio tasks each get their own W&B run and rows."""
    n = 3

    async def arm(i: int, barrier: asyncio.Barrier) -> tracked.Experiment:
        async with tracked.experiment(f"task{i}", config={"task": i}) as child:
            assert tracked.current_experiment() is child
            await barrier.wait()  # every child is open before any calls
            for j in range(3):
                result = await awork(10 * i + j)
                await barrier.wait()  # the tasks' calls interleave
                child.log({"accuracy": result})
        return child

    async def main() -> tuple[tracked.Experiment, list[tracked.Experiment]]:
        barrier = asyncio.Barrier(n)
        async with tracked.experiment("async_parent", dir=tmp_path) as parent:
            children = await asyncio.gather(*(arm(i, barrier) for i in range(n)))
            assert tracked.current_experiment() is parent
        return parent, list(children)

    parent, children = asyncio.run(main())
    assert len(run_dirs(tmp_path)) == n
    for i, child in enumerate(children):
        run = wandb_run(child)
        assert run.name == f"task{i}" and run.group == "async_parent" and run.config["task"] == i
        assert [(h["tokens_in"], h["accuracy"]) for h in run.rows()] == [(10 * i + j, 10 * i + j) for j in range(3)]
    assert has_no_run(parent)
    assert parent.final_summary["total/calls"] == 3 * n
    assert len(parent.final_summary["children"]) == n


# --- the seed guide's "Strategy Comparison" and "Group Experiments" ------------------------------------------


@tracked.tracked(provider="ollama", name="call_llm")
def call_llm(prompt: str, model: str = "llama3.2:3b") -> dict:
    """An Ollama-shaped response: usage is read from prompt_eval_count / eval_count."""
    return {"model": model, "message": {"content": prompt[::-1]}, "prompt_eval_count": len(prompt), "eval_count": 2}


@tracked.tracked
def run_strategy(strategy: str, task: str) -> str:
    if strategy == "single":
        return call_llm(task)["message"]["content"]
    if strategy == "debate":
        a = call_llm(f"pro: {task}")
        b = call_llm(f"con: {task}")
        return call_llm(f"judge: {a['message']['content']} {b['message']['content']}")["message"]["content"]
    if strategy == "self_consistency":
        answers = [call_llm(f"{task} #{k}")["message"]["content"] for k in range(3)]
        return answers[0]
    raise ValueError(strategy)


def test_strategy_comparison_grouped_under_a_parent(tmp_path):
    """Three strategy experiments under a group="comparison" parent are three grouped runs, right rows and totals."""
    tasks = ["t1", "task-2", "the third task"]
    strategies = ["single", "debate", "self_consistency"]
    llm_calls_per_task = {"single": 1, "debate": 3, "self_consistency": 3}
    scores = {"single": 0.5, "debate": 1.0, "self_consistency": 0.75}
    children: dict[str, tracked.Experiment] = {}
    with tracked.experiment("strategy_comparison", group="comparison", dir=tmp_path) as parent:
        for strategy in strategies:
            with tracked.experiment(
                f"tombench_{strategy}",
                config={"strategy": strategy, "provider": "ollama"},
                tags=[f"strategy:{strategy}"],
            ) as exp:
                for task in tasks:
                    run_strategy(strategy, task)
                    exp.log({"accuracy": scores[strategy]})
            children[strategy] = exp
    assert has_no_run(parent)
    assert len(run_dirs(tmp_path)) == 3
    total_llm = 0
    for strategy, exp in children.items():
        run = wandb_run(exp)
        assert run.name == f"tombench_{strategy}"
        assert run.group == "comparison"
        assert run.config["strategy"] == strategy and run.config["provider"] == "ollama"
        assert run.tags == [f"strategy:{strategy}"]
        assert run.exit_code == 0
        assert len(run.history) == len(tasks)
        assert all(h["call"] == "run_strategy" for h in run.rows())
        assert [h["llm_calls"] for h in run.rows()] == [llm_calls_per_task[strategy]] * len(tasks)
        assert all(h["accuracy"] == scores[strategy] for h in run.rows())
        assert all(h["cost_usd"] == 0 and h["error"] == 0 for h in run.rows())
        n_llm = llm_calls_per_task[strategy] * len(tasks)
        total_llm += n_llm
        assert run.summary["total/calls"] == len(tasks)
        assert run.summary["total/llm_calls"] == n_llm
        assert run.summary["total/tokens_out"] == 2 * n_llm
        assert run.summary["total/tokens_in"] == sum(h["tokens_in"] for h in run.rows())
        assert run.summary["total/cost_usd"] == 0
        assert run.summary["total/unpriced_calls"] == 0
        assert run.summary["accuracy/mean"] == pytest.approx(scores[strategy])
        assert "run_strategy/calls" not in run.summary  # one top-level call name: total/* says it all
        assert len([row for row in run.table() if row["name"] == "call_llm"]) == n_llm
    summary = read_experiment(parent.path).summary
    assert summary["total/calls"] == 3 * len(tasks)
    assert summary["total/llm_calls"] == total_llm
    assert summary["accuracy/mean"] == pytest.approx(sum(scores.values()) / 3)
    assert [c["name"] for c in summary["children"]] == [f"tombench_{s}" for s in strategies]


def test_a_child_inherits_its_ancestors_notes_before_its_own(tmp_path):
    """A child's notes are its ancestors' notes followed by its own, in its W&B run and local store."""
    with tracked.experiment("study", dir=tmp_path, notes="Does debate help on false beliefs?"):
        with tracked.experiment("debate", notes="3 debaters, 2 rounds") as child:
            tracked.current_experiment().log({"accuracy": 1})
        with tracked.experiment("single") as plain:
            tracked.current_experiment().log({"accuracy": 0})
    assert child.notes == "Does debate help on false beliefs?\n\n3 debaters, 2 rounds"
    assert plain.notes == "Does debate help on false beliefs?"
    assert wandb_run(child).notes == child.notes
    assert read_experiment(child.path).config["notes"] == child.notes


def test_a_parent_with_set_up_before_its_children_still_gets_no_run(tmp_path):
    """A parent that loads things for a while before opening its children gets no W&B run (its children have theirs)."""
    import time

    with tracked.experiment("comparison", dir=tmp_path, group="abl") as parent:
        time.sleep(0.6)  # more than the children's start grace
        for strategy in ("single", "debate"):
            with tracked.experiment(strategy):
                work(1)
    assert len(run_dirs(tmp_path)) == 2
    assert "id" not in parent.final_summary["wandb"]  # no run of its own
