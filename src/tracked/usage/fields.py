"""The user's own fields: a harness result (dataclass, object or mapping) reporting its totals as
`tokens_in`, `tokens_out`, `cost_usd`, `model` and `provider`.

Also how a mapping returned by a user's extractor is read.
"""

from __future__ import annotations

from typing import Any

from ._types import Shape, Usage, new
from .values import cost, count, get, name

__all__ = ["FIELDS", "from_fields"]


def from_fields(obj: Any) -> Usage | None:
    """Usage from `tokens_in`, `tokens_out` and `cost_usd` (USD, as reported: it is not priced
    again), with `model` and `provider`; `None` when the counts and cost are all missing or zero."""
    if type(obj) is not dict:
        return _from_fields(obj)
    try:  # the most frequent mapping, read directly (as `get` reads it)
        tokens_in, tokens_out, cost_usd = obj.get("tokens_in"), obj.get("tokens_out"), obj.get("cost_usd")
        model, provider = obj.get("model"), obj.get("provider")
    except Exception:  # a key whose __eq__ raises: read field by field
        return _from_fields(obj)
    # The usual values checked inline; anything else as `count`, `cost` and `name` check it.
    if not (type(tokens_in) is int and tokens_in >= 0):
        tokens_in = count(tokens_in)
    if not (type(tokens_out) is int and tokens_out >= 0):
        tokens_out = count(tokens_out)
    if cost_usd is not None:
        cost_usd = cost(cost_usd)
    if not tokens_in and not tokens_out and not cost_usd:
        return None
    return new(Usage, (tokens_in, tokens_out, None, None, name(model), name(provider), cost_usd, None, None))


def _from_fields(obj: Any) -> Usage | None:
    """`from_fields` for any value, field by field."""
    tokens_in = count(get(obj, "tokens_in"))
    tokens_out = count(get(obj, "tokens_out"))
    cost_usd = cost(get(obj, "cost_usd"))
    # All zero is a result whose fields were never filled in (dataclass defaults), not a report:
    # the call's children, if any, are its usage.
    if not tokens_in and not tokens_out and not cost_usd:
        return None
    model, provider = name(get(obj, "model")), name(get(obj, "provider"))
    return new(Usage, (tokens_in, tokens_out, None, None, model, provider, cost_usd, None, None))


FIELDS = Shape("fields", from_fields, looks_for=("tokens_in", "tokens_out", "cost_usd"))
