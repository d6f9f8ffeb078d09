"""Which extractor reads a value: the registered shapes in chain order, the user's extractors before
them, and the per-class fast paths, all derived from the shapes' declarations (`Shape`).

For a value of a class seen before, the extractor that read the last one is tried first; a class
a shape `identifies` is read by that shape's fixed reader alone; a pydantic class is offered only
to the shapes whose `looks_for` fields it declares; a plain dict only to the shapes whose `looks_for`
keys it holds (the chain per set of keys held is remembered). Everything else tries each extractor
in turn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .._config import internal_error, warn_once
from . import anthropic, fields, ollama, openai
from ._text import Piece, PieceReader
from ._types import Extractor, Reader, Shape, Usage
from .values import cost, count, declares, name

#: Every built-in response shape, in the order they are tried: the one place a shape is registered.
SHAPES: tuple[Shape, ...] = (
    openai.CHAT,
    openai.RESPONSES,
    openai.RESPONSES_EVENT,
    anthropic.MESSAGE,
    anthropic.STREAM_EVENT,
    ollama.RESPONSE,
    fields.FIELDS,
)
_BUILTIN: tuple[Reader, ...] = tuple(shape.extract for shape in SHAPES)

#: Every provider library `tracked.instrument` knows, by its name.
CLIENTS = {spec.library: spec for spec in (openai.CLIENT, anthropic.CLIENT, ollama.CLIENT)}
_user: list[Extractor] = []
_chain: tuple[Extractor, ...] = _BUILTIN

# Every provider's readers of reply text (`capture_io`), in the order of `CLIENTS`.
_REPLIES: tuple[PieceReader, ...] = tuple(spec.reply for spec in CLIENTS.values() if spec.reply is not None)
_DELTAS: tuple[PieceReader, ...] = tuple(s.reply_delta for s in CLIENTS.values() if s.reply_delta is not None)


def _first(readers: tuple[PieceReader, ...], obj: Any) -> tuple[Piece, ...] | None:
    for read in readers:
        try:
            found = read(obj)
        except Exception:  # a property that raises: not this shape
            continue
        if found is not None:
            return found
    return None


def reply_of(obj: Any) -> tuple[Piece, ...] | None:
    """The pieces of the reply text of a provider's response (`usage._text.Piece`), read by the
    first provider that knows its shape; None when none does. Never raises."""
    return _first(_REPLIES, obj)


def delta_of(item: Any) -> tuple[Piece, ...] | None:
    """The pieces of a stream item of any provider (or of a whole response yielded as an item);
    None when no provider knows its shape. Never raises. The reader that knew the last item of a
    class is tried first for the next."""
    kind: type | None = type(item)
    try:
        read = _delta_for.get(kind)
    except TypeError:  # a class whose metaclass makes it unhashable
        read, kind = None, None
    if read is not None:
        try:
            found = read(item)
        except Exception:
            found = None
        if found is not None:
            return found
    for read in _DELTAS:
        try:
            found = read(item)
        except Exception:  # a property that raises: not this shape
            continue
        if found is not None:
            if kind is not None and len(_delta_for) < 4096:
                _delta_for[kind] = read
            return found
    return _first(_REPLIES, item)


_delta_for: dict[Any, PieceReader] = {}


# Results of these types never carry usage: checked with one set lookup.
_NO_USAGE = frozenset({type(None), str, bytes, int, float, bool, complex, list, tuple, set, frozenset})


def _coerce(found: Any) -> Usage | None:
    """A user extractor may return a `Usage` or a mapping of its field names; either is checked
    like a provider's response (negative or non-integer counts are dropped)."""
    if isinstance(found, Usage):
        return Usage(
            count(found.tokens_in),
            count(found.tokens_out),
            count(found.cache_read_tokens),
            count(found.cache_write_tokens),
            name(found.model),
            name(found.provider),
            cost(found.cost_usd),
            count(found.cache_write_1h_tokens),
            count(found.web_searches),
        )
    if isinstance(found, Mapping):
        return fields.from_fields(found)
    return None


# The extractor that last matched each type, tried first next time.
_by_type: dict[type, Extractor] = {}
# Classes a shape identifies (`Shape.identifies`): their reader is final, and an instance it finds
# nothing in has no usage. Without this, every chunk of an OpenAI stream but the last would be
# offered to each extractor in turn, most of the time spent in pydantic raising AttributeError for
# fields the class does not have.
_final: set[type] = set()


def _identified(kind: type, shapes: tuple[Shape, ...] = SHAPES) -> Reader | None:
    """The reader of the first shape that identifies `kind` from its declared fields (a pydantic
    model's or a dataclass's), or None."""
    declared = getattr(kind, "__pydantic_fields__", None) or getattr(kind, "__dataclass_fields__", None)
    if not isinstance(declared, Mapping):
        return None
    for shape in shapes:
        if (
            shape.identifies
            and all(field in declared for field in shape.identifies)
            and not any(declares(kind, attr) for attr in shape.unless)
        ):
            return shape.fixed or shape.extract
    return None


# Classes no shape identifies, remembered (it depends on the class alone): asked for each value
# of a class without a reader yet, a dict or a class whose values have carried no usage so far.
_unidentified: set[type] = set()


def _offered(kind: type, shapes: tuple[Shape, ...] = SHAPES) -> tuple[Reader, ...] | None:
    """For a pydantic class, the extractors of the shapes whose `looks_for` fields it declares (as
    fields or properties); None for any other class. Asking a pydantic model for a field it does
    not have raises inside pydantic, which made every Anthropic stream event without usage slow."""
    declared = getattr(kind, "__pydantic_fields__", None)
    if not isinstance(declared, Mapping):
        return None
    return tuple(
        shape.extract for shape in shapes if any(field in declared or hasattr(kind, field) for field in shape.looks_for)
    )


def extract(obj: Any) -> Usage | None:
    """Usage reported by `obj`, or None. Never raises.

    `obj` is read by the user's extractors (`register_extractor`) first, then by the built-in
    shapes: OpenAI chat completions and Responses, Anthropic messages and stream events, Ollama
    responses, and results with `tokens_in` / `tokens_out` / `cost_usd` fields. A `Usage` is
    returned as is, once checked.

    Example:
        >>> found = extract({"usage": {"prompt_tokens": 3, "completion_tokens": 4}, "model": "gpt-4o-mini"})
        >>> found.tokens_in, found.tokens_out, found.model
        (3, 4, 'gpt-4o-mini')
    """
    kind = type(obj)
    try:
        if kind in _NO_USAGE:
            return None
    except TypeError:  # a class whose metaclass makes it unhashable: no caching for it
        return _search(obj, None)
    if kind is Usage:  # returned by the user's function: checked like any other report
        usage = _coerce(obj)
        return usage if usage is not None and usage.reported else None
    if kind is dict and not _user:  # its keys say which shapes can read it
        return _read_dict(obj)
    # The extractor that matched this type last time is tried first; not for mappings, whose
    # shape varies from one value to the next, nor when user extractors must be tried first.
    fn = None if _user else _by_type.get(kind)
    if fn is None and not _user and kind not in _unidentified and len(_by_type) < 4096:
        try:
            fn = _identified(kind)
        except Exception:  # an odd class: searched like any other
            fn = None
        if fn is not None:
            _by_type[kind] = fn
            _final.add(kind)
        elif len(_unidentified) < 4096:
            _unidentified.add(kind)
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


# --- dicts: classified by which of the shapes' `looks_for` keys they hold ----------------------

#: Every key some shape looks for, in a fixed order: a dict's signature is which of them it holds.
_KEYS: tuple[str, ...] = tuple(sorted({key for shape in SHAPES for key in shape.looks_for}))
# The readers a dict of each signature is offered: the shapes, in chain order, one of whose
# `looks_for` keys it holds. A shape reads a dict's fields by key (`values.get`), so one holding
# none of them cannot find anything in it: the chain for a signature is the whole chain without
# the shapes that would return None, and reads every dict exactly as the whole chain does.
_dict_chains: dict[tuple[bool, ...], tuple[Reader, ...]] = {}
# A dict's signature: ``lambda d: ("cost_usd" in d, "eval_count" in d, ...)``, written out from
# `_KEYS` (strings, as `Shape` checks; written with repr): about twice as fast as
# ``tuple(map(d.__contains__, _KEYS))``, on every dict a tracked function returns.
_signature: Callable[[dict[Any, Any]], tuple[bool, ...]] = eval(
    "lambda d: (" + "".join(f"{key!r} in d, " for key in _KEYS) + ")"
)


def _dict_chain(signature: tuple[bool, ...]) -> tuple[Reader, ...]:
    held = {key for key, present in zip(_KEYS, signature, strict=True) if present}
    chain = tuple(shape.extract for shape in SHAPES if not held.isdisjoint(shape.looks_for))
    _dict_chains[signature] = chain  # at most 2 ** len(_KEYS) entries
    return chain


def _read_dict(obj: dict[Any, Any]) -> Usage | None:
    """`extract` for a plain dict (raw JSON, a user's dict, LiteLLM's, Ollama's and Anthropic's
    dict forms) without user extractors: offered only to the shapes whose keys it holds."""
    try:
        signature = _signature(obj)
    except Exception:  # a key whose __eq__ raises, met by one of the keys looked for
        return _search(obj, None)
    chain = _dict_chains.get(signature)
    if chain is None:
        chain = _dict_chain(signature)
    for fn in chain:
        try:
            found = fn(obj)
        except Exception:  # a value whose __eq__ or __index__ raises: not this shape
            continue
        if found is not None:  # the built-in extractors return only reported usage
            return found
    return None


def _fixed_shape(kind: type) -> bool:
    """Whether the class fixes its fields (pydantic models, dataclasses): only then can the
    extractor that matched one instance be tried first for the next, because no extractor before
    it in the chain can match a later instance. Open shapes (dicts, SimpleNamespace, plain
    objects) are searched every time."""
    return hasattr(kind, "model_fields") or hasattr(kind, "__dataclass_fields__")


_chain_for: dict[type, tuple[Extractor, ...]] = {}


def _chain_of(obj: Any, kind: type | None) -> tuple[Extractor, ...]:
    """The extractors to try for `obj`: all of them, but for a pydantic model only those its class
    is `_offered`. An instance holding extra (undeclared) fields is offered to all."""
    if kind is None or _user:
        return _chain
    chain = _chain_for.get(kind)
    if chain is None:
        try:
            chain = _offered(kind)
        except Exception:  # an odd class: every extractor, as before
            chain = None
        if chain is None:
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
