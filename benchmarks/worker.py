#!/usr/bin/env python
"""The worker behind `bench.py --peers` and `--scaling`: one subject per process.

    python benchmarks/worker.py --subject NAME --out FILE [--quick]

Run it through `bench.py`, which starts one process per subject (`run_subject`) with a sandboxed
environment (`subject_env`) and prints the tables. A subject is a hand-written minimum, tracked, or
one peer (logfire, Langfuse, Weave, MLflow tracing, Opik) in its local configuration (`subjects.py`,
`peers/`), one point of tracked's scaling (`scaling.py`), or an instrumented OpenAI client against
the loopback server (`instrumented.py`). The benchmark modules import nothing
but the standard library at the top, so a subject's process holds only that subject's SDK: its
import time and memory are its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from time import perf_counter
from typing import Any

import e2e
import instrumented
import scaling
from experiment import experiment_workload
from harness import FULL, QUICK, build_blocks, make_response, measure, memory_after, rss
from subjects import DISABLED, KITS, PACKAGES

HERE = Path(__file__).resolve().parent
LOOPBACK_DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection is refused at once


def with_src(env: dict[str, str]) -> dict[str, str]:
    """`env` with this checkout's `src` first on PYTHONPATH: the tracked under test."""
    env["PYTHONPATH"] = str(HERE.parent / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# --- the parent: the sandbox, one process per subject ------------------------------------------------------


def subject_env(tmp: Path) -> dict[str, str]:
    """The environment of a subject's process: every SDK local, offline or pointed at a dead
    loopback port, telemetry off, HOME and caches in `tmp`; and proxies on the dead port, so that
    a request to any host but 127.0.0.1 fails at once instead of leaving the machine."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "LANGFUSE_", "LOGFIRE_", "OPIK_", "WEAVE_", "WF_", "MLFLOW_", "WANDB_"))
        and k not in ("TRACKED_DISABLED", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")
    }
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "TMPDIR": str(tmp),
            # Anything that would leave the machine goes to a dead local proxy instead.
            "HTTP_PROXY": LOOPBACK_DEAD,
            "HTTPS_PROXY": LOOPBACK_DEAD,
            "ALL_PROXY": LOOPBACK_DEAD,
            "http_proxy": LOOPBACK_DEAD,
            "https_proxy": LOOPBACK_DEAD,
            "all_proxy": LOOPBACK_DEAD,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "DO_NOT_TRACK": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            # W&B (tracked's sink; also what Weave would log in to): offline, silent, in tmp.
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "WANDB_DIR": str(tmp),
            "WANDB_CONFIG_DIR": str(tmp / "wandb-config"),
            "WANDB_CACHE_DIR": str(tmp / "wandb-cache"),
            "WANDB_DATA_DIR": str(tmp / "wandb-data"),
            "WANDB_BASE_URL": LOOPBACK_DEAD,
            "WANDB_ERROR_REPORTING": "false",
            # logfire: nothing sent, nothing printed.
            "LOGFIRE_SEND_TO_LOGFIRE": "false",
            "LOGFIRE_CONSOLE": "false",
            # Langfuse: dummy keys, its OTLP exporter pointed at the dead port.
            "LANGFUSE_PUBLIC_KEY": "pk-lf-bench",
            "LANGFUSE_SECRET_KEY": "sk-lf-bench",
            "LANGFUSE_HOST": LOOPBACK_DEAD,
            "LANGFUSE_BASE_URL": LOOPBACK_DEAD,
            # Weave: its trace server on the dead port, every call written to its local write-ahead
            # log (under HOME) and never sent; no integration patching, no links printed.
            "WF_TRACE_SERVER_URL": LOOPBACK_DEAD,
            "WEAVE_ENABLE_WAL": "true",
            "WEAVE_DISABLE_WAL_SENDER": "true",
            "WEAVE_PRINT_CALL_LINK": "false",
            "WEAVE_IMPLICITLY_PATCH_INTEGRATIONS": "false",
            "WEAVE_LOG_LEVEL": "ERROR",
            # MLflow: sqlite store in tmp, traces logged asynchronously, no telemetry.
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
            "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # Opik: its backend on the dead port; no Sentry, no analytics.
            "OPIK_URL_OVERRIDE": LOOPBACK_DEAD + "/api",
            "OPIK_PROJECT_NAME": "bench",
            "OPIK_WORKSPACE": "default",
            "OPIK_SENTRY_ENABLE": "false",
            "OPIK_ANALYTICS_ENABLE": "false",
            "OPIK_CONSOLE_LOGGING_LEVEL": "CRITICAL",
            "OPIK_FILE_LOGGING_LEVEL": "CRITICAL",
        }
    )
    return with_src(env)


def run_subject(name: str, quick: bool, timeout_s: float) -> dict[str, Any]:
    """One subject in a fresh process; its JSON result, or {"skipped": reason}."""
    tmp = Path(tempfile.mkdtemp(prefix=f"tracked-bench-{name}-"))
    out = tmp / "result.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--subject", name, "--out", str(out)]
    if quick:
        cmd.append("--quick")
    t0 = perf_counter()
    try:
        proc = subprocess.run(
            cmd, env=subject_env(tmp), cwd=tmp, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if out.exists():
            result = json.loads(out.read_text())
        else:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            result = {"skipped": f"crashed (exit {proc.returncode}): {' | '.join(tail)[:300]}"}
    except subprocess.TimeoutExpired:
        result = {"skipped": f"did not finish within {timeout_s:.0f} s"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.setdefault("subject", name)
    result["wall_s"] = perf_counter() - t0
    return result


def run_many(names: list[str], quick: bool, timeout_s: float) -> dict[str, dict[str, Any]]:
    """The subjects one after another, each in its own process; progress on stderr."""
    results = {}
    for name in names:
        print(f"  [{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
        results[name] = run_subject(name, quick, timeout_s)
        r = results[name]
        state = f"skipped: {r['skipped']}" if "skipped" in r else "done"
        print(f"  [{time.strftime('%H:%M:%S')}] {name}: {state} ({r['wall_s']:.1f} s)", file=sys.stderr, flush=True)
    return results


# --- the subject's process ---------------------------------------------------------------------------------


def subject_main(name: str, quick: bool) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    if name.startswith("scale-"):
        return scaling.run_point(name, quick)
    if name.startswith("client-"):
        return instrumented.run_point(name, quick)
    if name.startswith("e2e-"):
        return e2e.run_point(name, quick)

    if name not in KITS:
        return {"subject": name, "skipped": "unknown subject"}
    package = PACKAGES.get(name.removesuffix("-disabled"))
    if package is not None:
        import importlib.util

        if importlib.util.find_spec(package) is None:
            return {"subject": name, "skipped": f"not installed (pip install {package}, or the `bench` extra)"}
    response = make_response()
    t0 = perf_counter()
    before_import = rss()
    try:
        kit = KITS[name]()
    except ImportError as exc:
        return {"subject": name, "skipped": f"not importable: {type(exc).__name__}: {str(exc)[:200]}"}
    except Exception as exc:
        return {
            "subject": name,
            "skipped": f"not runnable offline: {type(exc).__name__}: {str(exc)[:200]}",
            "trace": traceback.format_exc()[-2000:],
        }
    init_s = perf_counter() - t0
    loop = asyncio.new_event_loop()
    result = {
        "subject": name,
        "version": kit.version,
        "config": kit.config,
        "init_s": init_s,
        "import_rss": rss() - before_import,
    }
    blocks = build_blocks(kit, response, loop)
    if name in DISABLED:
        result["workloads"] = measure({"single": blocks["single"]}, plan)
        return result
    workloads = measure(blocks, plan)
    if "nested" in workloads:  # per call: the outer call and its 3 nested calls
        nested = workloads["nested"]
        nested["per_outer"] = nested["ns"]
        nested["ns"] = nested["ns"] / 4
    if name == "tracked":
        workloads["experiment"] = experiment_workload(response, plan)
    result["workloads"] = workloads
    result["memory"] = memory_after(kit, plan.memory_calls, plan.flush_s)
    loop.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one benchmark subject (run by bench.py)")
    parser.add_argument("--subject", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = subject_main(args.subject, args.quick)
    except Exception as exc:
        result = {
            "subject": args.subject,
            "skipped": f"failed: {type(exc).__name__}: {str(exc)[:300]}",
            "trace": traceback.format_exc()[-3000:],
        }
    Path(args.out).write_text(json.dumps(result, default=repr))
    sys.stdout.flush()
    # Peers leave exporter threads behind that retry against the dead port: do not wait for them.
    os._exit(0)


if __name__ == "__main__":
    main()
