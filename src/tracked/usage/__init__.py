"""Token usage read from what a call returns, by duck-typing (no provider package is imported).

One module per provider, each declaring its response shapes (`Shape`) next to their extractors:
`openai` (chat completions, the Responses API), `anthropic` (messages, stream events), `ollama`,
`litellm` (the cost LiteLLM reports beside an OpenAI chat shape) and `fields` (a result's own
`tokens_in` / `tokens_out` / `cost_usd`). `values` checks every value read; `_registry` lists the
shapes in chain order and derives the fast paths from their declarations.

Every extractor returns a `Usage` or `None`. `extract` guards them all, so that neither a value
whose properties raise nor a user's extractor can break a call: it never raises, whatever it is given.
"""

from __future__ import annotations

from ._registry import _unregister_all as _unregister_all  # for the tests' clean state
from ._registry import extract, register_extractor
from ._types import Usage, merge

__all__ = ["Usage", "extract", "merge", "register_extractor"]
