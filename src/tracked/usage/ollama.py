"""Ollama's response shape: `prompt_eval_count` and `eval_count` at the top level.

`ollama.ChatResponse` and `ollama.GenerateResponse` (objects or dicts, and the last item of a
stream, which carries the counts) are read; Ollama runs locally, so the provider is "ollama".
"""

from __future__ import annotations

from typing import Any

from ._client import ClientSpec, Endpoint
from ._types import Shape, Usage, new
from .values import count, get, name

__all__ = ["CLIENT", "RESPONSE", "from_response"]


def from_response(obj: Any) -> Usage | None:
    """Usage of a chat or generate response: `tokens_in` is `prompt_eval_count`, `tokens_out`
    `eval_count`, `model` is `model`, `provider` "ollama"."""
    tokens_in = count(get(obj, "prompt_eval_count"))
    tokens_out = count(get(obj, "eval_count"))
    if tokens_in is None and tokens_out is None:
        return None
    return new(Usage, (tokens_in, tokens_out, None, None, name(get(obj, "model")), "ollama", None, None, None))


RESPONSE = Shape("ollama", from_response, looks_for=("prompt_eval_count", "eval_count"))


# --- the client --------------------------------------------------------------------------------

_ENDPOINTS = {"/api/chat": "ollama.chat", "/api/generate": "ollama.generate", "/api/embed": "ollama.embed",
              "/api/embeddings": "ollama.embeddings"}  # fmt: skip


def endpoint(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Endpoint | None:
    """The LLM call a `_request(cls, method, path, json=..., stream=...)` makes, if any: chat,
    generate, embed."""
    if len(args) < 3 or str(args[1]).upper() != "POST":
        return None
    call_name = _ENDPOINTS.get(str(args[2]))
    if call_name is None:
        return None
    body = kwargs.get("json")
    model = body.get("model") if isinstance(body, dict) else None
    return Endpoint(call_name, model if isinstance(model, str) else None, bool(kwargs.get("stream")))


def base_url(client: Any) -> str | None:
    inner = getattr(client, "_client", None)
    url = getattr(inner, "base_url", None)
    return None if url is None else str(url)


CLIENT = ClientSpec(
    library="ollama",
    provider="ollama",
    classes=("Client", "AsyncClient"),
    method="_request",
    endpoint=endpoint,
    stream_style="iterator",
    base_url=base_url,
)
