"""`bench.py --import-time`: `import tracked` against `import wrapt`, each in fresh processes."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from time import perf_counter
from typing import Any

from worker import with_src


def _importtime(stmt: str, env: dict[str, str]) -> tuple[float, list[tuple[int, int, str]]]:
    t0 = perf_counter()
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", stmt], capture_output=True, text=True, env=env, check=True
    )
    wall = perf_counter() - t0
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line.removeprefix("import time:").split("|")
        rows.append((int(parts[0]), int(parts[1]), parts[2][1:].rstrip()))
    return wall, rows


def import_times(quick: bool) -> dict[str, Any]:
    """`import wrapt` and `import tracked` in fresh processes, interleaved; medians."""
    env = with_src(
        {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TRACKED_", "PYTHONPROFILE")) and k != "PYTHONDONTWRITEBYTECODE"
        }
    )
    # Bytecode cached for both, as after a wheel install, in a directory of our own: an editable
    # source tree (or PYTHONDONTWRITEBYTECODE) would otherwise make tracked compile on every import.
    cache = tempfile.mkdtemp(prefix="tracked-bench-pycache-")
    env["PYTHONPYCACHEPREFIX"] = cache
    n = 3 if quick else 15
    stmts = {"python": "pass", "wrapt": "import wrapt", "tracked": "import tracked"}
    wall: dict[str, list[float]] = {k: [] for k in stmts}
    for stmt in stmts.values():  # warm the file cache and .pyc files
        subprocess.run([sys.executable, "-c", stmt], env=env, check=True)
    for _ in range(n):
        for k, stmt in stmts.items():
            t0 = perf_counter()
            subprocess.run([sys.executable, "-c", stmt], env=env, check=True)
            wall[k].append(perf_counter() - t0)
    # -X importtime: tracked's cumulative import time with wrapt already imported (what it adds).
    cum_alone: dict[str, list[int]] = {"wrapt": [], "tracked": []}
    extra: list[int] = []
    subtree: list[tuple[int, int, str]] = []
    for _ in range(n):
        for k in ("wrapt", "tracked"):
            _, rows = _importtime(f"import {k}", env)
            cum_alone[k].append(next(c for s, c, name in rows if name == k))
        _, rows = _importtime("import wrapt; import tracked", env)
        idx = next(i for i, (_s, _c, name) in enumerate(rows) if name == "tracked")
        start = next(i for i, (_s, _c, name) in enumerate(rows) if name == "wrapt") + 1
        extra.append(rows[idx][1])
        subtree = rows[start : idx + 1]
    top_self = sorted(subtree, key=lambda r: r[0], reverse=True)[:12]
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "runs": n,
        "wall_ms": {k: statistics.median(v) * 1000 for k, v in wall.items()},
        "importtime_ms": {k: statistics.median(v) / 1000 for k, v in cum_alone.items()},
        "tracked_after_wrapt_ms": statistics.median(extra) / 1000,
        "top_self": [(name.strip(), s / 1000) for s, _c, name in top_self],
    }
