"""Splitting `tracked.usage` into one module per provider changed no reading: each new extractor, and
`extract`, give what the single module gave, for any value (one history-dependent case aside, below).

The old module is read from git history (the commit before the split), so these tests are skipped
outside a git checkout holding it. Delete this file when extraction is meant to change.
"""

from __future__ import annotations

import importlib.util
import subprocess
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ollama
import pytest
from anthropic.types import Message, RawContentBlockDeltaEvent, RawMessageDeltaEvent, RawMessageStartEvent
from hypothesis import example, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage
from openai.types.responses import Response
from pydantic import BaseModel, ConfigDict, PrivateAttr

import tracked
from strategies import any_floats, count_args, name_args, usage_like
from tracked.usage import Usage, _registry, anthropic, fields, openai
from tracked.usage import ollama as ollama_usage

BEFORE = "bf7764d7f962f6984fd1bb8b30a3ae9fa0a04e86"  # the last commit with usage/__init__.py whole
ROOT = Path(__file__).resolve().parents[1]


def _load_before() -> types.ModuleType:
    try:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{BEFORE}:src/tracked/usage/__init__.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"the usage module before the split ({BEFORE[:7]}) is not in this checkout's git history")
    # A package inside `tracked`, so that its `from .._config import ...` finds tracked's own config.
    spec = importlib.util.spec_from_loader("tracked._usage_before_split", loader=None, is_package=True)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, "tracked/usage/__init__.py@" + BEFORE[:7], "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def before() -> types.ModuleType:
    return _load_before()


def forget(before: types.ModuleType) -> None:
    """Both implementations' per-class caches emptied: each value read as if first seen."""
    for module in (before, _registry):
        module._by_type.clear()
        module._final.clear()
        module._chain_for.clear()
    _registry._unidentified.clear()


def same(old: Any, new: Any) -> bool:
    """Equal usages, field types included (a count of 2 is not 2.0), or both None."""
    if old is None or new is None:
        return old is None and new is None
    return type(new) is tracked.Usage and [(type(v), v) for v in old] == [(type(v), v) for v in new]


def as_before(before: types.ModuleType, value: Any) -> Any:
    """The value to give the old module: a `Usage` of its own class in place of one of the new."""
    return before.Usage._make(value) if type(value) is tracked.Usage else value


def extract_both(before: types.ModuleType, value: Any) -> tuple[Any, Any]:
    return before.extract(as_before(before, value)), tracked.usage.extract(value)


# --- values shaped like provider responses ------------------------------------------------------


class Raising:
    """An object whose named attributes raise a non-AttributeError when read."""

    def __init__(self, values: dict[str, Any], raising: frozenset[str]) -> None:
        self.__dict__.update({k: v for k, v in values.items() if k not in raising})
        self._raising = raising

    def __getattr__(self, name: str) -> Any:
        if name in self.__dict__.get("_raising", ()):
            raise RuntimeError(name)
        raise AttributeError(name)


@dataclass
class ChatLike:
    usage: Any = None
    model: Any = None
    choices: Any = None


@dataclass
class MessageLike:
    usage: Any = None
    model: Any = None
    type: Any = None
    object: Any = None


@dataclass
class Everything:
    usage: Any = None
    model: Any = None
    type: Any = None
    object: Any = None
    message: Any = None
    prompt_eval_count: Any = None
    eval_count: Any = None
    tokens_in: Any = None
    tokens_out: Any = None
    cost_usd: Any = None
    provider: Any = None


class PydanticOpen(BaseModel):
    """A pydantic model with the `usage` shapes' fields that keeps extra fields."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)
    usage: Any = None
    model: Any = None
    type: Any = None


class PydanticChat(BaseModel):
    """A pydantic model the chat shape identifies from its fields."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    usage: Any = None
    model: Any = None
    choices: Any = None


class LiteLLMResponse(ChatCompletion):
    """A ChatCompletion-shaped response carrying LiteLLM's own cost, like `litellm.ModelResponse`."""

    _hidden_params: Any = PrivateAttr(default=None)


class PydanticLiteLLM(PydanticChat):
    """A LiteLLM-like pydantic model: chat fields and a private `_hidden_params`."""

    _hidden_params: Any = PrivateAttr(default=None)


type_tags = st.one_of(st.sampled_from(["message", "message_start", "message_delta", "content_block_delta"]), name_args)
object_tags = st.one_of(st.sampled_from(["response", "chat.completion"]), name_args)
counts = st.one_of(st.integers(0, 10**6), count_args, any_floats)  # a third of them good
details = st.fixed_dictionaries({}, optional={"cached_tokens": counts, "cache_write_tokens": counts})
_usage_fields = {
    "prompt_tokens": counts,
    "completion_tokens": counts,
    "prompt_tokens_details": st.one_of(details, details.map(lambda d: types.SimpleNamespace(**d)), counts),
    "input_tokens": counts,
    "output_tokens": counts,
    "input_tokens_details": st.one_of(details, counts),
    "cache_read_input_tokens": counts,
    "cache_creation_input_tokens": counts,
    "cache_write_tokens": counts,
}


def usage_with(*required: str) -> Any:
    """`usage` mappings or objects holding the `required` counts and any of the others."""
    dicts = st.fixed_dictionaries(
        {k: counts for k in required}, optional={k: v for k, v in _usage_fields.items() if k not in required}
    )
    return st.one_of(dicts, dicts.map(lambda d: types.SimpleNamespace(**d)))


usage_dicts = st.fixed_dictionaries({}, optional=_usage_fields)
usages = st.one_of(usage_with(), counts, st.none())
chat_usage = usage_with("prompt_tokens", "completion_tokens")
io_usage = usage_with("input_tokens", "output_tokens")
hidden = st.one_of(
    st.fixed_dictionaries(
        {}, optional={"response_cost": st.one_of(counts, name_args), "custom_llm_provider": name_args}
    ),
    counts,
)
# Every field any shape reads, each present or not: the noise around a template.
flat = st.fixed_dictionaries(
    {},
    optional={
        "usage": usages,
        "model": name_args,
        "object": object_tags,
        "type": type_tags,
        "choices": st.just([]),
        "prompt_eval_count": counts,
        "eval_count": counts,
        "tokens_in": counts,
        "tokens_out": counts,
        "cost_usd": st.one_of(counts, name_args),
        "provider": name_args,
        "_hidden_params": hidden,
    },
)
io_message = st.fixed_dictionaries(
    {"usage": io_usage}, optional={"type": type_tags, "object": object_tags, "model": name_args}
)
# One per shape, with the fields that shape needs.
templates = st.one_of(
    st.fixed_dictionaries({"usage": chat_usage}, optional={"model": name_args, "_hidden_params": hidden}),
    io_message,
    st.fixed_dictionaries({"type": st.just("message_start") | type_tags, "message": st.one_of(io_message, flat)}),
    st.fixed_dictionaries({"type": st.just("message_delta") | type_tags, "usage": io_usage}),
    st.fixed_dictionaries({"prompt_eval_count": counts, "eval_count": counts}, optional={"model": name_args}),
    st.fixed_dictionaries(
        {"tokens_in": counts, "tokens_out": counts},
        optional={"cost_usd": st.one_of(counts, name_args), "model": name_args, "provider": name_args},
    ),
)
responses = st.builds(
    lambda noise, template, noise_first: {**noise, **template} if noise_first else {**template, **noise},
    st.one_of(st.just({}), flat),
    templates,
    st.booleans(),
)


def _fill(kind: type, values: dict[str, Any]) -> Any:
    names = set(getattr(kind, "__dataclass_fields__", None) or kind.model_fields)
    made = kind(**{k: v for k, v in values.items() if k in names})
    if "_hidden_params" in values:  # declared by PydanticLiteLLM, held by the instance alone otherwise
        if isinstance(made, PydanticLiteLLM):
            made._hidden_params = values["_hidden_params"]
        else:
            object.__setattr__(made, "_hidden_params", values["_hidden_params"])
    return made


FORMS = ("dict", "object", "raising", "chat", "message", "everything", "open", "pchat", "llm")
# The fixed-shape classes with an `object` field: see test_the_one_difference_is_a_class_switching_shapes.
SWITCHING = ("message", "everything", "open")


@st.composite
def shaped(draw: Any, forms: tuple[str, ...] = FORMS) -> Any:
    """A provider-like response: a dict, an object, a dataclass or pydantic model, or one that raises."""
    values = draw(responses)
    form = draw(st.sampled_from(forms))
    if form == "dict":
        return values
    if form == "object":
        return types.SimpleNamespace(**values)
    if form == "raising":
        usage = values.get("usage")
        if isinstance(usage, dict) and draw(st.booleans()):
            inner = [*sorted(usage), "input_tokens_details", "prompt_tokens_details"]
            values = {**values, "usage": Raising(usage, draw(st.frozensets(st.sampled_from(inner))))}
        return Raising(values, draw(st.frozensets(st.sampled_from(sorted(values) or ["usage"]))))
    kind = {
        "chat": ChatLike,
        "message": MessageLike,
        "everything": Everything,
        "open": PydanticOpen,
        "pchat": PydanticChat,
        "llm": PydanticLiteLLM,
    }[form]
    if kind is PydanticOpen:
        return PydanticOpen(**{k: v for k, v in values.items() if not k.startswith("_")})
    return _fill(kind, values)


good = st.integers(0, 10**6)


@st.composite
def provider_objects(draw: Any) -> Any:
    """A real provider object, validated, or built with unchecked values (`model_construct`)."""
    n_in, n_out, cached = draw(good), draw(good), draw(st.none() | good)
    model = draw(st.sampled_from(["gpt-4o", "claude-haiku-4-5", "llama3.2:3b", "", "x" * 257]))
    which = draw(st.integers(0, 8))
    if which == 0:
        cache = None if cached is None else {"cached_tokens": cached}
        usage = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": 0, "prompt_tokens_details": cache}
        kind = draw(st.sampled_from([ChatCompletion, LiteLLMResponse]))
        made = kind.model_validate(
            {"id": "c", "object": "chat.completion", "created": 0, "model": model or "m", "choices": [], "usage": usage}
        )
        if kind is LiteLLMResponse:
            made._hidden_params = draw(hidden)
        elif draw(st.booleans()):  # held by the instance alone
            object.__setattr__(made, "_hidden_params", draw(hidden))
        return made
    if which == 1:
        usage = draw(st.one_of(st.none(), chat_usage, usage_dicts.map(lambda d: CompletionUsage.model_construct(**d))))
        return ChatCompletionChunk.model_construct(
            id="c", object="chat.completion.chunk", created=0, model=draw(name_args), choices=[], usage=usage
        )
    if which == 2:
        usage = {
            "input_tokens": n_in,
            "output_tokens": n_out,
            "total_tokens": 0,
            "input_tokens_details": draw(details),
            "output_tokens_details": {"reasoning_tokens": 0},
            **draw(st.fixed_dictionaries({}, optional={"cache_write_tokens": counts})),
        }
        return Response.model_construct(object="response", model=model, usage=usage)
    if which == 3:
        usage = {"input_tokens": n_in, "output_tokens": n_out, "cache_read_input_tokens": cached}
        return Message.model_construct(type="message", model=model, usage=usage)
    if which == 4:
        message = Message.model_construct(type="message", model=model, usage=draw(st.one_of(io_usage, usages)))
        return RawMessageStartEvent.model_construct(type="message_start", message=message)
    if which == 5:
        return RawMessageDeltaEvent.model_construct(
            type="message_delta", usage=draw(st.one_of(io_usage, usages)), delta={}
        )
    if which == 6:
        return RawContentBlockDeltaEvent.model_construct(type="content_block_delta", index=0, delta={})
    if which == 7:
        return ollama.ChatResponse.model_construct(model=model, prompt_eval_count=draw(counts), eval_count=draw(counts))
    return ollama.GenerateResponse.model_construct(model=model, response="", prompt_eval_count=n_in, eval_count=n_out)


any_value = st.one_of(shaped(), shaped(), shaped(), provider_objects(), usage_like)


def outcome(fn: Any, value: Any) -> tuple[str, Any]:
    """What an extractor does with a value: the usage it returns, or the type of what it raises."""
    try:
        found = fn(value)
    except Exception as exc:
        return "raises", type(exc)
    return "returns", None if found is None else [(type(v), v) for v in found]


def input_output(value: Any) -> Usage | None:
    """The old `_from_input_output`, as the split shapes give it: OpenAI Responses, else Anthropic."""
    found = openai.from_responses(value)
    return found if found is not None else anthropic.from_message(value)


# Each old extractor, and the new one(s) it became.
SPLIT = [
    ("_from_openai_chat", openai.from_chat),
    ("_openai_chat_fixed", openai.from_chat_fixed),
    ("_from_input_output", input_output),
    ("_from_anthropic_stream_event", anthropic.from_stream_event),
    ("_from_ollama", ollama_usage.from_response),
    ("_from_fields", fields.from_fields),
    ("_coerce", _registry._coerce),
]
message_start_of_a_response = {
    "type": "message_start",
    "message": {"object": "response", "usage": {"input_tokens": 5, "output_tokens": 1}},
}
completion_with_instance_hidden_params = ChatCompletion.model_validate(
    {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o",
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
)
object.__setattr__(completion_with_instance_hidden_params, "_hidden_params", {"response_cost": 0.5})
response_with_raising_details = {
    "object": "response",
    "usage": Raising({"input_tokens": 5, "output_tokens": 1}, frozenset({"input_tokens_details"})),
}


@settings(max_examples=400, deadline=None)
@given(value=st.one_of(shaped(), provider_objects(), usage_like))
@example(value=message_start_of_a_response)
@example(value=response_with_raising_details)
@example(value=completion_with_instance_hidden_params)
@example(value={"usage": {"input_tokens": 5, "cache_read_input_tokens": 0}})
@example(value={"usage": {"input_tokens": 5, "cache_creation_input_tokens": 0}})
def test_each_shape_reads_as_its_part_of_the_old_extractor(before, value):
    """Each new extractor returns (or raises) what the old one it came from did, for any value."""
    for old_name, new in SPLIT:
        assert outcome(getattr(before, old_name), as_before(before, value)) == outcome(new, value), old_name


@settings(max_examples=1000, deadline=None)
@given(value=any_value)
@example(value=message_start_of_a_response)
@example(value=response_with_raising_details)
def test_each_value_reads_as_before(before, value):
    """Any value, first seen, gives the same usage (or none) as before the split."""
    forget(before)
    old, new = extract_both(before, value)
    assert same(old, new), (old, new)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(provider_objects(), shaped(tuple(f for f in FORMS if f not in SWITCHING))), min_size=2, max_size=8
    )
)
def test_a_sequence_reads_as_before(before, values):
    """A sequence of values, read one after the other with the per-class caches kept, gives the same
    usages as before the split (but for the one difference below)."""
    forget(before)
    for value in values:
        old, new = extract_both(before, value)
        assert same(old, new), (value, old, new)


def test_a_plain_object_with_input_tokens_reads_as_before(before):
    """An object with `usage.input_tokens` and neither `type` nor `object` is read as before: no provider."""
    value = types.SimpleNamespace(usage=types.SimpleNamespace(input_tokens=7, output_tokens=1), model="m")
    old, new = extract_both(before, value)
    assert same(old, new) and new == tracked.Usage(7, 1, None, None, "m")


def test_the_one_difference_is_a_class_switching_shapes(before):
    """The one difference: a dataclass or pydantic class that has read as OpenAI Responses (or as an
    Anthropic message) is tried with that shape first next time, and before the split that shape also
    read the other one's instances, ahead of the chat shape. Now such an instance is searched afresh,
    so it reads as it would if seen first (here as a chat completion), which is what
    `test_extract_does_not_depend_on_history` asks."""
    first = MessageLike(usage={"input_tokens": 1, "output_tokens": 1}, object="response")
    second = MessageLike(usage={"input_tokens": 2, "prompt_tokens": 9, "completion_tokens": 9}, type="message")
    forget(before)
    assert extract_both(before, second)[1] == tracked.Usage(9, 9)  # seen first
    forget(before)
    extract_both(before, first)
    old, new = extract_both(before, second)
    assert old == tracked.Usage(2, None, None, None, None, "anthropic")
    assert new == tracked.Usage(9, 9)
