#!/usr/bin/env python
"""Tracked calls in Ray workers (`bench.py --ray`, issue 17): calls per second through 4 Ray actors
against the same calls in one process, and what the Ray transport adds per remote call.

    python benchmarks/ray_bench.py [--calls N] [--quick]

Every call is a chat completion through `openai.OpenAI` to `--e2e`'s loopback server (a process of
its own, answering after 5 ms), inside `@tracked(name="solve")` with the client instrumented. A
local Ray instance of this machine (4 CPUs declared, every address 127.0.0.1) runs the actors;
this process is the driver. The subjects, in rounds interleaved three times (the order rotated),
each making `N` calls in all:

- **one process, untraced** / **one process, tracked**: the `N` calls one after the other in this
  process; tracked in one experiment with the local store only (W&B's cost per row is the same
  wherever the row comes from, and is measured by `--e2e`);
- **4 Ray actors, untraced** / **4 Ray actors, tracked**: 4 actors each make `N / 4` calls one
  after the other; tracked, each actor's method runs in `with experiment.attach(exp.handle())`
  with its `TRACKED_DIR` apart from the driver's, so its records travel through Ray (the
  collector actor) to the driver's local store. Its time runs from submitting the methods to the
  experiment's end (the driver's end waits for the last batches and merges the parts).

**Added per remote call** is (tracked - untraced wall time) x 4 / N: what each actor's calls take
longer, one after the other. Only the standard library is imported at the top.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CALLS, QUICK_CALLS = 4000, 200
ACTORS = 4
ROUNDS, QUICK_ROUNDS = 3, 1
SUBJECTS = ("process-untraced", "process-tracked", "ray-untraced", "ray-tracked")
LABELS = {
    "process-untraced": "one process, untraced",
    "process-tracked": "one process, tracked",
    "ray-untraced": f"{ACTORS} Ray actors, untraced",
    "ray-tracked": f"{ACTORS} Ray actors, tracked (through Ray)",
}


def _client(url: str, traced: bool) -> Any:
    import openai

    import tracked

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-bench", max_retries=0)
    if traced:
        tracked.instrument(client, provider="openai")
    return client


def _ask(client: Any, i: int) -> str:
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"question {i}: where is the marble?"}]
    )
    return reply.choices[0].message.content


class Asker:
    """The actor: `run` makes its calls, untraced or attached to an experiment."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.clients = {True: _client(url, True), False: _client(url, False)}

    def run(self, handle: Any, first: int, n: int) -> int:
        import tracked
        from tracked import experiment

        if handle is None:
            client = self.clients[False]
            for i in range(first, first + n):
                _ask(client, i)
            return n
        client = self.clients[True]
        solve = tracked.tracked(name="solve")(_ask)
        with experiment.attach(handle):
            for i in range(first, first + n):
                solve(client, i)
        return n


def _one(subject: str, url: str, calls: int, actors: list[Any], root: Path) -> dict[str, Any]:
    import ray

    import tracked
    from tracked import experiment

    per = calls // ACTORS
    if subject == "process-untraced":
        client = _client(url, False)
        start = time.perf_counter()
        for i in range(calls):
            _ask(client, i)
        return {"wall_s": time.perf_counter() - start}
    if subject == "process-tracked":
        client = _client(url, True)
        solve = tracked.tracked(name="solve")(_ask)
        start = time.perf_counter()
        with experiment("bench-ray-process", dir=root, wandb=False) as exp:
            for i in range(calls):
                solve(client, i)
        return {"wall_s": time.perf_counter() - start, "llm_calls": exp.final_summary["total/llm_calls"]}
    if subject == "ray-untraced":
        start = time.perf_counter()
        ray.get([a.run.remote(None, k * per, per) for k, a in enumerate(actors)])
        return {"wall_s": time.perf_counter() - start}
    start = time.perf_counter()
    with experiment("bench-ray-actors", dir=root, wandb=False) as exp:
        handle = exp.handle()
        ray.get([a.run.remote(handle, k * per, per) for k, a in enumerate(actors)])
        returned = time.perf_counter()
    end = time.perf_counter()
    parts = exp.final_summary.get("workers") or []
    return {
        "wall_s": end - start,
        "finish_s": end - returned,
        "llm_calls": exp.final_summary["total/llm_calls"],
        "transports": sorted({p.get("transport", "?") for p in parts}),
    }


def measure(calls: int, rounds: int) -> dict[str, Any]:
    """Wall time of each subject in each round (see the module's docstring), or `skipped`."""
    # Before Ray is imported: every address it picks is 127.0.0.1, never another interface's.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    try:
        import ray
    except ImportError:
        return {"skipped": "Ray is not installed (pip install 'tracked[ray]')"}
    import e2e

    os.environ.setdefault("TRACKED_QUIET", "1")
    import tracked

    tracked.configure(quiet=True)
    calls -= calls % ACTORS
    root = Path(tempfile.mkdtemp(prefix="tracked-bench-ray-"))
    workers_dir = root / "workers"
    workers_dir.mkdir()
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in SUBJECTS}
    with e2e.loopback_server(0.005) as server:
        ray.init(
            num_cpus=ACTORS,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"TRACKED_DIR": str(workers_dir), "PYTHONPATH": str(HERE)}},
        )
        try:
            remote = ray.remote(num_cpus=1)(Asker)
            actors = [remote.remote(server.url) for _ in range(ACTORS)]
            # Warm-up, not measured: the actors started, every subject's imports and the price data
            # loaded in each process (once per process: about 0.5 s).
            for subject in SUBJECTS:
                _one(subject, server.url, 40, actors, root)
            for r in range(rounds):
                order = SUBJECTS[r % len(SUBJECTS) :] + SUBJECTS[: r % len(SUBJECTS)]
                for subject in order:
                    results[subject].append(_one(subject, server.url, calls, actors, root))
        finally:
            ray.shutdown()
    return {"calls": calls, "actors": ACTORS, "rounds": rounds, "results": results}


def print_ray(measured: dict[str, Any]) -> None:
    print("tracked calls in Ray actors (calls through an instrumented openai.OpenAI, loopback server at 5 ms)")
    if "skipped" in measured:
        print(f"  skipped: {measured['skipped']}")
        return
    calls, res = measured["calls"], measured["results"]
    print(f"{calls:,} calls per subject, {measured['rounds']} rounds interleaved; the median round")
    print(f"{'subject':40s} {'wall s':>8s} {'calls/s':>9s} {'x untraced':>11s} {'added us/call':>14s} {'finish s':>9s}")
    print("-" * 96)
    wall = {s: statistics.median(r["wall_s"] for r in rs) for s, rs in res.items()}
    for s in SUBJECTS:
        base = "process-untraced" if s.startswith("process") else "ray-untraced"
        per_call = ACTORS / calls if s.startswith("ray") else 1 / calls
        added = (wall[s] - wall[base]) * per_call * 1e6 if s.endswith("tracked") else None
        finish = [r["finish_s"] for r in res[s] if "finish_s" in r]
        print(
            f"{LABELS[s]:40s} {wall[s]:8.2f} {calls / wall[s]:9,.0f} {wall[s] / wall[base]:11.3f} "
            f"{(f'{added:+,.0f}' if added is not None else '-'):>14s} "
            f"{(f'{statistics.median(finish):.2f}' if finish else '-'):>9s}"
        )
    counted = {r.get("llm_calls") for s in ("process-tracked", "ray-tracked") for r in res[s]}
    transports = {t for r in res["ray-tracked"] for t in r.get("transports", [])}
    print(
        f"  LLM calls counted by each tracked round: {sorted(counted)}; the actors' parts came by {sorted(transports)}"
    )
    print(
        f"  {ACTORS} Ray actors against one process: {wall['process-untraced'] / wall['ray-untraced']:.2f}x the calls "
        f"per second untraced, {wall['process-tracked'] / wall['ray-tracked']:.2f}x tracked"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=None, help=f"calls per subject (default {CALLS})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CALLS} calls, one round")
    args = parser.parse_args(argv)
    calls = args.calls or (QUICK_CALLS if args.quick else CALLS)
    print_ray(measure(calls, QUICK_ROUNDS if args.quick else ROUNDS))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    raise SystemExit(main())
