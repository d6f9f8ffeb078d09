"""Process-wide settings, read on every call so that configuring after decorating works."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

_TRUTHY = frozenset({"1", "true", "yes", "on"})

#: Providers that run on the user's machine: their calls cost nothing and are marked local.
DEFAULT_LOCAL_PROVIDERS = frozenset(
    {"ollama", "mlx", "mlx-lm", "llama.cpp", "llamacpp", "llama-cpp", "vllm", "lmstudio", "local"}
)


class TrackedWarning(UserWarning):
    """Warnings from `tracked`: telemetry lost or degraded, never the user's code."""


class _Config:
    __slots__ = (
        "capture_io",
        "enabled",
        "generation",
        "io_max_chars",
        "local_providers",
        "prices",
        "propagate_threads",
        "quiet",
        "raise_internal_errors",
        "table_flush_s",
        "table_max_rows",
        "wandb_init_timeout_s",
        "wandb_writer",
        "worker_wait_s",
    )

    def __init__(self) -> None:
        self.enabled = os.environ.get("TRACKED_DISABLED", "").strip().lower() not in _TRUTHY
        self.prices: dict[str, tuple[float, float]] = {}
        self.local_providers = DEFAULT_LOCAL_PROVIDERS
        self.capture_io = False
        # Plain `concurrent.futures.ThreadPoolExecutor`s carry the running call into their threads.
        self.propagate_threads = True
        self.io_max_chars = 2000
        self.wandb_init_timeout_s = 30.0
        self.table_max_rows = 10_000
        self.table_flush_s = 15.0
        # W&B runs written by a process of their own ("process") or a thread of this one ("thread").
        self.wandb_writer = os.environ.get("TRACKED_WANDB_WRITER", "").strip().lower() or "process"
        # Off: a top-level experiment ends with one line on stderr saying where its runs are.
        self.quiet = os.environ.get("TRACKED_QUIET", "").strip().lower() in _TRUTHY
        # Internal errors are swallowed with a warning; tests turn this on to see them.
        self.raise_internal_errors = False
        # How long an experiment's end waits for Ray workers with calls still running.
        self.worker_wait_s = 60.0
        # Bumped whenever prices change, so cached price lookups know they are stale.
        self.generation = 0

    def __reduce__(self) -> str:
        # Pickled (with a `@tracked` function cloudpickle sends by value) as a reference to the
        # receiving process's own settings.
        return "config"


config = _Config()


def _check_rate(model: str, value: Any) -> tuple[float, float]:
    try:
        usd_in, usd_out = value
        pair = (float(usd_in), float(usd_out))
    except (TypeError, ValueError):
        raise TypeError(f"prices[{model!r}] must be a pair (usd_per_1m_in, usd_per_1m_out), got {value!r}") from None
    if not all(math.isfinite(x) and x >= 0 for x in pair):
        raise ValueError(f"prices[{model!r}] must be finite and non-negative, got {value!r}")
    return pair


def configure(
    *,
    enabled: bool | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
    local_providers: Iterable[str] | None = None,
    capture_io: bool | None = None,
    io_max_chars: int | None = None,
    wandb_init_timeout_s: float | None = None,
    table_max_rows: int | None = None,
    table_flush_s: float | None = None,
    quiet: bool | None = None,
    propagate_threads: bool | None = None,
    wandb_writer: str | None = None,
    worker_wait_s: float | None = None,
) -> None:
    """Change process-wide settings; only the arguments given are changed.

    Settings are read when a call runs, so functions decorated at import time pick them up.

    Args:
        enabled: False makes every `@tracked` function a plain passthrough (also `TRACKED_DISABLED=1`).
        prices: Per-model price overrides in USD per million tokens, ``{"my-model": (in, out)}``.
            They win over the `genai-prices` data. Keys are model names, or ``"provider/model"``.
        local_providers: Provider names whose calls cost 0 and are marked local
            (default: ollama, mlx, llama.cpp, vllm, lmstudio, local).
        capture_io: Default for ``@tracked(capture_io=...)`` and ``tracked.instrument(capture_io=...)``:
            record each call's inputs and output in `calls.jsonl` (a function's arguments, an
            instrumented request's messages sent; the reply text of an LLM call), truncated, with
            secrets redacted.
        io_max_chars: Length (characters) at which each captured string is cut.
        wandb_init_timeout_s: How long an online `wandb.init` may take before falling back to offline.
        table_max_rows: Rows kept for each W&B table (calls, tasks); the rest are in the local store.
        table_flush_s: Seconds between live updates of the W&B tables while a run goes on (default
            15): each update sends the rows that came since, as an increment of an incremental
            table (W&B Server 0.70 or later shows those). A run shorter than this, or 0, writes each
            table once, at its end.
        quiet: True leaves out the line a top-level experiment prints on stderr when it ends (where
            its local store and W&B run are, and how to upload an offline run); also `TRACKED_QUIET=1`.
        propagate_threads: False stops plain `concurrent.futures.ThreadPoolExecutor`s (and asyncio's
            `run_in_executor`) from carrying the running call and experiment into their threads
            (default True): calls made there are then top-level calls of the experiment.
            `tracked.ThreadPoolExecutor` and `tracked.bind` carry them regardless.
        wandb_writer: Where W&B runs are written (also `TRACKED_WANDB_WRITER`): ``"process"``
            (default), a process of their own fed in batches, so wandb's work per row (0.1 to
            0.7 ms of Python) does not hold your code's GIL; or ``"thread"``, a thread of this
            process. Read as each experiment opens. A run `wandb agent` started for a sweep, and
            the older tracker's (it is wandb's current run), are always written in this process.
        worker_wait_s: How long (seconds, default 60) an experiment's end waits for Ray workers
            (`exp.handle()` with Ray) that still have calls running; after it, what they wrote is
            read on their nodes and what they had running is reported missing.

    Example:
        >>> import tracked
        >>> tracked.configure(prices={"my-finetune": (0.5, 1.5)})
    """
    if enabled is not None:
        config.enabled = bool(enabled)
    if prices is not None:
        if not isinstance(prices, Mapping):
            raise TypeError(f"prices must be a mapping of model name to (in, out), got {type(prices).__name__}")
        checked = {}
        for model, value in prices.items():
            if not isinstance(model, str) or not model:
                raise TypeError(f"price keys must be non-empty model names, got {model!r}")
            checked[model.lower()] = _check_rate(model, value)
        config.prices = checked
        config.generation += 1
    if local_providers is not None:
        if isinstance(local_providers, str):
            raise TypeError("local_providers must be a collection of names, not one string")
        config.local_providers = frozenset(str(p).lower() for p in local_providers)
        config.generation += 1
    if capture_io is not None:
        config.capture_io = bool(capture_io)
    if io_max_chars is not None:
        if not isinstance(io_max_chars, int) or io_max_chars < 16:
            raise ValueError("io_max_chars must be an int of at least 16")
        config.io_max_chars = io_max_chars
    if wandb_init_timeout_s is not None:
        if not (isinstance(wandb_init_timeout_s, (int, float)) and wandb_init_timeout_s > 0):
            raise ValueError("wandb_init_timeout_s must be a positive number of seconds")
        config.wandb_init_timeout_s = float(wandb_init_timeout_s)
    if table_max_rows is not None:
        if not isinstance(table_max_rows, int) or table_max_rows < 0:
            raise ValueError("table_max_rows must be a non-negative int")
        config.table_max_rows = table_max_rows
    if table_flush_s is not None:
        if not (isinstance(table_flush_s, (int, float)) and math.isfinite(table_flush_s) and table_flush_s >= 0):
            raise ValueError("table_flush_s must be a non-negative number of seconds")
        config.table_flush_s = float(table_flush_s)
    if quiet is not None:
        config.quiet = bool(quiet)
    if wandb_writer is not None:
        if wandb_writer not in ("process", "thread"):
            raise ValueError(f'wandb_writer must be "process" or "thread", got {wandb_writer!r}')
        config.wandb_writer = wandb_writer
    if worker_wait_s is not None:
        if not (isinstance(worker_wait_s, (int, float)) and math.isfinite(worker_wait_s) and worker_wait_s >= 0):
            raise ValueError("worker_wait_s must be a non-negative number of seconds")
        config.worker_wait_s = float(worker_wait_s)
    if propagate_threads is not None:
        if not isinstance(propagate_threads, bool):
            raise TypeError(f"propagate_threads must be True or False, got {propagate_threads!r}")
        config.propagate_threads = propagate_threads


_warned: set[Any] = set()


def warn_once(key: Any, message: str) -> None:
    """Warn the first time `key` is seen in this process."""
    if key in _warned:
        return
    _warned.add(key)
    try:
        warnings.warn(message, TrackedWarning, stacklevel=3)
    except Warning:
        # Warnings turned into errors must not break the user's call; our own tests want them.
        if config.raise_internal_errors:
            raise


def internal_error(where: str, exc: BaseException) -> None:
    """Report a bug in the SDK without breaking the user's code."""
    if config.raise_internal_errors:
        raise exc
    warn_once(
        ("internal", where, type(exc)),
        f"tracked: internal error in {where}: {type(exc).__name__}: {exc}. "
        "Your code is still running fine, just with less telemetry.",
    )
