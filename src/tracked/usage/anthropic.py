"""Anthropic's two response shapes: messages and stream events.

A `Message` reports `usage.input_tokens`, `usage.output_tokens`, `usage.cache_read_input_tokens`
and `usage.cache_creation_input_tokens`; its input count excludes the cache reads and writes, which
are billed as input, so `tokens_in` adds them. In a stream, `message_start` carries the message
(its input usage) and each `message_delta` the output count so far.
"""

from __future__ import annotations

from typing import Any

from ._client import ClientSpec, Endpoint, base_url_of, request_options
from ._types import Shape, Usage, new
from .openai import from_responses
from .values import add, count, get, name

__all__ = ["CLIENT", "MESSAGE", "STREAM_EVENT", "from_message", "from_stream_event"]


def from_message(obj: Any) -> Usage | None:
    """Usage of a message, or of anything with `usage.input_tokens` or `usage.output_tokens` that
    is not an OpenAI Responses object: `tokens_in` is input + cache reads + cache writes,
    `tokens_out` `usage.output_tokens`, `model` is `model`; `provider` is "anthropic" when
    `type == "message"` or a cache count is present, else unknown."""
    usage = get(obj, "usage")
    tokens_in = count(get(usage, "input_tokens"))
    tokens_out = count(get(usage, "output_tokens"))
    if tokens_in is None and tokens_out is None:
        return None
    if get(obj, "object") == "response":  # OpenAI's, read by `openai.RESPONSES`
        return None
    cache_read = count(get(usage, "cache_read_input_tokens"))
    cache_write = count(get(usage, "cache_creation_input_tokens"))
    is_anthropic = get(obj, "type") == "message" or cache_read is not None or cache_write is not None
    if tokens_in is not None:
        tokens_in = add(tokens_in, cache_read, cache_write)
    provider = "anthropic" if is_anthropic else None
    model = name(get(obj, "model"))
    return new(Usage, (tokens_in, tokens_out, cache_read or None, cache_write or None, model, provider, None))


MESSAGE = Shape("anthropic.message", from_message, looks_for=("usage",))


def from_stream_event(obj: Any) -> Usage | None:
    """Usage of a stream event: a `message_start`'s message as `from_message` reads it; a
    `message_delta`'s `usage.output_tokens` (and input + cache counts, when present), `provider`
    "anthropic"; no usage for any other event."""
    kind = get(obj, "type")
    if kind == "message_start":
        message = get(obj, "message")
        # Read like a top-level value of either shape with `usage.input_tokens`, as it always was.
        found = from_responses(message)
        return found if found is not None else from_message(message)
    if kind != "message_delta":
        return None
    usage = get(obj, "usage")
    tokens_out = count(get(usage, "output_tokens"))
    tokens_in = count(get(usage, "input_tokens"))
    if tokens_in is not None:
        tokens_in = add(
            tokens_in,
            count(get(usage, "cache_read_input_tokens")),
            count(get(usage, "cache_creation_input_tokens")),
        )
    if tokens_out is None and tokens_in is None:
        return None
    return new(Usage, (tokens_in, tokens_out, None, None, None, "anthropic", None))


#: Every event class declares `type`, so is offered to this shape; a content delta (no `usage`
#: field), the most frequent event, to this shape alone.
STREAM_EVENT = Shape("anthropic.stream_event", from_stream_event, looks_for=("type",))


# --- the client --------------------------------------------------------------------------------


def endpoint(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Endpoint | None:
    """The LLM call a `request(cast_to, options, *, stream, stream_cls)` makes, if any: a POST to
    `/v1/messages` (`messages.create`, `messages.stream`), not `/v1/messages/count_tokens`."""
    options = request_options(args, kwargs)
    if options is None or str(getattr(options, "method", "")).lower() != "post":
        return None
    if not str(getattr(options, "url", "")).endswith("/messages"):
        return None
    body = getattr(options, "json_data", None)
    model = body.get("model") if isinstance(body, dict) else None
    return Endpoint("anthropic.messages.create", model if isinstance(model, str) else None, bool(kwargs.get("stream")))


CLIENT = ClientSpec(
    library="anthropic",
    provider="anthropic",
    classes=("Anthropic", "AsyncAnthropic"),
    method="request",
    endpoint=endpoint,
    stream_style="stream_cls",
    base_url=base_url_of,
    copies=("copy", "with_options"),
)
