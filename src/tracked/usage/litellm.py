"""LiteLLM's own cost: `_hidden_params` of its OpenAI-chat-shaped responses.

A `litellm.ModelResponse` is read by the OpenAI chat shape (`usage.openai`), which takes the
tokens; this module adds what LiteLLM computed itself: `_hidden_params["response_cost"]` (USD)
and `_hidden_params["custom_llm_provider"]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .values import cost, declares, name

__all__ = ["HIDDEN_PARAMS", "declares_hidden_params", "has_hidden_params", "reported_cost"]

HIDDEN_PARAMS = "_hidden_params"

# Whether a class declares `_hidden_params`, remembered: asking a pydantic class for a missing
# attribute raises inside pydantic.
_declares: dict[type, bool] = {}


def declares_hidden_params(kind: type) -> bool:
    """Whether `kind` declares `_hidden_params` (a class attribute or a pydantic private attribute)."""
    declared = _declares.get(kind)
    if declared is None:
        declared = declares(kind, HIDDEN_PARAMS)
        if len(_declares) < 4096:
            _declares[kind] = declared
    return declared


def has_hidden_params(obj: Any) -> bool:
    """Whether `obj` may carry `_hidden_params`: its class declares them, or the instance holds them."""
    declared = _declares.get(type(obj))
    if declared is None:
        declared = declares_hidden_params(type(obj))
    return declared or HIDDEN_PARAMS in getattr(obj, "__dict__", ())


def reported_cost(obj: Any) -> tuple[float | None, str | None]:
    """LiteLLM's `response_cost` (USD) and `custom_llm_provider`, each `None` if absent or invalid."""
    hidden = getattr(obj, HIDDEN_PARAMS, None)
    if isinstance(hidden, Mapping):
        return cost(hidden.get("response_cost")), name(hidden.get("custom_llm_provider"))
    return None, None
