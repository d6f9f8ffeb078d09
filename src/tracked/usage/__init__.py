"""Token usage read from what a call returns, by duck-typing (no provider package is imported).

One pure function per response shape. Every extractor is total: it returns a `Usage` or `None` and
never raises, whatever it is given; `extract` guards them all so that a user's extractor cannot
break a call either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._config import internal_error, warn_once
from . import values
from ._types import Extractor, Usage, merge
from ._types import new as _new

__all__ = ["Usage", "extract", "merge", "register_extractor"]


# The checks of every value read (`usage.values`), under the names used below and imported by
# `tracked.harness`.
_add = values.add
_cost = values.cost
_count = values.count
_get = values.get
_name = values.name
_two = values.two

# --- one extractor per shape -------------------------------------------------------------------


def _from_usage(obj: Any) -> Usage | None:
    return obj if type(obj) is Usage else None


# Whether a class declares LiteLLM's `_hidden_params` (as a class attribute or a pydantic private
# attribute), remembered: asking a pydantic class for a missing attribute raises inside.
_declares_hidden: dict[type, bool] = {}


def _declares_hidden_params(kind: type) -> bool:
    declared = any(
        "_hidden_params" in vars(c) or "_hidden_params" in (vars(c).get("__private_attributes__") or ())
        for c in kind.__mro__
    )
    if len(_declares_hidden) < 4096:
        _declares_hidden[kind] = declared
    return declared


def _cache_counts(details: Any) -> tuple[int | None, int | None]:
    """Cached and cache-write input tokens from OpenAI's `prompt_tokens_details`."""
    cached, cache_write = _two(details, "cached_tokens", "cache_write_tokens")
    if cached is not None and not (type(cached) is int and cached >= 0):
        cached = _count(cached)
    if cache_write is not None:
        cache_write = _count(cache_write)
    return cached, cache_write


def _from_openai_chat(obj: Any) -> Usage | None:
    """OpenAI chat completions (and the last chunk of a stream with usage), LiteLLM responses.

    The general reader, for mappings and objects alike; the OpenAI SDK's own classes take
    `_openai_chat_fixed` once seen."""
    usage, model = _two(obj, "usage", "model")
    if usage is None:
        return None
    tokens_in, tokens_out = _two(usage, "prompt_tokens", "completion_tokens")
    details = _get(usage, "prompt_tokens_details")
    if not (type(tokens_in) is int and tokens_in >= 0):
        tokens_in = _count(tokens_in)
    if not (type(tokens_out) is int and tokens_out >= 0):
        tokens_out = _count(tokens_out)
    if tokens_in is None and tokens_out is None:
        return None
    cached, cache_write = (None, None) if details is None else _cache_counts(details)
    cost = provider = None
    declared = _declares_hidden.get(type(obj))
    if declared is None:
        declared = _declares_hidden_params(type(obj))
    if declared or "_hidden_params" in getattr(obj, "__dict__", ()):  # LiteLLM computes its own cost
        hidden = getattr(obj, "_hidden_params", None)
        if isinstance(hidden, Mapping):
            cost = _cost(hidden.get("response_cost"))
            provider = _name(hidden.get("custom_llm_provider"))
    if not (type(model) is str and 0 < len(model) <= 256):
        model = None
    return _new(Usage, (tokens_in, tokens_out, cached or None, cache_write or None, model, provider, cost))


def _openai_chat_fixed(obj: Any) -> Usage | None:
    """`_from_openai_chat` for the classes `_known_from_fields` recognises (the OpenAI SDK's
    ChatCompletion and chunks): plain attribute reads, and anything unusual goes to the general path."""
    try:
        usage = obj.usage
        if usage is None:  # a stream chunk before the last
            return None
        tokens_in = usage.prompt_tokens
        tokens_out = usage.completion_tokens
        details = usage.prompt_tokens_details
        model = obj.model
        hidden = "_hidden_params" in obj.__dict__
    except AttributeError:  # a dict inside, a missing field, no __dict__
        return _from_openai_chat(obj)
    if (
        hidden
        or type(tokens_in) is not int
        or tokens_in < 0
        or type(tokens_out) is not int
        or tokens_out < 0
        or type(model) is not str
        or not 0 < len(model) <= 256
    ):
        return _from_openai_chat(obj)
    cached, cache_write = (None, None) if details is None else _cache_counts(details)
    return _new(Usage, (tokens_in, tokens_out, cached or None, cache_write or None, model, None, None))


def _from_input_output(obj: Any) -> Usage | None:
    """OpenAI Responses API and Anthropic messages: `usage.input_tokens` / `usage.output_tokens`."""
    usage = _get(obj, "usage")
    tokens_in = _count(_get(usage, "input_tokens"))
    tokens_out = _count(_get(usage, "output_tokens"))
    if tokens_in is None and tokens_out is None:
        return None
    if _get(obj, "object") == "response":  # OpenAI Responses: input_tokens includes cached ones
        details = _get(usage, "input_tokens_details")
        cached = _count(_get(details, "cached_tokens"))
        cache_write = _count(_get(usage, "cache_write_tokens")) or _count(_get(details, "cache_write_tokens"))
        model = _name(_get(obj, "model"))
        return _new(Usage, (tokens_in, tokens_out, cached or None, cache_write or None, model, "openai", None))
    # Anthropic: input_tokens excludes cache reads and writes, which are billed as input.
    cache_read = _count(_get(usage, "cache_read_input_tokens"))
    cache_write = _count(_get(usage, "cache_creation_input_tokens"))
    is_anthropic = _get(obj, "type") == "message" or cache_read is not None or cache_write is not None
    if tokens_in is not None:
        tokens_in = _add(tokens_in, cache_read, cache_write)
    provider = "anthropic" if is_anthropic else None
    model = _name(_get(obj, "model"))
    return _new(Usage, (tokens_in, tokens_out, cache_read or None, cache_write or None, model, provider, None))


def _from_anthropic_stream_event(obj: Any) -> Usage | None:
    """Anthropic stream events: `message_start` carries input usage, `message_delta` the output so far."""
    kind = _get(obj, "type")
    if kind == "message_start":
        return _from_input_output(_get(obj, "message"))
    if kind != "message_delta":
        return None
    usage = _get(obj, "usage")
    tokens_out = _count(_get(usage, "output_tokens"))
    tokens_in = _count(_get(usage, "input_tokens"))
    if tokens_in is not None:
        tokens_in = _add(
            tokens_in,
            _count(_get(usage, "cache_read_input_tokens")),
            _count(_get(usage, "cache_creation_input_tokens")),
        )
    if tokens_out is None and tokens_in is None:
        return None
    return _new(Usage, (tokens_in, tokens_out, None, None, None, "anthropic", None))


def _from_ollama(obj: Any) -> Usage | None:
    """Ollama chat and generate responses (objects and dicts; the last item of a stream)."""
    tokens_in = _count(_get(obj, "prompt_eval_count"))
    tokens_out = _count(_get(obj, "eval_count"))
    if tokens_in is None and tokens_out is None:
        return None
    return _new(Usage, (tokens_in, tokens_out, None, None, _name(_get(obj, "model")), "ollama", None))


def _from_fields(obj: Any) -> Usage | None:
    """A harness's own result: `tokens_in`, `tokens_out`, `cost_usd`, `model`, `provider` fields or keys."""
    tokens_in = _count(_get(obj, "tokens_in"))
    tokens_out = _count(_get(obj, "tokens_out"))
    cost = _cost(_get(obj, "cost_usd"))
    # All zero is a result whose fields were never filled in (dataclass defaults), not a report:
    # the call's children, if any, are its usage.
    if not tokens_in and not tokens_out and not cost:
        return None
    model, provider = _name(_get(obj, "model")), _name(_get(obj, "provider"))
    return _new(Usage, (tokens_in, tokens_out, None, None, model, provider, cost))


_BUILTIN: tuple[Extractor, ...] = (
    _from_usage,
    _from_openai_chat,
    _from_input_output,
    _from_anthropic_stream_event,
    _from_ollama,
    _from_fields,
)
_user: list[Extractor] = []
_chain: tuple[Extractor, ...] = _BUILTIN

# Results of these types never carry usage: checked with one set lookup.
_NO_USAGE = frozenset({type(None), str, bytes, int, float, bool, complex, list, tuple, set, frozenset})


def _coerce(found: Any) -> Usage | None:
    """A user extractor may return a `Usage` or a mapping of its field names; either is checked
    like a provider's response (negative or non-integer counts are dropped)."""
    if isinstance(found, Usage):
        return Usage(
            _count(found.tokens_in),
            _count(found.tokens_out),
            _count(found.cache_read_tokens),
            _count(found.cache_write_tokens),
            _name(found.model),
            _name(found.provider),
            _cost(found.cost_usd),
        )
    if isinstance(found, Mapping):
        return _from_fields(found)
    return None


# The extractor that last matched each type, tried first next time.
_by_type: dict[type, Extractor] = {}
# Classes known from their declared fields alone (OpenAI chat completions and stream chunks): their
# extractor is final, and an instance it finds nothing in has no usage. Without this, every chunk
# of a stream but the last would try each extractor in turn, about 11 us a chunk, most of it in
# pydantic raising AttributeError for fields the class does not have.
_final: set[type] = set()


def _known_from_fields(kind: type) -> Extractor | None:
    fields = getattr(kind, "__pydantic_fields__", None) or getattr(kind, "__dataclass_fields__", None)
    if isinstance(fields, Mapping) and "usage" in fields and "choices" in fields and "model" in fields:
        if not _declares_hidden_params(kind):  # LiteLLM's responses go through the whole chain
            return _openai_chat_fixed
    return None


def extract(obj: Any) -> Usage | None:
    """Usage reported by `obj`, or None. Never raises."""
    kind = type(obj)
    try:
        if kind in _NO_USAGE:
            return None
    except TypeError:  # a class whose metaclass makes it unhashable: no caching for it
        return _search(obj, None)
    if kind is Usage:  # returned by the user's function: checked like any other report
        usage = _coerce(obj)
        return usage if usage is not None and usage.reported else None
    # The extractor that matched this type last time is tried first; not for mappings, whose
    # shape varies from one value to the next, nor when user extractors must be tried first.
    fn = None if _user else _by_type.get(kind)
    if fn is None and not _user and len(_by_type) < 4096:
        try:
            fn = _known_from_fields(kind)
        except Exception:  # an odd class: searched like any other
            fn = None
        if fn is not None:
            _by_type[kind] = fn
            _final.add(kind)
    if fn is not None:
        try:
            found = fn(obj)
        except Exception:
            found = None
        if type(found) is Usage:  # the built-in extractors return only reported usage
            return found
        if kind in _final:
            return None
    return _search(obj, kind)


def _fixed_shape(kind: type) -> bool:
    """Whether the class fixes its fields (pydantic models, dataclasses): only then can the
    extractor that matched one instance be tried first for the next, because no extractor before
    it in the chain can match a later instance. Open shapes (dicts, SimpleNamespace, plain
    objects) are searched every time."""
    return hasattr(kind, "model_fields") or hasattr(kind, "__dataclass_fields__")


# The fields each built-in extractor looks for first. A pydantic model is offered only to the
# extractors whose fields its class declares (as fields or properties): asking a pydantic model
# for a field it does not have raises inside pydantic, about 2 us a time, which made every
# Anthropic stream event without usage cost 15 us.
_LOOKS_FOR: dict[Extractor, tuple[str, ...]] = {
    _from_usage: (),  # a Usage only, which extract() handles before
    _from_openai_chat: ("usage",),
    _from_input_output: ("usage",),
    _from_anthropic_stream_event: ("type",),
    _from_ollama: ("prompt_eval_count", "eval_count"),
    _from_fields: ("tokens_in", "tokens_out", "cost_usd"),
}
_chain_for: dict[type, tuple[Extractor, ...]] = {}


def _chain_of(obj: Any, kind: type | None) -> tuple[Extractor, ...]:
    """The extractors to try for `obj`: all of them, but for a pydantic model only those whose
    fields its class has. An instance holding extra (undeclared) fields is offered to all."""
    if kind is None or _user:
        return _chain
    chain = _chain_for.get(kind)
    if chain is None:
        try:
            fields = getattr(kind, "__pydantic_fields__", None)
            if not isinstance(fields, Mapping):
                chain = _chain
            else:
                chain = tuple(
                    fn for fn in _BUILTIN if any(name in fields or hasattr(kind, name) for name in _LOOKS_FOR[fn])
                )
        except Exception:  # an odd class: every extractor, as before
            chain = _chain
        if len(_chain_for) < 4096:
            _chain_for[kind] = chain
    if chain is not _chain:  # a pydantic model: extra fields it holds may match anything
        try:
            if obj.__pydantic_extra__:
                return _chain
        except Exception:
            return _chain
    return chain


def _search(obj: Any, kind: type | None) -> Usage | None:
    for fn in _chain_of(obj, kind):
        try:
            found = fn(obj)
        except Exception as exc:  # a user extractor, or a property that raises
            if fn in _user:
                warn_once(("extractor", fn), f"tracked: extractor {fn!r} raised {exc!r}; it is skipped for this value")
            continue
        if found is not None:
            try:
                usage = found if type(found) is Usage and fn not in _user else _coerce(found)
            except Exception as exc:  # pragma: no cover - _coerce is total on its own
                internal_error("usage extraction", exc)
                continue
            if usage is not None and usage.reported:
                if kind is not None and len(_by_type) < 4096 and _fixed_shape(kind):
                    _by_type[kind] = fn
                return usage
    return None


def register_extractor(fn: Extractor) -> Extractor:
    """Teach `tracked` a new response shape; tried before the built-in ones.

    The function takes any value and returns a `Usage` (or a mapping with `tokens_in`,
    `tokens_out`, `cost_usd`, `model`, `provider`) or None. It may be used as a decorator.

    Example:
        >>> import tracked
        >>> @tracked.register_extractor
        ... def from_my_client(resp):
        ...     meta = getattr(resp, "meta", None)
        ...     if meta is None:
        ...         return None
        ...     return tracked.Usage(tokens_in=meta["in"], tokens_out=meta["out"], model=meta["model"])
    """
    global _chain
    if not callable(fn):
        raise TypeError(f"register_extractor takes a callable, got {type(fn).__name__}")
    if fn not in _user:
        _user.insert(0, fn)
    _chain = (*_user, *_BUILTIN)
    _by_type.clear()
    _final.clear()
    return fn


def _unregister_all() -> None:
    """For tests: forget every user extractor."""
    global _chain
    _user.clear()
    _chain = _BUILTIN
    _by_type.clear()
    _final.clear()
