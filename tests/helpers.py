"""Plain helpers that several test files use (fixtures are in conftest.py, tracked functions in workloads.py)."""

from __future__ import annotations

from pathlib import Path

import tracked
from tracked.testing import WandbRun, read_wandb_run

# --- W&B runs ---------------------------------------------------------------------------------------


def wandb_run(exp: tracked.Experiment) -> WandbRun:
    """The W&B run an experiment wrote, read from its offline `.wandb` file."""
    return read_wandb_run(exp.final_summary["wandb"]["dir"])


def wandb_run_dirs(root: Path) -> list[Path]:
    """Every W&B run directory (offline or online) under `root/wandb`, sorted."""
    base = root / "wandb"
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith(("offline-run-", "run-")))
