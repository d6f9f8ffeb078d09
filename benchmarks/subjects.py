"""The subjects of the separate-process tables: their names, labels and kits.

The reference subjects are here: the hand-written minimum, tracked, and a wrapt passthrough (the
baseline of the disabled table). Each peer is a module of `peers/`; the lists below follow
`peers.ALL`, so a new peer is one new module there.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from functools import partial
from time import perf_counter
from typing import Any

import peers
from harness import Kit, dist_version

WORKLOADS = [
    ("single", "single call, trivial function"),
    ("openai", "call returning an OpenAI response (usage + pricing)"),
    ("nested", "outer call + 3 nested OpenAI calls, per call (/4)"),
    ("async", "async call"),
    ("gen", "generator of 10 items (per generator)"),
    ("experiment", "top-level OpenAI call in an experiment, W&B offline + local store (mean, caller-visible)"),
]

_min_var: contextvars.ContextVar[Any] = contextvars.ContextVar("bench_minimum", default=None)
_MARK = object()


def minimum_kit() -> Kit:
    """The hand-written minimum as a decorator: two clock reads and a ContextVar set/reset."""

    def sync(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _min_var.set(_MARK)
            t0 = perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                _latency = perf_counter() - t0
                _min_var.reset(token)

        return wrapper

    def async_(fn: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _min_var.set(_MARK)
            t0 = perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                _latency = perf_counter() - t0
                _min_var.reset(token)

        return wrapper

    def gen(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _min_var.set(_MARK)
            t0 = perf_counter()
            try:
                return (yield from fn(*args, **kwargs))
            finally:
                _latency = perf_counter() - t0
                _min_var.reset(token)

        return wrapper

    return Kit(
        version="-",
        config="a closure: perf_counter() twice and a ContextVar set/reset around the call",
        sync=sync,
        async_=async_,
        gen=gen,
    )


def tracked_kit(enabled: bool = True) -> Kit:
    import tracked

    tracked.configure(enabled=enabled)
    return Kit(
        version=tracked.__version__,
        config=(
            "@tracked; outside an experiment the call is measured, usage extracted and priced, rolled up "
            "to its parent, and kept in memory only; the experiment workload writes both sinks"
            if enabled
            else "tracked.configure(enabled=False)"
        ),
        sync=tracked.tracked,
        async_=tracked.tracked,
        gen=tracked.tracked,
    )


def wrapt_kit() -> Kit:
    import wrapt

    @wrapt.decorator
    def passthrough(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return wrapped(*args, **kwargs)

    return Kit(version=dist_version("wrapt"), config="@wrapt.decorator passthrough", sync=passthrough)


PEER_NAMES = [p.NAME for p in peers.ALL]
# The peers' table: every workload, for the hand-written minimum, tracked and each peer.
PEERS = ["minimum", "tracked", *PEER_NAMES]
# The disabled table: one plain call, for a wrapt passthrough and each SDK switched off.
DISABLED = ["wrapt", "tracked-disabled", *(f"{p.NAME}-disabled" for p in peers.ALL if p.DISABLED_LABEL)]

KITS: dict[str, Callable[[], Kit]] = {
    "minimum": minimum_kit,
    "tracked": tracked_kit,
    "wrapt": wrapt_kit,
    "tracked-disabled": partial(tracked_kit, False),
}
LABELS = {
    "minimum": "hand-written minimum",
    "tracked": "tracked",
    "wrapt": "wrapt passthrough",
    "tracked-disabled": "tracked, disabled",
}
# The package a subject needs: a subject whose package is missing is skipped.
PACKAGES = {"tracked": "tracked", "wrapt": "wrapt"}
for _peer in peers.ALL:
    KITS[_peer.NAME] = _peer.kit
    LABELS[_peer.NAME] = _peer.LABEL
    PACKAGES[_peer.NAME] = _peer.PACKAGE
    if _peer.DISABLED_LABEL:
        KITS[f"{_peer.NAME}-disabled"] = partial(_peer.kit, False)
        LABELS[f"{_peer.NAME}-disabled"] = _peer.DISABLED_LABEL
