"""Ollama's response shape: `prompt_eval_count` and `eval_count` at the top level.

`ollama.ChatResponse` and `ollama.GenerateResponse` (objects or dicts, and the last item of a
stream, which carries the counts) are read; Ollama runs locally, so the provider is "ollama".
"""

from __future__ import annotations

from typing import Any

from ._client import ClientSpec, Endpoint
from ._text import Piece, each, field, message, text_of, tool_args, tool_call
from ._types import Shape, Usage, new
from .values import count, get, is_mapping, name

__all__ = ["CLIENT", "RESPONSE", "from_response", "inputs", "reply", "reply_delta"]


def from_response(obj: Any) -> Usage | None:
    """Usage of a chat or generate response: `tokens_in` is `prompt_eval_count`, `tokens_out`
    `eval_count`, `model` is `model`, `provider` "ollama"."""
    if type(obj) is dict:  # the most frequent mapping (the client's dict form), read directly
        try:
            tokens_in, tokens_out, model = obj.get("prompt_eval_count"), obj.get("eval_count"), obj.get("model")
        except Exception:  # a key whose __eq__ raises: read field by field, as any other value
            tokens_in, tokens_out, model = get(obj, "prompt_eval_count"), get(obj, "eval_count"), get(obj, "model")
    else:
        tokens_in, tokens_out, model = get(obj, "prompt_eval_count"), get(obj, "eval_count"), get(obj, "model")
    tokens_in, tokens_out = count(tokens_in), count(tokens_out)
    if tokens_in is None and tokens_out is None:
        return None
    return new(Usage, (tokens_in, tokens_out, None, None, name(model), "ollama", None, None, None))


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
    return Endpoint(call_name, model if isinstance(model, str) else None, bool(kwargs.get("stream")), body=body)


def base_url(client: Any) -> str | None:
    inner = getattr(client, "_client", None)
    url = getattr(inner, "base_url", None)
    return None if url is None else str(url)


# --- the text sent and received (capture_io) -----------------------------------------------------


def _content(msg: Any) -> str:
    """A message's text, then a marker per image and a line per tool call."""
    lines = [text_of(get(msg, "content"))]
    lines.extend("[image]" for _ in each(get(msg, "images")))
    lines.extend(tool_call(get(get(tc, "function"), "name"), get(get(tc, "function"), "arguments"))
                 for tc in each(get(msg, "tool_calls")))  # fmt: skip
    return "\n".join(line for line in lines if line)


def inputs(call_name: str, body: Any) -> dict[str, Any] | None:
    """What a request sends: chat `messages`; generate's `system` and `prompt` (as a "system" and
    a "user" message); embed's `input` (or the older embeddings' `prompt`) as ``{"input": [...]}``."""
    if not is_mapping(body):
        return None
    if call_name in ("ollama.embed", "ollama.embeddings"):
        given = get(body, "input") if call_name == "ollama.embed" else get(body, "prompt")
        return {"input": [given] if isinstance(given, str) else [v for v in each(given) if isinstance(v, str)]}
    if call_name == "ollama.generate":
        sent = []
        system = text_of(get(body, "system"))
        if system:
            sent.append(message("system", system))
        sent.append(message("user", _content({"content": get(body, "prompt"), "images": get(body, "images")})))
        return {"messages": sent}
    return {"messages": [message(get(m, "role"), _content(m)) for m in each(get(body, "messages"))]}


def reply(obj: Any) -> tuple[Piece, ...] | None:
    """The reply of a chat response (`message.content` and its tool calls) or a generate response
    (`response`); also one item of a stream, whose text is a fragment. None for another shape: a
    value without `done`, or with neither."""
    if field(obj, "done") is None:
        return None
    msg = field(obj, "message")
    if msg is None:
        generated = field(obj, "response")
        if not isinstance(generated, str):
            return None
        return ((None, "text", generated),) if generated else ()
    pieces: list[Piece] = []
    text = text_of(get(msg, "content"))
    if text:
        pieces.append((None, "text", text))
    for i, tc in enumerate(each(get(msg, "tool_calls"))):
        fn = get(tc, "function")
        # A stream sends each tool call whole, in one item: its name starts a new call in the slot.
        pieces.append((("tool", i), "name", text_of(get(fn, "name"))))
        pieces.append((("tool", i), "args", tool_args(get(fn, "arguments"))))
    return tuple(pieces)


#: A stream item has the shape of a response: the same reader.
reply_delta = reply


CLIENT = ClientSpec(
    library="ollama",
    provider="ollama",
    classes=("Client", "AsyncClient"),
    method="_request",
    endpoint=endpoint,
    stream_style="iterator",
    base_url=base_url,
    inputs=inputs,
    reply=reply,
    reply_delta=reply_delta,
)
