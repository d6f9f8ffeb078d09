"""What a provider's stream item is, by duck-typing: an item of an LLM stream, and whether it is the
one carrying the stream's final usage (a stream left after it has complete usage).

OpenAI's chat chunks (`object == "chat.completion.chunk"`; the usage chunk has `usage`) and
Responses events (`type` "response.*"; the final usage is in "response.completed", "incomplete"
or "failed"), Anthropic's events (`message_start`, `content_block_*`, `message_delta` with the
final usage, `message_stop`), Ollama's parts (`done` and `model`; the `done` one has the counts).
"""

from __future__ import annotations

from typing import Any

__all__ = ["FINAL", "ITEM", "NOT_AN_ITEM", "stream_item"]

NOT_AN_ITEM, ITEM, FINAL = 0, 1, 2

_FINAL_TYPES = frozenset({"message_delta", "response.completed", "response.incomplete", "response.failed"})
_PLAIN = frozenset({str, bytes, int, float, bool, type(None), dict, list, tuple})


def stream_item(item: Any) -> int:
    """`FINAL` for the item with a stream's final usage, `ITEM` for any other item of a provider's
    LLM stream, `NOT_AN_ITEM` for anything else (a string a generator yields, a plain value)."""
    if type(item) in _PLAIN:
        return NOT_AN_ITEM
    try:
        kind = getattr(item, "type", None)
        if isinstance(kind, str):
            if kind in _FINAL_TYPES:
                return FINAL
            return ITEM if kind.startswith(("message_", "content_block_", "response.")) else NOT_AN_ITEM
        if getattr(item, "object", None) == "chat.completion.chunk":
            return FINAL if getattr(item, "usage", None) is not None else ITEM
        done = getattr(item, "done", None)
        if isinstance(done, bool) and getattr(item, "model", None) is not None:
            return FINAL if done else ITEM
    except Exception:
        return NOT_AN_ITEM
    return NOT_AN_ITEM
