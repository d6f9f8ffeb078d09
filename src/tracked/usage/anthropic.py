"""Anthropic's two response shapes: messages and stream events.

A `Message` reports `usage.input_tokens`, `usage.output_tokens`, `usage.cache_read_input_tokens`
and `usage.cache_creation_input_tokens` (of which `usage.cache_creation.ephemeral_1h_input_tokens`
were 1-hour writes, priced at their own rate), and `usage.server_tool_use.web_search_requests`
(server-side web searches, priced per request). Its input count excludes the cache reads and
writes, which are billed as input, so `tokens_in` adds them. In a stream, `message_start` carries
the message (its input usage) and each `message_delta` the output count so far (and the input,
cache and server-tool counts again, cumulative: they replace, never add).
"""

from __future__ import annotations

from typing import Any

from ._client import ClientSpec, Endpoint, base_url_of, request_options
from ._text import Piece, each, field, kind_of, message, part_text, text_of, tool_args, tool_call
from ._types import Shape, Usage, new
from .openai import from_responses
from .values import add, count, get, is_mapping, name, two

__all__ = [
    "CLIENT",
    "MESSAGE",
    "STREAM_EVENT",
    "from_message",
    "from_stream_event",
    "inputs",
    "reply",
    "reply_delta",
]


def from_message(obj: Any) -> Usage | None:
    """Usage of a message, or of anything with `usage.input_tokens` or `usage.output_tokens` that
    is not an OpenAI Responses object: `tokens_in` is input + cache reads + cache writes,
    `tokens_out` `usage.output_tokens`, `cache_write_1h_tokens` the writes' 1-hour part (at most
    the writes), `web_searches` `usage.server_tool_use.web_search_requests`, `model` is `model`;
    `provider` is "anthropic" when `type == "message"` or a cache or server-tool count is present,
    else unknown."""
    usage = get(obj, "usage")
    tokens_in = count(get(usage, "input_tokens"))
    tokens_out = count(get(usage, "output_tokens"))
    if tokens_in is None and tokens_out is None:
        return None
    cache_read, cache_write = two(usage, "cache_read_input_tokens", "cache_creation_input_tokens")
    if cache_read is not None:
        cache_read = count(cache_read)
    if cache_write is not None:
        cache_write = count(cache_write)
    searches = _web_searches(usage)
    is_anthropic = (
        cache_read is not None or cache_write is not None or searches is not None or get(obj, "type") == "message"
    )
    if not is_anthropic and (get(obj, "object") == "response" or get(usage, "input_tokens_details") is not None):
        return None  # OpenAI's Responses API, read by `openai.RESPONSES`
    write_1h = None
    if cache_write:
        write_1h = count(get(get(usage, "cache_creation"), "ephemeral_1h_input_tokens"))
        if write_1h is not None and write_1h > cache_write:
            write_1h = cache_write
    if tokens_in is not None:
        tokens_in = add(tokens_in, cache_read, cache_write)
    provider = "anthropic" if is_anthropic else None
    model = name(get(obj, "model"))
    return new(
        Usage,
        (tokens_in, tokens_out, cache_read or None, cache_write or None, model, provider, None, write_1h or None,
         searches or None),
    )  # fmt: skip


def _web_searches(usage: Any) -> int | None:
    """`usage.server_tool_use.web_search_requests`: server-side web searches, billed per request."""
    server_tools = get(usage, "server_tool_use")
    return None if server_tools is None else count(get(server_tools, "web_search_requests"))


MESSAGE = Shape("anthropic.message", from_message, looks_for=("usage",))


def from_stream_event(obj: Any) -> Usage | None:
    """Usage of a stream event: a `message_start`'s message as `from_message` reads it; a
    `message_delta`'s `usage.output_tokens` (and input + cache counts, and web searches, when
    present, and 1-hour writes if it breaks its writes down), `provider` "anthropic"; no usage for
    any other event. The cache reads and writes themselves are the `message_start`'s."""
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
    searches = _web_searches(usage)
    # The SDK's delta declares no `cache_creation` (one per stream: the slow read of a missing
    # pydantic field does not matter); a delta that carries one anyway is read.
    write_1h = count(get(get(usage, "cache_creation"), "ephemeral_1h_input_tokens"))
    return new(Usage, (tokens_in, tokens_out, None, None, None, "anthropic", None, write_1h or None, searches or None))


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
    return Endpoint(
        "anthropic.messages.create", model if isinstance(model, str) else None, bool(kwargs.get("stream")), body=body
    )


# --- the text sent and received (capture_io) -----------------------------------------------------

_MARKERS = {"image": "[image]", "document": "[document]", "search_result": "[search result]"}
_HIDDEN = frozenset({"thinking", "redacted_thinking"})  # the model's reasoning: not the reply
_TOOL_USES = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})


def _block(block: Any) -> str | None:
    """One content block of a message sent: its text, a tool call or result, a marker for an
    image or document; thinking is left out."""
    kind = kind_of(block)
    if kind == "text":
        return text_of(get(block, "text"))
    if kind in _TOOL_USES:
        return tool_call(get(block, "name"), get(block, "input"))
    if kind == "tool_result":
        return "[tool result] " + part_text(get(block, "content"), _block)
    if kind in _HIDDEN:
        return None
    return _MARKERS.get(kind, f"[{kind}]" if kind else None)


def inputs(call_name: str, body: Any) -> dict[str, Any] | None:
    """What a messages request sends: ``{"messages": [...]}``, the `system=` prompt (a string or
    text blocks) first as a "system" message, then each message's content blocks as text."""
    if not is_mapping(body):
        return None
    sent = []
    system = part_text(get(body, "system"), _block)
    if system:
        sent.append(message("system", system))
    sent.extend(message(get(m, "role"), part_text(get(m, "content"), _block)) for m in each(get(body, "messages")))
    return {"messages": sent}


def reply(obj: Any) -> tuple[Piece, ...] | None:
    """The reply of a message (`type == "message"`): its text blocks joined, and its tool calls;
    None for another shape."""
    if field(obj, "type") != "message":
        return None
    pieces: list[Piece] = []
    for i, block in enumerate(each(get(obj, "content"))):
        kind = kind_of(block)
        if kind == "text":
            pieces.append((None, "text", text_of(get(block, "text"))))
        elif kind in _TOOL_USES:
            pieces.append((("tool", i), "name", text_of(get(block, "name"))))
            pieces.append((("tool", i), "args", tool_args(get(block, "input"))))
    return tuple(pieces)


_EVENTS = frozenset({"message_start", "message_delta", "message_stop", "content_block_stop", "ping"})


def reply_delta(item: Any) -> tuple[Piece, ...] | None:
    """The pieces of a stream event: a text delta, a tool call's name (its block's start) and
    argument fragments (`input_json_delta`); None for what is not an Anthropic event."""
    kind = field(item, "type")
    if kind == "content_block_delta":
        delta = get(item, "delta")
        dtype = kind_of(delta)
        if dtype == "text_delta":
            return ((None, "text", text_of(get(delta, "text"))),)
        if dtype == "input_json_delta":
            return ((("tool", get(item, "index")), "args", text_of(get(delta, "partial_json"))),)
        return ()
    if kind == "content_block_start":
        block = get(item, "content_block")
        btype = kind_of(block)
        if btype == "text":
            return ((None, "text", text_of(get(block, "text"))),)
        if btype in _TOOL_USES:
            return ((("tool", get(item, "index")), "name", text_of(get(block, "name"))),)
        return ()
    return () if kind in _EVENTS else None


CLIENT = ClientSpec(
    library="anthropic",
    provider="anthropic",
    classes=("Anthropic", "AsyncAnthropic"),
    method="request",
    endpoint=endpoint,
    stream_style="stream_cls",
    base_url=base_url_of,
    copies=("copy", "with_options"),
    inputs=inputs,
    reply=reply,
    reply_delta=reply_delta,
)
