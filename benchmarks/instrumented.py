"""The added cost of an instrumented client (`bench.py --client`): chat completions through the real
`openai.OpenAI` client against one loopback server, bare and instrumented, for tracked
(`tracked.instrument(client)` in an experiment) and each peer that can instrument a client
(logfire's `instrument_openai`).

The server is `tests/loopback.py` (imported by path), run in a process of its own (`serve`), so
that its work shares neither the GIL nor the threads of a subject, as a remote server would not.
Each subject's process (`run_point`) holds two clients of that server, one bare and one
instrumented, and times every call of both (`measure_calls`): blocks of each, interleaved, the
order rotated per round, the subject's background work settled (untimed) after every block. The
added time of an instrumented call is its lowest round median minus the bare client's, in the same
process and run; the HTTP round trip, which dominates each call, is in both. The process's CPU
per call (every thread) is read too. Only the standard library is imported at the top.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import statistics
import subprocess
import sys
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter_ns, process_time_ns
from types import ModuleType
from typing import Any

import peers
from harness import lowest_and_noise, rotated

HERE = Path(__file__).resolve().parent
LOOPBACK = HERE.parent / "tests" / "loopback.py"
URL_ENV = "TRACKED_BENCH_LOOPBACK_URL"  # the server's address, for the subjects' processes
MODEL = "gpt-4o-mini"
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is six times seven? Answer in one short sentence."},
]


@dataclass
class ClientPlan:
    rounds: int
    blocks: int  # blocks per round, of each client and workload
    calls: int  # calls per block, each timed
    warm_calls: int  # per client and workload, before anything is timed

    def per_subject(self) -> int:
        """Timed calls per client and workload."""
        return self.rounds * self.blocks * self.calls


# Many calls in interleaved blocks: the added time is a few percent of a call, which the round
# trip dominates, and the machine's load changes within a round. A block is long (75 to 150 ms)
# against the 20 ms a background thread of tracked sleeps between batches.
FULL = ClientPlan(rounds=15, blocks=4, calls=50, warm_calls=50)
QUICK = ClientPlan(rounds=1, blocks=1, calls=3, warm_calls=0)

WORKLOADS = [
    ("plain", "chat completion"),
    ("stream", "streamed chat completion, include_usage, every chunk read"),
]
# tracked's variants: the experiment's sinks (None: no experiment, calls measured and dropped).
# The first is the subject; the others show where its time goes.
TRACKED = {
    "client-tracked": ("tracked", {"wandb": True, "local": True}),
    "client-tracked-local": ("tracked, local store only", {"wandb": False, "local": True}),
    "client-tracked-noexp": ("tracked, no experiment", None),
}
# The subjects: tracked, and every peer with an `instrument_openai` (in the order of the tables).
CLIENT_PEERS = [p for p in peers.ALL if hasattr(p, "instrument_openai")]
SUBJECTS = [*TRACKED, *(f"client-{p.NAME}" for p in CLIENT_PEERS)]
LABELS = {**{n: label for n, (label, _) in TRACKED.items()}, **{f"client-{p.NAME}": p.LABEL for p in CLIENT_PEERS}}


def plan_of(quick: bool) -> ClientPlan:
    return QUICK if quick else FULL


# --- the server ------------------------------------------------------------------------------------------


def load_loopback() -> ModuleType:
    """`tests/loopback.py`, imported by its path (the tests are no package)."""
    spec = importlib.util.spec_from_file_location("loopback", LOOPBACK)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {LOOPBACK}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["loopback"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def serve() -> None:
    """The loopback server, until stdin closes: its address is the first line on stdout."""
    loopback = load_loopback()

    class Tally(loopback.Ledger):  # type: ignore[name-defined,misc]
        """Counts the responses: a ledger of every one would grow with the run."""

        count = 0

        def add(self, entry: Any) -> None:
            Tally.count += 1

    lb = loopback.Loopback()
    lb._server.ledger = Tally()
    lb._server.handle_error = lambda request, address: None  # a client leaving at the end is no error
    print(lb.url, flush=True)
    try:
        sys.stdin.read()
    finally:
        lb.close()


@contextlib.contextmanager
def loopback_server() -> Iterator[str]:
    """The loopback server in a process of its own; yields its base address."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the loopback server did not start (exit {proc.poll()})")
        yield url
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the timed calls ---------------------------------------------------------------------------------------


def calls_of(client: Any) -> dict[str, Callable[[], Any]]:
    """One call of each workload through `client`."""
    create = client.chat.completions.create

    def plain() -> Any:
        return create(model=MODEL, messages=MESSAGES)

    def stream() -> Any:
        for _chunk in create(model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}):
            pass

    return {"plain": plain, "stream": stream}


def measure_calls(
    calls: dict[str, Callable[[], Any]], plan: ClientPlan, settle: Callable[[], Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Every call timed; blocks of `plan.calls` calls of each name interleaved, the order rotated
    per round. A name's figure is its lowest round median call (`ns`), with its lowest round mean
    (`mean`), and every round's median, in order: round r of every name ran interleaved, so names
    can be compared round by round.

    `settle` runs after every block (untimed): it waits for the subject's background threads to
    finish the block's work, so that none of it lands in the next block, another name's. The
    process's CPU time (every thread) from a block's start to the end of its `settle` is the
    name's `cpu` per call (lowest round): unlike the wall time, it does not grow when other
    processes take the machine's cores.
    """
    names = list(calls)
    for name in names:
        for _ in range(plan.warm_calls):
            calls[name]()
    if settle is not None:
        settle()
    medians: dict[str, list[float]] = {n: [] for n in names}
    means: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    per_round = plan.blocks * plan.calls
    cpu_clock = process_time_ns
    for r in range(plan.rounds):
        gc.collect()
        order = rotated(names, r)
        times = {n: array("q", bytes(8 * per_round)) for n in names}
        cpu = dict.fromkeys(names, 0)
        i = 0
        for _ in range(plan.blocks):
            for name in order:
                fn, out = calls[name], times[name]
                c0 = cpu_clock()
                for j in range(i, i + plan.calls):
                    t0 = perf_counter_ns()
                    fn()
                    out[j] = perf_counter_ns() - t0
                if settle is not None:
                    settle()
                cpu[name] += cpu_clock() - c0
            i += plan.calls
        for name in names:
            medians[name].append(float(statistics.median(times[name])))
            means[name].append(sum(times[name]) / per_round)
            cpus[name].append(cpu[name] / per_round)
    out = {}
    for name in names:
        ns, noise = lowest_and_noise(medians[name])
        out[name] = {
            "ns": ns,
            "noise": noise,
            "mean": min(means[name]),
            "cpu": min(cpus[name]),
            "calls": plan.per_subject(),
            "rounds": medians[name],
            "round_cpus": cpus[name],
        }
    return out


# --- the subject's process ---------------------------------------------------------------------------------


def run_point(name: str, quick: bool) -> dict[str, Any]:
    """One subject, in its own process: a bare client and an instrumented one, timed interleaved."""
    url = os.environ.get(URL_ENV)
    if name not in LABELS:
        return {"subject": name, "skipped": "unknown subject"}
    if not url:
        return {"subject": name, "skipped": f"no loopback server ({URL_ENV} unset: run through bench.py --client)"}
    peer = next((p for p in CLIENT_PEERS if name == f"client-{p.NAME}"), None)
    for needed in ("openai", "tracked" if peer is None else peer.PACKAGE):
        if importlib.util.find_spec(needed) is None:
            return {"subject": name, "skipped": f"not installed (pip install {needed}, or the `bench` extra)"}
    import openai
    from harness import dist_version

    plan = plan_of(quick)

    def make() -> Any:
        return openai.OpenAI(base_url=f"{url}/v1", api_key="sk-loopback", max_retries=0)

    bare, instrumented = make(), make()
    calls = {f"bare-{k}": fn for k, fn in calls_of(bare).items()}
    calls.update(calls_of(instrumented))
    result: dict[str, Any] = {"subject": name, "openai": dist_version("openai")}
    if peer is None:
        result.update(_tracked(name, instrumented, calls, plan))
    else:
        config, recorded, flush = peer.instrument_openai(instrumented)
        workloads = measure_calls(calls, plan, flush)
        made = plan.per_subject() + plan.warm_calls
        result.update(
            {
                "version": dist_version(peer.DIST),
                "config": config,
                "workloads": workloads,
                "recorded": f"{recorded():,} spans for {len(WORKLOADS) * made:,} instrumented calls",
            }
        )
    return result


def _tracked(name: str, client: Any, calls: dict[str, Callable[[], Any]], plan: ClientPlan) -> dict[str, Any]:
    """tracked's subject: the client instrumented; every call in one experiment (W&B offline and
    the local store, or the local store only), or in none."""
    import time

    from experiment import exp_dir

    import tracked

    sinks = TRACKED[name][1]
    # A loopback address is a local provider (cost 0, no price looked up): priced as OpenAI's, as
    # logfire prices it (genai-prices, falling back to the integration's provider).
    tracked.instrument(client, provider="openai")
    made = len(WORKLOADS) * (plan.per_subject() + plan.warm_calls)
    if sinks is None:
        return {
            "version": tracked.__version__,
            "config": "tracked.instrument(client, provider='openai'), no experiment: every call measured, "
            "priced and dropped",
            "workloads": measure_calls(calls, plan),  # no background thread
            "recorded": "nothing (no experiment)",
        }
    warm = plan.warm_calls > 0
    if warm and sinks["wandb"]:  # wandb imported and its service started
        with tracked.experiment("bench-client-warm", dir=exp_dir(), **sinks):
            calls["plain"]()
    with tracked.experiment("bench-client", dir=exp_dir(), **sinks) as exp:

        def settle() -> None:
            """Until the experiment's threads have taken every row (W&B's first: its run starting),
            and one batch more: they sleep 20 ms when their queues are empty."""
            deadline = time.monotonic() + 60
            while any(exp._sinks.backlog().values()) and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(0.025)

        if warm:  # the W&B run started (on its thread) before anything is timed
            calls["plain"]()
            made += 1
        workloads = measure_calls(calls, plan, settle)
        t_end = time.perf_counter()
    finish_s = time.perf_counter() - t_end
    summary = exp.final_summary
    where = "W&B offline + local store" if sinks["wandb"] else "local store only (wandb=False)"
    return {
        "version": tracked.__version__,
        "config": f"tracked.instrument(client, provider='openai') inside `with tracked.experiment(...)`, {where}: "
        "every call a row of the experiment, priced",
        "workloads": workloads,
        "recorded": f"{summary.get('total/llm_calls', 0):,} LLM calls in the experiment for {made:,} instrumented "
        f"calls; sinks {summary.get('sinks')}; finish() {finish_s:.2f} s",
    }


# --- the figures ---------------------------------------------------------------------------------------------


def added(results: dict[str, dict[str, Any]], name: str, key: str) -> dict[str, float] | None:
    """Subject `name`'s added time on one workload, or None: instrumented - bare, the lowest round
    median of each (and of the round means); and the difference round by round (the rounds were
    interleaved): its median and range, the noise."""
    w = results.get(name, {}).get("workloads") or {}
    inst, bare = w.get(key), w.get(f"bare-{key}")
    if not inst or not bare:
        return None
    paired = [i - b for i, b in zip(inst["rounds"], bare["rounds"], strict=True)]
    return {
        "bare": bare["ns"],
        "instrumented": inst["ns"],
        "added": inst["ns"] - bare["ns"],
        "added_mean": inst["mean"] - bare["mean"],
        "added_cpu": inst["cpu"] - bare["cpu"],
        "paired_median": statistics.median(paired),
        "paired_min": min(paired),
        "paired_max": max(paired),
        "bare_noise": bare["noise"],
        "calls": inst["calls"],
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        raise SystemExit("usage: instrumented.py --serve (the loopback server of bench.py --client)")
