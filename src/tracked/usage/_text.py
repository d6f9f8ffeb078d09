"""The text of a request and of a reply, as every provider module reads it for `capture_io`.

A request's messages are read into one shape whatever the provider: a list of
``{"role": str, "content": str}`` (a system prompt given apart, as Anthropic's `system=` or the
Responses API's `instructions`, is the first message, with role ``"system"``). Parts that are not
text read as a marker (``"[image]"``), a tool call as ``"[tool call] name(arguments)"``.

A reply is read as `Piece`s: fragments of text, or of a tool call's name or arguments, each in a
slot (`None` for the reply's main text). A response gives all its pieces at once; a stream gives
them item by item, and `tracked._capture` puts them together the same way for both.

Every function here is pure and total: anything unexpected reads as nothing, never an exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from .values import get, is_mapping

__all__ = [
    "TOOL",
    "Piece",
    "PieceReader",
    "each",
    "kind_of",
    "message",
    "part_text",
    "text_of",
    "tool_args",
    "tool_call",
]

#: One fragment of a reply: (slot, kind, text). `slot` is None for the reply's main text, any other
#: hashable for another text (a second choice) or a tool call; `kind` is "text", or "name" and
#: "args" for a tool call's name and (JSON) arguments.
Piece = tuple[Any, str, str]

#: A provider's reader of a response or a stream item: its pieces (possibly none), or None when
#: the value is not one of that provider's shapes.
PieceReader = Callable[[Any], "tuple[Piece, ...] | None"]

#: The prefix of a tool call, in messages and replies alike.
TOOL = "[tool call]"


def field(obj: Any, key: str) -> Any:
    """`values.get(obj, key)`, but a pydantic model is not asked for a field its class does not
    have (asking raises inside pydantic: about 5 us, on every stream item of another shape)."""
    declared = getattr(type(obj), "__pydantic_fields__", None)
    if declared is not None and key not in declared and not hasattr(type(obj), key):
        extra = getattr(obj, "__pydantic_extra__", None)
        if not extra or key not in extra:
            return None
    return get(obj, key)


def message(role: Any, content: str) -> dict[str, str]:
    """One message of the shared shape; a role that is not a non-empty string reads as "user"."""
    return {"role": role if isinstance(role, str) and role else "user", "content": content}


def text_of(value: Any) -> str:
    """A value that should be text: itself if a string, else "" (None, numbers, objects)."""
    return value if isinstance(value, str) else ""


def tool_args(args: Any) -> str:
    """A tool call's arguments as JSON text: a string is kept (a stream sends it in fragments), a
    mapping or list is written as JSON, anything else is empty."""
    if isinstance(args, str):
        return args
    if args is None:
        return ""
    try:
        return json.dumps(args if not is_mapping(args) else dict(args), ensure_ascii=False, default=repr)
    except Exception:
        return ""


def tool_call(name: Any, args: Any) -> str:
    """A tool call as one line of text: ``[tool call] name({"city": "Paris"})`` (JSON arguments
    written the same way however the request spelled them)."""
    text = tool_args(args)
    try:
        text = json.dumps(json.loads(text), ensure_ascii=False)
    except Exception:
        pass
    return f"{TOOL} {text_of(name) or '?'}({text})"


def part_text(parts: Any, read: Callable[[Any], str | None]) -> str:
    """The text of a message's content: a string as it is, a list of parts read one by one by
    `read` (None for a part to leave out) and joined by newlines, anything else empty."""
    if isinstance(parts, str):
        return parts
    if not isinstance(parts, (list, tuple)):
        return ""
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
            continue
        try:
            text = read(part)
        except Exception:
            text = None
        if text:
            texts.append(text)
    return "\n".join(texts)


def kind_of(part: Any) -> str:
    """A content part's `type`, or ""."""
    return text_of(get(part, "type"))


def each(value: Any) -> Iterable[Any]:
    """The items of a list or tuple; nothing for anything else."""
    return value if isinstance(value, (list, tuple)) else ()
