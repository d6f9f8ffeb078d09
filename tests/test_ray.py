"""Experiments that span machines: tracked calls in Ray tasks, actors and Ray Data, on a local
multi-node Ray cluster (Ray's own `Cluster` test utility: a head and two worker nodes, every
process bound to 127.0.0.1). Each node's working directory and `TRACKED_DIR` are apart from the
driver's, so records that went through files instead of Ray would be missing. Every figure is
checked against the loopback server's ledger (genai-prices' own `extract_usage` + `calc_price` on
the raw usage it sent) and the W&B run read back from its `.wandb` file."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

# Before Ray is imported: every address Ray picks is 127.0.0.1, never this machine's other interfaces.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

import ray

import tracked
from helpers import child_env, wandb_run
from tracked import TrackedWarning, experiment
from tracked._store import read_calls

pytestmark = [
    pytest.mark.slow,
    # Ray Data's own DataContext warns of its deprecated settings as it is made.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]

TESTS = Path(__file__).resolve().parent
MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head (no CPUs: work goes to the workers) and two worker nodes of 2 CPUs, each with its own
    working directory and `TRACKED_DIR`; the driver connected. Yields the node directories."""
    from ray.cluster_utils import Cluster

    base = tmp_path_factory.mktemp("ray")
    here = os.getcwd()
    nodes = [base / "node0", base / "node1"]
    cl = Cluster(
        initialize_head=True,
        head_node_args={"node_ip_address": "127.0.0.1", "num_cpus": 0, "include_dashboard": False},
    )
    try:
        for i, d in enumerate(nodes):
            d.mkdir()
            os.chdir(d)  # a node's workers start in its raylet's working directory
            cl.add_node(
                node_ip_address="127.0.0.1", num_cpus=2, resources={f"node{i}": 100}, env_vars={"TRACKED_DIR": str(d)}
            )
    finally:
        os.chdir(here)
    # The workers import this module (its actor classes and functions are pickled by reference).
    ray.init(address=cl.address, runtime_env={"env_vars": {"PYTHONPATH": str(TESTS)}}, log_to_driver=False)
    yield {"nodes": nodes, "address": cl.address, "cluster": cl}
    ray.shutdown()
    cl.shutdown()


def node_parts(node: Path) -> list[Path]:
    """The worker parts a node keeps in its own local store."""
    return sorted(node.glob("experiments/*/workers/*"))


def expected(server: Any) -> dict[str, Any]:
    """The ledger's figures: calls, tokens and the cost genai-prices computes from the raw usage."""
    return server.ledger.totals()


@ray.remote(num_cpus=1)
class Asker:
    """An actor with an instrumented OpenAI client; each `run` attaches to the experiment."""

    def __init__(self, url: str) -> None:
        import openai

        self.client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-loopback", max_retries=0)
        tracked.instrument(self.client, provider="openai")

    def ask(self, question: str) -> str:
        reply = self.client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}])
        return reply.choices[0].message.content

    def run(self, handle: Any, questions: list[str]) -> int:
        solve = tracked.tracked(name="solve")(self.ask)
        with experiment.attach(handle):
            for q in questions:
                solve(q)
        return len(questions)

    def pid(self) -> int:
        return os.getpid()


def test_four_actors_on_two_nodes_record_every_call_through_ray(cluster, server, tmp_path):
    """4 actors x 1,000 tracked calls on two nodes whose directories are apart from the driver's:
    the experiment's calls, tokens and cost equal the loopback server's ledger, each call is a row
    of the W&B run and the local store, and the workers' top-level calls are nested under the
    driver's call that took the handle."""
    server.ledger.clear()
    n = 1000
    with experiment("ray-actors") as exp:

        @tracked.tracked
        def fan_out() -> list[int]:
            handle = exp.handle()
            assert handle.transport == "ray"
            actors = [Asker.options(resources={f"node{i % 2}": 1}).remote(server.url) for i in range(4)]
            questions = [[f"question {a} {i} " + "why " * (i % 9) for i in range(n)] for a in range(4)]
            return ray.get([actor.run.remote(handle, qs) for actor, qs in zip(actors, questions, strict=True)])

        assert fan_out() == [n] * 4
    want = expected(server)
    assert want["llm_calls"] == 4 * n
    s = exp.final_summary
    assert s["total/llm_calls"] == want["llm_calls"]
    assert (s["total/tokens_in"], s["total/tokens_out"]) == (want["tokens_in"], want["tokens_out"])
    assert s["total/cost_usd"] == pytest.approx(want["cost_usd"], rel=1e-9)
    assert s["total/calls"] == 1 + 4 * n  # fan_out and each worker's solve
    parts = s["workers"]
    assert len(parts) == 4
    assert all(p["transport"] == "ray" and p["ended"] and p["rows"] == n and p["calls"] == 2 * n for p in parts)
    assert not any("missing" in p for p in parts)
    # The records came through Ray: the driver's directory is not the nodes'.
    assert {len(node_parts(node)) for node in cluster["nodes"]} == {2}
    calls = read_calls(exp.path)
    outer = next(c["id"] for c in calls if c["name"] == "fan_out")
    solves = [c for c in calls if c["name"] == "solve"]
    assert len(solves) == 4 * n and {c["parent_id"] for c in solves} == {outer}
    # Every row in the W&B run, read back from its .wandb file.
    run = wandb_run(exp)
    rows = run.rows()
    assert len(rows) == 1 + 4 * n
    assert sum(r["tokens_in"] for r in rows if r.get("worker")) == want["tokens_in"]
    assert run.summary["total/cost_usd"] == pytest.approx(want["cost_usd"], rel=1e-9)


def label_batch(batch: dict[str, Any], handle: Any, url: str) -> dict[str, Any]:
    """A Ray Data `map_batches` function: each row's question asked through an instrumented client."""
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-loopback", max_retries=0)
    tracked.instrument(client, provider="openai")
    answers = []
    with experiment.attach(handle):
        for q in batch["question"]:
            reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": str(q)}])
            answers.append(reply.choices[0].message.content)
    batch["answer"] = answers
    return batch


def test_ray_data_map_batches_over_2000_rows_records_every_call(cluster, server):
    """A Ray Data `map_batches` over 2,000 rows with an instrumented client: one LLM call per row,
    and the experiment's calls, tokens and cost equal the ledger's."""
    server.ledger.clear()
    rows = [{"question": f"row {i} " + "because " * (i % 5)} for i in range(2000)]
    with experiment("ray-data") as exp:
        handle = exp.handle()
        ds = ray.data.from_items(rows).map_batches(
            label_batch, batch_size=100, fn_kwargs={"handle": handle, "url": server.url}, num_cpus=1
        )
        out = ds.take_all()
    assert len(out) == 2000 and all(r["answer"] for r in out)
    want = expected(server)
    s = exp.final_summary
    assert s["total/llm_calls"] == want["llm_calls"] == 2000
    assert (s["total/tokens_in"], s["total/tokens_out"]) == (want["tokens_in"], want["tokens_out"])
    assert s["total/cost_usd"] == pytest.approx(want["cost_usd"], rel=1e-9)
    assert sum(p["calls"] for p in s["workers"]) == 2000
    assert all(p["ended"] for p in s["workers"])


@ray.remote(num_cpus=1)
class Resident:
    """An actor that attaches once, for its life (the pattern of a pool initializer)."""

    def __init__(self, handle: Any, url: str) -> None:
        import openai

        self.client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-loopback", max_retries=0)
        tracked.instrument(self.client, provider="openai")
        experiment.attach(handle).start()

    def pid(self) -> int:
        return os.getpid()

    def ask(self, question: str) -> str:
        reply = self.client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}])
        return reply.choices[0].message.content


def test_an_actor_attached_for_its_life_has_every_call_when_the_experiment_ends(cluster, server):
    """An actor that attached in `__init__` and never ended its part: its calls that returned are
    in the experiment, without waiting for the actor to end."""
    server.ledger.clear()
    with experiment("ray-resident") as exp:
        actor = Resident.options(resources={"node1": 1}).remote(exp.handle(), server.url)
        ray.get([actor.ask.remote(f"q {i}") for i in range(50)])
        started = time.monotonic()
    took = time.monotonic() - started
    s = exp.final_summary
    assert s["total/llm_calls"] == 50 == len(server.ledger.sent)
    assert s["total/tokens_in"] == expected(server)["tokens_in"]
    (part,) = s["workers"]
    assert part["ended"] is False and part["transport"] == "ray+node" and "missing" not in part
    assert took < 20  # no wait for calls running: none were
    ray.kill(actor)


def test_a_worker_killed_mid_run_loses_only_its_call_in_flight_and_it_is_reported(cluster, server):
    """An actor SIGKILLed while a call of its waits for the server: every call it finished is in
    the experiment (what had not reached the driver is read on its node), the one in flight is
    reported missing, with a warning."""
    server.ledger.clear()
    server.set_delay(0.02)
    try:
        with pytest.warns(TrackedWarning, match="incomplete"), experiment("ray-killed") as exp:
            actor = Asker.options(resources={"node0": 1}, max_restarts=0).remote(server.url)
            pid = ray.get(actor.pid.remote())
            done = actor.run.remote(exp.handle(), [f"q {i}" for i in range(10_000)])
            while len(server.ledger.sent) < 60:
                time.sleep(0.01)
            server.set_delay(3.0)  # the next call waits: the worker is killed during it
            time.sleep(0.5)
            answered = len(server.ledger.sent)
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(ray.exceptions.RayActorError):
                ray.get(done)
    finally:
        server.set_delay(0)
    deadline = time.monotonic() + 10
    while len(server.ledger.sent) == answered and time.monotonic() < deadline:
        time.sleep(0.05)  # the server answers the dead worker's request: not in the next test's ledger
    s = exp.final_summary
    (part,) = s["workers"]
    assert part["ended"] is False and part["transport"] == "ray+node"
    assert part["missing"] == "its process ended with 1 call begun and not ended: not recorded"
    assert s["total/llm_calls"] == answered  # every answer it had, none of the one it waited for


@ray.remote(num_cpus=1)
def ask_all(handle: Any, url: str, questions: list[str]) -> int:
    """A Ray task: each question asked through an instrumented client, in the experiment."""
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-loopback", max_retries=0)
    tracked.instrument(client, provider="openai")
    with experiment.attach(handle):
        for q in questions:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": q}])
    return len(questions)


def test_ray_tasks_that_see_the_drivers_directory_write_their_parts_in_place_once(cluster, server, tmp_path):
    """Ray tasks whose `TRACKED_DIR` is the driver's (one machine, or a shared filesystem) write
    their parts in the driver's directory themselves: each line once, the figures the ledger's."""
    server.ledger.clear()
    with experiment("ray-shared") as exp:
        task = ask_all.options(runtime_env={"env_vars": {"TRACKED_DIR": str(tmp_path)}})
        assert (
            ray.get([task.remote(exp.handle(), server.url, [f"q {t} {i}" for i in range(100)]) for t in range(3)])
            == [100] * 3
        )
    s = exp.final_summary
    assert [p["transport"] for p in s["workers"]] == ["files (shared)"] * 3
    assert all(p["ended"] and p["rows"] == 100 and p["calls"] == 100 for p in s["workers"])
    for part in (exp.path / "workers").iterdir():
        assert len((part / "calls.jsonl").read_bytes().splitlines()) == 100
    want = expected(server)
    assert (s["total/llm_calls"], s["total/tokens_in"]) == (300, want["tokens_in"])
    assert s["total/cost_usd"] == pytest.approx(want["cost_usd"], rel=1e-9)


def test_a_node_lost_mid_run_is_reported_and_what_reached_the_driver_is_kept(cluster, server, tmp_path):
    """A node removed while its actor is attached: the calls whose records reached the driver are
    in the experiment, and the part is reported with its node unreachable, with a warning."""
    server.ledger.clear()
    (tmp_path / "node").mkdir()
    here = os.getcwd()
    os.chdir(tmp_path / "node")
    try:
        node = cluster["cluster"].add_node(
            node_ip_address="127.0.0.1",
            num_cpus=1,
            resources={"doomed": 1},
            env_vars={"TRACKED_DIR": str(tmp_path / "node")},
        )
    finally:
        os.chdir(here)
    with pytest.warns(TrackedWarning, match="could not be reached"), experiment("ray-node-lost") as exp:
        actor = Resident.options(resources={"doomed": 1}).remote(exp.handle(), server.url)
        ray.get([actor.ask.remote(f"q {i}") for i in range(30)])
        time.sleep(0.5)  # its batches reach the driver
        cluster["cluster"].remove_node(node)
    s = exp.final_summary
    (part,) = s["workers"]
    assert part["ended"] is False and "could not be reached" in part["missing"]
    assert s["total/llm_calls"] == 30 == len(server.ledger.sent)


@ray.remote(num_cpus=1, max_concurrency=4)
class Threaded:
    """A threaded actor: up to 4 methods at once, each attaching, or attached once for its life."""

    def __init__(self, url: str, handle: Any = None) -> None:
        import openai

        self.client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-loopback", max_retries=0)
        tracked.instrument(self.client, provider="openai")
        if handle is not None:
            experiment.attach(handle).start()

    def ask(self, question: str, handle: Any = None) -> str:
        def call() -> str:
            reply = self.client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}])
            return reply.choices[0].message.content

        if handle is None:
            return call()
        with experiment.attach(handle):
            return call()


@pytest.mark.parametrize("attach", ["per method", "for its life"])
def test_a_threaded_actor_records_every_concurrent_call(cluster, server, attach):
    """A threaded actor (4 methods at once) attaching in each method or once for its life: no
    method fails, every call is counted, and an actor ended after its calls returned is reported
    missing nothing."""
    server.ledger.clear()
    with experiment("ray-threaded") as exp:
        handle = exp.handle()
        if attach == "per method":
            actor = Threaded.options(resources={"node0": 1}).remote(server.url)
            replies = ray.get([actor.ask.remote(f"q {i}", handle) for i in range(40)])
        else:
            actor = Threaded.options(resources={"node0": 1}).remote(server.url, handle)
            replies = ray.get([actor.ask.remote(f"q {i}") for i in range(40)])
        ray.kill(actor)  # its process ends before the experiment does
    assert len(replies) == 40 and all(replies)
    s = exp.final_summary
    assert s["total/llm_calls"] == 40 == len(server.ledger.sent)
    assert s["total/tokens_in"] == expected(server)["tokens_in"]
    assert not any("missing" in p for p in s["workers"]), s["workers"]


@ray.remote(num_cpus=1)
class AsyncAsker:
    """An async actor: its coroutine methods run concurrently in one event loop, each attaching."""

    def __init__(self, url: str) -> None:
        import openai

        self.client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-loopback", max_retries=0)
        tracked.instrument(self.client, provider="openai")

    async def ask(self, question: str, handle: Any) -> str:
        with experiment.attach(handle):
            reply = await self.client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": question}]
            )
        return reply.choices[0].message.content


def test_an_async_actor_records_every_concurrent_call(cluster, server):
    """An async actor whose methods attach while others of them are awaiting the server: every
    call is counted, tokens and cost the ledger's, every part ended and missing nothing."""
    server.ledger.clear()
    server.set_delay(0.05)  # the methods overlap
    try:
        with experiment("ray-async") as exp:
            actor = AsyncAsker.options(resources={"node1": 1}).remote(server.url)
            handle = exp.handle()
            replies = ray.get([actor.ask.remote(f"q {i} " + "so " * (i % 4), handle) for i in range(40)])
    finally:
        server.set_delay(0)
    assert len(replies) == 40 and all(replies)
    want = expected(server)
    s = exp.final_summary
    assert s["total/llm_calls"] == 40 == want["llm_calls"]
    assert (s["total/tokens_in"], s["total/tokens_out"]) == (want["tokens_in"], want["tokens_out"])
    assert s["total/cost_usd"] == pytest.approx(want["cost_usd"], rel=1e-9)
    assert all(p["ended"] and "missing" not in p for p in s["workers"]), s["workers"]
    ray.kill(actor)


RESTART = textwrap.dedent(
    """
    import os, sys, json
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray, tracked
    from tracked import experiment

    @ray.remote(num_cpus=1)
    def work(handle, n):
        with experiment.attach(handle):
            for i in range(n):
                tracked.tracked(name="step")(lambda: None)()
        return n

    @ray.remote(num_cpus=1)
    class Resident:
        def __init__(self, handle):
            experiment.attach(handle).start()

        def step(self):
            tracked.tracked(name="step")(lambda: None)()

    out = []
    for n in (3, 5):
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
        with experiment("restart", wandb=False) as exp:
            if n == 3:
                ray.get(work.remote(exp.handle(), n))
            else:  # attached for its life, on the driver's node: its part is checked here at the end
                actor = Resident.remote(exp.handle())
                ray.get([actor.step.remote() for _ in range(n)])
        out.append(exp.final_summary["total/calls"])
        out.append([(p["transport"], p["ended"], "missing" in p) for p in exp.final_summary["workers"]])
        ray.shutdown()
    print(json.dumps(out))
    """
)


def test_an_experiment_after_ray_restarts_gets_a_collector_of_the_new_instance(tmp_path):
    """After `ray.shutdown()` and a new local `ray.init()`, a new experiment's Ray handle works (a
    collector of the first instance would crash the driver) and counts its worker's calls: a
    task's, then those of an actor attached for its life on the driver's own node (its part, in
    the driver's directory, is not ended and misses nothing)."""
    from helpers import run_python

    done = run_python(RESTART, cwd=tmp_path, RAY_USAGE_STATS_ENABLED="0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [
        3, [["files (shared)", True, False]], 5, [["files (shared)", False, False]]
    ]  # fmt: skip


DRIVER = textwrap.dedent(
    """
    import os, sys, json, signal, time
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray, openai, tracked
    from tracked import experiment

    @tracked.tracked
    def ask(client, i):  # defined in __main__: the task gets it by value (cloudpickle)
        return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"q {i}"}])

    @ray.remote(num_cpus=1, resources={"node0": 1})
    def work(handle, url, n):
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-loopback", max_retries=0)
        tracked.instrument(client, provider="openai")
        with experiment.attach(handle):
            for i in range(n):
                ask(client, i)
        return n

    ray.init(address=sys.argv[1], log_to_driver=False)
    exp = experiment("ray-driver-killed").start()
    print(json.dumps({"dir": str(exp.path)}), flush=True)
    ray.get([work.remote(exp.handle(), sys.argv[2], 40) for _ in range(3)])
    time.sleep(1.0)  # the receiver takes the batches that are left
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_driver_killed_before_its_end_leaves_what_reached_it_for_tracked_sync(cluster, server, tmp_path):
    """A driver SIGKILLed after its Ray tasks returned: what reached it is in its local store, and
    `tracked sync` writes a W&B run with every worker call's row and the ledger's tokens. The
    tasks call a `@tracked` function of the driver's `__main__`, which Ray sends by value."""
    import subprocess

    server.ledger.clear()
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = child_env(tmp_path, wandb_on=False)
    env["PYTHONPATH"] = str(TESTS)
    done = subprocess.run(
        [sys.executable, str(script), cluster["address"], server.url],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    path = Path(json.loads(done.stdout.splitlines()[0])["dir"])
    assert not (path / "summary.json").exists()
    assert len(server.ledger.sent) == 120
    synced = subprocess.run(
        [sys.executable, "-m", "tracked.cli", "sync", str(path)],
        cwd=tmp_path, env=child_env(tmp_path), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert synced.returncode == 0, synced.stderr[-2000:]
    from helpers import wandb_run_dirs
    from tracked.testing import read_wandb_run

    (run_dir,) = wandb_run_dirs(tmp_path)
    run = read_wandb_run(run_dir)
    assert len(run.history) == 120
    assert {r["call"] for r in run.rows()} == {"ask"}
    assert sum(r["tokens_in"] for r in run.history) == expected(server)["tokens_in"]


def test_without_ray_nothing_imports_it_and_a_ray_handle_names_the_extra(tmp_path):
    """Without Ray connected `exp.handle()` is a files handle and Ray is not imported; asked for a
    Ray handle where Ray cannot be imported, the error names the `tracked[ray]` extra."""
    from helpers import run_python

    done = run_python(
        textwrap.dedent(
            """
            import sys
            import tracked
            from tracked import experiment
            with experiment("plain", wandb=False) as exp:
                assert exp.handle().transport == "files"
            assert "ray" not in sys.modules, "ray imported"
            sys.modules["ray"] = None  # as if not installed
            with experiment("asked", wandb=False) as exp:
                try:
                    exp.handle(transport="ray")
                except ImportError as exc:
                    print(exc)
            """
        ),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'tracked[ray]'" in done.stdout
