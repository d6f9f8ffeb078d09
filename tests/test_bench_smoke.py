"""The benchmark runs end to end (`--quick`): a smoke test, with no assertion on any timing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"

SUBJECTS = [
    "1 bare call",
    "2 hand-written minimum",
    "3 wrapt passthrough",
    "4 tracked disabled",
    "5 tracked active, trivial",
    "6 tracked active, OpenAI usage+pricing",
    "6b same work inlined by hand (lower bound)",
    "7 tracked outer + 3 nested (per outer)",
    "7 tracked outer + 3 nested (per call /4)",
    "8 bare async await",
    "8 tracked async await",
    "9 bare generator x10",
    "9 tracked generator x10",
    "10 same call, no experiment (median)",
    "10 same call, no experiment (mean)",
    "10 in experiment, both sinks (median)",
    "10 in experiment, both sinks (mean)",
]


def test_bench_quick_runs(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path)}
    env.pop("TRACKED_DISABLED", None)
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{proc.stderr}"
    for name in SUBJECTS:
        assert name in out, f"{name!r} missing from the benchmark output:\n{out}"
    assert "targets:" in out
    assert out.count("[PASS]") + out.count("[MISS]") == 4  # and the per-call 5x, a goal since issue 15
    assert out.count("[goal: met]") + out.count("[goal: not met]") == 1


def _run_bench(tmp_path, *flags):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path)}
    env.pop("TRACKED_DISABLED", None)
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", *flags],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def test_bench_peers_quick_runs(tmp_path):
    """--peers with the subjects that need no peer installed; a missing peer is skipped, not an error."""
    out = _run_bench(tmp_path, "--peers", "--subjects", "minimum,tracked,wrapt,tracked-disabled,no-such-peer")
    for text in (
        "single call, trivial function",
        "call returning an OpenAI response (usage + pricing)",
        "outer call + 3 nested OpenAI calls, per call (/4)",
        "async call",
        "generator of 10 items (per generator)",
        "top-level OpenAI call in an experiment",
        "hand-written minimum",
        "memory: RSS still held after 1,000 single calls",
        "disabled: one call of a trivial function",
        "wrapt passthrough",
        "tracked, disabled",
        "targets",
        "nested call with usage and pricing at most 5x the hand-written minimum",
        "with wandb's work off the caller's path",
        "disabled at most 1.5x a wrapt passthrough",
    ):
        assert text in out, f"{text!r} missing from the benchmark output:\n{out}"
    assert "no-such-peer: skipped: unknown subject" in out, out
    # tracked's rows have figures, not "skipped"
    tracked_lines = [line for line in out.splitlines() if line.strip().startswith("tracked ")]
    assert tracked_lines and not any("skipped" in line for line in tracked_lines), out


def test_bench_peer_not_installed_is_skipped(tmp_path):
    """A peer's subject in a process where its package cannot be imported prints 'skipped: ...'."""
    sys.path.insert(0, str(BENCH.parent))
    try:
        import worker
    finally:
        sys.path.remove(str(BENCH.parent))
    out = tmp_path / "r.json"
    env = worker.subject_env(tmp_path)
    # A package of that name earlier on the path, whose import fails, hides the real one if installed.
    fake = tmp_path / "fake"
    (fake / "opik").mkdir(parents=True)
    (fake / "opik" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env["PYTHONPATH"] = str(fake) + os.pathsep + env["PYTHONPATH"]
    subprocess.run(
        [sys.executable, str(BENCH.parent / "worker.py"), "--subject", "opik", "--out", str(out), "--quick"],
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    import json

    result = json.loads(out.read_text())
    assert result.get("skipped", "").startswith("not importable"), result


def test_bench_scaling_and_import_time_quick_run(tmp_path):
    out = _run_bench(tmp_path, "--scaling", "--import-time")
    for text in (
        "scaling: tracked, top-level calls",
        "depth: one chain of N nested tracked functions",
        "threads: calls split over N threads",
        "import time: fresh processes",
        "import tracked at most 15 ms more than import wrapt alone",
    ):
        assert text in out, f"{text!r} missing from the benchmark output:\n{out}"
    for line in out.splitlines():
        assert "skipped" not in line, out


def test_bench_client_quick_runs(tmp_path):
    """--client: instrumented openai clients against the loopback server; a missing peer is skipped, not an error."""
    out = _run_bench(tmp_path, "--client")
    for text in (
        "client: chat completions through a real openai.OpenAI client",
        "chat completion",
        "streamed chat completion, include_usage, every chunk read",
        "tracked, local store only",
        "tracked, no experiment",
        "LLM calls in the experiment",
        "instrumented OpenAI client, chat completion: tracked's added time at most a tenth of logfire's",
    ):
        assert text in out, f"{text!r} missing from the benchmark output:\n{out}"
    rows = [line for line in out.splitlines() if line.startswith("  tracked     ")]  # the table's, one per workload
    assert len(rows) == 2 and not any("skipped" in line for line in rows), out
    logfire = [line for line in out.splitlines() if line.startswith("  logfire     ")]
    assert len(logfire) == 2, out  # figures, or `skipped: not installed ...` where logfire is missing


def test_bench_e2e_quick_runs(tmp_path):
    """--e2e: the async eval through the loopback server for tracked's subjects, every row read back; an unknown
    subject is skipped, not an error (the peers are left out: they would add tens of seconds)."""
    subjects = "e2e-untraced,e2e-tracked,e2e-tracked-local,e2e-tracked-thread,no-such-peer"
    out = _run_bench(tmp_path, "--e2e", "--subjects", subjects)
    for text in (
        "e2e: an async eval, each task a strategy making 2 chat completions",
        "200 tasks, 1 round",
        "untraced (no SDK)",
        "tracked, both sinks (default)",
        "tracked, local store only",
        "tracked, W&B on a thread",
        "rows: local 200, W&B 200 (tasks 200)",
        "rows: local 200, W&B - (tasks 200)",
        "no-such-peer: skipped: unknown subject",
        "e2e: tracked, both sinks <= 1.05x untraced",
    ):
        assert text in out, f"{text!r} missing from the benchmark output:\n{out}"
    rows = [line for line in out.splitlines() if line.startswith(("untraced (no SDK) ", "tracked, both sinks "))]
    assert len(rows) == 2 and not any("skipped" in line for line in rows), out


@pytest.mark.slow
def test_bench_instructions_quick_runs(tmp_path):
    """--instructions: each subject's instructions per task under valgrind and the share target's line; without
    valgrind, a skip line. (30 measured tasks are too few to compare subjects: one full collection of the garbage
    collector more or less is millions of instructions.)"""
    out = _run_bench(tmp_path, "--instructions")
    assert "tracked's own share of the eval, in instructions" in out, out
    if shutil.which("valgrind") is None:
        assert "skipped: valgrind is not installed" in out, out
        return
    per_task = {}
    for label in ("untraced, loopback server (e2e)", "untraced (in-process transport)", "tracked, local store only",
                  "tracked, both sinks (default)"):  # fmt: skip
        (line,) = [line for line in out.splitlines() if line.startswith(label)]
        per_task[label] = float(line[len(label) :].split()[0].replace(",", ""))
    assert all(n > 1_000_000 for n in per_task.values()), per_task  # two chat completions and more per task
    assert "tracked's own share of an eval task, both sinks, at most 2% (instructions)" in out, out


@pytest.mark.slow
def test_bench_ray_quick_runs(tmp_path):
    """--ray: the four subjects' lines, every tracked round counting each of its calls, the actors'
    parts brought through Ray."""
    out = _run_bench(tmp_path, "--ray")
    for label in ("one process, untraced", "one process, tracked", "4 Ray actors, untraced", "4 Ray actors, tracked"):
        assert any(line.startswith(label) for line in out.splitlines()), out
    assert "LLM calls counted by each tracked round: [200]; the actors' parts came by ['ray']" in out, out
