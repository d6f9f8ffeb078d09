"""Exact prices of what providers report beyond input and output tokens: 1-hour cache writes, the
Responses API's cache counts, server-side web searches, gateways' top-level cache counts, and
reasoning tokens counted once.

The oracle is genai-prices' own `extract_usage` + `calc_price` on the same raw body, never
tracked's arithmetic. A gateway's body, which genai-prices' OpenAI extractor does not read the
cache counts of, is checked against the same call as Anthropic itself reports it.
"""

from __future__ import annotations

import copy
from typing import Any

import genai_prices
import pytest
from anthropic.types import Message, RawMessageDeltaEvent, RawMessageStartEvent
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

import tracked
from tracked import current_call
from tracked.testing import capture
from tracked.usage import extract
from workloads import finished_call

CLAUDE = "claude-haiku-4-5"


def oracle(body: dict[str, Any], provider_id: str, api_flavor: str = "default") -> float:
    """The cost genai-prices computes from a raw response body, with its own extractor."""
    extracted = genai_prices.extract_usage(body, provider_id=provider_id, api_flavor=api_flavor)
    return float(extracted.calc_price().total_price)


# --- Anthropic: 1-hour cache writes, web searches ----------------------------------------------------


def anthropic_usage(inp=50, out=200, read=0, write_5m=0, write_1h=0, searches=None) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h},
    }
    if searches is not None:
        usage["server_tool_use"] = {"web_search_requests": searches, "web_fetch_requests": 0}
    return usage


def message(model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def test_one_hour_cache_writes_cost_what_genai_prices_says():
    """The issue's example: claude-sonnet-4-5, 50 in + 100,000 1-hour writes + 200 out: $0.603150 (was $0.37815)."""
    body = message("claude-sonnet-4-5", anthropic_usage(50, 200, write_1h=100_000))
    call = finished_call(Message.model_validate(body))
    assert (call.tokens_in, call.tokens_out, call.cache_write_tokens) == (100_050, 200, 100_000)
    assert call.cache_write_1h_tokens == 100_000
    assert call.cost_usd == pytest.approx(oracle(body, "anthropic"), rel=1e-9)
    assert call.cost_usd == pytest.approx(0.603150, abs=1e-9)


@pytest.mark.parametrize(
    "counts",
    [
        {"read": 300, "write_5m": 1000, "write_1h": 2000},
        {"write_5m": 1000},
        {"read": 70, "write_1h": 5},
        {"searches": 3},
        {"read": 10, "write_5m": 20, "write_1h": 30, "searches": 2},
        {"searches": 0},
    ],
)
def test_anthropic_message_costs_what_genai_prices_says(counts):
    """A real Anthropic Message with any mix of cache reads, 5-minute and 1-hour writes and web searches costs
    what genai-prices computes from its body."""
    body = message("claude-haiku-4-5", anthropic_usage(**counts))
    usage = extract(Message.model_validate(body))
    assert usage is not None
    assert usage.cache_write_1h_tokens == (counts.get("write_1h") or None)
    assert usage.web_searches == (counts.get("searches") or None)
    call = finished_call(Message.model_validate(body))
    assert call.cost_usd == pytest.approx(oracle(body, "anthropic"), rel=1e-9)


def test_a_plain_dict_message_is_read_like_the_sdks():
    """An Anthropic body as a dict (no SDK object) gives the same usage as the SDK's Message."""
    body = message("claude-haiku-4-5", anthropic_usage(10, 5, read=7, write_5m=3, write_1h=4, searches=2))
    assert extract(body) == extract(Message.model_validate(body))


def test_web_searches_cost_what_genai_prices_says_past_a_tier():
    """The issue's example: claude-sonnet-4-5, 401,468 in / 792 out / 10 web searches: $2.526628 (was $2.426628)."""
    usage = {"input_tokens": 401_468, "output_tokens": 792, "cache_read_input_tokens": 0}
    usage["cache_creation_input_tokens"] = 0
    usage["server_tool_use"] = {"web_search_requests": 10, "web_fetch_requests": 0}
    body = message("claude-sonnet-4-5-20250929", usage)
    call = finished_call(Message.model_validate(body))
    assert call.web_searches == 10
    assert call.cost_usd == pytest.approx(oracle(body, "anthropic"), rel=1e-9)
    assert call.cost_usd == pytest.approx(2.526628, abs=1e-9)


def test_an_anthropic_stream_keeps_its_one_hour_writes_and_takes_its_searches_from_the_last_delta():
    """A tracked generator of Anthropic stream events: 1-hour writes from `message_start`, web searches from the
    final `message_delta` (which repeats the input counts, never added twice); cost as genai-prices on the usage."""
    usage = anthropic_usage(25, 40, read=100, write_5m=10, write_1h=60, searches=4)
    start_usage = {**usage, "output_tokens": 1, "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0}}
    start = RawMessageStartEvent.model_validate(
        {"type": "message_start", "message": {**message("claude-haiku-4-5", start_usage), "content": []}}
    )
    final = {k: v for k, v in usage.items() if k != "cache_creation"}
    delta = RawMessageDeltaEvent.model_validate(
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": final}
    )
    seen = []

    @tracked.tracked
    def stream():
        seen.append(current_call())
        yield from (start, delta)

    list(stream())
    (call,) = seen
    assert (call.tokens_in, call.tokens_out, call.cache_read_tokens, call.cache_write_tokens) == (195, 40, 100, 70)
    assert (call.cache_write_1h_tokens, call.web_searches) == (60, 4)
    assert call.cost_usd == pytest.approx(oracle(message("claude-haiku-4-5", usage), "anthropic"), rel=1e-9)


# --- OpenAI Responses: cached and cache-write tokens ---------------------------------------------------


def responses_usage(inp: int, out: int, cached: int, write: int | None = None, reasoning: int = 0) -> dict[str, Any]:
    details: dict[str, Any] = {"cached_tokens": cached}
    if write is not None:
        details["cache_write_tokens"] = write
    return {
        "input_tokens": inp,
        "input_tokens_details": details,
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inp + out,
    }


def response(model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1_700_000_000,
        "model": model,
        "status": "completed",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


@pytest.mark.parametrize(
    ("model", "usage"),
    [
        ("gpt-5-2025-08-07", responses_usage(9703, 638, cached=8576, reasoning=576)),
        ("gpt-5.6-sol", responses_usage(4020, 5, cached=4012, write=0)),
        ("gpt-5.6-sol", responses_usage(4020, 5, cached=0, write=4012)),
        ("gpt-4o-2024-08-06", responses_usage(1349, 10, cached=1024)),
    ],
)
def test_responses_cache_counts_cost_what_genai_prices_says(model, usage):
    """A Responses usage with cached or cache-write tokens (real bodies from genai-prices' dataset) costs what
    genai-prices computes, as an SDK `Response` and as a bare `{"model", "usage"}` dict."""
    body = {"model": model, "usage": usage}
    want = oracle(body, "openai", "responses")
    as_sent = copy.deepcopy(usage)  # the SDK requires the field the API always sends
    as_sent["input_tokens_details"].setdefault("cache_write_tokens", 0)
    sdk = finished_call(Response.model_validate(response(model, as_sent)))
    bare = finished_call(copy.deepcopy(body))
    for call in (sdk, bare):
        assert call.tokens_in == usage["input_tokens"]
        assert call.cache_read_tokens == usage["input_tokens_details"]["cached_tokens"]
        assert call.cache_write_tokens == usage["input_tokens_details"].get("cache_write_tokens", 0)
        assert call.provider == "openai"
        assert call.cost_usd == pytest.approx(want, rel=1e-9)


# --- gateways: cache counts at the top level of a chat usage --------------------------------------------


def chat(model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop", "logprobs": None}
        ],
        "usage": usage,
    }


def gateway_usage(inp: int, out: int, read: int, write: int, details: bool = False) -> dict[str, Any]:
    """A chat usage as gateways serving Claude report it: `prompt_tokens` includes the cache counts, which are
    also given beside it (and, as LiteLLM does, in `prompt_tokens_details` too when `details`)."""
    usage: dict[str, Any] = {
        "prompt_tokens": inp + read + write,
        "completion_tokens": out,
        "total_tokens": inp + read + write + out,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
    }
    if details:
        usage["prompt_tokens_details"] = {"cached_tokens": read, "cache_creation_tokens": write}
    return usage


@pytest.mark.parametrize("details", [False, True])
@pytest.mark.parametrize("as_sdk_object", [False, True])
def test_a_gateways_top_level_cache_counts_are_read_once(details, as_sdk_object):
    """A chat completion for Claude whose usage carries `cache_read_input_tokens` / `cache_creation_input_tokens`
    beside `prompt_tokens` (also in `prompt_tokens_details`) costs what Anthropic's own report of the same call
    costs in genai-prices: the cache counts read, and counted once."""
    body = chat("claude-haiku-4-5", gateway_usage(120, 30, read=2000, write=500, details=details))
    value = ChatCompletion.model_validate(body) if as_sdk_object else body
    call = finished_call(value, provider="anthropic")
    assert (call.tokens_in, call.tokens_out, call.cache_read_tokens, call.cache_write_tokens) == (2620, 30, 2000, 500)
    native = message("claude-haiku-4-5", anthropic_usage(120, 30, read=2000, write_5m=500))
    assert call.cost_usd == pytest.approx(oracle(native, "anthropic"), rel=1e-9)


def test_anthropics_openai_compatible_cached_tokens_are_read():
    """`usage.cached_tokens` beside `prompt_tokens` (Anthropic's OpenAI-compatible endpoint, as genai-prices reads
    it) is a cache read: the cost equals genai-prices' own reading of that body."""
    usage = {"prompt_tokens": 1500, "completion_tokens": 20, "total_tokens": 1520, "cached_tokens": 1000}
    body = chat("claude-haiku-4-5", usage)
    call = finished_call(body, provider="anthropic")
    assert call.cache_read_tokens == 1000
    assert call.cost_usd == pytest.approx(oracle(body, "anthropic", "chat"), rel=1e-9)


# --- reasoning and cached tokens are never counted twice -------------------------------------------------


@pytest.mark.parametrize(
    ("body", "provider_id", "flavor"),
    [
        (
            chat(
                "o3-mini",
                {
                    "prompt_tokens": 2000,
                    "completion_tokens": 900,
                    "total_tokens": 2900,
                    "prompt_tokens_details": {"cached_tokens": 1536, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 832, "audio_tokens": 0},
                },
            ),
            "openai",
            "chat",
        ),
        (response("gpt-5", responses_usage(3000, 1200, cached=2048, write=0, reasoning=1024)), "openai", "responses"),
        (
            message(
                "claude-sonnet-4-5",
                {
                    **anthropic_usage(300, 700, read=4000, write_1h=100),
                    "output_tokens_details": {"thinking_tokens": 512},
                },
            ),
            "anthropic",
            "default",
        ),
    ],
    ids=["chat", "responses", "anthropic"],
)
def test_reasoning_and_cached_tokens_are_counted_once(body, provider_id, flavor):
    """Reasoning tokens are part of the output count and cached tokens part of the input count: tokens and cost
    equal genai-prices' reading, neither added a second time."""
    extracted = genai_prices.extract_usage(body, provider_id=provider_id, api_flavor=flavor)
    call = finished_call(body)
    assert (call.tokens_in, call.tokens_out) == (extracted.usage.input_tokens, extracted.usage.output_tokens)
    assert call.cost_usd == pytest.approx(float(extracted.calc_price().total_price), rel=1e-9)


# --- by hand, and on the record ------------------------------------------------------------------------


def test_add_usage_takes_one_hour_writes_and_web_searches():
    """`add_usage(cache_write_1h_tokens=, web_searches=)` adds up over calls and is priced at their own rates."""
    seen = []

    @tracked.tracked
    def llm():
        seen.append(current_call())
        current_call().add_usage(tokens_in=1000, tokens_out=10, cache_write_tokens=800, cache_write_1h_tokens=300)
        current_call().add_usage(cache_write_1h_tokens=200, web_searches=2, model="claude-haiku-4-5")

    llm()
    (call,) = seen
    assert (call.cache_write_tokens, call.cache_write_1h_tokens, call.web_searches) == (800, 500, 2)
    native = message("claude-haiku-4-5", anthropic_usage(200, 10, write_5m=300, write_1h=500, searches=2))
    assert call.cost_usd == pytest.approx(oracle(native, "anthropic"), rel=1e-9)


@pytest.mark.parametrize("kwargs", [{"cache_write_1h_tokens": -1}, {"web_searches": 1.5}, {"web_searches": True}])
def test_add_usage_rejects_invalid_new_counts(kwargs):
    """`add_usage` raises ValueError for a 1-hour write or web search count that is not a non-negative int."""
    errors = []

    @tracked.tracked
    def llm():
        try:
            current_call().add_usage(**kwargs)
        except ValueError as exc:
            errors.append(exc)

    llm()
    assert len(errors) == 1


def test_the_call_record_shows_one_hour_writes_and_web_searches_only_when_present(tmp_path):
    """`calls.jsonl` records `cache_write_1h_tokens` and `web_searches` of the LLM call that made them, and leaves
    them out where there were none."""

    @tracked.tracked
    def with_both():
        return Message.model_validate(message("claude-haiku-4-5", anthropic_usage(5, 5, write_1h=40, searches=3)))

    @tracked.tracked
    def without():
        return Message.model_validate(message("claude-haiku-4-5", anthropic_usage(5, 5, write_5m=40)))

    with capture() as captured, tracked.experiment("rec", dir=tmp_path, wandb=False):
        with_both()
        without()
    first, second = captured["rec"].calls
    assert (first["cache_write_tokens"], first["cache_write_1h_tokens"], first["web_searches"]) == (40, 40, 3)
    assert second["cache_write_tokens"] == 40
    assert "cache_write_1h_tokens" not in second and "web_searches" not in second


def test_one_hour_writes_a_message_delta_reports_are_read():
    """Stream events as mappings: a `message_delta` whose usage breaks its cache writes down by duration gives
    the 1-hour writes (where `message_start` did not), and the cost is genai-prices' on that usage."""
    usage = anthropic_usage(25, 40, write_5m=10, write_1h=60)
    start_usage = {k: v for k, v in usage.items() if k != "cache_creation"} | {"output_tokens": 1}
    events = [
        {"type": "message_start", "message": {**message(CLAUDE, start_usage), "content": []}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage},
        {"type": "message_stop"},
    ]
    seen = []

    @tracked.tracked
    def stream():
        seen.append(current_call())
        yield from events

    list(stream())
    (call,) = seen
    assert (call.tokens_in, call.tokens_out, call.cache_write_tokens, call.cache_write_1h_tokens) == (95, 40, 70, 60)
    assert call.cost_usd == pytest.approx(oracle(message(CLAUDE, usage), "anthropic"), rel=1e-9)
