"""Reading and checking the values a response reports: nothing a provider sends is trusted.

Fields are read from mappings (by key) and objects (by attribute) alike, and a read never raises.
Counts must be non-negative integers, costs finite non-negative numbers and names non-empty
strings of at most 256 characters; anything else reads as `None` ("not reported").

Internal to `tracked`: the names are public for the provider modules beside this one and for
`tracked.harness`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Any

__all__ = ["add", "cost", "count", "declares", "get", "is_mapping", "name", "two"]

# Whether a type is a Mapping, remembered: an ABC isinstance check per field read is too slow.
_is_mapping: dict[type, bool] = {dict: True}


def is_mapping(obj: Any) -> bool:
    """Whether `obj` is a `Mapping` (its fields are read by key), remembered per type."""
    kind = type(obj)
    mapping = _is_mapping.get(kind)
    if mapping is None:
        mapping = isinstance(obj, Mapping)
        if len(_is_mapping) < 4096:
            _is_mapping[kind] = mapping
    return mapping


def get(obj: Any, key: str) -> Any:
    """`obj[key]` for a mapping, `obj.key` otherwise; `None` when missing or unreadable.

    A property that raises is not caught here: the extractors are guarded where they are called.
    """
    if obj is None:
        return None
    mapping = _is_mapping.get(type(obj))
    if mapping is None:
        mapping = is_mapping(obj)
    if mapping:
        try:
            return obj.get(key)
        except Exception:  # unhashable-key mappings, odd user classes
            return None
    return getattr(obj, key, None)


def two(obj: Any, a: str, b: str) -> tuple[Any, Any]:
    """`get(obj, a), get(obj, b)` at once (the extractors' hot path reads pairs)."""
    if obj is None:
        return None, None
    mapping = _is_mapping.get(type(obj))
    if mapping is None:
        mapping = is_mapping(obj)
    if mapping:
        try:
            return obj.get(a), obj.get(b)
        except Exception:
            return None, None
    return getattr(obj, a, None), getattr(obj, b, None)


def count(value: Any) -> int | None:
    """A token count: a non-negative `int` (whole floats and `__index__` integers are converted)."""
    if value is None or isinstance(value, bool):
        return None
    if type(value) is int:
        return value if value >= 0 else None
    if isinstance(value, float):
        if math.isfinite(value) and value >= 0 and value == int(value):
            return int(value)
        return None
    try:
        n = operator.index(value)  # numpy integers and friends
    except TypeError:
        return None
    return n if n >= 0 else None


def cost(value: Any) -> float | None:
    """A cost in USD: any number `float()` accepts, if finite and non-negative."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except Exception:  # whatever a user's __float__ raises
        return None
    return f if math.isfinite(f) and f >= 0 else None


def name(value: Any) -> str | None:
    """A model or provider name: a string of 1 to 256 characters."""
    if isinstance(value, str) and 0 < len(value) <= 256:
        return value
    return None


def add(*values: int | None) -> int | None:
    """The sum of the counts present, or `None` if there is none."""
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def declares(kind: type, attr: str) -> bool:
    """Whether a class declares `attr` as a class attribute or a pydantic private attribute
    (read from the classes' namespaces: asking a pydantic class for a missing attribute raises)."""
    return any(attr in vars(c) or attr in (vars(c).get("__private_attributes__") or ()) for c in kind.__mro__)
