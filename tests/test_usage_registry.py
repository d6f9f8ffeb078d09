"""Response shapes are registered in one place, and the fast paths are derived from their declarations."""

from __future__ import annotations

import types
from typing import Any

import ollama
import pytest
from anthropic.types import (
    Message,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
)
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response
from pydantic import BaseModel, PrivateAttr

from strategies import usage_dicts
from tracked.usage import Usage, _registry, anthropic, extract, fields, openai
from tracked.usage import ollama as usage_ollama
from tracked.usage._types import Shape

PYDANTIC_RESPONSES = [
    ChatCompletion,
    ChatCompletionChunk,
    Response,
    Message,
    RawMessageStartEvent,
    RawMessageDeltaEvent,
    RawMessageStopEvent,
    RawContentBlockStartEvent,
    RawContentBlockDeltaEvent,
    RawContentBlockStopEvent,
    ollama.ChatResponse,
    ollama.GenerateResponse,
]


def nothing(obj: Any) -> Usage | None:
    """An extractor that finds nothing."""
    return None


def test_every_registered_shape_declares_the_fields_it_reads():
    """Each registered shape has a name of its own and a non-empty `looks_for`, and the built-in chain
    is exactly the registered shapes' extractors, in their order."""
    names = [shape.name for shape in _registry.SHAPES]
    assert len(set(names)) == len(names)
    assert all(shape.looks_for for shape in _registry.SHAPES)
    assert _registry._BUILTIN == tuple(shape.extract for shape in _registry.SHAPES)


def test_a_shape_without_its_declaration_cannot_be_made():
    """A shape must say which fields it reads: leaving `looks_for` out, empty, or a bare string fails at
    construction, and so do a fixed reader or exclusions without `identifies`."""
    with pytest.raises(TypeError):
        Shape("mine", nothing)
    with pytest.raises(ValueError, match="looks_for"):
        Shape("mine", nothing, looks_for=())
    with pytest.raises(TypeError, match="looks_for"):
        Shape("mine", nothing, looks_for="meta")
    with pytest.raises(TypeError, match="identifies"):
        Shape("mine", nothing, looks_for=("meta",), identifies=("meta", ""))
    with pytest.raises(ValueError, match="identifies"):
        Shape("mine", nothing, looks_for=("meta",), fixed=nothing)
    with pytest.raises(ValueError, match="identifies"):
        Shape("mine", nothing, looks_for=("meta",), unless=("_secret",))
    with pytest.raises(TypeError, match="callable"):
        Shape("mine", "nothing", looks_for=("meta",))


def test_a_shape_is_registered_by_its_declaration_alone():
    """Fields are declared once, on the shape, so no table can be left behind: the registry holds
    no mapping keyed by an extractor."""
    builtin = set(_registry._BUILTIN)
    for value in vars(_registry).values():
        if isinstance(value, dict):
            assert not builtin & set(value), value


@pytest.mark.parametrize("kind", PYDANTIC_RESPONSES, ids=lambda kind: kind.__name__)
def test_a_provider_class_is_offered_to_exactly_the_shapes_whose_fields_it_declares(kind):
    """A real provider class is offered the extractors of exactly the registered shapes that declare
    one of its fields (as a field or a property)."""
    declared = set(kind.model_fields)
    expected = tuple(
        shape.extract
        for shape in _registry.SHAPES
        if any(field in declared or hasattr(kind, field) for field in shape.looks_for)
    )
    instance = kind.model_construct()
    assert _registry._chain_of(instance, kind) == expected


def test_an_anthropic_stream_event_is_offered_only_to_the_stream_event_shape():
    """A content delta (type, index, delta) declares only `type` of all the shapes' fields; a message
    delta also declares `usage`, so goes to the `usage` shapes too, in chain order."""
    assert _registry._offered(RawContentBlockDeltaEvent) == (anthropic.STREAM_EVENT.extract,)
    assert _registry._offered(RawMessageDeltaEvent) == (
        openai.CHAT.extract,
        openai.RESPONSES.extract,
        anthropic.MESSAGE.extract,
        anthropic.STREAM_EVENT.extract,
    )


def test_only_openai_chat_classes_are_identified_from_their_fields():
    """The chat shape identifies ChatCompletion and its chunks (read by its fixed reader alone), not a
    LiteLLM-like subclass declaring `_hidden_params`, nor any other provider class."""

    class LiteLLMResponse(ChatCompletion):
        _hidden_params: dict[str, Any] = PrivateAttr(default_factory=dict)

    assert _registry._identified(ChatCompletion) is openai.from_chat_fixed
    assert _registry._identified(ChatCompletionChunk) is openai.from_chat_fixed
    assert _registry._identified(LiteLLMResponse) is None
    for kind in PYDANTIC_RESPONSES[2:]:
        assert _registry._identified(kind) is None, kind


class Meta(BaseModel):
    """A response shape no built-in shape knows: usage under `meta`."""

    meta: dict[str, int]
    answer: str = ""


def from_meta(obj: Any) -> Usage | None:
    meta = getattr(obj, "meta", None)
    return None if meta is None else Usage(tokens_in=meta["in"], tokens_out=meta["out"])


def test_a_new_shape_gets_both_fast_paths_from_its_declaration():
    """A shape added to the registered tuple is offered the pydantic classes declaring its fields, and
    identifies the classes declaring all of `identifies`, with nothing else to update."""
    shape = Shape("meta", from_meta, looks_for=("meta",), identifies=("meta", "answer"))
    shapes = (*_registry.SHAPES, shape)
    assert _registry._offered(Meta, _registry.SHAPES) == ()
    assert _registry._offered(Meta, shapes) == (from_meta,)
    assert _registry._identified(Meta, _registry.SHAPES) is None
    assert _registry._identified(Meta, shapes) is from_meta
    without_identifies = Shape("meta", from_meta, looks_for=("meta",))
    assert _registry._identified(Meta, (*_registry.SHAPES, without_identifies)) is None


def test_a_litellm_cost_is_read_with_the_chat_shape():
    """LiteLLM's `_hidden_params` add its cost and provider to what the chat shape reads, whether the
    class declares them or the instance alone holds them."""
    usage = {"prompt_tokens": 3, "completion_tokens": 4}
    hidden = {"response_cost": 0.5, "custom_llm_provider": "openai"}
    declared = type("Declared", (), {"_hidden_params": hidden, "usage": usage, "model": "gpt-4o"})()
    held = types.SimpleNamespace(usage=usage, model="gpt-4o", _hidden_params=hidden)
    for value in (declared, held):
        assert extract(value) == Usage(3, 4, None, None, "gpt-4o", "openai", 0.5)


def test_responses_and_anthropic_shapes_split_the_input_output_reading():
    """`usage.input_tokens` is OpenAI Responses when `object == "response"`, Anthropic when `type ==
    "message"` or cache counts are present, and unattributed otherwise (as before the split)."""
    usage = {"input_tokens": 10, "output_tokens": 2}
    assert extract({"object": "response", "usage": usage, "model": "gpt-4o"}) == Usage(
        10, 2, None, None, "gpt-4o", "openai"
    )
    assert openai.from_responses({"type": "message", "usage": usage}) is None
    assert anthropic.from_message({"object": "response", "usage": usage}) is None
    assert extract({"type": "message", "usage": usage}) == Usage(10, 2, None, None, None, "anthropic")
    plain = types.SimpleNamespace(usage=types.SimpleNamespace(input_tokens=10, output_tokens=2))
    assert extract(plain) == Usage(10, 2)
    cached = {"usage": {**usage, "cache_read_input_tokens": 5}}
    assert extract(cached) == Usage(15, 2, 5, None, None, "anthropic")
    assert fields.from_fields(cached) is None


# --- dicts: offered only to the shapes whose keys they hold -------------------------------------


def test_every_key_a_shape_looks_for_is_in_the_dict_signature():
    """A dict is classified by the keys the shapes look for, all of them: a shape added later is
    covered without a second list."""
    assert set(_registry._KEYS) == {key for shape in _registry.SHAPES for key in shape.looks_for}


#: One response of each shape, as a dict.
DICT_RESPONSES = [
    {"usage": {"prompt_tokens": 3, "completion_tokens": 4}, "model": "gpt-4o-mini", "object": "chat.completion"},
    {
        "usage": {"input_tokens": 3, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 1}},
        "object": "response",
    },
    {"type": "message", "model": "claude-haiku-4-5", "usage": {"input_tokens": 3, "cache_read_input_tokens": 2}},
    {"type": "message_delta", "usage": {"output_tokens": 9}},
    {"type": "message_start", "message": {"type": "message", "usage": {"input_tokens": 5}}},
    {"type": "response.completed", "response": {"object": "response", "usage": {"input_tokens": 7}}},
    {"model": "llama3.2", "prompt_eval_count": 26, "eval_count": 298, "done": True},
    {"tokens_in": 5, "tokens_out": 6, "cost_usd": 0.25, "model": "mine", "provider": "me"},
    {"answer": 42},
]


@given(usage_dicts | st.builds(lambda resp, extra: {**resp, **extra}, st.sampled_from(DICT_RESPONSES), usage_dicts))
def test_a_dict_reads_as_the_whole_chain_reads_it(obj):
    """Oracle for the dict fast path: a plain dict, offered only to the shapes whose `looks_for`
    keys it holds, gives exactly what trying every extractor in chain order gives."""
    assert extract(obj) == _registry._search(obj, None)
    assert extract(obj) == extract(obj)  # the signature's cached chain, the second time


@given(usage_dicts | st.builds(lambda resp, extra: {**extra, **resp}, st.sampled_from(DICT_RESPONSES), usage_dicts))
def test_a_dict_read_directly_reads_as_any_mapping(obj):
    """The extractors that read a plain dict's keys directly give what they give for the same
    mapping behind a `MappingProxyType`, read key by key through `values.get` (or raise alike, for
    a value whose reads raise)."""
    proxy = types.MappingProxyType(obj)
    for read in (fields.from_fields, usage_ollama.from_response, openai.from_chat):
        assert guarded(read, obj) == guarded(read, proxy), read


def guarded(read: Any, obj: Any) -> Any:
    """What the registry makes of a reader's answer: a value that makes it raise is not its shape."""
    try:
        return read(obj)
    except Exception as exc:
        return ("raised", type(exc))
