"""Processes: the README's process example under fork, forkserver and spawn, forks while the SDK loads
modules on its threads, `multiprocessing.Pool` initializers that attach, and SIGTERM during a finish.

Every child program runs in a fresh interpreter with a timeout: a hang is a failure, not a stuck suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from helpers import child_env, genai_cost
from tracked._store import read_calls, read_json

pytestmark = pytest.mark.slow

MODEL = "gpt-4o-mini"
TIMEOUT_S = 60

# The README's example: `run_strategy` makes two LLM calls whose responses are OpenAI chat
# completions for gpt-4o-mini (priced by genai-prices); task `t` sends 100 + t and 200 + t input
# tokens and 10 + t and 20 + t output tokens. argv: start method, tasks, "wandb"/"off", and
# "now" (the pool starts as the experiment does), "warm" (after one call of the parent: its W&B
# thread is then importing wandb and starting the run) or "inside" (from inside a tracked call).
EXAMPLE = textwrap.dedent(
    """
    import json, multiprocessing, sys
    from concurrent.futures import ProcessPoolExecutor

    from openai.types.chat import ChatCompletion

    import tracked
    from tracked import experiment


    @tracked.tracked
    def llm(prompt_tokens, completion_tokens):
        return ChatCompletion.model_validate({
            "id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })


    @tracked.tracked
    def run_strategy(task):
        llm(100 + task, 10 + task)
        llm(200 + task, 20 + task)
        return task


    def work(handle, task):
        with experiment.attach(handle):
            return run_strategy(task)


    @tracked.tracked
    def run_all(exp, pool, n):
        return list(pool.map(work, [exp.handle()] * n, range(n)))


    if __name__ == "__main__":
        method, n, use_wandb, when = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "wandb", sys.argv[4]
        context = multiprocessing.get_context(method)
        with experiment("parallel", wandb=use_wandb) as exp, ProcessPoolExecutor(4, mp_context=context) as pool:
            if when == "warm":
                run_strategy(1000)
            if when == "inside":
                results = run_all(exp, pool, n)
            else:
                results = list(pool.map(work, [exp.handle()] * n, range(n)))
        print(json.dumps({"dir": str(exp.path), "results": results}))
    """
)


def run_child(code: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    """Run `code` as a script (spawned workers import its functions from it) with `args` in a fresh
    interpreter in `cwd` (store and W&B offline there); None if it did not end within `TIMEOUT_S`
    (it is killed, with its workers: it runs in a process group of its own)."""
    script = cwd / "main.py"
    script.write_text(code)
    argv = [sys.executable, str(script), *args]
    with subprocess.Popen(
        argv, cwd=cwd, env=child_env(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    ) as proc:  # fmt: skip
        try:
            out, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return None
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def check_example(done: subprocess.CompletedProcess[str] | None, n: int, when: str) -> None:
    """The run ended, every task's result came back, the totals are exactly what the workers sent
    (cost as genai-prices' `calc_price` gives it), and every call is in calls.jsonl under its parent."""
    assert done is not None, "the example hung"
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["results"] == list(range(n))
    tasks = list(range(n)) + ([1000] if when == "warm" else [])
    sent = [(100 + t, 10 + t) for t in tasks] + [(200 + t, 20 + t) for t in tasks]
    path = Path(out["dir"])
    summary = read_json(path / "summary.json")
    assert summary["status"] == "finished"
    assert summary["total/llm_calls"] == len(sent)
    assert summary["total/tokens_in"] == sum(i for i, _ in sent)
    assert summary["total/tokens_out"] == sum(o for _, o in sent)
    assert summary["total/cost_usd"] == pytest.approx(sum(genai_cost(None, MODEL, i, o) for i, o in sent), rel=1e-9)

    calls = read_calls(path)
    ids = [c["id"] for c in calls]
    assert len(set(ids)) == len(ids), "two calls share an id"
    by_id = {c["id"]: c for c in calls}
    strategies = [c for c in calls if c["name"] == "run_strategy"]
    assert len(strategies) == len(tasks)
    outer = [c for c in calls if c["name"] == "run_all"]
    for strategy in strategies:
        # In the worker it is a top-level call; forked inside `run_all`, that call is its parent.
        assert strategy["parent_id"] == (outer[0]["id"] if when == "inside" else None)
        children = [c for c in calls if c["parent_id"] == strategy["id"]]
        t = (strategy["tokens_in"] - 300) // 2
        assert sorted((c["name"], c["tokens_in"], c["tokens_out"]) for c in children) == [
            ("llm", 100 + t, 10 + t),
            ("llm", 200 + t, 20 + t),
        ]
    llms = [c for c in calls if c["name"] == "llm"]
    assert len(llms) == len(sent)
    assert all(by_id[c["parent_id"]]["name"] == "run_strategy" for c in llms)


def test_the_readme_process_example_under_fork_50_times_with_the_pool_started_at_once(tmp_path):
    """50 runs of the README's example under fork, the pool started as the experiment starts (or
    right after a first call, or from inside a call): none hangs, totals are exact, parents right."""
    runs = [("now", "off"), ("now", "wandb"), ("warm", "wandb"), ("inside", "wandb"), ("inside", "off")]
    plan = [runs[i % len(runs)] for i in range(50)]
    n = 8

    def one(i: int) -> tuple[int, subprocess.CompletedProcess[str] | None]:
        cwd = tmp_path / f"run{i}"
        cwd.mkdir()
        when, use_wandb = plan[i]
        return i, run_child(EXAMPLE, cwd, "fork", str(n), use_wandb, when)

    with ThreadPoolExecutor(4) as runner:
        done = list(runner.map(one, range(len(plan))))
    hung = [i for i, d in done if d is None]
    assert not hung, f"runs {hung} of {len(plan)} hung"
    for i, d in done:
        check_example(d, n, plan[i][0])


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
@pytest.mark.parametrize("when", ["now", "inside"])
def test_the_readme_process_example_under_forkserver_and_spawn(tmp_path, method, when):
    """The README's example under forkserver and spawn: exact totals, every call under its parent."""
    check_example(run_child(EXAMPLE, tmp_path, method, "8", "wandb", when), 8, when)


# A fork while a thread of the SDK imports a module (argv: the module, the tracked function's
# `wandb=` flag): the parent waits until the import has begun, forks, and the child imports it.
FORK_WHILE_LOADING = textwrap.dedent(
    """
    import os, signal, sys, time
    import tracked

    module, use_wandb = sys.argv[1], sys.argv[2] == "wandb"
    tracked.configure(wandb_writer="thread")  # wandb imported by a thread of this process, not the writer's


    @tracked.tracked
    def step():
        return 1


    with tracked.experiment("loading", wandb=use_wandb):
        step()  # the W&B thread starts the run: it imports wandb
        deadline = time.monotonic() + 20
        while module not in sys.modules and time.monotonic() < deadline:
            pass  # until the import has begun (a module is in sys.modules while it is being imported)
        assert module in sys.modules, f"{module} was not imported"
        pid = os.fork()
        if pid == 0:
            __import__(module)
            if module == "genai_prices":
                from genai_prices import data_snapshot
                data_snapshot.get_snapshot()
            os._exit(0)
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print("child exit", os.waitstatus_to_exitcode(status))
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                print("child hung")
                break
            time.sleep(0.05)
    """
)


@pytest.mark.parametrize(
    ("module", "use_wandb"),
    [("genai_prices", "off"), ("wandb", "wandb")],
    ids=["price data on the calls thread", "wandb on the W&B thread"],
)
def test_a_fork_while_the_sdk_imports_on_a_thread_does_not_hang_the_child(tmp_path, module, use_wandb):
    """A child forked while an SDK thread imports a module (the price data, wandb) can import it too."""
    done = run_child(FORK_WHILE_LOADING, tmp_path, module, use_wandb)
    assert done is not None, "the parent hung"
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "child exit 0"


# A `multiprocessing.Pool` whose initializer attaches each worker to the experiment (left open: the
# worker's end finishes it). argv: start method, "close" (close and join) or "with" (the `with`
# block terminates the workers), "inside" (the pool and handle made inside a tracked call) or "plain".
POOL = textwrap.dedent(
    """
    import json, multiprocessing, sys
    import tracked
    from tracked import experiment


    @tracked.tracked
    def llm(task, k):
        tracked.current_call().add_usage(tokens_in=100 * k + task, tokens_out=10 * k + task, model="gpt-4o-mini")


    @tracked.tracked
    def run_strategy(task):
        llm(task, 1)
        llm(task, 2)
        return task


    def attach(handle):
        experiment.attach(handle).start()


    def run_pool(exp, context, how, n):
        with context.Pool(4, initializer=attach, initargs=(exp.handle(),)) as pool:
            results = pool.map(run_strategy, range(n))
            if how == "close":
                pool.close()
                pool.join()
        return results


    @tracked.tracked
    def run_all(exp, context, how, n):
        return run_pool(exp, context, how, n)


    if __name__ == "__main__":
        method, how, where, n = sys.argv[1], sys.argv[2], sys.argv[3], 4
        context = multiprocessing.get_context(method)
        with experiment("pool", wandb=False) as exp:
            results = (run_all if where == "inside" else run_pool)(exp, context, how, n)
        print(json.dumps({"dir": str(exp.path), "results": results}))
    """
)


@pytest.mark.parametrize("where", ["plain", "inside"])
@pytest.mark.parametrize("how", ["close", "with"])
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_pool_initializer_that_attaches_records_every_worker_call(tmp_path, method, how, where):
    """With a Pool initializer that attaches, every worker call is in calls.jsonl under its right
    parent, and the totals are exact, however the pool ends (closed and joined, or terminated)."""
    for attempt in range(5):  # the end of a pool is a race: a few rounds of it
        cwd = tmp_path / str(attempt)
        cwd.mkdir()
        done = run_child(POOL, cwd, method, how, where)
        assert done is not None, "the pool hung"
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout.strip().splitlines()[-1])
        assert out["results"] == [0, 1, 2, 3]
        path = Path(out["dir"])
        calls = read_calls(path)
        strategies = [c for c in calls if c["name"] == "run_strategy"]
        llms = [c for c in calls if c["name"] == "llm"]
        assert (len(strategies), len(llms)) == (4, 8)
        outer = [c["id"] for c in calls if c["name"] == "run_all"]
        assert all(c["parent_id"] == (outer[0] if where == "inside" else None) for c in strategies)
        by_id = {c["id"]: c for c in calls}
        assert len(by_id) == len(calls)
        for strategy in strategies:
            t = (strategy["tokens_in"] - 300) // 2
            children = sorted(c["tokens_in"] for c in llms if c["parent_id"] == strategy["id"])
            assert children == [100 + t, 200 + t]
        summary: dict[str, Any] = read_json(path / "summary.json")
        assert summary["total/llm_calls"] == 8
        assert summary["total/tokens_in"] == sum(100 * k + t for t in range(4) for k in (1, 2))
        assert summary["total/cost_usd"] == pytest.approx(
            sum(genai_cost(None, MODEL, 100 * k + t, 10 * k + t) for t in range(4) for k in (1, 2)), rel=1e-9
        )


# SIGTERM while the main thread finishes an experiment: sent from inside the finish (the local
# store's, before it writes the summary), as a pool's terminate() may send it while a worker's end finishes.
SIGTERM_IN_FINISH = textwrap.dedent(
    """
    import os, signal, time
    import tracked
    from tracked.sinks import local

    real_finish = local.LocalSink.finish


    def finish(self, end):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler has run by now
        return real_finish(self, end)


    local.LocalSink.finish = finish


    @tracked.tracked
    def step(i):
        tracked.current_call().add_usage(tokens_in=10, tokens_out=1, model="gpt-4o-mini")


    with tracked.experiment("finishing", wandb=False):
        for i in range(100):
            step(i)
    """
)


def test_sigterm_while_an_experiment_finishes_lets_the_finish_complete(tmp_path):
    """A SIGTERM that comes while the main thread finishes an experiment lets the finish complete
    (summary and every call written), then ends the process as SIGTERM does."""
    done = run_child(SIGTERM_IN_FINISH, tmp_path)
    assert done is not None
    assert done.returncode == -15, done.stderr
    (path,) = (tmp_path / "experiments").iterdir()
    assert read_json(path / "summary.json")["total/calls"] == 100
    assert len(read_calls(path)) == 100


def test_a_forked_child_that_does_not_attach_records_nothing_and_warns_nothing(tmp_path):
    """A forked child's calls, without attach, go nowhere (the parent's store is unchanged) and warn nothing."""
    code = textwrap.dedent(
        """
        import os, warnings
        import tracked

        @tracked.tracked
        def step():
            tracked.current_call().add_usage(tokens_in=10, tokens_out=1, model="gpt-4o-mini")

        with tracked.experiment("parent", wandb=False) as exp:
            step()
            pid = os.fork()
            if pid == 0:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    step()
                os._exit(0 if not caught else 3)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        print(exp.path)
        """
    )
    done = run_child(code, tmp_path)
    assert done is not None
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    assert read_json(path / "summary.json")["total/calls"] == 1
    assert len(read_calls(path)) == 1
    assert not (path / "workers").exists()
    assert [p.name for p in path.parent.iterdir()] == [path.name]
