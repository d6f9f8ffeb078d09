#!/usr/bin/env python
"""tracked's own share of the end-to-end eval, in instructions (`bench.py --instructions`).

    python benchmarks/instructions.py [--tasks N] [--quick]

Wall and CPU time on a shared 2-vCPU machine vary by 5 to 10 % from one run of the same eval to
the next, more than what tracked adds, so `--e2e` cannot say whether tracked's own share is under
2 % (issue 15). Instructions can: valgrind's `cachegrind` counts every instruction a process
executes (user space; system calls' kernel work is not counted), the same for the same work
whatever the machine's load.

The eval is `--e2e`'s (`e2e.solve`: an answer and a judge through `openai.AsyncOpenAI`, `@tracked`
on the strategy, `tracked.instrument(client)`, `exp.log` of accuracy per task, 64 tasks in flight),
each subject in a fresh process under valgrind:

- **in-process**: the client's HTTP transport is httpx's `MockTransport`, answering each request
  with a `ChatCompletion` body after an `asyncio.sleep(0.001)`, so that only the client's own work
  is counted (no sockets): untraced, tracked with the local store only (`wandb=False`), tracked
  with both sinks (W&B offline, written by the writer process, whose instructions are not the
  user's process's and are not counted here);
- **loopback**: the untraced eval of `--e2e` itself (`worker.py --subject e2e-untraced`) against
  the loopback server in a process of its own: the instructions of a real task (sockets, httpcore's
  connection pool), the denominator of the share.

After the warm-up (20 tasks) the in-process subjects run `gc.collect()` and `gc.freeze()`: how
many full collections of the garbage collector fall in a run varies by one from run to run, each
millions of instructions over everything imported, which made the figures vary by 100,000
instructions per task; with the imports frozen, two runs of the same code differ by about 10,000
(the young collections tracked's objects cause are still counted).
tracked's background threads poll for work every 0.15 s instead of 20 ms in these runs, so that
they poll as often per task as in a real `--e2e` run (valgrind makes a task about 8 times slower
than that run's). Each subject runs twice, with 10 tasks and with N: the difference over N - 10 is its instructions
per task, free of imports and set-up (10, not 0: W&B's run and its writer start with the first
task). tracked's own instructions per task are a tracked subject's less the untraced in-process
eval's, and its share is that over the loopback eval's instructions per task (and, as an upper
bound, over the in-process eval's, which does less per task).

Needs valgrind (Debian: `apt-get install valgrind`); without it the figures are skipped with a
line saying so. Only the standard library is imported at the top.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODES = ("untraced", "local", "both")
LABELS = {
    "untraced": "untraced (in-process transport)",
    "local": "tracked, local store only",
    "both": "tracked, both sinks (default)",
    "loopback": "untraced, loopback server (e2e)",
}
TASKS, QUICK_TASKS = 600, 40
BASE_TASKS = 10  # the run subtracted
IN_FLIGHT = 64
SHARE_TARGET = 0.02

BODY = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The answer is the basket."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 29, "completion_tokens": 4, "total_tokens": 33},
}


# --- the subject's process (run under valgrind) ------------------------------------------------------------


def subject(mode: str, tasks: int) -> None:
    """One in-process eval of `tasks` tasks (after a warm-up of 20), in `mode`."""
    import e2e
    import openai

    try:
        import httpx2 as httpx  # openai 3's HTTP client
    except ImportError:
        import httpx  # type: ignore[no-redef]

    body = json.dumps(BODY).encode()

    async def answer(request: Any) -> Any:
        await asyncio.sleep(0.001)
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    client = openai.AsyncOpenAI(
        base_url="http://bench.invalid/v1",
        api_key="sk-bench",
        max_retries=0,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(answer)),
    )
    strategy = e2e.solve
    if mode != "untraced":
        import tracked
        from tracked import _dispatch

        # tracked's background threads look for work every POLL_S (20 ms) of wall time. In
        # `--e2e` a task takes 4.6 ms of wall time, so they look once per 4 or 5 tasks; under
        # valgrind a task here takes about 36 ms, and they would look twice per task, each look
        # counted as if a real run made it. 0.15 s here is about as often per task as 20 ms there.
        _dispatch.POLL_S = 0.15

        tracked.instrument(client, provider="openai")
        strategy = tracked.tracked(name="solve")(e2e.solve)
    accuracies: list[float] = []

    async def main() -> None:
        await e2e.run_eval(client, strategy, lambda a: None, 20, 16)  # warm: first calls, price data
        # What exists now (imports, the price data) is left out of the garbage collector's full
        # collections: how many of them fall in a run varies by one, millions of instructions each.
        gc.collect()
        gc.freeze()
        if mode == "untraced":
            await e2e.run_eval(client, strategy, accuracies.append, tasks, IN_FLIGHT)
            return
        with tracked.experiment("instructions", dir=tempfile.mkdtemp(), wandb=mode == "both") as exp:
            await e2e.run_eval(client, strategy, lambda a: exp.log({"accuracy": a}), tasks, IN_FLIGHT)

    asyncio.run(main())


# --- the parent ---------------------------------------------------------------------------------------------


def _valgrind(cmd: list[str], env: dict[str, str], cwd: Path) -> int:
    """Instructions executed by `cmd`'s process (not its children), counted by cachegrind."""
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", *cmd],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    found = re.findall(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"{' '.join(cmd[:4])}... exit {done.returncode}: {done.stderr[-400:]}")
    return int(found[-1].replace(",", ""))


def _env(tmp: Path) -> dict[str, str]:
    from worker import subject_env, with_src

    env = with_src(subject_env(tmp))
    env["PYTHONPATH"] += os.pathsep + str(HERE)
    env["PYTHONHASHSEED"] = "0"  # the same dict and set layouts in every run
    return env


def _run(job: tuple[str, int], url: str | None) -> tuple[str, int, int]:
    mode, tasks = job
    tmp = Path(tempfile.mkdtemp(prefix="tracked-instr-"))
    try:
        env = _env(tmp)
        if mode == "loopback":
            import e2e

            assert url is not None
            env[e2e.URL_ENV] = url
            env[e2e.PLAN_ENV] = f"{tasks},{IN_FLIGHT}"
            cmd = [sys.executable, str(HERE / "worker.py"), "--subject", "e2e-untraced", "--out", str(tmp / "out.json")]
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--subject", mode, "--tasks", str(tasks)]
        return mode, tasks, _valgrind(cmd, env, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(tasks: int, jobs: int = 2) -> dict[str, Any]:
    """Instructions per task of each subject (see the module's docstring), or `skipped`."""
    if shutil.which("valgrind") is None:
        return {"skipped": "valgrind is not installed (Debian: apt-get install valgrind)"}
    import e2e

    runs = [(m, n) for m in (*MODES, "loopback") for n in (BASE_TASKS, tasks)]
    counts: dict[str, dict[int, int]] = {}
    with e2e.loopback_server(0.005) as server, ThreadPoolExecutor(jobs) as pool:
        for mode, n, ir in pool.map(lambda job: _run(job, server.url), runs):
            counts.setdefault(mode, {})[n] = ir
    per_task = {mode: (c[tasks] - c[BASE_TASKS]) / (tasks - BASE_TASKS) for mode, c in counts.items()}
    return {"tasks": tasks, "in_flight": IN_FLIGHT, "counts": counts, "per_task": per_task}


def print_instructions(results: dict[str, Any]) -> None:
    print("tracked's own share of the eval, in instructions (valgrind's cachegrind, the user's process)")
    if "skipped" in results:
        print(f"  skipped: {results['skipped']}")
        return
    per = results["per_task"]
    base, real = per["untraced"], per["loopback"]
    print(
        f"{results['tasks']} tasks, {results['in_flight']} in flight; instructions per task "
        f"({BASE_TASKS}-task run subtracted)"
    )
    print(f"{'subject':34s} {'per task':>12s} {'tracked own':>12s} {'of loopback':>12s} {'of in-proc.':>12s}")
    print("-" * 86)
    for mode in ("loopback", *MODES):
        own = per[mode] - base if mode in ("local", "both") else None
        cells = (
            f"{own:12,.0f} {own / real:12.2%} {own / base:12.2%}" if own is not None else f"{'-':>12s} " * 3
        ).rstrip()
        print(f"{LABELS[mode]:34s} {per[mode]:12,.0f} {cells}")


def share_targets(results: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """Issue 15's "tracked's own share under 2 %", on the instruction counts."""
    what = "tracked's own share of an eval task, both sinks, at most 2% (instructions)"
    if "skipped" in results:
        return [(what, None, results["skipped"])]
    per = results["per_task"]
    own = per["both"] - per["untraced"]
    local = per["local"] - per["untraced"]
    share = own / per["loopback"]
    return [
        (
            what,
            share <= SHARE_TARGET,
            f"{own:,.0f} instructions per task = {share:.2%} of the loopback eval's {per['loopback']:,.0f} "
            f"({own / per['untraced']:.2%} of the in-process eval's {per['untraced']:,.0f}); local store only "
            f"{local:,.0f} = {local / per['loopback']:.2%}",
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=None, help=f"tasks per measured run (default {TASKS})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TASKS} tasks")
    parser.add_argument("--subject", choices=MODES, help=argparse.SUPPRESS)  # the process under valgrind
    args = parser.parse_args(argv)
    tasks = args.tasks or (QUICK_TASKS if args.quick else TASKS)
    if not args.subject and tasks <= BASE_TASKS:
        parser.error(f"--tasks must be more than {BASE_TASKS}")
    if args.subject:
        subject(args.subject, tasks)
        return 0
    results = measure(tasks)
    print_instructions(results)
    for what, ok, detail in share_targets(results):
        mark = "SKIP" if ok is None else ("PASS" if ok else "MISS")
        print(f"  [{mark}] {what}: {detail}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    raise SystemExit(main())
