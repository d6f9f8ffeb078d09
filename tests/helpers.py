"""Plain helpers that several test files use (fixtures are in conftest.py, tracked functions in workloads.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import genai_prices

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


# --- child processes --------------------------------------------------------------------------------

_SRC = str(Path(tracked.__file__).resolve().parents[1])


def child_env(root: Path | None = None, wandb_on: bool = True, **env: str) -> dict[str, str]:
    """This process's environment for a child: store and W&B runs in `root` (default: the current directory),
    W&B offline (or disabled) and silent, tracking not disabled, then `env` on top."""
    root = Path.cwd() if root is None else root
    full_env = {
        **os.environ,
        "TRACKED_DIR": str(root),
        "WANDB_DIR": str(root),
        "WANDB_MODE": "offline" if wandb_on else "disabled",
        "WANDB_SILENT": "true",
    }
    full_env.pop("TRACKED_DISABLED", None)
    # Its own wandb-core service, as a separate program has (wandb puts the address of this process's
    # in WANDB_SERVICE once it has started one; a killed child's runs would stay open in it).
    full_env.pop("WANDB_SERVICE", None)
    # The child imports the `tracked` under test, wherever it runs (a relative PYTHONPATH would not
    # reach it from `root`, and the one installed in the environment may be another checkout's).
    full_env["PYTHONPATH"] = os.pathsep.join([_SRC, *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**full_env, **env}


def _run(argv: list[str], cwd: Path | None, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def run_python(code: str, cwd: Path | None = None, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -c <code> <args>` (`code` dedented) in a fresh interpreter in `cwd`, with `child_env(cwd, **env)`."""
    return _run([sys.executable, "-c", textwrap.dedent(code), *args], cwd, child_env(cwd, **env))


def run_tracked(*argv: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m tracked <argv>` in a fresh interpreter in `cwd`, with `child_env(cwd, **env)`."""
    return _run([sys.executable, "-m", "tracked", *argv], cwd, child_env(cwd, **env))


# --- cost ---------------------------------------------------------------------------------------------


def genai_cost(
    provider: str | None,
    model: str,
    tokens_in: int,
    tokens_out: int,
    cache_read: int = 0,
    cache_write: int = 0,
    cache_write_1h: int = 0,
    web_searches: int = 0,
) -> float:
    """The exact cost computed by `genai_prices.calc_price`, independently of `tracked.pricing`.

    `tokens_in` counts every input token, cached ones included, as tracked does; `cache_write_1h`
    is the part of `cache_write` written to a 1-hour cache."""
    usage = genai_prices.Usage(
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cache_read_tokens=cache_read or None,
        cache_write_tokens=cache_write or None,
        cache_write_1h_tokens=cache_write_1h or None,
        web_searches=web_searches or None,
    )
    return float(genai_prices.calc_price(usage, model_ref=model, provider_id=provider).total_price)


# --- text ---------------------------------------------------------------------------------------------


def flat(text: str) -> str:
    """Text with every run of whitespace (including rich's line wrapping) made one space."""
    return " ".join(text.split())
