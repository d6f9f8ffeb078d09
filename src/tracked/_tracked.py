"""The `@tracked` decorator: one wrapper per kind of callable, chosen once at decoration time."""

from __future__ import annotations

import asyncio
import functools
import inspect
import types
import weakref
from collections.abc import Callable
from time import perf_counter
from typing import Any, TypeVar, overload

import wrapt

from . import pricing
from ._call import _KIDS, UNKNOWN, Call
from ._capture import Reply, capture_arguments, output_of
from ._config import config, internal_error, warn_once
from ._context import _current, _current_exp, _last_row, _open, ambient, lane, reachable
from .usage import Usage, extract, merge
from .usage.streams import FINAL, NOT_AN_ITEM, stream_item

__all__ = ["tracked"]

F = TypeVar("F", bound=Callable[..., Any])


class _Spec:
    """What the decorator was told, fixed at decoration time."""

    __slots__ = ("capture_io", "in_class", "model", "model_default", "model_index", "name", "provider", "signature")

    def __init__(
        self, fn: Any, name: str | None, provider: str | None, model: str | None, capture_io: bool | None
    ) -> None:
        func = getattr(fn, "__func__", fn)  # classmethod / staticmethod objects
        named = func
        while isinstance(named, functools.partial):  # named for the function it calls, not its repr
            named = named.func
        qualname = getattr(named, "__qualname__", None) or getattr(named, "__name__", None) or type(named).__qualname__
        self.name = name or qualname.rsplit("<locals>.", 1)[-1]
        # Defined in a class body ("Bot.reply", not "build" or "f.<locals>.build"): a method.
        parts = qualname.rsplit(".", 2)
        self.in_class = len(parts) > 1 and parts[-2] != "<locals>" and not isinstance(fn, staticmethod)
        self.provider = provider
        self.model = model
        self.capture_io = capture_io
        self.model_index: int | None = None
        self.model_default: str | None = None
        self.signature: inspect.Signature | None = None
        try:
            self.signature = inspect.signature(func)
        except (TypeError, ValueError):
            return
        for i, p in enumerate(self.signature.parameters.values()):
            if p.name == "model":
                self.model_index = i if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) else -1
                if isinstance(p.default, str) and p.default:
                    self.model_default = p.default
                break

    @classmethod
    def named(cls, name: str, provider: str | None, model: str | None) -> _Spec:
        """The spec of a call that is not a function's: a request through an instrumented client."""
        spec = cls.__new__(cls)
        spec.name, spec.provider, spec.model = name, provider, model
        spec.capture_io, spec.in_class, spec.signature = False, False, None
        spec.model_index, spec.model_default = None, None
        return spec


# --- captured inputs and outputs: JSON-ready, truncated, secrets redacted (`_capture`) -----------


def _capture_inputs(spec: _Spec, bound: bool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    if spec.signature is None:
        named: dict[str, Any] = {f"arg{i}": a for i, a in enumerate(args)}
        named.update(kwargs)
    else:
        # wrapt passes the instance of a bound method (or the class of a classmethod) apart
        # from args: the first parameter is then not in args.
        params = list(spec.signature.parameters)[1 if bound else 0 :]
        named = dict(zip(params, args, strict=False))  # *args beyond the named ones follow
        if len(args) > len(params):
            named["*args"] = list(args[len(params) :])
        named.update(kwargs)
        if not bound and spec.in_class and params:
            named.pop(params[0], None)  # a method's receiver, passed in args by a plain wrapper
    return capture_arguments(named)


# --- the start and end of every call ------------------------------------------------------------


def _begin(spec: _Spec, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    parent = _current.get()
    exp = _current_exp.get()
    if exp is None or exp.finished:
        if exp is not None and not exp.forked_away:
            return _after_finish(spec, parent, exp)
        if _open:
            exp = ambient(True)
            if exp is None and parent is None:
                warn_once(
                    "in-no-experiment",
                    f"tracked: {spec.name} was called from a thread that does not carry the context while "
                    "experiments were open in other threads or tasks: it is in none of them; start the thread with "
                    "target=tracked.bind(fn), or submit it to a concurrent.futures.ThreadPoolExecutor",
                )
        else:
            exp = None
        adrift = exp is not None and parent is None  # from a thread that does not carry the context
    else:
        adrift = False
    call = Call(spec.name, parent, exp, perf_counter())
    if adrift:
        call._adrift = True
        if exp._running:  # type: ignore[union-attr]
            exp._uncarried(call)  # type: ignore[union-attr]
    if exp is not None and (parent is None or parent.experiment is not exp):
        owner = parent.experiment if parent is not None else None
        if owner is not None and owner.finished:
            if not owner.forked_away:
                return _after_finish(spec, parent, owner)  # inside a call of a finished experiment
            call.parent = exp.parent_call  # not a call of the process it was forked from, unless its handle says
        elif parent is None and exp.parent_call is not None:
            call.parent = exp.parent_call  # a worker's top-level call: under the call its handle was made in
        if not (exp._working and pricing.ready):
            exp._work_began()  # (its first calls wait for the price data: not their time)
            call._t0 = perf_counter()
        adopt = exp._adopt
        if adopt is not None:
            # The older tracker collects the calls made for one result under it (`_results`),
            # whose time runs from the first of them.
            call.parent = adopt
            adopt.__dict__.setdefault("_first", call._t0)
        else:
            # A top-level call of this experiment: one row. It closes the rows this code came
            # after (`reachable`): the previous one of this thread or task, so that `exp.log()`
            # between the two joined the previous one, and the last one begun in this thread when
            # that ran in a task that has ended (`asyncio.run`, an earlier notebook cell).
            here = lane()
            prev = _last_row.get()
            if prev is not None and (prev._lane == here or reachable(prev._lane, here)):
                _seal(prev)
            mine = exp._here
            last = mine.last
            if last is not None and last is not prev:
                if reachable(last._lane, here):
                    _seal(last)
                elif not last.ended:
                    call._overlap = True  # another task of this thread is running one
            mine.last = call
            call._row = True
            call._lane = here
        call._outer = True  # still running when its experiment finishes, it is cut short there
        exp._running[id(call)] = call
        exp._started += 1

    if spec.capture_io or (spec.capture_io is None and config.capture_io):
        try:
            call.inputs = _capture_inputs(spec, instance is not None, args, kwargs)
        except Exception as exc:
            internal_error("capturing inputs", exc)
    return call


def _seal(call: Call) -> None:
    try:
        call.experiment._seal(call)  # type: ignore[union-attr]
    except Exception as exc:
        internal_error("closing a row", exc)


def _after_finish(spec: _Spec, parent: Call | None, exp: Any) -> Call:
    """A call begun after its experiment (`exp`, the context's or its parent call's) had finished:
    work the experiment began and did not wait for. It belongs to that experiment, which drops it
    (it is in none of its figures, nor in any other experiment's), with one warning naming it."""
    warn_once(
        ("after-finish", exp.name, spec.name),
        f"tracked: {spec.name} started after its experiment {exp.name!r} had finished (work it began "
        "and did not wait for), so it is in none of its figures",
    )
    return Call(spec.name, parent, exp, perf_counter())


# Results that are never a provider's stream, checked with one set lookup.
_PLAIN = frozenset({type(None), str, bytes, int, float, bool, complex, list, tuple, dict, set, frozenset})
# Whether a type is a provider's stream (OpenAI's or Anthropic's `Stream`/`AsyncStream`, or a generator), remembered.
_streams: dict[type, bool] = {}


def _is_stream(kind: type) -> bool:
    flag = _streams.get(kind)
    if flag is None:
        flag = (
            kind is types.GeneratorType
            or kind is types.AsyncGeneratorType
            or any(
                c.__name__ in ("Stream", "AsyncStream") and c.__module__.partition(".")[0] in ("openai", "anthropic")
                for c in kind.__mro__
            )
        )
        if len(_streams) < 4096:
            _streams[kind] = flag
    return flag


def _end(
    call: Call,
    spec: _Spec,
    latency_s: float,
    result: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    instance: Any = None,
    reply: Reply | None = None,
) -> Any:
    """End `call` with `result`, and return what the wrapper returns: `result`, or for a
    provider's stream the same stream (or Ollama's generator) read as it is iterated, the call
    ending with it. With `capture_io`, the output recorded is `reply`'s (a stream's or a
    generator's items) when given, else read from `result`."""
    kind = type(result)
    if kind not in _PLAIN and (_streams.get(kind) or (kind not in _streams and _is_stream(kind))):
        try:
            from ._instrument import adopt

            adopted = adopt(call, spec, result, (args, kwargs, instance))
        except Exception as exc:
            internal_error("reading a returned stream", exc)
            adopted = None
        if adopted is not None:
            return adopted
    try:
        arg_model = None
        if spec.model is None and spec.model_index is not None:
            arg_model = kwargs.get("model")
            if arg_model is None:
                index = spec.model_index - (instance is not None)
                if 0 <= index < len(args):
                    arg_model = args[index]
                else:
                    arg_model = spec.model_default
        call._finish(latency_s, result, spec.model, spec.provider, arg_model)
        if call.inputs is not None and call.error_type is None:
            call.output = output_of(result) if reply is None else reply.output()
        exp = call.experiment
        if exp is not None:
            exp._on_call_end(call)
            if call._row is not None:
                _last_row.set(call)
    except Exception as exc:
        internal_error("ending a call", exc)
    return result


def _failed(call: Call, exc: BaseException) -> None:
    try:
        call._fail(exc)
    except Exception as inner:  # pragma: no cover - _fail guards itself
        internal_error("recording an error", inner)


# --- one runner per kind of callable ------------------------------------------------------------


def _run_sync(spec: _Spec, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    call = _begin(spec, instance, args, kwargs)
    token = _current.set(call)
    t0 = call._t0
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        latency = perf_counter() - t0
        _current.reset(token)
        _failed(call, exc)
        _end(call, spec, latency, None, args, kwargs, instance)
        raise
    latency = perf_counter() - t0
    _current.reset(token)
    return _end(call, spec, latency, result, args, kwargs, instance)


async def _run_async(spec: _Spec, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # Runs when awaited, in the awaiting task's context: the awaited time is measured, and the
    # parent is the call running there (or the task creator's, copied by asyncio).
    call = _begin(spec, instance, args, kwargs)
    token = _current.set(call)
    t0 = call._t0
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        latency = perf_counter() - t0
        _current.reset(token)
        _failed(call, exc)
        _end(call, spec, latency, None, args, kwargs, instance)
        raise
    latency = perf_counter() - t0
    _current.reset(token)
    if call._open_streams:
        await _let_left_streams_end(call)
    return _end(call, spec, latency, result, args, kwargs, instance)


async def _let_left_streams_end(call: Call) -> None:
    """An async call returning (or an async generator closing) with a stream it opened still open:
    a stream left by `async for ... break` stays alive until the event loop has closed the
    iterator the loop was using, a moment later. Those turns of the loop are let run, so that the
    stream ends as left within this call, not after it (a late child, outside its row)."""
    for _ in range(_LEFT_STREAM_TURNS):
        await asyncio.sleep(0)
        if not call._open_streams:
            return


# Turns of the event loop an async call waits, at most, for streams it left to end (see above).
_LEFT_STREAM_TURNS = 4


def _stream_item(call: Call, stream: Usage | None, item: Any, n: int, t0: float) -> Usage | None:
    if n == 0:
        call.ttft_s = perf_counter() - t0
    found = extract(item)
    return stream if found is None else merge(stream, found)


def _run_gen(spec: _Spec, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # The context is set around each step of the inner generator only: between items the
    # consumer's code runs, and calls it makes are not children of this one.
    call = _begin(spec, instance, args, kwargs)
    t0 = call._t0
    token = _current.set(call)
    try:
        gen = wrapped(*args, **kwargs)
    finally:
        _current.reset(token)
    stream: Usage | None = None
    reply = Reply() if call.inputs is not None else None  # capture_io: what it yields
    n = 0
    seen = NOT_AN_ITEM  # whether it yielded a provider's stream items, and the one with the final usage
    sent: Any = None
    thrown: BaseException | None = None
    result: Any = None
    done = False
    try:
        while True:
            token = _current.set(call)
            try:
                if thrown is not None:
                    exc, thrown = thrown, None
                    item = gen.throw(exc)
                else:
                    item = gen.send(sent)
            except StopIteration as stop:
                result = stop.value
                done = True
                break
            finally:
                _current.reset(token)
            stream = _stream_item(call, stream, item, n, t0)
            if seen != FINAL:
                kind = stream_item(item)
                if kind > seen:  # (kept on the call too: read if it is still running at the experiment's end)
                    seen = call.__dict__["_seen"] = kind
            if reply is not None:
                reply.item(item)
            n += 1
            try:
                sent = yield item
            except GeneratorExit:
                raise
            except BaseException as exc:
                thrown = exc
    except GeneratorExit:
        pass  # closed early, broken out of or collected: the call ends normally
    except BaseException as exc:
        _failed(call, exc)
        done = True
        raise
    finally:
        latency = perf_counter() - t0
        if not done:
            token = _current.set(call)
            try:
                gen.close()
            except BaseException as exc:
                _failed(call, exc)
                raise
            finally:
                _current.reset(token)
                usage = _stream_usage(call, seen, stream, done)
                _end(call, spec, latency, _final_usage(usage, result), args, kwargs, instance, reply)
        else:
            usage = _stream_usage(call, seen, stream, done)
            _end(call, spec, latency, _final_usage(usage, result), args, kwargs, instance, reply)
    return result


def _stream_usage(call: Call, seen: int, stream: Usage | None, done: bool) -> Usage | None:
    """The usage of a generator that yielded a provider's stream items: what they showed, or, if
    its final usage item never came (no usage asked for, or left before it) and no call inside
    measured it, unknown (one LLM call of unknown tokens and cost), with one warning."""
    if seen == NOT_AN_ITEM or (seen == FINAL and stream is not None):
        return stream
    attrs = call.__dict__
    if attrs.get(_KIDS) or attrs.get("_streaming_child"):  # an instrumented request inside measures it
        return stream
    if call.experiment is not None and call.experiment.summarised:
        return stream  # cut short (and counted) when its experiment finished
    call.usage_unknown = True
    call.incomplete = not done
    call._own = UNKNOWN
    how = "its stream had no usage" if done else "it was left before its stream's usage came"
    warn_once(
        ("usage-unknown", call.name),
        f"tracked: {call.name}: {how}, so its tokens and cost are unknown (not 0); tracked.instrument() on the "
        "client measures each request (and asks an OpenAI chat stream for its usage)",
    )
    return None


def _final_usage(stream: Usage | None, result: Any) -> Any:
    if result is not None:
        found = extract(result)
        if found is not None:
            return found if stream is None else merge(stream, found)
    return stream


class _Left:
    """A top-level async generator call and the generator object its consumer holds.

    A consumer that leaves an `async for` by `break` drops the generator; the event loop closes it
    later, in a task of its own. The call ends then, as it was when left (`at`); until then the
    experiment knows it was left (`Call._left`): `exp.log()` joins it, `async with` waits for it
    to close, and a block that ends first ends it (`end_now`)."""

    __slots__ = ("args", "at", "call", "instance", "kwargs", "ref", "reply", "spec", "stream")

    def __init__(self, spec: _Spec, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.spec, self.instance, self.args, self.kwargs = spec, instance, args, kwargs
        self.call: Call | None = None  # set when the call begins, if it is a top-level one
        self.at: float | None = None
        self.ref: Any = None
        self.reply: Reply | None = None
        self.stream: Usage | None = None

    def dropped(self, ref: Any) -> None:
        """The generator object is gone (its consumer left it): the event loop closes it soon."""
        self.ref = None  # (the cycle through this callback)
        call = self.call
        if call is not None and not call.ended and self.at is None:
            self.at = perf_counter()
            call._left = self

    def claim(self, who: object) -> bool:
        """Whether `who` (the generator closing, or `end_now`) is the one that ends the call."""
        call = self.call
        return call is None or call.__dict__.setdefault("_ending", who) is who

    def end_now(self) -> None:
        """End the call as it was when left (its experiment is ending before the loop closed it)."""
        call = self.call
        if call is None or call.ended or not self.claim(_BY_EXPERIMENT):
            return
        seen = call.__dict__.get("_seen", NOT_AN_ITEM)
        latency = (self.at if self.at is not None else perf_counter()) - call._t0
        try:
            usage = _stream_usage(call, seen, self.stream, False)
            _end(call, self.spec, latency, usage, self.args, self.kwargs, self.instance, self.reply)
        finally:
            call.__dict__.pop("_left", None)


_BY_GENERATOR, _BY_EXPERIMENT = object(), object()


def _start_asyncgen(spec: _Spec, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    left = _Left(spec, instance, args, kwargs)
    agen = _run_asyncgen(spec, wrapped, instance, args, kwargs, left)
    left.ref = weakref.ref(agen, left.dropped)
    return agen


async def _run_asyncgen(
    spec: _Spec, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], left: _Left | None = None
) -> Any:
    call = _begin(spec, instance, args, kwargs)
    t0 = call._t0
    agen = wrapped(*args, **kwargs)
    stream: Usage | None = None
    reply = Reply() if call.inputs is not None else None  # capture_io: what it yields
    if left is not None and call._outer:
        left.call, left.reply = call, reply
    else:
        left = None
    n = 0
    seen = NOT_AN_ITEM  # whether it yielded a provider's stream items, and the one with the final usage
    sent: Any = None
    thrown: BaseException | None = None
    done = False
    try:
        while True:
            token = _current.set(call)
            try:
                if thrown is not None:
                    exc, thrown = thrown, None
                    item = await agen.athrow(exc)
                else:
                    item = await agen.asend(sent)
            except StopAsyncIteration:
                done = True
                break
            finally:
                _current.reset(token)
            stream = _stream_item(call, stream, item, n, t0)
            if seen != FINAL:
                kind = stream_item(item)
                if kind > seen:  # (kept on the call too: read if it is still running at the experiment's end)
                    seen = call.__dict__["_seen"] = kind
            if reply is not None:
                reply.item(item)
            if left is not None:
                left.stream = stream
            n += 1
            try:
                sent = yield item
            except GeneratorExit:
                raise
            except BaseException as exc:
                thrown = exc
    except GeneratorExit:
        pass
    except BaseException as exc:
        _failed(call, exc)
        done = True
        raise
    finally:
        # Left by its consumer (`break`): it ended there, not when the event loop got to closing it.
        latency = (left.at if left is not None and left.at is not None else perf_counter()) - t0
        try:
            if not done:
                token = _current.set(call)
                try:
                    await agen.aclose()
                finally:
                    _current.reset(token)
            if call._open_streams:
                await _let_left_streams_end(call)
        finally:
            if left is None:
                _end(call, spec, latency, _stream_usage(call, seen, stream, done), args, kwargs, instance, reply)
            elif left.claim(_BY_GENERATOR):
                try:
                    _end(call, spec, latency, _stream_usage(call, seen, stream, done), args, kwargs, instance, reply)
                finally:
                    call.__dict__.pop("_left", None)


_SYNC, _ASYNC, _GEN, _ASYNCGEN = "sync", "async", "gen", "asyncgen"
_RUNNERS: dict[str, Callable[..., Any]] = {
    _SYNC: _run_sync,
    _ASYNC: _run_async,
    _GEN: _run_gen,
    _ASYNCGEN: _start_asyncgen,
}


def _kind_of(fn: Any) -> str:
    # The object's own kind, never what it wraps (`__wrapped__`): a sync helper made with
    # `functools.wraps` around an `async def` (it runs `asyncio.run(...)`) returns a value.
    func = getattr(fn, "__func__", fn)
    if inspect.isasyncgenfunction(func):
        return _ASYNCGEN
    if inspect.iscoroutinefunction(func):
        return _ASYNC
    if inspect.isgeneratorfunction(func):
        return _GEN
    return _SYNC


def _closure(spec: _Spec, fn: Any, kind: str) -> Any:
    """A plain function wrapper: cheaper per call than wrapt's proxy (benchmarks/README.md), and a
    plain function is bound as a method by Python itself. Its own kind (coroutine function, generator
    function) is the wrapped one's, so `inspect` sees the same thing."""
    if kind == _ASYNC:

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not config.enabled:
                return await fn(*args, **kwargs)
            return await _run_async(spec, fn, None, args, kwargs)

    elif kind == _GEN:

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not config.enabled:
                return (yield from fn(*args, **kwargs))
            return (yield from _run_gen(spec, fn, None, args, kwargs))

    else:

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # _run_sync, inline: one frame per tracked level instead of two. Each level of a deep
            # chain then takes half the room on the interpreter's frame stack, which CPython
            # 3.11 grows and shrinks in 16 kB chunks, with an mmap and a munmap each time a
            # chain crosses a chunk's end (about every 35 levels with two frames per level).
            if not config.enabled:
                return fn(*args, **kwargs)
            call = _begin(spec, None, args, kwargs)
            token = _current.set(call)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                latency = perf_counter() - call._t0
                _current.reset(token)
                _failed(call, exc)
                _end(call, spec, latency, None, args, kwargs)
                raise
            latency = perf_counter() - call._t0
            _current.reset(token)
            return _end(call, spec, latency, result, args, kwargs)

    return wrapper


def _wrapt(spec: _Spec, fn: Any, kind: str) -> Any:
    """wrapt's proxy for what a plain function wrapper cannot be: classmethod and staticmethod
    objects, callable objects, and async generators (whose kind a wrapper must share)."""
    runner = _RUNNERS[kind]

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not config.enabled:
            return wrapped(*args, **kwargs)
        return runner(spec, wrapped, instance, args, kwargs)

    return wrapt.FunctionWrapper(fn, wrapper)


def _check(label: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"@tracked({label}=...) must be a non-empty string, got {value!r}")


@overload
def tracked(fn: F, /) -> F: ...


@overload
def tracked(
    *, name: str | None = None, provider: str | None = None, model: str | None = None, capture_io: bool | None = None
) -> Callable[[F], F]: ...


def tracked(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    capture_io: bool | None = None,
) -> Any:
    """Record every execution of a function as a call: latency, tokens, cost, errors, nesting.

    Works on functions, methods, classmethods, staticmethods, `async def` functions, generators and
    async generators; names, docstrings, signatures and `inspect` checks are kept. Token usage is
    read from the return value (OpenAI, Anthropic, Ollama, LiteLLM responses, or any object with
    `tokens_in`/`tokens_out`/`cost_usd`), and cost comes from the `genai-prices` data.

    Args:
        name: The call's name (default: the function's qualified name).
        provider: The provider, e.g. "openai" or "ollama" (local providers cost nothing).
        model: The model, when the response does not name it.
        capture_io: Record the inputs (the arguments, by name) and the output in `calls.jsonl`:
            the reply text when the function returns or yields a provider's response or stream,
            the joined text when it yields strings, else the value. Truncated at
            `configure(io_max_chars=...)`, secrets redacted. None follows `configure(capture_io=...)`.

    Example:
        >>> from tracked import tracked
        >>> @tracked(provider="ollama")
        ... def call_llm(prompt, model="llama3.2:3b"):
        ...     return ollama.chat(model=model, messages=[{"role": "user", "content": prompt}])
    """
    for label, value in (("name", name), ("provider", provider), ("model", model)):
        _check(label, value)
    if capture_io is not None and not isinstance(capture_io, bool):
        raise TypeError(f"@tracked(capture_io=...) must be True, False or None, got {capture_io!r}")

    def decorate(fn: Any) -> Any:
        if not callable(fn) and not isinstance(fn, (classmethod, staticmethod)):
            raise TypeError(f"@tracked decorates functions and methods, got {type(fn).__name__}")
        spec = _Spec(fn, name, provider, model, capture_io)
        kind = _kind_of(fn)
        if inspect.isfunction(fn) and kind != _ASYNCGEN:
            return _closure(spec, fn, kind)
        return _wrapt(spec, fn, kind)

    if fn is None:
        return decorate
    return decorate(fn)
