"""tracked in an experiment (W&B offline, local store on): the peers table's experiment workload,
the check that wandb's work stays off the caller's thread, and the memory a finished experiment
leaves behind. tracked is imported in the functions, inside the subject's process.
"""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from harness import FULL, Plan, lowest_and_noise, time_calls

if TYPE_CHECKING:
    import cProfile


def exp_dir() -> str:
    """Where the subject's experiments write (W&B offline and the local store): under its TMPDIR."""
    path = Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / "exp"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def tracked_chat(response: Any) -> Callable[[Any], Any]:
    """A tracked function returning `response`: a top-level LLM call."""
    import tracked

    @tracked.tracked
    def chat(x: Any) -> Any:
        return response

    return chat


def warm_up(fn: Callable[[Any], Any], root: str, n: int) -> None:
    """n calls in an experiment of their own: W&B's service started before anything is timed."""
    import tracked

    with tracked.experiment("warm", dir=root):
        for _ in range(n):
            fn(1)


def sinks_of(exp: Any) -> dict[str, Any]:
    """The rows an experiment recorded and the state of its sinks, from its final summary."""
    return {"rows": exp.final_summary.get("total/calls"), "sinks": exp.final_summary.get("sinks")}


def experiment_workload(response: Any, plan: Plan) -> dict[str, Any]:
    """Top-level calls of an OpenAI function, one experiment per round (W&B offline, local store on)."""
    import tracked

    chat = tracked_chat(response)
    root = exp_dir()
    if plan is FULL:  # W&B's service started before any timed round
        warm_up(chat, root, 200)
    rounds = []
    for _ in range(plan.exp_rounds):
        outside, _ = time_calls(chat, plan.exp_calls)
        gc.collect()
        with tracked.experiment("bench", dir=root) as exp:
            times, total = time_calls(chat, plan.exp_calls)
            t_end = perf_counter()
        finish_s = perf_counter() - t_end
        rounds.append(
            {
                "mean": total / plan.exp_calls,
                "median": float(statistics.median(times)),
                "outside_median": float(statistics.median(outside)),
                "finish_s": finish_s,
                **sinks_of(exp),
            }
        )
        del exp
    means = [r["mean"] for r in rounds]
    out: dict[str, Any] = {
        "ns": statistics.median(means),
        "noise": lowest_and_noise(means)[1],
        "calls": plan.exp_calls * plan.exp_rounds,
        "median_call": statistics.median(r["median"] for r in rounds),
        "outside_median_call": statistics.median(r["outside_median"] for r in rounds),
        "finish_s": statistics.median(r["finish_s"] for r in rounds),
        "rows": rounds[-1]["rows"],
        "sinks": rounds[-1]["sinks"],
    }
    out["wandb_on_caller"] = wandb_on_caller_thread(chat, root, min(plan.exp_calls, 2000))
    if plan is FULL:
        out["tracemalloc"] = experiment_tracemalloc(chat, root, 10_000)
    return out


def profiled_in_experiment(chat: Callable[[Any], Any], root: str, n: int, name: str) -> cProfile.Profile:
    """n calls of `chat` in an experiment, under cProfile: what ran on the caller's thread."""
    import cProfile

    import tracked

    prof = cProfile.Profile()
    with tracked.experiment(name, dir=root):
        prof.enable()
        for _ in range(n):
            chat(1)
        prof.disable()
    return prof


def wandb_on_caller_thread(chat: Callable[[Any], Any], root: str, n: int) -> dict[str, Any]:
    """Which functions of the wandb package ran on the caller's thread during the calls."""
    import pstats

    wandb_dir = None
    try:
        import wandb

        wandb_dir = str(Path(wandb.__file__).resolve().parent)
    except ImportError:
        return {"calls": n, "wandb_functions": None}
    st = pstats.Stats(profiled_in_experiment(chat, root, n, "bench-caller-thread"))
    hits = sorted(
        f"{Path(f).name}:{fn}"
        for (f, _line, fn) in st.stats  # type: ignore[attr-defined]
        if wandb_dir and str(Path(f).resolve()).startswith(wandb_dir)
    )
    return {"calls": n, "wandb_functions": len(hits), "examples": hits[:5]}


def experiment_tracemalloc(chat: Callable[[Any], Any], root: str, n: int) -> dict[str, Any]:
    """Python memory held after an experiment's finish(), against before it (tracemalloc)."""
    import tracemalloc
    import weakref

    import tracked

    gc.collect()
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        with tracked.experiment("bench-memory", dir=root) as exp:
            for _ in range(n):
                chat(1)
        rows = exp.final_summary.get("total/calls", 0)
        ref = weakref.ref(exp)
        del exp
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
        snap = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    top = []
    for stat in snap.statistics("filename")[:40]:
        frame = stat.traceback[0]
        top.append((frame.filename, stat.size))
    return {
        "calls": n,
        "rows": rows,
        "retained": after - before,
        "peak": peak - before,
        "experiment_alive": ref() is not None,
        "top_files": [(_short(f), s) for f, s in top if s > 100_000][:8],
    }


def _short(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("site-packages", "src", "lib"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1 :])
    return filename
