"""OpenAI: the response shapes of chat completions and the Responses API, and the client.

Chat completions (`ChatCompletion`, the last `ChatCompletionChunk` of a stream with usage, and any
mapping or object of that shape, LiteLLM's included) report `usage.prompt_tokens`,
`usage.completion_tokens` and `usage.prompt_tokens_details.cached_tokens` (cache reads) and
`.cache_write_tokens`; gateways serving Claude through this API may report the cache counts at the
top level of `usage` instead (`cache_read_input_tokens`, `cache_creation_input_tokens`, or
`cached_tokens`). The Responses API (`object == "response"`, or a `usage` with
`input_tokens_details`) reports `usage.input_tokens`, `usage.output_tokens` and
`usage.input_tokens_details.cached_tokens` and `.cache_write_tokens`. In both, the input count
includes the cached and cache-write tokens, and the output count the reasoning tokens (which are
not read, so never counted twice). A Responses stream reports usage in its `response.completed`
(or `incomplete`, `failed`) event.

`CLIENT` declares how `tracked.instrument` reads `openai.OpenAI` and `AsyncOpenAI` (Azure's too):
every request goes through their `request` method.
"""

from __future__ import annotations

from typing import Any

from ._client import ClientSpec, Endpoint, base_url_of, request_options
from ._text import Piece, each, field, kind_of, message, part_text, text_of, tool_args, tool_call
from ._types import Shape, Usage, new
from .litellm import HIDDEN_PARAMS, has_hidden_params, reported_cost
from .values import count, get, is_mapping, name, two

__all__ = [
    "CHAT",
    "CLIENT",
    "RESPONSES",
    "RESPONSES_EVENT",
    "from_chat",
    "from_chat_fixed",
    "from_responses",
    "from_responses_event",
    "inputs",
    "reply",
    "reply_delta",
]


def _cache_counts(details: Any) -> tuple[int | None, int | None]:
    """Cached and cache-write input tokens from `prompt_tokens_details` (or `input_tokens_details`)."""
    cached, cache_write = two(details, "cached_tokens", "cache_write_tokens")
    if cached is not None and not (type(cached) is int and cached >= 0):
        cached = count(cached)
    if cache_write is not None:
        cache_write = count(cache_write)
    return cached, cache_write


def _top_level_cache_counts(
    cached: int | None, cache_write: int | None, read: Any, write: Any
) -> tuple[int | None, int | None]:
    """The cache counts a gateway reports at the top level of a chat `usage` (`read`, `write`:
    see `from_chat`), each where `prompt_tokens_details` gave none. The same tokens reported in
    both places are one count, never added."""
    if not cached:
        cached = count(read)
    if not cache_write:
        cache_write = count(write)
    return cached, cache_write


def from_chat(obj: Any) -> Usage | None:
    """Usage of a chat completion, mapping or object: `tokens_in` is `usage.prompt_tokens`,
    `tokens_out` `usage.completion_tokens`, `cache_read_tokens` and `cache_write_tokens` come from
    `usage.prompt_tokens_details` (else from the top level of `usage`, as gateways report them),
    `model` is `model`; `cost_usd` and `provider` are LiteLLM's (`usage.litellm`) when the response
    carries `_hidden_params`."""
    usage, model = two(obj, "usage", "model")
    if usage is None:
        return None
    tokens_in, tokens_out = two(usage, "prompt_tokens", "completion_tokens")
    details = get(usage, "prompt_tokens_details")
    if not (type(tokens_in) is int and tokens_in >= 0):
        tokens_in = count(tokens_in)
    if not (type(tokens_out) is int and tokens_out >= 0):
        tokens_out = count(tokens_out)
    if tokens_in is None and tokens_out is None:
        return None
    cached, cache_write = (None, None) if details is None else _cache_counts(details)
    if not (cached and cache_write):
        # Gateways serving Claude through this API report the cache counts beside prompt_tokens
        # (LiteLLM, Databricks: cache_read_input_tokens, cache_creation_input_tokens; Anthropic's
        # OpenAI-compatible endpoint: cached_tokens), still included in prompt_tokens.
        if type(usage) is dict:  # read directly: the most frequent mapping, on the hot path
            read = usage.get("cache_read_input_tokens")
            write = usage.get("cache_creation_input_tokens")
            if read is None:
                read = usage.get("cached_tokens")
        else:
            read, write = two(usage, "cache_read_input_tokens", "cache_creation_input_tokens")
            if read is None:
                read = get(usage, "cached_tokens")
        if read is not None or write is not None:
            cached, cache_write = _top_level_cache_counts(cached, cache_write, read, write)
    cost = provider = None
    if has_hidden_params(obj):  # LiteLLM computes its own cost
        cost, provider = reported_cost(obj)
    if not (type(model) is str and 0 < len(model) <= 256):
        model = None
    return new(Usage, (tokens_in, tokens_out, cached or None, cache_write or None, model, provider, cost, None, None))


def from_chat_fixed(obj: Any) -> Usage | None:
    """`from_chat` for the classes `CHAT` identifies (the OpenAI SDK's `ChatCompletion` and
    `ChatCompletionChunk`): plain attribute reads; anything unusual (fields the SDK does not
    declare, such as a gateway's cache counts) goes to `from_chat`."""
    try:
        usage = obj.usage
        if usage is None:  # a stream chunk before the last
            return None
        tokens_in = usage.prompt_tokens
        tokens_out = usage.completion_tokens
        details = usage.prompt_tokens_details
        model = obj.model
        hidden = HIDDEN_PARAMS in obj.__dict__
        extra = usage.__pydantic_extra__
    except AttributeError:  # a dict inside, a missing field, no __dict__
        return from_chat(obj)
    if (
        hidden
        or extra
        or type(tokens_in) is not int
        or tokens_in < 0
        or type(tokens_out) is not int
        or tokens_out < 0
        or type(model) is not str
        or not 0 < len(model) <= 256
    ):
        return from_chat(obj)
    cached, cache_write = (None, None) if details is None else _cache_counts(details)
    return new(Usage, (tokens_in, tokens_out, cached or None, cache_write or None, model, None, None, None, None))


#: A class declaring `usage`, `choices` and `model` is a chat completion or chunk, read by
#: `from_chat_fixed` alone; without this every chunk of a stream but the last would be offered to
#: each shape in turn, most of the time spent in pydantic raising AttributeError for fields the
#: class does not have. LiteLLM's classes (declaring `_hidden_params`) take the general path.
CHAT = Shape(
    "openai.chat",
    from_chat,
    looks_for=("usage",),
    identifies=("usage", "choices", "model"),
    fixed=from_chat_fixed,
    unless=(HIDDEN_PARAMS,),
)


def from_responses(obj: Any) -> Usage | None:
    """Usage of an OpenAI Responses object (`object == "response"`, or any value whose `usage` has
    `input_tokens_details`, which no other API reports): `tokens_in` is `usage.input_tokens`
    (cached and cache-write tokens included), `tokens_out` `usage.output_tokens` (reasoning tokens
    included), `cache_read_tokens` `usage.input_tokens_details.cached_tokens`, `cache_write_tokens`
    `usage.input_tokens_details.cache_write_tokens` (or `usage.cache_write_tokens`), `provider`
    "openai"."""
    usage = get(obj, "usage")
    tokens_in = count(get(usage, "input_tokens"))
    tokens_out = count(get(usage, "output_tokens"))
    if tokens_in is None and tokens_out is None:
        return None
    details = get(usage, "input_tokens_details")
    if details is None and get(obj, "object") != "response":
        return None  # no sign of the Responses API: an Anthropic message, read by its own shape
    cached, cache_write = _cache_counts(details)
    if not cache_write:
        cache_write = count(get(usage, "cache_write_tokens"))
    model = name(get(obj, "model"))
    return new(Usage, (tokens_in, tokens_out, cached or None, cache_write or None, model, "openai", None, None, None))


RESPONSES = Shape("openai.responses", from_responses, looks_for=("usage",))


def from_responses_event(obj: Any) -> Usage | None:
    """Usage of a Responses API stream event: only `response.completed`, `response.incomplete`
    and `response.failed` carry it, in their `response`."""
    if get(obj, "type") in ("response.completed", "response.incomplete", "response.failed"):
        return from_responses(get(obj, "response"))
    return None


RESPONSES_EVENT = Shape("openai.responses.event", from_responses_event, looks_for=("response",))


# --- the client --------------------------------------------------------------------------------

_ENDPOINTS = (  # the end of the request's path, and the call's name
    ("/chat/completions", "openai.chat.completions.create"),
    ("/responses", "openai.responses.create"),
    ("/embeddings", "openai.embeddings.create"),
    ("/completions", "openai.completions.create"),
)


def _body(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    options = request_options(args, kwargs)
    return options, getattr(options, "json_data", None)


def endpoint(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Endpoint | None:
    """The LLM call a `request(cast_to, options, *, stream, stream_cls)` makes, if any: a POST to
    chat completions (`.create` and `.parse`), Responses, embeddings or completions."""
    options, body = _body(args, kwargs)
    if options is None or str(getattr(options, "method", "")).lower() != "post":
        return None
    url = str(getattr(options, "url", ""))
    for suffix, call_name in _ENDPOINTS:
        if url.endswith(suffix):
            model = body.get("model") if isinstance(body, dict) else None
            stream = bool(kwargs.get("stream"))
            wants = isinstance(body, dict) and (body.get("stream_options") or {}).get("include_usage") is not None
            return Endpoint(
                call_name,
                model if isinstance(model, str) else None,
                stream,
                ask_usage=stream and suffix == "/chat/completions" and not wants,
                body=body,
            )
    return None


def ask_usage(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Ask for usage in a chat stream: `stream_options.include_usage` set in the request's body."""
    options, body = _body(args, kwargs)
    if isinstance(body, dict):
        stream_options = body.get("stream_options")
        extra = dict(stream_options) if isinstance(stream_options, dict) else {}
        options.json_data = {**body, "stream_options": {**extra, "include_usage": True}}


def usage_only(item: Any) -> bool:
    """The chunk a chat stream ends with when asked for usage: no choices, only usage."""
    return getattr(item, "usage", None) is not None and not getattr(item, "choices", None)


# --- the text sent and received (capture_io) -----------------------------------------------------

_MARKERS = {"image_url": "[image]", "input_image": "[image]", "input_audio": "[audio]", "file": "[file]",
            "input_file": "[file]"}  # fmt: skip


def _part(part: Any) -> str | None:
    """One content part of a chat message or a Responses input: its text, a marker for an image,
    audio or a file, a refusal's text."""
    kind = kind_of(part)
    if kind in ("text", "input_text", "output_text"):
        return text_of(get(part, "text"))
    if kind == "refusal":
        return text_of(get(part, "refusal"))
    return _MARKERS.get(kind, f"[{kind}]" if kind else None)


def _tool_calls(msg: Any) -> list[str]:
    """The tool calls of a chat message (`tool_calls`, or the older `function_call`), one line each."""
    calls = [tool_call(get(fn, "name"), get(fn, "arguments")) for fn in
             (get(tc, "function") for tc in each(get(msg, "tool_calls"))) if fn is not None]  # fmt: skip
    legacy = get(msg, "function_call")
    if legacy is not None:
        calls.append(tool_call(get(legacy, "name"), get(legacy, "arguments")))
    return calls


def _chat_message(msg: Any) -> dict[str, str]:
    text = part_text(get(msg, "content"), _part)
    role = get(msg, "role")
    if role in ("tool", "function"):  # a tool's result, written as Anthropic's tool_result blocks are
        text = "[tool result] " + text
    lines = ([text] if text else []) + _tool_calls(msg)
    return message(role, "\n".join(lines))


def _responses_item(item: Any) -> dict[str, str] | None:
    """One item of a Responses `input`: a message, a function call or its output; reasoning is left out."""
    kind = kind_of(item)
    if kind == "function_call":
        return message("assistant", tool_call(get(item, "name"), get(item, "arguments")))
    if kind == "function_call_output":
        return message("tool", "[tool result] " + part_text(get(item, "output"), _part))
    if kind == "reasoning":
        return None
    if kind in ("", "message") or get(item, "role") is not None:
        return message(get(item, "role"), part_text(get(item, "content"), _part))
    return message("assistant", f"[{kind}]")


def _texts(value: Any) -> list[str]:
    """An embeddings or completions input: a string or a list of strings (token arrays are left out)."""
    if isinstance(value, str):
        return [value]
    return [v for v in each(value) if isinstance(v, str)]


def inputs(call_name: str, body: Any) -> dict[str, Any] | None:
    """What a request sends, from its name and JSON body: ``{"messages": [{"role", "content"}, ...]}``
    (chat `messages`; Responses `instructions` as the system message, then `input`; completions'
    `prompt` as user messages), or ``{"input": [text, ...]}`` for embeddings; None for anything else."""
    if not is_mapping(body):
        return None
    if call_name == "openai.embeddings.create":
        return {"input": _texts(get(body, "input"))}
    if call_name == "openai.completions.create":
        return {"messages": [message("user", text) for text in _texts(get(body, "prompt"))]}
    if call_name == "openai.responses.create":
        sent = []
        instructions = get(body, "instructions")
        if isinstance(instructions, str) and instructions:
            sent.append(message("system", instructions))
        given = get(body, "input")
        if isinstance(given, str):
            sent.append(message("user", given))
        for item in each(given):
            read = _responses_item(item)
            if read is not None:
                sent.append(read)
        return {"messages": sent}
    return {"messages": [_chat_message(m) for m in each(get(body, "messages"))]}


def reply(obj: Any) -> tuple[Piece, ...] | None:
    """The reply of a chat completion (each choice's content or refusal, and tool calls) or of a
    Responses object (its output messages' text, and function calls); None for another shape."""
    choices = field(obj, "choices")
    if isinstance(choices, list) and choices and field(choices[0], "message") is not None:
        pieces: list[Piece] = []
        for i, choice in enumerate(choices):
            msg = get(choice, "message")
            slot = None if i == 0 else ("choice", i)
            content = get(msg, "content")
            text = text_of(content) if content is not None else text_of(get(msg, "refusal"))
            if text:
                pieces.append((slot, "text", text))
            for j, tc in enumerate(each(get(msg, "tool_calls"))):
                fn = get(tc, "function")
                pieces.append((("tool", i, j), "name", text_of(get(fn, "name"))))
                pieces.append((("tool", i, j), "args", tool_args(get(fn, "arguments"))))
        return tuple(pieces)
    if field(obj, "object") == "response":
        pieces = []
        for i, item in enumerate(each(get(obj, "output"))):
            kind = kind_of(item)
            if kind == "message":
                text = part_text(get(item, "content"), _output_part)
                if text:
                    pieces.append((None, "text", text))
            elif kind == "function_call":
                pieces.append((("tool", i), "name", text_of(get(item, "name"))))
                pieces.append((("tool", i), "args", tool_args(get(item, "arguments"))))
        return tuple(pieces)
    return None


def _output_part(part: Any) -> str | None:
    kind = kind_of(part)
    if kind == "output_text":
        return text_of(get(part, "text"))
    if kind == "refusal":
        return text_of(get(part, "refusal"))
    return None


def reply_delta(item: Any) -> tuple[Piece, ...] | None:
    """The pieces of a chat stream chunk (`choices[i].delta`: content, refusal, tool call fragments)
    or a Responses stream event (text deltas, a function call's name and argument deltas); None
    for another shape. A Responses stream's final event repeats the whole reply: read for nothing."""
    choices = field(item, "choices")
    if isinstance(choices, list):
        if choices and field(choices[0], "delta") is None and field(choices[0], "message") is not None:
            return reply(item)  # a whole completion
        pieces: list[Piece] = []
        for choice in choices:
            delta = get(choice, "delta")
            if delta is None:
                continue
            i = get(choice, "index") or 0
            slot = None if i == 0 else ("choice", i)
            text = text_of(get(delta, "content")) or text_of(get(delta, "refusal"))
            if text:
                pieces.append((slot, "text", text))
            for tc in each(get(delta, "tool_calls")):
                key = ("tool", i, get(tc, "index") or 0)
                fn = get(tc, "function")
                name_part, args = text_of(get(fn, "name")), text_of(get(fn, "arguments"))
                if name_part:
                    pieces.append((key, "name", name_part))
                if args:
                    pieces.append((key, "args", args))
        return tuple(pieces)
    kind = field(item, "type")
    if not (isinstance(kind, str) and kind.startswith("response.")):
        return None
    if kind in ("response.output_text.delta", "response.refusal.delta"):
        return ((None, "text", text_of(get(item, "delta"))),)
    if kind == "response.output_item.added":
        added = get(item, "item")
        if kind_of(added) == "function_call":
            return ((("tool", get(item, "output_index")), "name", text_of(get(added, "name"))),)
    elif kind == "response.function_call_arguments.delta":
        return ((("tool", get(item, "output_index")), "args", text_of(get(item, "delta"))),)
    return ()


CLIENT = ClientSpec(
    library="openai",
    provider="openai",
    classes=("OpenAI", "AsyncOpenAI"),
    method="request",
    endpoint=endpoint,
    stream_style="stream_cls",
    base_url=base_url_of,
    ask_usage=ask_usage,
    usage_only=usage_only,
    copies=("copy", "with_options"),
    inputs=inputs,
    reply=reply,
    reply_delta=reply_delta,
)
