"""`tracked report` on a large store: how long it takes and how big the file is.

Writes a local store of `--experiments` x `--tasks` (default 50 x 10,000: 5 strategies, 10 seeds
each) directly in the format `src/tracked/_store.py` reads (config.json, results.jsonl, summary.json,
the summary made by tracked's own `totals_of`), then runs `tracked report` on it in a fresh
interpreter, several times, and prints the wall time (import included) and the file's size.
Issue 16's target: under 10 s and under 20 MB. A measurement, not a test: it always exits 0.

    .venv/bin/python benchmarks/report_scale.py                 # 50 x 10,000, three runs
    .venv/bin/python benchmarks/report_scale.py --experiments 4 --tasks 500 --runs 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: strategy: (model, LLM calls per task, cost per LLM call or None when unpriced, skill, seconds, streamed)
STRATEGIES: dict[str, tuple[str, int, float | None, float, float, bool]] = {
    "single": ("gpt-4o-mini", 1, 0.00012, 0.62, 0.8, False),
    "debate": ("gpt-4o-mini", 7, 0.00015, 0.78, 4.5, False),
    "self_consistency": ("gpt-4o-mini", 5, 0.00012, 0.71, 2.2, True),
    "introspection": ("claude-sonnet-4-5", 2, 0.0031, 0.74, 3.1, True),
    "local_llama": ("llama3.2:3b", 1, None, 0.55, 0.6, False),  # a model with no price: unknown, not $0
}


def write_store(root: Path, experiments: int = 50, tasks: int = 10_000, seed: int = 0) -> list[Path]:
    """A store of `experiments` finished experiments (strategies in turn, a seed each) of `tasks` rows,
    with errors (about 0.3%), unpriced calls (the local model) and streamed calls (TTFT)."""
    from tracked._store import load_experiment, totals_of, write_json

    rng = random.Random(seed)
    names = list(STRATEGIES)
    base = root / "experiments"
    base.mkdir(parents=True, exist_ok=True)
    started = time.time() - 86_400
    paths = []
    for n in range(experiments):
        strategy = names[n % len(names)]
        model, llm_calls, price, skill, seconds, streamed = STRATEGIES[strategy]
        name = f"{strategy}_seed{n // len(names)}"
        path = base / f"{name}_20261130_{n:06d}"
        path.mkdir()
        meta: dict[str, Any] = {
            "name": name, "project": "bench", "group": "scale", "tags": [f"strategy:{strategy}"],
            "config": {"strategy": strategy, "model": model, "seed": n // len(names)}, "started_at": started + n,
        }  # fmt: skip
        write_json(path / "config.json", meta)
        lines = []
        for i in range(tasks):
            error = rng.random() < 0.003
            tokens_in, tokens_out = llm_calls * rng.randint(80, 400), llm_calls * rng.randint(10, 80)
            row: dict[str, Any] = {
                "_step": i, "_timestamp": started + n + i * 0.01, "call": "run_strategy", "call_id": f"{n}-{i}",
                "latency_s": rng.lognormvariate(0, 0.4) * seconds, "tokens_in": tokens_in, "tokens_out": tokens_out,
                "cost_usd": None if price is None else llm_calls * price * rng.uniform(0.7, 1.3),
                "llm_calls": llm_calls, "unpriced_calls": 0 if price is not None else llm_calls,
                "usage_unknown_calls": 0, "error": int(error), "task_id": f"task-{i:05d}",
            }  # fmt: skip
            if error:
                row["error_type"] = "TimeoutError"
            if streamed:
                row["ttft_s"] = row["latency_s"] * rng.uniform(0.05, 0.2)
            lines.append(json.dumps(row))
            lines.append(json.dumps({"_step": i, "_join": True, "accuracy": float(rng.random() < skill)}))
        (path / "results.jsonl").write_text("\n".join(lines) + "\n")
        summary = totals_of([load_experiment(path)])
        key = model.replace(".", "_").replace(":", "_")
        calls = llm_calls * tasks
        summary.update({
            "status": "finished", "name": name, "started_at": started + n, "finished_at": started + n + tasks * 0.01,
            f"model/{key}/name": model, f"model/{key}/llm_calls": calls,
            f"model/{key}/tokens_in": summary["total/tokens_in"],
            f"model/{key}/tokens_out": summary["total/tokens_out"],
            f"model/{key}/unpriced_calls": summary["total/unpriced_calls"], f"model/{key}/usage_unknown_calls": 0,
            f"model/{key}/cost_usd": summary["total/cost_usd"],
        })  # fmt: skip
        write_json(path / "summary.json", summary)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3, help="times to render the report (default 3)")
    parser.add_argument("--dir", help="where to write the store (default: a temporary directory)")
    args = parser.parse_args()
    src = str(Path(__file__).resolve().parents[1] / "src")
    sys.path.insert(0, src)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.dir or tmp)
        start = time.perf_counter()
        write_store(root, args.experiments, args.tasks)
        size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        print(f"store: {args.experiments} experiments x {args.tasks:,} tasks, {size / 1e6:.0f} MB on disk, "
              f"written in {time.perf_counter() - start:.1f} s")  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
        out = root / "report.html"
        times, renders, cpus = [], [], []
        for _ in range(args.runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "tracked", "report", str(root), "-o", str(out)],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            times.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if done.returncode != 0:
                print(f"tracked report failed ({done.returncode}):\n{done.stderr}")
                return
            # "report: PATH (8.6 MB, 4.1 s)": the time after the store was read and the experiments chosen
            renders.append(float(done.stdout.rsplit(", ", 1)[1].split(" s)")[0]))
        text = out.read_text(encoding="utf-8")
        note = "sampled table" if 'id="table-note"' in text else "every task in the table"
        print(
            f"tracked report: {', '.join(f'{t:.2f}' for t in times)} s (fresh interpreter, import included), "
            f"of which {', '.join(f'{t:.2f}' for t in renders)} s after reading the store (compare's reader); "
            f"CPU {', '.join(f'{t:.2f}' for t in cpus)} s; "
            f"file {out.stat().st_size / 1e6:.1f} MB ({note}); target < 10 s and < 20 MB"
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "tracked", "compare", str(root)], env=env, capture_output=True, check=False
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        print(f"tracked compare on the same store: {time.perf_counter() - start:.2f} s (CPU {cpu:.2f} s)")
        print(f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
