"""What `capture_io` records: a call's inputs and output, JSON-ready, truncated, secrets redacted.

A `@tracked` function's inputs are its arguments; an instrumented request's are the messages it
sent, read by its provider's module (`usage/<provider>.py`: `inputs`). The output is the reply text
of a provider's response or stream (the provider modules' `reply` and `reply_delta` pieces, put
together here by `Reply`), the text a generator yielded, else a snapshot of the returned value.

Strings are cut at `config.io_max_chars` (with the count of characters left out) after values
that look like provider keys are replaced by ``[REDACTED]``; values under secret-like names are
redacted whole.
"""

from __future__ import annotations

import json
from typing import Any

from ._config import config, internal_error
from ._values import _SECRET_NAME, _SECRET_VALUE, REDACTED
from .usage._registry import delta_of, reply_of
from .usage._text import TOOL, PieceReader

__all__ = ["Reply", "capture_arguments", "capture_request", "clip", "output_of", "snapshot"]

_MAX_ITEMS = 50  # list items, messages, a reply's parts, non-text items yielded
_SLACK = 256  # characters kept past the limit, so that a key cut at the limit is still seen whole


def clip(text: str, missing: int = 0) -> str:
    """`text` with provider keys redacted, cut at `config.io_max_chars`; `missing` counts
    characters of the text already left out (not kept while a stream was read)."""
    text = _SECRET_VALUE.sub(REDACTED, text)
    limit = config.io_max_chars
    total = len(text) + missing
    return text if total <= limit else text[:limit] + f"...[{total - limit} more chars]"


def snapshot(value: Any, depth: int = 0) -> Any:
    """A JSON-ready copy of `value` for the record: small, truncated, with secrets redacted."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return clip(value)
    if isinstance(value, dict):
        if depth >= 3:  # deeper: a summary, never a repr that could hold a secret-named key
            return f"<dict of {len(value)} items>"
        items = list(value.items())[:_MAX_ITEMS]
        return {str(k): REDACTED if _SECRET_NAME.search(str(k)) else snapshot(v, depth + 1) for k, v in items}
    if isinstance(value, (list, tuple)):
        if depth >= 3:
            return f"<{type(value).__name__} of {len(value)} items>"
        return [snapshot(v, depth + 1) for v in value[:_MAX_ITEMS]]
    try:
        text = repr(value)
    except Exception:
        text = f"<unrepresentable {type(value).__name__}>"
    return clip(text)


def capture_arguments(named: dict[str, Any]) -> dict[str, Any]:
    """A `@tracked` function's arguments, by parameter name, for the record."""
    return {k: REDACTED if _SECRET_NAME.search(k) else snapshot(v) for k, v in named.items()}


def capture_request(read: Any, call_name: str, body: Any) -> dict[str, Any]:
    """What an instrumented request sent, for the record: its provider's reading of the body
    (``{"messages": [{"role", "content"}, ...]}`` or ``{"input": [text, ...]}``), each text
    clipped; at most 50 messages (the first, a note of how many were left out, the last 48).
    ``{}`` when the body cannot be read."""
    found = read(call_name, body) if read is not None else None
    if not isinstance(found, dict):
        return {}
    out: dict[str, Any] = {}
    messages = found.get("messages")
    if isinstance(messages, list):
        if len(messages) > _MAX_ITEMS:  # the system prompt and the latest turns: the part worth reading
            note = {"role": "tracked", "content": f"[{len(messages) - _MAX_ITEMS + 1} messages left out]"}
            messages = [messages[0], note, *messages[-(_MAX_ITEMS - 2) :]]
        out["messages"] = [{"role": clip(str(m.get("role"))), "content": clip(str(m.get("content")))} for m in messages]
    texts = found.get("input")
    if isinstance(texts, list):
        out["input"] = [clip(t) for t in texts[:_MAX_ITEMS]]
    return out


class _Part:
    """One text of a reply, or one tool call: its fragments as they came, up to the limit."""

    __slots__ = ("args", "dropped", "kept", "name", "tool")

    def __init__(self, tool: bool) -> None:
        self.tool = tool
        self.name: list[str] = []
        self.args: list[str] = []  # a tool call's arguments, or a text's fragments
        self.kept = 0
        self.dropped = 0

    def add(self, text: str) -> None:
        if self.kept > config.io_max_chars + _SLACK:
            self.dropped += len(text)
            return
        self.args.append(text)
        self.kept += len(text)

    def render(self) -> str:
        body = "".join(self.args)
        if not self.tool:
            return body
        if not self.dropped:
            try:  # the same JSON text whether it came whole or in fragments
                body = json.dumps(json.loads(body or "{}"), ensure_ascii=False)
            except Exception:
                pass
        return f"{TOOL} {''.join(self.name) or '?'}({body})"


class Reply:
    """A call's reply, put together from a provider's pieces (`usage._text.Piece`): a response's
    all at once, a stream's item by item as the code iterates it. A generator's items that are
    strings are text too; other items no provider knows are kept as snapshots (up to 50).

    Its `output()`: the reply text (texts joined, then one line per tool call), clipped; or the
    list of other items; or None when nothing came.
    """

    __slots__ = ("_delta", "_items", "_missing", "_open", "_parts", "_read", "_seen")

    def __init__(self, delta: PieceReader | None = None, read: PieceReader | None = None) -> None:
        self._delta = delta or delta_of
        self._read = read or reply_of
        self._parts: list[_Part] = []
        self._open: dict[Any, _Part] = {}
        self._items: list[Any] = []
        self._missing = 0  # items and parts beyond the bound
        self._seen = False  # text or a provider's item came: the output is text

    def item(self, item: Any) -> None:
        """One item of a stream or of a generator. Never raises."""
        try:
            if type(item) is str:
                self._seen = True
                self._put(None, "text", item)
                return
            pieces = self._delta(item)
            if pieces is None:
                if len(self._items) < _MAX_ITEMS:
                    self._items.append(snapshot(item))
                return
            self._seen = True
            for piece in pieces:
                self._put(*piece)
        except Exception as exc:
            internal_error("capturing a stream item", exc)

    def response(self, obj: Any) -> bool:
        """A whole response; False when no provider knows its shape. Never raises."""
        try:
            pieces = self._read(obj)
            if pieces is None:
                return False
            self._seen = True
            for piece in pieces:
                self._put(*piece)
            return True
        except Exception as exc:
            internal_error("capturing a reply", exc)
            return False

    def _put(self, slot: Any, kind: str, text: str) -> None:
        if not text:
            return
        part = self._open.get(slot)
        if part is None or (kind == "name" and part.name):  # a tool call's name starts a new call
            if len(self._parts) >= _MAX_ITEMS:
                self._missing += len(text)
                return
            part = self._open[slot] = _Part(kind != "text")
            self._parts.append(part)
        if kind == "name":
            part.name.append(text)
        else:
            part.add(text)

    def output(self) -> Any:
        """The reply text, clipped (see the class); None when nothing came."""
        if not self._seen:
            return self._items or None
        texts = [p.render() for p in self._parts if not p.tool]
        lines = ["\n\n".join(t for t in texts if t)] if any(texts) else []
        lines.extend(p.render() for p in self._parts if p.tool)
        return clip("\n".join(lines), self._missing + sum(p.dropped for p in self._parts))


# Returned values no provider's response can be.
_PLAIN = frozenset({type(None), str, bytes, int, float, bool, complex, list, tuple, set, frozenset})


def output_of(result: Any) -> Any:
    """What a call returned, for the record: a provider's response as its reply text, anything
    else as a snapshot."""
    if type(result) not in _PLAIN:
        reply = Reply()
        if reply.response(result):
            return reply.output()
    return snapshot(result)
