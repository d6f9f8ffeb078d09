"""The benchmark runs end to end (`--quick`): a smoke test, with no assertion on any timing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"

SUBJECTS = [
    "1 bare call",
    "2 hand-written minimum",
    "3 wrapt passthrough",
    "4 tracked disabled",
    "5 tracked active, trivial",
    "6 tracked active, OpenAI usage+pricing",
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
    assert out.count("[PASS]") + out.count("[MISS]") == 4
