"""`Usage`, what every extractor returns, and the signature of an extractor."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple


class Usage(NamedTuple):
    """Token usage (and optionally cost) reported by one call; `None` means "not reported".

    `tokens_in` counts every input token, cached ones included (as OpenAI and `genai-prices` do);
    `cache_read_tokens` and `cache_write_tokens` say how many of them were cache reads or writes.
    """

    tokens_in: int | None = None
    tokens_out: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    model: str | None = None
    provider: str | None = None
    cost_usd: float | None = None

    @property
    def reported(self) -> bool:
        """Whether any count or cost is present."""
        return self.tokens_in is not None or self.tokens_out is not None or self.cost_usd is not None


def merge(old: Usage | None, new: Usage) -> Usage:
    """Stream semantics: later events carry cumulative counts, so present fields replace old ones."""
    if old is None:
        return new
    return Usage._make(o if n is None else n for o, n in zip(old, new, strict=True))


# A Usage built without the NamedTuple's Python-level __new__, which is several times slower with
# keywords; the extractors' hot path. Arguments: `new(Usage, (tokens_in, tokens_out,
# cache_read_tokens, cache_write_tokens, model, provider, cost_usd))`.
new = tuple.__new__

#: A user's extractor: any value in, a `Usage`, a mapping of its field names, or `None` out.
Extractor = Callable[[Any], "Usage | Mapping[str, Any] | None"]
