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


def children_of(exp: StoredExperiment, store: list[StoredExperiment]) -> list[StoredExperiment]:
    """The experiments of `store` opened inside `exp` (their `config.json` names it as parent)."""
    return [e for e in store if e.meta.get("parent") == exp.path.name and e.path.parent == exp.path.parent]


def descendants_of(exp: StoredExperiment, store: list[StoredExperiment]) -> list[StoredExperiment]:
    """Its children, their children, and so on."""
    out: list[StoredExperiment] = []
    todo = children_of(exp, store)
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(children_of(child, store))
    return out


def _store_of(path: Path) -> list[StoredExperiment]:
    """Every experiment beside the one at `path` (its siblings in `experiments/`), rows not read."""
    return [load_experiment(p, with_rows=False) for p in experiment_dirs(path.parent) if p != path]


def original_runs(exp: StoredExperiment) -> list[Path]:
    """The `.wandb` files of the W&B run the experiment itself started (id and directory recorded
    in `config.json` as it opened), wherever W&B wrote it: offline or online, whole or cut short."""
    ref = (exp.meta.get("refs") or {}).get("wandb")
    if not isinstance(ref, dict) or not isinstance(ref.get("id"), str) or not isinstance(ref.get("root"), str):
        return []
    run_id = ref["id"]
    found: list[Path] = []
    for base in (Path(ref["root"]) / "wandb", Path(ref["root"]) / ".wandb"):
        found += sorted(base.glob(f"*-{run_id}/run-{run_id}.wandb"))
    return found


def _mark_replaced(original: Path, replay_dir: Path) -> None:
    """Mark a `.wandb` file so that `wandb sync` skips it: W&B's own marker of a synced run
    (`<file>.synced`), which `wandb sync` (and `--sync-all` before wandb 0.30) leave out."""
    marker = original.with_name(original.name + ".synced")
    marker.write_text(f"replaced by tracked sync: the W&B run in {replay_dir} holds this experiment whole\n")


def _uploaded(run_dir: Path) -> bool:
    """Whether `wandb sync` has uploaded the run in `run_dir` (it leaves a `.wandb.synced` marker)."""
    return any(f.with_name(f.name + ".synced").exists() for f in run_dir.glob("*.wandb"))


def upload_command(run_dirs: list[Path]) -> str:
    """One `wandb sync` command uploading these offline runs: their W&B directories (wandb 0.30
    and later read a directory's runs, leaving out those marked synced), else the runs one by one."""
    from importlib.metadata import version

    try:
        major, minor = (int(x) for x in version("wandb").split(".")[:2])
    except (ValueError, ImportError):
        major, minor = 0, 0
    if len(run_dirs) > 1 and (major, minor) >= (0, 30):
        targets = sorted({str(d.parent) for d in run_dirs})
    else:
        targets = sorted(str(d) for d in run_dirs)
    return "wandb sync " + " ".join(targets)


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

    def say(text: str) -> None:
        console.print(text, markup=False, soft_wrap=True)  # paths and commands on one line, as written

    failures = 0
    written: list[Path] = []  # offline runs written now
    to_upload: list[Path] = []  # offline runs written earlier, still to upload
    uploaded = 0
    for path in dirs:
        exp = load_experiment(path)
        state = _state(path)
        if exp.status == "running":
            say(f"skip {path.name}: still running (process {(exp.meta.get('system') or {}).get('pid')})")
            continue
        if not exp.rows and (
            exp.summary.get("children") or children_of(exp, _store_of(path)) or not (path / RESULTS).exists()
        ):
            say(f"skip {path.name}: no rows of its own (its children have their own runs)")
            continue
        existing = _offline_run_dir(exp, state)
        try:
            if online and existing is not None:
                if state.get("synced_online"):
                    say(f"skip {path.name}: already uploaded (run {state.get('run_id')})")
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
                uploaded += 1
                say(f"uploaded {path.name} with wandb sync {existing}")
                continue
            if not online and existing is not None:
                if _uploaded(existing):
                    say(f"skip {path.name}: its W&B run is uploaded ({existing})")
                    continue
                to_upload.append(existing)
                say(f"skip {path.name}: already has an offline W&B run; upload it with: wandb sync {existing}")
                continue
            if online and state.get("synced_online"):
                say(f"skip {path.name}: already synced (run {state.get('run_id')})")
                continue
            originals = original_runs(exp)
            run_id = state.get("run_id") or ((exp.meta.get("refs") or {}).get("wandb") or {}).get("id")
            run = replay(exp, mode, run_id, store_root)
            replay_dir = Path(run.dir).parent
            # The run the experiment wrote before it was cut short keeps its id, and is marked so
            # that `wandb sync` leaves it out: the replay, under the same id, is the experiment whole.
            replaced = [o for o in originals if o.parent != replay_dir]
            for original in replaced:
                _mark_replaced(original, replay_dir)
            state["run_id"] = run.id
            if online:
                state["synced_online"] = True
                uploaded += 1
            else:
                state["offline_dir"] = str(replay_dir)
                written.append(replay_dir)
            _save_state(path, state)
            say(f"synced {path.name} -> W&B run {run.id} ({mode}, {len(exp.rows)} rows)")
            for original in replaced:
                say(f"  its run cut short, {original.parent}, is replaced: marked so that `wandb sync` skips it")
        except Exception as exc:  # one bad experiment does not stop the others
            failures += 1
            from rich.markup import escape

            console.print(
                f"[red]failed {escape(path.name)}: {type(exc).__name__}: {escape(str(exc))}[/]", soft_wrap=True
            )
    if written:
        runs = f"{len(written)} offline W&B run{'s' if len(written) > 1 else ''} written"
        say(f"{runs}; once logged in (wandb login), upload with: {upload_command(written + to_upload)}")
    elif to_upload:
        n = len(to_upload)
        say(
            f"nothing new to write; {n} offline W&B run{'s' if n > 1 else ''} not uploaded yet: once logged in "
            f"(wandb login), upload with: {upload_command(to_upload)}"
        )
    elif not uploaded and not failures:
        say("nothing to do: every experiment is synced or has no rows of its own")
    return 1 if failures else 0
