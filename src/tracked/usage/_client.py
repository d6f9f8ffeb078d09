"""How a provider library's clients are instrumented: the declaration each provider module makes.

`tracked.instrument` wraps one method of a library's client classes (or of one client): the method
every request goes through. Each provider module declares which classes and method, and which
requests are LLM calls (`endpoint`); the wrapping itself is written once, in `tracked._instrument`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._text import PieceReader

__all__ = ["ClientSpec", "Endpoint", "base_url_of", "request_options", "watch_parsed"]


# eq=False (compared by identity, hashed by id): no generated __eq__ and __hash__ to build at import.
# Not frozen: one is made for every request, and a frozen dataclass's __init__ sets each field
# through object.__setattr__ (730 ns against about 200); nothing changes one after it is made.
@dataclass(slots=True, eq=False)
class Endpoint:
    """One request that is an LLM call.

    Attributes:
        name: The call's name, for the method the user called (``"openai.chat.completions.create"``).
        model: The model the request names, if any (the response's wins).
        stream: Whether the response is a stream, read while the user iterates it.
        ask_usage: For an OpenAI chat stream that did not ask for usage: ask for it
            (`stream_options.include_usage`) and hide the usage-only chunk from the user's code.
        body: The request's JSON body (read for the messages sent when `capture_io` is on).
    """

    name: str
    model: str | None
    stream: bool
    ask_usage: bool = False
    body: Any = None


@dataclass(frozen=True, slots=True, eq=False)  # as `Endpoint`
class ClientSpec:
    """The clients of one provider library, and how their requests are read.

    Attributes:
        library: The module to import (``"openai"``); imported only by `tracked.instrument`.
        provider: The provider prices are looked up for (``"openai"``).
        classes: Names of the library's client classes, sync and async (subclasses such as
            `AzureOpenAI` inherit the instrumentation of their base).
        method: The method every request goes through (``"request"``).
        endpoint: From the method's positional and keyword arguments, the `Endpoint` of a request
            that is an LLM call, else None (listing models, uploading files: not recorded).
        stream_style: ``"stream_cls"`` when the method takes the stream class to build (OpenAI,
            Anthropic: the instrumented class reads each item), ``"iterator"`` when it returns an
            iterator of items (Ollama).
        base_url: The address a client sends to (a loopback or private one is a local server).
        ask_usage: Change the request's arguments to ask the server for usage in a stream; returns
            the new keyword arguments.
        usage_only: Whether a stream item is the usage-only item the server was asked for.
        copies: Methods of a client that return a new client with other options (`with_options`,
            `copy`): on an instrumented client, they return instrumented clients.
        inputs: For `capture_io`: from an endpoint's name and its request's JSON body, what was
            sent (``{"messages": [{"role", "content"}, ...]}``, see `usage._text`), or None.
        reply: For `capture_io`: the pieces of a response's reply text (`usage._text.Piece`).
        reply_delta: For `capture_io`: the pieces of one stream item.
    """

    library: str
    provider: str
    classes: tuple[str, ...]
    method: str
    endpoint: Callable[[tuple[Any, ...], dict[str, Any]], Endpoint | None]
    stream_style: str
    base_url: Callable[[Any], str | None]
    ask_usage: Callable[[tuple[Any, ...], dict[str, Any]], None] | None = None
    usage_only: Callable[[Any], bool] | None = None
    copies: tuple[str, ...] = ()
    inputs: Callable[[str, Any], dict[str, Any] | None] | None = None
    reply: PieceReader | None = None
    reply_delta: PieceReader | None = None


def request_options(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The `options` (`FinalRequestOptions`: method, url, json_data, headers) of a call to the
    OpenAI or Anthropic client's `request(cast_to, options, *, stream, stream_cls)`, or None."""
    return kwargs.get("options") if "options" in kwargs else args[1] if len(args) > 1 else None


def watch_parsed(args: tuple[Any, ...], kwargs: dict[str, Any], seen: Callable[[Any], None]) -> None:
    """Give `seen` the response an OpenAI or Anthropic request parsed, before the request's own
    `post_parser` (`.parse(response_format=...)`) reads it: that parser may raise (a reply that
    does not validate, a length limit) after the server billed the call, whose usage is then
    only in the response it was given."""
    options = request_options(args, kwargs)
    post = getattr(options, "post_parser", None)
    if not callable(post):  # not given (the SDKs' NotGiven) for most requests
        return

    def post_parser(parsed: Any) -> Any:
        seen(parsed)
        return post(parsed)

    options.post_parser = post_parser


def base_url_of(client: Any) -> str | None:
    """The address an OpenAI or Anthropic client sends to (its `base_url`), or None."""
    url = getattr(client, "base_url", None)
    return None if url is None else str(url)
