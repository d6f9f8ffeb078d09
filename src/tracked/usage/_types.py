"""The types every provider module shares: `Usage` (what is read) and `Shape` (how a response shape
declares what it reads, so that the registry can derive its fast paths from it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple


class Usage(NamedTuple):
    """Token usage (and optionally cost) reported by one call; `None` means "not reported".

    `tokens_in` counts every input token, cached ones included (as OpenAI and `genai-prices` do);
    `cache_read_tokens` and `cache_write_tokens` say how many of them were cache reads or writes,
    and `cache_write_1h_tokens` how many of the writes were to a 1-hour cache (Anthropic's
    `cache_creation.ephemeral_1h_input_tokens`; the others are 5-minute writes), priced at their own
    rate. `web_searches` counts server-side web search requests (Anthropic's
    `server_tool_use.web_search_requests`), priced per request.
    """

    tokens_in: int | None = None
    tokens_out: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    model: str | None = None
    provider: str | None = None
    cost_usd: float | None = None
    cache_write_1h_tokens: int | None = None
    web_searches: int | None = None

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
# keywords; the extractors' hot path. Every field must be given (no defaults apply): `new(Usage,
# (tokens_in, tokens_out, cache_read_tokens, cache_write_tokens, model, provider, cost_usd,
# cache_write_1h_tokens, web_searches))`.
new = tuple.__new__

#: A user's extractor: any value in, a `Usage`, a mapping of its field names, or `None` out.
Extractor = Callable[[Any], "Usage | Mapping[str, Any] | None"]
#: A built-in extractor: any value in, `None` or a `Usage` that is reported (`Usage.reported`) and
#: already checked. Only a property of the value that raises can make it raise; every call is
#: guarded by the registry.
Reader = Callable[[Any], "Usage | None"]


@dataclass(frozen=True, slots=True)
class Shape:
    """One response shape: its extractor, and the fields it reads and is recognised by.

    The registry derives its fast paths from these declarations alone: a pydantic class is offered
    only to the shapes `looks_for` names a field of, and a class declaring every field in
    `identifies` is read by `fixed` alone.

    Attributes:
        name: What the shape is, for messages and tests (``"openai.chat"``).
        extract: The extractor: any value in, a reported `Usage` or `None` out.
        looks_for: Fields (or properties, or a mapping's keys) of which a value must have at least
            one for `extract` to find anything. Required and non-empty: a pydantic class declaring
            none of them is never offered to `extract`, because asking pydantic for a missing field
            raises inside it, and neither is a plain dict holding none of them as keys.
        identifies: Fields that, all declared by a pydantic model or dataclass, make its instances
            this shape and no other: they are read by `fixed`, and one it finds nothing in has no
            usage (no other shape is tried).
        fixed: The reader for the classes `identifies` recognises (default: `extract`).
        unless: Attributes whose declaration by a class (as a class attribute or a pydantic
            private attribute) keeps it from being recognised by `identifies`.

    Example:
        >>> def from_ollama(obj):
        ...     return None  # reads `prompt_eval_count` and `eval_count`
        >>> OLLAMA = Shape("ollama", from_ollama, looks_for=("prompt_eval_count", "eval_count"))
    """

    name: str
    extract: Reader
    _: KW_ONLY
    looks_for: tuple[str, ...]
    identifies: tuple[str, ...] = ()
    fixed: Reader | None = None
    unless: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not callable(self.extract):
            raise TypeError(f"Shape {self.name!r}: extract must be callable, got {self.extract!r}")
        for label in ("looks_for", "identifies", "unless"):
            names = getattr(self, label)
            if not isinstance(names, tuple) or not all(isinstance(n, str) and n for n in names):
                raise TypeError(f"Shape {self.name!r}: {label} must be a tuple of field names, got {names!r}")
        if not self.looks_for:
            raise ValueError(f"Shape {self.name!r}: looks_for must name the fields its extractor reads")
        if not self.identifies and (self.fixed is not None or self.unless):
            raise ValueError(f"Shape {self.name!r}: fixed and unless apply only with identifies")
