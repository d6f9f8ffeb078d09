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
