"""Tracked functions and helpers that several test files use."""

from __future__ import annotations

import asyncio
from typing import Any

import tracked
from tracked import current_call


@tracked.tracked
def work(task_id: int, tokens_out: int = 1, cost: float = 0.0) -> int:
    """One LLM-like call: `task_id` input tokens, so a row can be matched to its task."""
    tracked.current_call().add_usage(tokens_in=task_id, tokens_out=tokens_out, model="test-model", cost_usd=cost)
    return task_id


@tracked.tracked(name="llm")
def llm(n: int) -> int:
    tracked.current_call().add_usage(tokens_in=n, tokens_out=1, model="test-model", cost_usd=0.01)
    return n


@tracked.tracked(name="awork")
async def awork(task_id: int) -> int:
    """`work` as a coroutine: `task_id` input tokens, reported after one turn of the event loop."""
    tracked.current_call().add_usage(tokens_in=task_id, tokens_out=1, model="test-model", cost_usd=0.0)
    await asyncio.sleep(0)
    return task_id


@tracked.tracked(name="boom")
def boom() -> None:
    """A call that raises ValueError("boom")."""
    raise ValueError("boom")


def finished_call(value: Any, **decorator_kwargs: Any):
    """The finished Call of a tracked function that returns `value`."""
    seen: list = []

    @tracked.tracked(**decorator_kwargs)
    def llm_call():
        seen.append(current_call())
        return value

    assert llm_call() is value
    call = seen[0]
    assert call.ended
    return call
