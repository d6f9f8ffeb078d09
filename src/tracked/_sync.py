"""`tracked sync`: replay local-store experiments into W&B, through the W&B sink.

For experiments run with W&B off, after a crash, or written by the older tracker. Each experiment
keeps one W&B run id (in `wandb_sync.json` beside its files), so syncing twice does not make a
second run. An experiment that already has an offline W&B run is uploaded with `wandb sync`.
The run is written by the same `WandbSink` a live experiment uses: the same `wandb.init`
arguments, rows, summary and calls table (capped at `configure(table_max_rows=...)`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._store import RESULTS, SYNC_STATE, StoredExperiment, experiment_dirs, load_experiment, read_calls, totals_of
from .harness import DEFAULT_PROJECT
from .sinks import RunEnd, RunInfo
from .sinks.wandb import WandbSink, has_credentials

STATE_FILE = SYNC_STATE


class NothingToSync(Exception):
    """No experiments under the path, or W&B disabled: printed without a traceback, exit code 2."""


class SyncError(Exception):
    """One experiment could not be synced (`wandb sync` failed)."""


def _state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path / STATE_FILE)


def _offline_run_dir(exp: StoredExperiment, state: dict[str, Any]) -> Path | None:
    for candidate in ((exp.summary.get("wandb") or {}).get("dir"), state.get("offline_dir")):
        if isinstance(candidate, str) and Path(candidate).is_dir():
            return Path(candidate)
    return None


def replay(exp: StoredExperiment, mode: str, run_id: str | None, wandb_dir: Path) -> Any:
    """Write one experiment as a W&B run: config, rows in order, summary, calls table. Returns the run."""
    meta = exp.meta
    legacy = "system" not in meta
    totals = exp.summary if "total/calls" in exp.summary else {**totals_of([exp]), **exp.summary}
    status = exp.status
    project = meta.get("project") or os.environ.get("WANDB_PROJECT") or (DEFAULT_PROJECT if legacy else None)
    run = RunInfo(
        name=exp.name,
        project=project,
        entity=meta.get("entity"),
        group=meta.get("group"),
        job_type=meta.get("job_type"),
        notes=meta.get("notes"),
        tags=tuple(meta.get("tags") or ()),
        config=dict(exp.config),
        system=None if legacy else meta.get("system") or {},
        dir=wandb_dir,
    )
    # No fallback to offline: a run that did not reach W&B must not be recorded as uploaded.
    sink = WandbSink(
        mode, init={"id": run_id, "resume": "allow"} if run_id else None, fallback=False, init_timeout=False
    )
    sink.open(run)
    for step, row in enumerate(exp.rows):
        sink.write_row(step, {k: v for k, v in row.items() if not k.startswith("_")})
    calls = read_calls(exp.path)
    if calls:
        sink.write_calls(calls)
    skip = ("children", "wandb", "sinks")
    summary = {k: v for k, v in totals.items() if k not in skip}
    summary["tracked/status"] = status
    try:
        sink.finish(RunEnd(summary, "finished" if status in ("finished", "legacy") else status))
    finally:
        sink.close()
    return sink.run


def sync_experiments(target: Path, *, offline: bool, console: Any) -> int:
    dirs = list(experiment_dirs(target))
    if not dirs:
        raise NothingToSync(f"no experiments under {target}")
    env_mode = os.environ.get("WANDB_MODE", "").lower()
    if env_mode == "disabled":
        raise NothingToSync("WANDB_MODE=disabled: unset it to sync")
    online = not offline and env_mode != "offline" and has_credentials()
    mode = "online" if online else "offline"
    store_root = dirs[0].parent.parent if dirs[0].parent.name == "experiments" else dirs[0].parent
    failures = 0
    for path in dirs:
        exp = load_experiment(path)
        state = _state(path)
        if not exp.rows and (exp.summary.get("children") or not (path / RESULTS).exists()):
            console.print(f"skip {path.name}: no rows of its own", markup=False)
            continue
        existing = _offline_run_dir(exp, state)
        try:
            if online and existing is not None:
                if state.get("synced_online"):
                    console.print(f"skip {path.name}: already uploaded (run {state.get('run_id')})", markup=False)
                    continue
                done = subprocess.run(
                    [sys.executable, "-m", "wandb", "sync", str(existing)], check=False, capture_output=True, text=True
                )
                if done.returncode != 0:
                    raise SyncError(
                        done.stderr.strip() or done.stdout.strip() or f"wandb sync exited {done.returncode}"
                    )
                state.update(synced_online=True)
                _save_state(path, state)
                console.print(f"uploaded {path.name} with wandb sync {existing}", markup=False)
                continue
            if not online and existing is not None:
                console.print(
                    f"skip {path.name}: already has an offline W&B run; upload it with: wandb sync {existing}",
                    markup=False,
                )
                continue
            if online and state.get("synced_online"):
                console.print(f"skip {path.name}: already synced (run {state.get('run_id')})", markup=False)
                continue
            run = replay(exp, mode, state.get("run_id"), store_root)
            state["run_id"] = run.id
            if online:
                state["synced_online"] = True
            else:
                state["offline_dir"] = str(Path(run.dir).parent)
            _save_state(path, state)
            console.print(f"synced {path.name} -> W&B run {run.id} ({mode}, {len(exp.rows)} rows)", markup=False)
        except Exception as exc:  # one bad experiment does not stop the others
            failures += 1
            from rich.markup import escape

            console.print(f"[red]failed {escape(path.name)}: {type(exc).__name__}: {escape(str(exc))}[/]")
    if not online:
        console.print("offline runs written; upload them with `wandb sync --sync-all` once logged in")
    return 1 if failures else 0
