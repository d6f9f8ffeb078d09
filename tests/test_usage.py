"""Usage read from real provider response objects, by hand, and by user extractors."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import httpx2
import ollama
import openai
import pytest
from anthropic.types import Message, RawMessageDeltaEvent, RawMessageStartEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response
from pydantic import PrivateAttr

import tracked
from helpers import genai_cost
from tracked import current_call
from tracked.usage import Usage, extract
from workloads import finished_call

# --- OpenAI --------------------------------------------------------------------------------------


def chat_completion_json(model="gpt-4o", prompt=1000, completion=500, cached=None) -> dict:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": 0}
        usage["completion_tokens_details"] = {"reasoning_tokens": 0}
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage,
    }


def test_openai_chat_completion_with_cached_tokens():
    """An OpenAI ChatCompletion gives tokens, cached tokens, the dated model, and the genai-prices cost."""
    resp = ChatCompletion.model_validate(chat_completion_json("gpt-4o-2024-08-06", 1000, 500, cached=200))
    call = finished_call(resp)
    assert call.tokens_in == 1000
    assert call.tokens_out == 500
    assert call.cache_read_tokens == 200
    assert call.cache_write_tokens == 0
    assert call.model == "gpt-4o-2024-08-06"
    assert call.llm_calls == 1
    assert call.cost_source.startswith("genai-prices ")
    # 800 uncached input at $2.5/M, 200 cached at $1.25/M, 500 output at $10/M
    assert call.cost_usd == pytest.approx(800 * 2.5e-6 + 200 * 1.25e-6 + 500 * 1e-5)
    assert call.cost_usd == pytest.approx(
        genai_cost(None, "gpt-4o-2024-08-06", tokens_in=1000, tokens_out=500, cache_read=200)
    )


def test_openai_chat_completion_without_cache():
    """An OpenAI ChatCompletion without cached tokens records no cache reads."""
    call = finished_call(ChatCompletion.model_validate(chat_completion_json()))
    assert (call.tokens_in, call.tokens_out, call.cache_read_tokens) == (1000, 500, 0)
    assert call.cost_usd == pytest.approx(0.0075)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**7),
            st.integers(0, 10**7),
            st.none() | st.integers(0, 10**7),
            st.sampled_from(["gpt-4o", "gpt-4o-mini", "x" * 257, ""]),
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_class_seen_before_reads_the_same_as_the_first_time(responses):
    """Once ChatCompletion has matched, later instances take a faster path (plain attribute reads): it
    gives what the general extractor gives, for any counts, cached tokens, model names, and instances
    carrying LiteLLM's `_hidden_params`."""
    from tracked.usage import _registry
    from tracked.usage import openai as usage_openai

    for prompt, completion, cached, model, hidden in responses:
        resp = ChatCompletion.model_validate(chat_completion_json(model, prompt, completion, cached=cached))
        if hidden:
            object.__setattr__(resp, "_hidden_params", {"response_cost": 0.5, "custom_llm_provider": "openai"})
        assert extract(resp) == usage_openai.from_chat(resp)
    assert _registry._by_type[ChatCompletion] is usage_openai.from_chat_fixed


def test_a_dataclass_holding_usage_as_a_dict_is_read_each_time():
    """A fixed-shape result whose `usage` is a dict still reads right after its class has matched."""

    @dataclass
    class Result:
        model: str
        usage: Any

    first = Result("gpt-4o", {"prompt_tokens": 10, "completion_tokens": 2})
    second = Result(
        "gpt-4o", {"prompt_tokens": 30, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 5}}
    )
    assert extract(first) == Usage(10, 2, None, None, "gpt-4o")
    assert extract(second) == Usage(30, 4, 5, None, "gpt-4o")
    assert extract(Result("gpt-4o", None)) is None


def chunk_json(content: str | None, usage: dict | None = None, finish: str | None = None) -> dict:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": choices,
        "usage": usage,
    }


def test_stream_chunks_without_usage_are_not_tried_against_every_extractor(monkeypatch):
    """An OpenAI chunk class is known from its fields: chunks without usage are read once and not
    offered to the other extractors (each of which made pydantic raise)."""
    from tracked.usage import _registry as usage_mod

    offered: list[Any] = []

    def spy(obj: Any) -> None:
        offered.append(obj)

    monkeypatch.setattr(usage_mod, "_chain", (*usage_mod._BUILTIN, spy))
    chunks = [ChatCompletionChunk.model_validate(chunk_json(t)) for t in ("Hel", "lo", "!")]
    last = ChatCompletionChunk.model_validate(
        chunk_json(None, usage={"prompt_tokens": 40, "completion_tokens": 3, "total_tokens": 43})
    )
    assert [extract(c) for c in chunks] == [None, None, None]
    assert extract(last) == Usage(40, 3, None, None, "gpt-4o-mini")
    assert offered == []
    assert ChatCompletionChunk in usage_mod._final


def test_a_pydantic_event_is_offered_only_to_extractors_of_fields_it_has():
    """An Anthropic content delta (type, index, delta) goes to the stream-event extractor only; the
    same class with extra, undeclared fields is offered to every extractor again."""
    from anthropic.types import RawContentBlockDeltaEvent

    from tracked.usage import _registry
    from tracked.usage import anthropic as usage_anthropic

    data = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}
    event = RawContentBlockDeltaEvent.model_validate(data)
    assert extract(event) is None
    assert _registry._chain_of(event, RawContentBlockDeltaEvent) == (usage_anthropic.from_stream_event,)
    with_extras = RawContentBlockDeltaEvent.model_validate({**data, "prompt_eval_count": 3, "eval_count": 4})
    assert extract(with_extras) == Usage(3, 4, None, None, None, "ollama")


def test_openai_stream_last_chunk_usage_in_tracked_generator():
    """A tracked generator yielding OpenAI chunks takes usage from the last chunk and records a ttft."""
    chunks = [ChatCompletionChunk.model_validate(chunk_json(t)) for t in ("Hel", "lo", "!")]
    chunks.append(
        ChatCompletionChunk.model_validate(
            chunk_json(
                None,
                usage={
                    "prompt_tokens": 40,
                    "completion_tokens": 3,
                    "total_tokens": 43,
                    "prompt_tokens_details": {"cached_tokens": 0},
                },
            )
        )
    )
    seen = []

    @tracked.tracked
    def stream():
        seen.append(current_call())
        yield from chunks

    assert [c.choices[0].delta.content for c in stream() if c.choices] == ["Hel", "lo", "!"]
    call = seen[0]
    assert (call.tokens_in, call.tokens_out) == (40, 3)
    assert call.cache_read_tokens == 0
    assert call.model == "gpt-4o-mini"
    assert call.ttft_s is not None and call.ttft_s <= call.latency_s
    assert call.cost_usd == pytest.approx(40 * 0.15e-6 + 3 * 0.6e-6)


def test_openai_chunks_without_usage_report_nothing():
    """OpenAI chunks without usage are not usage."""
    assert extract(ChatCompletionChunk.model_validate(chunk_json("x"))) is None


def responses_json(inp=1000, out=500, cached=0, model="gpt-4o") -> dict:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1_700_000_000,
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": inp,
            "output_tokens": out,
            "total_tokens": inp + out,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def test_openai_responses_api():
    """An OpenAI Responses object gives input/output tokens, cached ones included in the input, and provider openai."""
    resp = Response.model_validate(responses_json(1000, 500, cached=400))
    call = finished_call(resp)
    assert (call.tokens_in, call.tokens_out, call.cache_read_tokens) == (1000, 500, 400)
    assert call.provider == "openai"
    assert call.model == "gpt-4o"
    assert call.cost_usd == pytest.approx(600 * 2.5e-6 + 400 * 1.25e-6 + 500 * 1e-5)


def test_real_openai_client_with_mock_transport():
    """The real OpenAI client's response from a mocked transport costs $0.0075 for 1000/500 gpt-4o tokens."""
    requests: list = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(json.loads(request.content))
        return httpx.Response(200, json=chat_completion_json("gpt-4o", 1000, 500))

    client = openai.OpenAI(
        api_key="sk-test-not-a-real-key",
        base_url="https://openai.invalid/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )
    seen = []

    @tracked.tracked
    def ask(prompt: str, model: str = "gpt-4o"):
        seen.append(current_call())
        return client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])

    resp = ask("hi")
    assert resp.choices[0].message.content == "Hello!"
    assert requests[0]["model"] == "gpt-4o"
    call = seen[0]
    assert (call.tokens_in, call.tokens_out) == (1000, 500)
    assert call.model == "gpt-4o"
    assert call.cost_usd == pytest.approx(0.0075)
    assert call.cost_source.startswith("genai-prices ")


def test_real_openai_client_stream_with_mock_transport():
    """A real OpenAI stream with `include_usage`, wrapped in a tracked generator, is counted from its last chunk."""
    events = [
        chunk_json("Hi"),
        chunk_json(" there"),
        chunk_json(None, usage={"prompt_tokens": 1000, "completion_tokens": 500}),
    ]
    for e in events:
        e["model"] = "gpt-4o"
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})

    client = openai.OpenAI(
        api_key="sk-test-not-a-real-key",
        base_url="https://openai.invalid/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )
    seen = []

    @tracked.tracked
    def stream(prompt):
        seen.append(current_call())
        yield from client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
        )

    text = "".join(c.choices[0].delta.content for c in stream("hi") if c.choices)
    assert text == "Hi there"
    call = seen[0]
    assert (call.tokens_in, call.tokens_out) == (1000, 500)
    assert call.cost_usd == pytest.approx(0.0075)


# --- LiteLLM -------------------------------------------------------------------------------------


class LiteLLMResponse(ChatCompletion):
    """A ChatCompletion-shaped response carrying LiteLLM's own cost, like `litellm.ModelResponse`."""

    _hidden_params: dict = PrivateAttr(default_factory=dict)


def test_litellm_like_response_reports_its_cost():
    """A ChatCompletion-shaped object with `_hidden_params["response_cost"]` is recorded with that cost."""
    resp = LiteLLMResponse.model_validate(chat_completion_json("gpt-4o", 1000, 500))
    resp._hidden_params = {"response_cost": 0.123, "custom_llm_provider": "openai"}
    call = finished_call(resp)
    assert (call.tokens_in, call.tokens_out) == (1000, 500)
    assert call.cost_usd == pytest.approx(0.123)
    assert call.cost_source == "reported"
    assert call.provider == "openai"


def test_litellm_like_response_with_unusable_cost_is_priced():
    """A LiteLLM-like response whose cost is missing or invalid is priced from its tokens instead."""
    for bad in (None, "n/a", float("nan"), -1.0):
        resp = LiteLLMResponse.model_validate(chat_completion_json("gpt-4o", 1000, 500))
        resp._hidden_params = {"response_cost": bad}
        call = finished_call(resp)
        assert call.cost_usd == pytest.approx(0.0075)
        assert call.cost_source.startswith("genai-prices ")


# --- Anthropic -----------------------------------------------------------------------------------


def message_json(model="claude-haiku-4-5", inp=1000, out=500, cache_read=None, cache_write=None) -> dict:
    usage: dict[str, Any] = {"input_tokens": inp, "output_tokens": out}
    if cache_read is not None:
        usage["cache_read_input_tokens"] = cache_read
    if cache_write is not None:
        usage["cache_creation_input_tokens"] = cache_write
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


def test_anthropic_message_with_cache_reads_and_writes():
    """An Anthropic Message counts input + cache reads + cache writes as tokens_in and is priced by genai-prices."""
    msg = Message.model_validate(message_json("claude-sonnet-4-5", 100, 50, cache_read=1000, cache_write=200))
    call = finished_call(msg)
    assert call.tokens_in == 1300
    assert call.tokens_out == 50
    assert call.cache_read_tokens == 1000
    assert call.cache_write_tokens == 200
    assert call.provider == "anthropic"
    assert call.model == "claude-sonnet-4-5"
    assert call.cost_usd == pytest.approx(
        genai_cost("anthropic", "claude-sonnet-4-5", tokens_in=1300, tokens_out=50, cache_read=1000, cache_write=200)
    )
    # $3/M input, $0.30/M cache read, $3.75/M cache write, $15/M output
    assert call.cost_usd == pytest.approx(100 * 3e-6 + 1000 * 0.3e-6 + 200 * 3.75e-6 + 50 * 15e-6)


def test_anthropic_message_without_cache():
    """An Anthropic Message without cache fields has tokens_in equal to input_tokens."""
    call = finished_call(Message.model_validate(message_json("claude-haiku-4-5", 1000, 500)))
    assert (call.tokens_in, call.tokens_out, call.cache_read_tokens, call.cache_write_tokens) == (1000, 500, 0, 0)
    assert call.cost_usd == pytest.approx(1000 * 1e-6 + 500 * 5e-6)


def test_anthropic_stream_events_in_tracked_generator():
    """A tracked generator of Anthropic stream events takes input from message_start, output from the last delta."""
    start = RawMessageStartEvent.model_validate(
        {
            "type": "message_start",
            "message": {
                **message_json("claude-haiku-4-5", 25, 1, cache_read=100, cache_write=10),
                "content": [],
                "stop_reason": None,
            },
        }
    )
    delta = RawMessageDeltaEvent.model_validate(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 15},
        }
    )
    block = anthropic.types.RawContentBlockDeltaEvent.model_validate(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
    )
    stop = anthropic.types.RawMessageStopEvent.model_validate({"type": "message_stop"})
    seen = []

    @tracked.tracked
    def stream():
        seen.append(current_call())
        yield from (start, block, delta, stop)

    assert [e.type for e in stream()] == ["message_start", "content_block_delta", "message_delta", "message_stop"]
    call = seen[0]
    assert call.tokens_in == 135
    assert call.tokens_out == 15
    assert call.cache_read_tokens == 100
    assert call.cache_write_tokens == 10
    assert call.model == "claude-haiku-4-5"
    assert call.provider == "anthropic"
    assert call.cost_usd == pytest.approx(
        genai_cost("anthropic", "claude-haiku-4-5", tokens_in=135, tokens_out=15, cache_read=100, cache_write=10)
    )


def test_real_anthropic_client_with_mock_transport():
    """The real Anthropic client's Message, from a mocked HTTP transport, is counted and priced."""
    requests: list = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        requests.append(json.loads(request.content))
        return httpx2.Response(200, json=message_json("claude-haiku-4-5", 1000, 500))

    # This anthropic release is built on httpx2 and rejects httpx clients, so the mock uses httpx2.
    client = anthropic.Anthropic(
        api_key="sk-ant-test-not-a-real-key",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )
    seen = []

    @tracked.tracked
    def ask(prompt: str):
        seen.append(current_call())
        return client.messages.create(
            model="claude-haiku-4-5", max_tokens=100, messages=[{"role": "user", "content": prompt}]
        )

    msg = ask("hi")
    assert msg.content[0].text == "Hello!"
    assert requests[0]["model"] == "claude-haiku-4-5"
    call = seen[0]
    assert (call.tokens_in, call.tokens_out) == (1000, 500)
    assert call.provider == "anthropic"
    assert call.cost_usd == pytest.approx(1000 * 1e-6 + 500 * 5e-6)  # $1/M in, $5/M out
    assert call.cost_source.startswith("genai-prices ")


# --- Ollama --------------------------------------------------------------------------------------

OLLAMA_BASE = {
    "model": "llama3.2:3b",
    "created_at": "2024-01-01T00:00:00Z",
    "done": True,
    "prompt_eval_count": 26,
    "eval_count": 298,
}


@pytest.mark.parametrize(
    "response",
    [
        ollama.ChatResponse.model_validate({**OLLAMA_BASE, "message": {"role": "assistant", "content": "hi"}}),
        ollama.GenerateResponse.model_validate({**OLLAMA_BASE, "response": "hi"}),
        {**OLLAMA_BASE, "message": {"role": "assistant", "content": "hi"}},
        {"model": "llama3.2:3b", "prompt_eval_count": 26, "eval_count": 298},
    ],
    ids=["ChatResponse", "GenerateResponse", "chat-dict", "generate-dict"],
)
def test_ollama_responses_are_local_and_free(response):
    """Ollama responses, as objects or dicts, are counted, local, and cost 0."""
    call = finished_call(response)
    assert (call.tokens_in, call.tokens_out) == (26, 298)
    assert call.model == "llama3.2:3b"
    assert call.provider == "ollama"
    assert call.local is True
    assert call.cost_usd == 0.0
    assert call.cost_source == "local"


def test_ollama_stream_last_item_counts():
    """A tracked generator yielding Ollama stream parts takes usage from the final part."""
    parts = [
        ollama.ChatResponse.model_validate(
            {
                "model": "llama3.2:3b",
                "created_at": "2024-01-01T00:00:00Z",
                "done": False,
                "message": {"role": "assistant", "content": w},
            }
        )
        for w in ("a", "b")
    ]
    parts.append(ollama.ChatResponse.model_validate({**OLLAMA_BASE, "message": {"role": "assistant", "content": ""}}))
    seen = []

    @tracked.tracked
    def stream():
        seen.append(current_call())
        yield from parts

    assert len(list(stream())) == 3
    assert (seen[0].tokens_in, seen[0].tokens_out, seen[0].local) == (26, 298, True)


# --- plain results -------------------------------------------------------------------------------


@dataclass
class RunResult:
    """A harness result with its own totals."""

    answer: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    model: str


def test_dataclass_with_reported_cost():
    """A dataclass with tokens_in/tokens_out/cost_usd/model is recorded with the reported cost as is."""
    call = finished_call(RunResult("x", 10, 20, 0.25, "gpt-4o"))
    assert (call.tokens_in, call.tokens_out) == (10, 20)
    assert call.cost_usd == 0.25
    assert call.cost_source == "reported"
    assert call.model == "gpt-4o"
    assert call.llm_calls == 1


def test_dict_with_reported_cost():
    """A dict with tokens_in/tokens_out/cost_usd is recorded with that cost."""
    call = finished_call({"tokens_in": 3, "tokens_out": 4, "cost_usd": 0.01, "model": "anything"})
    assert (call.tokens_in, call.tokens_out, call.cost_usd, call.cost_source) == (3, 4, 0.01, "reported")


def test_dict_without_cost_is_priced_by_model():
    """A dict with tokens and a known model but no cost is priced from genai-prices."""
    call = finished_call({"tokens_in": 1000, "tokens_out": 500, "model": "gpt-4o"})
    assert call.cost_usd == pytest.approx(0.0075)
    assert call.cost_source.startswith("genai-prices ")


def test_dict_with_only_cost():
    """A dict that reports only a cost is a usage with zero tokens and that cost."""
    call = finished_call({"cost_usd": 0.02})
    assert (call.tokens_in, call.tokens_out, call.cost_usd) == (0, 0, 0.02)
    assert call.llm_calls == 1


@pytest.mark.parametrize("value", [None, "text", 42, 1.5, [1, 2], ("a",), {"answer": 1}, object(), b"bytes"])
def test_results_without_usage_are_not_llm_calls(value):
    """Results that carry no usage leave the call with zero tokens, no cost and no LLM calls."""
    call = finished_call(value)
    assert (call.tokens_in, call.tokens_out, call.cost_usd, call.llm_calls) == (0, 0, None, 0)


# --- model precedence ----------------------------------------------------------------------------

PRICES = {"resp-model": (1.0, 0.0), "deco-model": (2.0, 0.0), "arg-model": (3.0, 0.0), "default-model": (4.0, 0.0)}


def test_model_precedence_response_then_decorator_then_argument():
    """The model is the response's, else the decorator's `model=`, else the call's `model` argument or its default."""
    tracked.configure(prices=PRICES)
    seen = []

    def make(deco_model, with_response_model):
        kwargs = {"model": deco_model} if deco_model else {}

        @tracked.tracked(**kwargs)
        def llm(prompt, model="default-model"):
            seen.append(current_call())
            usage = {"tokens_in": 1_000_000, "tokens_out": 0}
            if with_response_model:
                usage["model"] = "resp-model"
            return usage

        return llm

    make("deco-model", True)("p", model="arg-model")
    make("deco-model", False)("p", model="arg-model")
    make(None, False)("p", model="arg-model")
    make(None, False)("p", "arg-model")
    make(None, False)("p")
    assert [c.model for c in seen] == ["resp-model", "deco-model", "arg-model", "arg-model", "default-model"]
    assert [c.cost_usd for c in seen] == [1.0, 2.0, 3.0, 3.0, 4.0]
    assert all(c.cost_source == "override" for c in seen)


def test_non_string_model_argument_is_ignored():
    """A `model` argument that is not a string is not used as the model name."""
    seen = []

    @tracked.tracked
    def llm(model=None):
        seen.append(current_call())
        return {"tokens_in": 1, "tokens_out": 1, "cost_usd": 0.0}

    llm(model=123)
    assert seen[0].model is None


def test_decorator_provider_wins_over_response_provider():
    """`@tracked(provider=...)` overrides the provider a response names, making an Ollama-shaped reply non-local."""
    tracked.configure(prices={"llama3.2:3b": (1.0, 1.0)})
    call = finished_call({"model": "llama3.2:3b", "prompt_eval_count": 1_000_000, "eval_count": 0}, provider="together")
    assert call.provider == "together"
    assert call.local is False
    assert call.cost_usd == pytest.approx(1.0)


# --- add_usage by hand ---------------------------------------------------------------------------


def test_add_usage_by_hand_adds_up_and_wins_over_result():
    """Repeated `add_usage` calls add up, and the function's result is then not read for usage."""
    seen = []

    @tracked.tracked
    def llm():
        call = current_call()
        seen.append(call)
        call.add_usage(tokens_in=600, tokens_out=200, model="gpt-4o")
        call.add_usage(tokens_in=400, tokens_out=300, cache_read_tokens=0)
        return {"tokens_in": 999_999, "tokens_out": 999_999, "cost_usd": 99.0}

    llm()
    call = seen[0]
    assert (call.tokens_in, call.tokens_out) == (1000, 500)
    assert call.model == "gpt-4o"
    assert call.cost_usd == pytest.approx(0.0075)


def test_add_usage_with_cost_is_reported():
    """Costs given to `add_usage` add up and are recorded as reported."""
    seen = []

    @tracked.tracked
    def llm():
        seen.append(current_call())
        current_call().add_usage(tokens_in=1, cost_usd=0.5)
        current_call().add_usage(tokens_out=2, cost_usd=0.25)

    llm()
    assert (seen[0].tokens_in, seen[0].tokens_out, seen[0].cost_usd, seen[0].cost_source) == (1, 2, 0.75, "reported")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tokens_in": -1},
        {"tokens_out": 1.5},
        {"tokens_in": True},
        {"cache_read_tokens": "3"},
        {"model": ""},
        {"provider": 5},
        {"cost_usd": float("nan")},
        {"cost_usd": -0.1},
        {"cost_usd": float("inf")},
        {"cost_usd": True},
    ],
)
def test_add_usage_rejects_invalid_values(kwargs):
    """`add_usage` raises ValueError on negative, non-integer, empty or non-finite values."""
    errors = []

    @tracked.tracked
    def llm():
        try:
            current_call().add_usage(**kwargs)
        except ValueError as exc:
            errors.append(exc)

    llm()
    assert len(errors) == 1


def test_add_usage_after_end_raises():
    """Adding usage to a call that has ended raises RuntimeError."""
    seen = []

    @tracked.tracked
    def llm():
        seen.append(current_call())

    llm()
    with pytest.raises(RuntimeError):
        seen[0].add_usage(tokens_in=1)


# --- user extractors -----------------------------------------------------------------------------


class MyClientResponse:
    """A response shape no built-in extractor knows."""

    def __init__(self, n_in, n_out, model="gpt-4o"):
        self.meta = {"in": n_in, "out": n_out, "model": model}


def test_register_extractor_for_custom_shape():
    """A registered extractor teaches `tracked` a new response shape."""
    assert finished_call(MyClientResponse(1000, 500)).tokens_in == 0

    @tracked.register_extractor
    def from_my_client(resp):
        meta = getattr(resp, "meta", None)
        if meta is None:
            return None
        return Usage(tokens_in=meta["in"], tokens_out=meta["out"], model=meta["model"])

    call = finished_call(MyClientResponse(1000, 500))
    assert (call.tokens_in, call.tokens_out, call.model) == (1000, 500, "gpt-4o")
    assert call.cost_usd == pytest.approx(0.0075)


def test_register_extractor_returning_mapping_is_validated():
    """A user extractor may return a mapping; its fields are checked like any reported value."""
    tracked.register_extractor(
        lambda obj: {"tokens_in": 7, "tokens_out": -3, "cost_usd": 0.1} if obj == "special" else None
    )
    assert extract("special") is None  # strings never carry usage
    tracked.register_extractor(
        lambda obj: {"tokens_in": 7, "tokens_out": -3, "cost_usd": 0.1} if isinstance(obj, MyClientResponse) else None
    )
    found = extract(MyClientResponse(1, 1))
    assert found == Usage(tokens_in=7, tokens_out=None, cost_usd=0.1)


def test_user_extractor_runs_before_builtins():
    """A user extractor is tried before the built-in ones."""
    tracked.register_extractor(
        lambda obj: Usage(tokens_in=1, tokens_out=1, cost_usd=0.0) if isinstance(obj, dict) else None
    )
    call = finished_call({"tokens_in": 1000, "tokens_out": 1000, "cost_usd": 5.0})
    assert (call.tokens_in, call.cost_usd) == (1, 0.0)


def test_register_extractor_rejects_non_callable():
    """`register_extractor` raises TypeError for a non-callable."""
    with pytest.raises(TypeError):
        tracked.register_extractor("not a function")


def test_raising_user_extractor_warns_once_and_call_continues():
    """A user extractor that raises warns once, is skipped, and the built-in extractors still read the result."""

    def broken(obj):
        raise RuntimeError("extractor bug")

    tracked.register_extractor(broken)
    with pytest.warns(tracked.TrackedWarning, match="extractor") as record:
        first = finished_call({"tokens_in": 1000, "tokens_out": 500, "model": "gpt-4o"})
        second = finished_call({"tokens_in": 10, "tokens_out": 5, "model": "gpt-4o"})
    assert len([w for w in record if issubclass(w.category, tracked.TrackedWarning)]) == 1
    assert first.cost_usd == pytest.approx(0.0075)
    assert (second.tokens_in, second.tokens_out) == (10, 5)


def test_user_extractor_returning_invalid_usage_is_checked():
    """Counts in a `Usage` returned by a user extractor are checked like every other reported value."""
    tracked.register_extractor(
        lambda obj: (
            Usage(tokens_in=100, tokens_out=-1000, model="gpt-4o") if isinstance(obj, MyClientResponse) else None
        )
    )
    call = finished_call(MyClientResponse(0, 0))
    assert call.tokens_out >= 0
    assert call.cost_usd is None or call.cost_usd >= 0


def test_user_extractor_stays_first_after_builtin_matched_same_type():
    """A user extractor is tried before the built-ins even after a built-in has read a value of the same type."""

    def from_tagged(obj):
        if isinstance(obj, dict) and obj.get("tag") == "mine":
            return {"tokens_in": 1, "tokens_out": 1, "cost_usd": 9.0}
        return None

    tracked.register_extractor(from_tagged)
    assert extract({"tokens_in": 5, "tokens_out": 5, "tag": "mine"}).cost_usd == 9.0
    assert extract({"tokens_in": 5, "tokens_out": 5, "cost_usd": 0.1}).cost_usd == 0.1  # a built-in reads this one
    assert extract({"tokens_in": 5, "tokens_out": 5, "tag": "mine"}).cost_usd == 9.0


def test_extract_does_not_depend_on_history():
    """`extract` gives the same answer for a value whatever was extracted before it."""
    delta = {"type": "message_delta", "usage": {"output_tokens": 15, "input_tokens": 10, "cache_read_input_tokens": 5}}
    start = {
        "type": "message_start",
        "message": {"type": "message", "model": "m", "usage": {"input_tokens": 1, "output_tokens": 1}},
    }
    fresh = extract(delta)
    extract(start)
    assert extract(delta) == fresh


def test_usage_returned_directly_is_checked():
    """Counts in a `tracked.Usage` returned by a tracked function are checked like any reported value."""
    call = finished_call(Usage(tokens_in=100, tokens_out=-1000, model="gpt-4o"))
    assert call.tokens_out >= 0
    assert call.cost_usd is None or call.cost_usd >= 0


def test_usage_returned_directly_is_used():
    """A valid `tracked.Usage` returned by a tracked function is its usage."""
    call = finished_call(Usage(tokens_in=1000, tokens_out=500, model="gpt-4o"))
    assert (call.tokens_in, call.tokens_out, call.model) == (1000, 500, "gpt-4o")
    assert call.cost_usd == pytest.approx(0.0075)


# --- property: extract is total ------------------------------------------------------------------


class Exploding:
    """An object whose usage-looking attributes raise when read."""

    def __init__(self, exc: type[BaseException]) -> None:
        self._exc = exc

    def _boom(self):
        raise self._exc("boom")

    usage = property(_boom)
    model = property(_boom)
    tokens_in = property(_boom)
    prompt_eval_count = property(_boom)
    type = property(_boom)


class Weird:
    """An object with arbitrary attribute values in usage-looking places."""

    def __init__(self, values: dict) -> None:
        for k, v in values.items():
            setattr(self, k, v)


weird_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=10**18, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.just(Decimal("sNaN")),
    st.complex_numbers(),
    st.none(),
    st.text(max_size=5),
)
usage_keys = st.sampled_from(
    [
        "usage",
        "prompt_tokens",
        "completion_tokens",
        "prompt_tokens_details",
        "cached_tokens",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "input_tokens_details",
        "object",
        "type",
        "message",
        "model",
        "prompt_eval_count",
        "eval_count",
        "tokens_in",
        "tokens_out",
        "cost_usd",
        "provider",
        "_hidden_params",
        "response_cost",
    ]
)
json_like = st.recursive(
    weird_numbers,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(usage_keys, st.text(max_size=3)), inner, max_size=5),
        st.dictionaries(usage_keys, inner, max_size=5).map(Weird),
    ),
    max_leaves=15,
)
values = st.one_of(
    json_like,
    st.sampled_from(
        [Exploding(ValueError), Exploding(KeyError), Exploding(AttributeError), Exploding(ZeroDivisionError)]
    ),
    st.builds(
        lambda d: {"usage": Exploding(RuntimeError), **d}, st.dictionaries(usage_keys, weird_numbers, max_size=3)
    ),
    st.sampled_from([int, object, Usage, Exploding, Weird, type]),
)


def check_usage(found: Usage | None) -> None:
    if found is None:
        return
    assert isinstance(found, Usage)
    assert found.reported
    for name in ("tokens_in", "tokens_out", "cache_read_tokens", "cache_write_tokens"):
        n = getattr(found, name)
        assert n is None or (type(n) is int and n >= 0), (name, n)
    if found.cost_usd is not None:
        assert type(found.cost_usd) is float and math.isfinite(found.cost_usd) and found.cost_usd >= 0
    for name in ("model", "provider"):
        s = getattr(found, name)
        assert s is None or (isinstance(s, str) and s)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(value=values)
def test_extract_never_raises_and_counts_are_non_negative_ints(value):
    """`extract` never raises on arbitrary values, and any counts it returns are non-negative ints."""
    check_usage(extract(value))


@settings(max_examples=60, deadline=None)
@given(
    prompt=weird_numbers,
    completion=weird_numbers,
    cached=weird_numbers,
    cost=weird_numbers,
)
def test_extract_on_provider_shapes_with_weird_numbers(prompt, completion, cached, cost):
    """Provider-shaped dicts and objects with weird numbers never make `extract` raise or return bad counts."""
    shapes = [
        {
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "prompt_tokens_details": {"cached_tokens": cached},
            }
        },
        {
            "type": "message",
            "usage": {"input_tokens": prompt, "output_tokens": completion, "cache_read_input_tokens": cached},
        },
        {
            "type": "message_delta",
            "usage": {"output_tokens": completion, "input_tokens": prompt, "cache_creation_input_tokens": cached},
        },
        {"type": "message_start", "message": {"usage": {"input_tokens": prompt, "output_tokens": completion}}},
        {
            "object": "response",
            "usage": {
                "input_tokens": prompt,
                "output_tokens": completion,
                "input_tokens_details": {"cached_tokens": cached},
            },
        },
        {"prompt_eval_count": prompt, "eval_count": completion},
        {"tokens_in": prompt, "tokens_out": completion, "cost_usd": cost},
        Weird(
            {
                "usage": Weird({"prompt_tokens": prompt, "completion_tokens": completion}),
                "_hidden_params": {"response_cost": cost},
            }
        ),
    ]
    for shape in shapes:
        check_usage(extract(shape))


def test_extract_reads_numpy_like_integers():
    """Integer-like values (with `__index__`) are accepted as counts, floats with fractions are not."""

    class IntLike:
        def __init__(self, n):
            self.n = n

        def __index__(self):
            return self.n

    assert extract({"tokens_in": IntLike(5), "tokens_out": 2.0}) == Usage(tokens_in=5, tokens_out=2)
    assert extract({"tokens_in": IntLike(-5), "tokens_out": 2.5}) is None
