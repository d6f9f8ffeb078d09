"""What sending the W&B tables while a run goes on costs (issue 13): one process, W&B offline.

Each round runs one experiment of `--tasks` top-level calls (each with two nested LLM calls and a
metric), with the tables sent only at the end (`table_flush_s=0`), at the default interval (15 s)
and, as a stress case, every 0.25 s; the three are interleaved over `--rounds` rounds, and the
figure is the wall time from the experiment's start to its end (the end waits for the W&B sink's
thread, which does the sending), per task. Ratios within one run are what to read: the machine is
shared and noisy.

    python benchmarks/live_tables.py --tasks 3000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from time import perf_counter


def one_run(tasks: int, flush_s: float, root: str) -> tuple[float, int]:
    """Seconds per task of one experiment, and how many table updates it sent."""
    import tracked
    from tracked.testing import read_wandb_run

    tracked.configure(table_flush_s=flush_s, quiet=True)

    @tracked.tracked(name="llm")
    def llm(i: int) -> int:
        tracked.current_call().add_usage(tokens_in=100 + i % 7, tokens_out=20, model="gpt-4o-mini")
        return i

    @tracked.tracked(name="solve")
    def solve(i: int) -> int:
        return llm(i) + llm(i + 1)

    began = perf_counter()
    with tracked.experiment(f"live-{flush_s}", dir=root) as exp:
        for i in range(tasks):
            solve(i)
            exp.log({"accuracy": i % 2})
    took = perf_counter() - began
    run = read_wandb_run(exp.final_summary["wandb"]["dir"])
    assert len(run.table("tasks")) == tasks, "every task in the table"
    return took / tasks, len(run.increments.get("tasks", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    cases = {"end only (0)": 0.0, "default (15 s)": 15.0, "every 0.25 s": 0.25}
    seen: dict[str, list[float]] = {name: [] for name in cases}
    updates: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as root:
        one_run(50, 0.0, root)  # warm: wandb's import and first run
        for _ in range(args.rounds):
            for name, flush_s in cases.items():
                per_task, updates[name] = one_run(args.tasks, flush_s, root)
                seen[name].append(per_task)
    base = min(seen["end only (0)"])
    print(f"{args.tasks} tasks (2 nested LLM calls each), {args.rounds} rounds, lowest per task:")
    for name, values in seen.items():
        low = min(values)
        spread = statistics.pstdev(values) / statistics.mean(values)
        figures = f"{low * 1e6:8.1f} us/task  x{low / base:.3f}  (spread {spread:.0%}, {updates[name]} updates)"
        print(f"  {name:16} {figures}")


if __name__ == "__main__":
    main()
