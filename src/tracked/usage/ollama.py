"""Ollama's response shape: `prompt_eval_count` and `eval_count` at the top level.

`ollama.ChatResponse` and `ollama.GenerateResponse` (objects or dicts, and the last item of a
stream, which carries the counts) are read; Ollama runs locally, so the provider is "ollama".
"""

from __future__ import annotations

from typing import Any

from ._types import Shape, Usage, new
from .values import count, get, name

__all__ = ["RESPONSE", "from_response"]


def from_response(obj: Any) -> Usage | None:
    """Usage of a chat or generate response: `tokens_in` is `prompt_eval_count`, `tokens_out`
    `eval_count`, `model` is `model`, `provider` "ollama"."""
    tokens_in = count(get(obj, "prompt_eval_count"))
    tokens_out = count(get(obj, "eval_count"))
    if tokens_in is None and tokens_out is None:
        return None
    return new(Usage, (tokens_in, tokens_out, None, None, name(get(obj, "model")), "ollama", None))


RESPONSE = Shape("ollama", from_response, looks_for=("prompt_eval_count", "eval_count"))
