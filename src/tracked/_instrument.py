"""`tracked.instrument(...)`: every LLM request through a provider's client is a tracked call.

Explicit, never on import. The method every request of a client goes through (declared by the
provider's module in `usage/`: `ClientSpec`) is wrapped, on one client or on the library's client
classes. A request that is an LLM call becomes a call named for the method the user called
(`openai.chat.completions.create`): a child of the running tracked call, else a row of the current
experiment, else measured and dropped. Streams are read while the user iterates them, and the call
ends when the stream is exhausted, closed, left early or collected; a stream left early is marked
`incomplete`. What the user's code sees is unchanged: the same objects, types and exceptions.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import sys
from time import perf_counter
from typing import Any

from ._call import UNKNOWN, Call
from ._capture import Reply, capture_request
from ._config import config, internal_error, warn_once
from ._forksafe import loading
from ._streams import final_usage, items, stream_class, watch, when_closed
from ._tracked import _begin, _end, _failed, _Spec
from .usage import extract, merge
from .usage._client import ClientSpec, Endpoint, request_options, watch_parsed
from .usage._registry import CLIENTS
from .usage._types import Usage

__all__ = ["adopt", "instrument", "uninstrument"]

# Set on what is wrapped (a client instance or a client class): the original method.
_ORIGINAL = "_tracked_original_request"


def instrument(
    target: Any = None, *, provider: str | None = None, stream_usage: bool = True, capture_io: bool | None = None
) -> None:
    """Record every LLM request made through a provider's client as a tracked call.

    Args:
        target: A client (`openai.OpenAI` / `AsyncOpenAI` and Azure's, `anthropic.Anthropic` /
            `AsyncAnthropic`, `ollama.Client` / `AsyncClient`); a library's name (``"openai"``,
            ``"anthropic"``, ``"ollama"``) for every client of it, made before or after; or None
            for every one of those libraries that is installed.
        provider: The price list that applies (``"openai"``, ...). By default the library's,
            except for a client whose address is a loopback or private one (a local server such
            as Ollama's, vLLM's or LM Studio's OpenAI-compatible endpoint), which is "local" and
            costs nothing.
        stream_usage: Ask an OpenAI chat stream for its usage when the code did not
            (`stream_options={"include_usage": True}`), hiding the extra usage-only chunk from the
            code. False leaves the request as it is: such a stream's usage is then unknown.
        capture_io: Record each request's messages (``inputs: {"messages": [{"role", "content"},
            ...]}``, the system prompt first) and the reply text (``output``: a stream's text as
            the code read it, a tool call as ``[tool call] name(arguments)``) in `calls.jsonl`,
            truncated at `configure(io_max_chars=...)` and with secrets redacted. None (the
            default) follows `tracked.configure(capture_io=...)` at each request.

    Raises:
        TypeError: `target` is not a client, a known library name or None.
        ImportError: a library named is not installed.

    Example:
        >>> client = openai.OpenAI()
        >>> tracked.instrument(client)
        >>> with experiment("debate"):
        ...     client.chat.completions.create(model="gpt-4o-mini", messages=[...])  # a row
    """
    if provider is not None and (not isinstance(provider, str) or not provider):
        raise TypeError(f"instrument(provider=...) must be a non-empty string, got {provider!r}")
    if capture_io is not None and not isinstance(capture_io, bool):
        raise TypeError(f"instrument(capture_io=...) must be True, False or None, got {capture_io!r}")
    options = _Options(provider, stream_usage, capture_io)
    for owner, spec in _targets(target, installed_only=target is None):
        _wrap(owner, spec, options)


def uninstrument(target: Any = None) -> None:
    """Undo `instrument` for the same target (a client, a library's name, or None for all)."""
    for owner, spec in _targets(target, installed_only=True):
        saved = vars(owner).get(_ORIGINAL)
        if saved is None:
            continue
        original, own = saved
        if isinstance(owner, type):
            if own:  # the class defined the method itself (Ollama's): put it back
                setattr(owner, spec.method, original)
            else:  # inherited: the wrapper goes, the base's method shows again
                delattr(owner, spec.method)
        else:
            owner.__dict__.pop(spec.method, None)
            for name in spec.copies:
                owner.__dict__.pop(name, None)
        delattr(owner, _ORIGINAL)


def _targets(target: Any, *, installed_only: bool) -> list[tuple[Any, ClientSpec]]:
    if target is None:
        names = [n for n in CLIENTS if importlib.util.find_spec(n) is not None]
        return [pair for n in names for pair in _targets(n, installed_only=installed_only)]
    if isinstance(target, str):
        spec = CLIENTS.get(target.lower())
        if spec is None:
            raise TypeError(f"instrument: unknown library {target!r}; known: {', '.join(CLIENTS)}")
        module = importlib.import_module(spec.library)
        return [(getattr(module, cls), spec) for cls in spec.classes]
    for spec in CLIENTS.values():
        loaded = sys.modules.get(spec.library)
        if loaded is None:
            continue
        classes = tuple(getattr(loaded, cls) for cls in spec.classes)
        if isinstance(target, classes):
            return [(target, spec)]
    raise TypeError(
        f"instrument takes an OpenAI, Anthropic or Ollama client, a library name or None, got {type(target).__name__}"
    )


def _is_async(owner: Any) -> bool:
    cls = owner if isinstance(owner, type) else type(owner)
    return cls.__name__.startswith("Async") or any(c.__name__.startswith("Async") for c in cls.__mro__)


def _original(cls: type, method: str) -> Any:
    """The method as the library defines it, under any instrumentation of `cls` or its bases."""
    for c in cls.__mro__:
        saved = vars(c).get(_ORIGINAL)
        if saved is not None:
            return saved[0]
        if method in vars(c):
            return vars(c)[method]
    return getattr(cls, method)


class _Options:
    """What `instrument` was told, for every request of the clients it wrapped."""

    __slots__ = ("capture_io", "provider", "stream_usage")

    def __init__(self, provider: str | None, stream_usage: bool, capture_io: bool | None) -> None:
        self.provider = provider
        self.stream_usage = stream_usage
        self.capture_io = capture_io


def _wrap(owner: Any, spec: ClientSpec, options: _Options) -> None:
    if _ORIGINAL in vars(owner):
        return  # already instrumented
    cls = owner if isinstance(owner, type) else type(owner)
    # Always the library's own method: a client instrumented on its own and through its class
    # is recorded once, by its own wrapper (the instance's attribute comes first).
    unbound = _original(cls, spec.method)
    setattr(owner, _ORIGINAL, (unbound, isinstance(owner, type) and spec.method in vars(owner)))
    is_async = _is_async(owner)
    make = _async_wrapper if is_async else _sync_wrapper
    wrapper = make(spec, unbound, options)
    if isinstance(owner, type):
        setattr(owner, spec.method, wrapper)
        return
    owner.__dict__[spec.method] = wrapper.__get__(owner, cls)
    for name in spec.copies:  # `with_options(...)` / `copy()` of an instrumented client: instrumented too
        copy = getattr(owner, name, None)
        if copy is not None:
            owner.__dict__[name] = _instrumenting_copy(copy, spec, options)


def _instrumenting_copy(copy: Any, spec: ClientSpec, options: _Options) -> Any:
    def copied(*args: Any, **kwargs: Any) -> Any:
        client = copy(*args, **kwargs)
        try:
            _wrap(client, spec, options)
        except Exception as exc:
            internal_error("instrumenting a copied client", exc)
        return client

    return copied


# --- one request ----------------------------------------------------------------------------------


def _provider_for(client: Any, spec: ClientSpec, provider: str | None) -> str:
    if provider is not None:
        return provider
    if spec.provider in config.local_providers:
        return spec.provider
    try:
        url = spec.base_url(client)
    except Exception:
        url = None
    if url is None:
        return spec.provider
    local = _local_urls.get(url)
    if local is None:
        local = _local_urls[url] = _is_local_url(url)
    return "local" if local else spec.provider


# Whether a client's base URL is a loopback or private address, remembered per URL.
_local_urls: dict[str, bool] = {}


def _is_local_url(url: str) -> bool:
    with loading():  # imported on first use, on the caller's thread: no fork meanwhile
        from urllib.parse import urlparse

    try:
        host = urlparse(url).hostname
    except ValueError:
        return False
    return host is not None and _is_local_host(host)


def _is_local_host(host: str) -> bool:
    with loading():
        import ipaddress

    if host in ("localhost", "host.docker.internal") or host.endswith(".local"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


_specs: dict[tuple[str, str, str | None], _Spec] = {}


def _start(client: Any, spec: ClientSpec, provider: str | None, ep: Endpoint) -> _Recorder:
    where = _provider_for(client, spec, provider)
    key = (ep.name, where, ep.model)
    call_spec = _specs.get(key)
    if call_spec is None:
        call_spec = _specs[key] = _Spec.named(ep.name, where, ep.model)
    return _Recorder(_begin(call_spec, None, (), {}), call_spec, ep.stream)


_STILL_RUNNING = "it was still running when its experiment finished"


def end_open_requests(exp: Any) -> None:
    """Before `exp` finishes: its requests not ended yet are ended (streams left in a reference
    cycle are collected first, which ends them as left), as incomplete LLM calls of unknown usage,
    so that they are in its totals; their responses, if they come later, are not read."""
    mine = list(exp._requests.values())
    if not mine:
        return
    if any(rec.stream for rec in mine):
        gc.collect()  # a stream left in a cycle ends now, as it would have when collected
    for rec in mine:
        rec.end(None, complete=False, why=_STILL_RUNNING)


class _Recorder:
    """One instrumented request (or a returned stream): its call, and what a stream has shown so far.

    `measured_below`: the stream is an instrumented request's, whose own call (a child of this
    one) reads its usage; this call only ends with it.
    """

    __slots__ = ("call", "call_args", "ended", "final_seen", "hide_usage_only", "iterating", "lazy", "measured_below",
                 "n", "parsed", "raw", "reply", "spec", "stream", "usage", "usage_only")  # fmt: skip

    def __init__(self, call: Call, spec: _Spec, stream: bool, call_args: tuple[Any, Any, Any] = ((), {}, None)) -> None:
        self.call = call
        self.spec = spec
        self.stream = stream
        self.call_args = call_args
        self.usage: Usage | None = None
        self.n = 0
        self.ended = False
        self.hide_usage_only = False
        self.usage_only: Any = None
        self.measured_below = False
        self.final_seen = False  # the item with the stream's final usage has come
        self.raw: str | None = None  # a raw-response request: "true" (with_raw_response) or "stream"
        self.parsed: Any = None  # the response as parsed before the request's `post_parser` ran
        self.iterating = False  # the code is waiting for the stream's next item
        self.lazy = False  # a stream whose request is sent only when it is first iterated
        if stream and call.parent is not None:  # a generator passing this stream on does not read it
            kin = call.parent.__dict__
            kin["_streaming_child"] = True
            kin["_open_streams"] = kin.get("_open_streams", 0) + 1  # (see `_tracked._let_left_streams_end`)
        self.reply: Reply | None = None  # capture_io: the reply text, read as the code iterates
        if call.experiment is not None:  # ended by the experiment if it is still open at its end
            call.experiment._requests[id(self)] = self

    def saw(self, parsed: Any) -> None:
        self.parsed = parsed

    def item(self, item: Any) -> bool:
        """Read one stream item; False for the usage-only chunk the code did not ask for."""
        try:
            if self.n == 0:
                self.call.ttft_s = perf_counter() - self.call._t0
            self.n += 1
            if self.reply is not None:
                self.reply.item(item)
            if self.measured_below:
                return True
            found = extract(item)
            if found is not None:
                self.usage = merge(self.usage, found)
                if not self.final_seen:
                    self.final_seen = final_usage(item)
            if self.hide_usage_only and self.usage_only is not None and self.usage_only(item):
                return False
        except Exception as exc:
            internal_error("reading a stream item", exc)
        return True

    def fail(self, exc: BaseException) -> None:
        _failed(self.call, exc)
        parsed = self.parsed
        if parsed is not None:  # the response came, and the code's parser refused it: it was billed
            self.end(parsed, complete=True)
        else:
            self.end(None, complete=True)

    def end(self, result: Any, *, complete: bool = True, why: str | None = None) -> None:
        """End the call: with `result` (a response), else with what the stream showed. A stream
        left before its final usage item has unknown usage: what it showed is not what was billed."""
        if self.ended:
            return
        self.ended = True
        call = self.call
        if call.experiment is not None:
            call.experiment._requests.pop(id(self), None)
        if self.stream and call.parent is not None:
            kin = call.parent.__dict__
            kin["_open_streams"] = kin.get("_open_streams", 1) - 1
        latency = perf_counter() - call._t0
        try:
            # A response is read here once; the call is ended with the Usage found.
            usage = self.usage if result is None else extract(result)
            if not complete:
                call.incomplete = True
                if result is None and not self.final_seen:
                    usage = None
            if self.measured_below:
                usage = None  # its child measured it
            elif self.lazy and self.n == 0 and result is None and call.error_type is None:
                usage = None  # a lazy stream dropped before its first item: no request was sent
            elif call.error_type is None and usage is None:
                call.usage_unknown = True
                call._own = UNKNOWN
                usage = None
                if why is not None:
                    how = why
                elif not self.stream:
                    how = "the response has no usage"
                elif complete:
                    how = "the stream ended without its usage"
                else:
                    how = "the stream was left before its usage came"
                warn_once(
                    ("usage-unknown", call.name),
                    f"tracked: {call.name}: {how}, so its tokens and cost are unknown (not 0)",
                )
        except Exception as exc:
            internal_error("ending an instrumented call", exc)
            usage = None
        parent = call.parent
        if result is not None and parent is not None and not parent.ended:
            # A tracked function returning this response returns what its child measured.
            # (in its __dict__: read by Call._finish only when it has children)
            parent.__dict__.setdefault("_measured", set()).add(id(result))
        if usage is not None:
            call._own = usage  # already read and checked: the call does not read it again
        reply = self.reply
        if reply is not None and result is not None:
            reply.response(result)
        args, kwargs, instance = self.call_args
        _end(call, self.spec, latency, None, args, kwargs, instance, reply)


def adopt(call: Call, spec: _Spec, result: Any, call_args: tuple[Any, Any, Any]) -> Any:
    """A `@tracked` function returned a provider's stream: its call ends when the stream does,
    with the usage the stream shows (or, for an instrumented client's stream, its child's).

    Returns what the function returns instead (the same stream object, read as it is iterated;
    for Ollama's generator, a generator over it), or None when `result` is no provider stream.
    """
    rec = _Recorder(call, spec, True, call_args)
    if call.inputs is not None:  # capture_io: the text the code reads from the stream
        rec.reply = Reply()
    iterator = getattr(result, "_iterator", None)
    if iterator is not None and hasattr(type(result), "__stream__"):  # OpenAI's and Anthropic's Stream
        # An instrumented client's stream: its own call reads the usage, this one ends with it.
        rec.measured_below = bool(getattr(result, "_tracked_watched", False))
        watch(result, rec)
        return result
    frame = getattr(result, "gi_frame", None) or getattr(result, "ag_frame", None)
    module = str(frame.f_globals.get("__name__", "")) if frame is not None else ""
    ours = items.__module__  # where an instrumented client's stream generators come from
    if module.partition(".")[0] == "ollama" or module == ours:
        rec.measured_below = module == ours  # an instrumented Ollama client's stream
        return items(result, rec)
    return None


def _parsed(result: Any) -> Any:
    """The response object of a raw response (`with_raw_response`), else the result itself."""
    parse = getattr(result, "parse", None)
    if parse is not None and hasattr(result, "http_response"):
        try:
            return parse()
        except Exception:
            return None
    return result


# --- streams ------------------------------------------------------------------------------------


# --- the wrappers -----------------------------------------------------------------------------


def _prepare(
    client: Any,
    spec: ClientSpec,
    options: _Options,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[_Recorder | None, dict[str, Any]]:
    """The recorder of a request that is an LLM call (None otherwise), and the keyword arguments
    to make it with. Never raises: a failure here only loses the telemetry."""
    try:
        ep = spec.endpoint(args, kwargs)
        if ep is None:
            return None, kwargs
        rec = _start(client, spec, options.provider, ep)
        capture = options.capture_io
        if (capture or (capture is None and config.capture_io)) and rec.call.experiment is not None:
            _capture(rec, spec, ep)  # (outside an experiment nothing is recorded: nothing to read)
        if ep.stream and spec.stream_style == "stream_cls" and kwargs.get("stream_cls") is not None:
            rec.raw = _raw_header(args, kwargs)
            # Raw lines (`with_streaming_response`) are the code's to read: the request stays as written.
            if ep.ask_usage and options.stream_usage and spec.ask_usage is not None and rec.raw != "stream":
                spec.ask_usage(args, kwargs)
                rec.hide_usage_only = True
                rec.usage_only = spec.usage_only
            if rec.raw is not None:  # the stream is made later, by `.parse()`: made as ours
                kwargs = {**kwargs, "stream_cls": stream_class(kwargs["stream_cls"], rec, _is_async(client))}
        elif not ep.stream and spec.stream_style == "stream_cls":
            watch_parsed(args, kwargs, rec.saw)
        return rec, kwargs
    except Exception as exc:
        internal_error("instrumenting a request", exc)
        return None, kwargs


def _capture(rec: _Recorder, spec: ClientSpec, ep: Endpoint) -> None:
    """capture_io: record the messages the request sends, and read the reply it gets."""
    try:
        rec.call.inputs = capture_request(spec.inputs, ep.name, ep.body)
        rec.reply = Reply(spec.reply_delta, spec.reply)
    except Exception as exc:
        internal_error("capturing a request", exc)


def _raw_header(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """The SDKs' raw-response header of the request: "true" (`with_raw_response`), "stream"
    (`with_streaming_response`), or None."""
    options = request_options(args, kwargs)
    headers = getattr(options, "headers", None)
    if not isinstance(headers, dict):
        return None
    value = headers.get("X-Stainless-Raw-Response")
    return value if isinstance(value, str) else None


def _stream_result(result: Any, rec: _Recorder, spec: ClientSpec) -> Any:
    """What an instrumented streaming request returns, read as the code iterates it."""
    if spec.stream_style == "iterator":
        rec.lazy = True  # Ollama's generator sends its request when first iterated
        return items(result, rec)
    if rec.raw is None:
        watch(result, rec)
    elif rec.raw == "stream":  # raw lines: the call ends when the response is closed
        response = getattr(result, "http_response", None)
        if response is not None:
            is_async = type(result).__name__.startswith("Async")
            when_closed(response, "aclose" if is_async else "close", rec, complete=True)
    return result


def _sync_wrapper(spec: ClientSpec, original: Any, options: _Options) -> Any:
    def request(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not config.enabled:
            return original(self, *args, **kwargs)
        rec, kwargs = _prepare(self, spec, options, args, kwargs)
        if rec is None:
            return original(self, *args, **kwargs)
        try:
            result = original(self, *args, **kwargs)
        except BaseException as exc:
            rec.fail(exc)
            raise
        if rec.stream:
            return _stream_result(result, rec, spec)
        rec.end(_parsed(result))
        return result

    request.__name__ = spec.method
    return request


def _async_wrapper(spec: ClientSpec, original: Any, options: _Options) -> Any:
    async def request(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not config.enabled:
            return await original(self, *args, **kwargs)
        rec, kwargs = _prepare(self, spec, options, args, kwargs)
        if rec is None:
            return await original(self, *args, **kwargs)
        try:
            result = await original(self, *args, **kwargs)
        except BaseException as exc:
            rec.fail(exc)
            raise
        if rec.stream:
            return _stream_result(result, rec, spec)
        rec.end(_parsed(result))
        return result

    request.__name__ = spec.method
    return request
