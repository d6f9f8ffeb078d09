"""Hypothesis strategies shared by the tests: JSON-like values, odd objects, bad keys, usage-ish results."""

from __future__ import annotations

import math
import types
from typing import Any

from hypothesis import strategies as st

import tracked

# --- leaves -----------------------------------------------------------------------------------

#: Text without lone surrogates (those are tested apart, as fixed cases), with every other
#: category: control characters, NUL, bidi overrides, private use, astral planes.
weird_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)

#: Long strings, built cheaply (Hypothesis draws a few characters, not 100 000).
long_text = st.builds(
    lambda piece, n: piece * n,
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=3),
    st.integers(2_000, 40_000),
)

#: Integers around and past what JSON readers and W&B hold exactly (2**63), and far past a float.
edge_ints = st.sampled_from(
    [0, -1, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30, -(10**400), 10**400]
)
any_ints = st.one_of(st.integers(), st.integers(min_value=2**63 - 3, max_value=2**63 + 3), edge_ints)

#: Floats with NaN, both infinities, -0.0, subnormals and the largest float.
any_floats = st.one_of(
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308, -1.7976931348623157e308]),
)

json_leaves = st.one_of(st.none(), st.booleans(), any_ints, edge_ints, any_floats, weird_text, long_text)

#: Keys of a JSON object: any text, the empty string and W&B-looking keys included.
json_keys = st.one_of(weird_text, st.sampled_from(["", "_step", "_type", "a.b", "a/b", "_wandb", "v"]))

#: JSON-like values: leaves, lists and string-keyed dicts, nested.
json_values = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(json_keys, children, max_size=4),
    ),
    max_leaves=12,
)


# --- values JSON cannot hold ----------------------------------------------------------------


class RaisingRepr:
    """An object whose `repr` raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class RaisingEverything:
    """An object whose `repr`, `str`, `float`, `__eq__` and attribute reads all raise."""

    def __repr__(self) -> str:
        raise ValueError("repr")

    def __str__(self) -> str:
        raise ValueError("str")

    def __float__(self) -> float:
        # TypeError, as float() raises for most objects: other exception types break usage.extract of
        # a Usage holding this object (a known bug, tested apart in test_bad_input.py).
        raise TypeError("float")

    def __eq__(self, other: object) -> bool:
        raise TypeError("eq")

    __hash__ = object.__hash__

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no attribute {name}")


class Floaty:
    """Not numpy, but converts to float: must not be taken for a number."""

    def __float__(self) -> float:
        return 1.5

    def __repr__(self) -> str:
        return "Floaty()"


def nested_list(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def nested_dict(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


#: Depths around the SDK's nesting limit, and one so deep that even `repr` gives up (but never in
#: between, where whether `repr` hits the recursion limit depends on the stack depth of the caller).
deep_values = st.builds(
    lambda make, depth, leaf: make(depth, leaf),
    st.sampled_from([nested_list, nested_dict]),
    st.one_of(st.integers(25, 40), st.integers(60, 150), st.just(5_000)),
    st.one_of(st.integers(), st.just(b"x"), st.just(math.nan), st.just({1: "non-string key"})),
)

odd_leaves = st.one_of(
    st.binary(max_size=20),
    st.builds(object),
    st.builds(RaisingRepr),
    st.builds(RaisingEverything),
    st.builds(Floaty),
    st.sets(st.integers(), max_size=3),
    st.frozensets(st.integers(), max_size=3),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
    st.builds(bytearray, st.binary(max_size=5)),
    st.just(Ellipsis),
    st.just(print),
    st.just(int),
    st.builds(types.SimpleNamespace, a=st.integers()),
)

#: Anything a user may hand over: JSON-like values, odd objects, tuples and mapping proxies, mixed
#: and nested, and deep nesting.
any_values = st.one_of(
    json_values,
    odd_leaves,
    deep_values,
    st.recursive(
        st.one_of(json_leaves, odd_leaves),
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(json_keys, children, max_size=3),
            st.dictionaries(json_keys, children, max_size=3).map(types.MappingProxyType),
        ),
        max_leaves=8,
    ),
)

# --- mappings with a non-string key somewhere -------------------------------------------------

non_string_keys = st.one_of(
    st.integers(),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.binary(max_size=4),
    st.tuples(st.integers()),
    st.frozensets(st.integers(), max_size=2),
)


@st.composite
def _with_bad_key(draw: Any) -> dict[Any, Any]:
    bad = draw(st.dictionaries(non_string_keys, json_values, min_size=1, max_size=3))
    good = draw(st.dictionaries(json_keys, json_values, max_size=2))
    depth = draw(st.integers(0, 3))
    merged: dict[Any, Any] = {**good, **bad}
    for _ in range(depth):
        merged = {"wrap": merged}
    return merged


#: A dict with at least one non-string key, at the top or nested up to three levels down.
bad_key_dicts = _with_bad_key()


# --- arguments to add_usage ------------------------------------------------------------------

good_counts = st.one_of(st.none(), st.integers(0, 10**7), st.sampled_from([0, 2**63, 10**30]))
bad_counts = st.one_of(
    st.integers(max_value=-1),
    st.sampled_from([True, False, 1.0, 2.5, -0.0, math.nan, "3", b"3", [3]]),
)
good_names = st.one_of(st.none(), weird_text.filter(bool), st.sampled_from(["gpt-4o", "openai", "ollama"]))
bad_names = st.sampled_from(["", 3, 1.5, b"gpt-4o", ["gpt-4o"], True])
good_costs = st.one_of(st.none(), st.floats(0, 1e6), st.integers(0, 10**300), st.sampled_from([0, 0.0, 1e308]))
# Integers past the float range are left out: add_usage(cost_usd=10**400) is a known bug, tested
# apart in test_bad_input.py.
bad_costs = st.one_of(
    st.floats(max_value=-1e-300),
    st.sampled_from([math.nan, math.inf, -math.inf, True, False, "1.0", b"1", [1.0], -1]),
)
_COUNT_FIELDS = ("tokens_in", "tokens_out", "cache_read_tokens", "cache_write_tokens")
_good_usage = st.fixed_dictionaries(
    {},
    optional={
        **{field: good_counts for field in _COUNT_FIELDS},
        "model": good_names,
        "provider": good_names,
        "cost_usd": good_costs,
    },
)
_bad_value_for = {
    **{field: bad_counts for field in _COUNT_FIELDS},
    "model": bad_names,
    "provider": bad_names,
    "cost_usd": bad_costs,
}


@st.composite
def _usage_kwargs(draw: Any) -> dict[str, Any]:
    kwargs = draw(_good_usage)
    if draw(st.integers(0, 2)) == 0:  # a third of them with one bad figure
        field = draw(st.sampled_from(sorted(_bad_value_for)))
        kwargs[field] = draw(_bad_value_for[field])
    return kwargs


#: Keyword arguments for `Call.add_usage`: mostly valid, a third with one bad figure.
usage_kwargs = _usage_kwargs()

#: Counts and names as providers may report them, good and bad.
count_args = st.one_of(good_counts, bad_counts)
name_args = st.one_of(good_names, bad_names)

# --- results that may or may not carry usage --------------------------------------------------

_usage_fields = [
    "usage", "tokens_in", "tokens_out", "cost_usd", "model", "provider", "prompt_tokens", "completion_tokens",
    "input_tokens", "output_tokens", "prompt_tokens_details", "cached_tokens", "cache_write_tokens",
    "cache_read_input_tokens", "cache_creation_input_tokens", "prompt_eval_count", "eval_count", "type",
    "message", "object", "input_tokens_details", "_hidden_params", "response", "server_tool_use",
    "web_search_requests", "cache_creation", "ephemeral_1h_input_tokens",
]  # fmt: skip
_usage_values = st.one_of(
    count_args,
    any_floats,
    any_ints,
    name_args,
    st.sampled_from(["message", "message_start", "message_delta", "response", "chat.completion", "response.completed"]),
    odd_leaves,
)


def _usage_dict(children: Any) -> Any:
    return st.dictionaries(st.sampled_from(_usage_fields), st.one_of(_usage_values, children), max_size=6)


def _to_namespace(value: Any) -> Any:
    if isinstance(value, dict):
        return types.SimpleNamespace(**{k: _to_namespace(v) for k, v in value.items()})
    return value


_usage_dicts = st.recursive(_usage_dict(st.nothing()), _usage_dict, max_leaves=10)
#: Provider-response-like dicts, nested, with arbitrary values in their usage fields.
usage_dicts = _usage_dicts

#: Provider-response-like dicts and objects with arbitrary values in their usage fields,
#: `tracked.Usage` tuples with arbitrary fields, and anything else.
usage_like = st.one_of(
    _usage_dicts,
    _usage_dicts.map(_to_namespace),
    st.builds(
        tracked.Usage,
        _usage_values,
        _usage_values,
        _usage_values,
        _usage_values,
        _usage_values,
        _usage_values,
        _usage_values,
    ),
    any_values,
)
