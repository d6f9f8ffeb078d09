"""Provider streams read as the code iterates them: the call of a stream ends when it is exhausted,
closed (also through its HTTP response, as the SDKs' stream helpers close it), left early, dropped or
collected, whichever comes first, with what it showed.

The streams keep the SDK's own type: OpenAI's and Anthropic's `Stream`/`AsyncStream` get their
`_iterator` swapped (`watch`); Ollama's generators are wrapped in a generator (`items`); the raw
streams of `with_raw_response` are made as a subclass (`stream_class`). `_Recorder` (in
`_instrument`) reads each item and ends the call.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from .usage.streams import FINAL, stream_item

if TYPE_CHECKING:
    from ._instrument import _Recorder

__all__ = ["final_usage", "items", "stream_class", "watch", "when_closed"]


def final_usage(item: Any) -> bool:
    """Whether a stream item carries the stream's final usage (a stream left after it is complete
    for usage): `usage.streams.stream_item`."""
    return stream_item(item) == FINAL


def when_closed(obj: Any, name: str, rec: _Recorder, *, complete: bool | None = None) -> None:
    """After `obj.<name>()` (a stream's or its HTTP response's close), the call ends: complete if
    the stream's final usage had come (the SDKs close the response themselves at a stream's end),
    else left early. The patched method holds `obj` weakly: no reference cycle keeps a stream
    the code dropped alive until the garbage collector runs."""
    close = getattr(obj, name, None)
    if close is None or getattr(close, "__self__", None) is not obj:
        return
    method = weakref.WeakMethod(close)
    if inspect.iscoroutinefunction(close):

        async def aclosed(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = method()
                return None if bound is None else await bound(*args, **kwargs)
            finally:
                if not rec.iterating:
                    rec.end(None, complete=rec.final_seen if complete is None else complete)

        setattr(obj, name, aclosed)
    else:

        def closed(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = method()
                return None if bound is None else bound(*args, **kwargs)
            finally:
                if not rec.iterating:  # else the SDK closes it at the stream's end: the iteration ends the call
                    rec.end(None, complete=rec.final_seen if complete is None else complete)

        setattr(obj, name, closed)


def items(items: Any, rec: _Recorder) -> Any:
    """A generator over a stream's items (Ollama's), read as the code iterates it; the call ends
    when it is exhausted, closed, left, or dropped without being iterated at all."""
    gen = _aiterate(items, rec) if hasattr(items, "__anext__") else _iterate(items, rec)
    weakref.finalize(gen, rec.end, None, complete=False)  # a generator never started runs no finally
    return gen


def watch(stream: Any, rec: _Recorder) -> None:
    """Read an SDK stream object (OpenAI's or Anthropic's `Stream`/`AsyncStream`) as the code
    iterates it; the object and its type stay the SDK's. The call ends when the stream is
    exhausted, closed (also through its HTTP response, as the SDKs' stream helpers close it), left
    early or collected."""
    iterator = stream._iterator
    frame = getattr(iterator, "gi_frame", None) or getattr(iterator, "ag_frame", None)
    if frame is not None and frame.f_lasti <= 0 and frame.f_locals.get("self") is stream:  # not started
        # OpenAI's stream makes its generator from itself: a cycle that keeps a stream the code
        # left alive until the garbage collector runs. Made from a copy instead (as Anthropic's
        # SDK does), a left stream ends as soon as the code drops it.
        dup = copy.copy(stream)
        del dup._iterator  # the copy must not hold the generator made from the stream
        stream._iterator = iterator = dup.__stream__()
    is_async = hasattr(iterator, "__anext__")
    stream._iterator = _aiterate(iterator, rec) if is_async else _iterate(iterator, rec)
    stream._tracked_watched = True
    weakref.finalize(stream, rec.end, None, complete=False)  # dropped, iterated or not: the call ends
    when_closed(stream, "close", rec)
    response = getattr(stream, "response", None)
    if response is not None:
        when_closed(response, "aclose" if is_async else "close", rec)


def stream_class(stream_cls: Any, rec: _Recorder, is_async: bool) -> Any:
    """A subclass of the SDK's stream class that reads each item as the code takes it: for a raw
    response (`with_raw_response`), whose stream `.parse()` makes later. Other streams are read in
    place by `_watch`, keeping the SDK's own class."""
    if is_async:

        class TrackedAsyncStream(stream_cls):  # type: ignore[misc]
            async def __stream__(self) -> AsyncIterator[Any]:
                complete = False
                try:
                    async for item in super().__stream__():
                        if rec.item(item):
                            yield item
                    complete = True
                except BaseException as exc:
                    if not isinstance(exc, GeneratorExit):
                        rec.fail(exc)
                    raise
                finally:
                    rec.end(None, complete=rec.final_seen if complete is None else complete)

            async def close(self) -> None:
                try:
                    await super().close()
                finally:
                    rec.end(None, complete=False)

        TrackedAsyncStream._tracked_stream = True
        TrackedAsyncStream.__name__ = TrackedAsyncStream.__qualname__ = stream_cls.__name__
        return TrackedAsyncStream

    class TrackedStream(stream_cls):  # type: ignore[misc]
        def __stream__(self) -> Iterator[Any]:
            complete = False
            try:
                for item in super().__stream__():
                    if rec.item(item):
                        yield item
                complete = True
            except BaseException as exc:
                if not isinstance(exc, GeneratorExit):
                    rec.fail(exc)
                raise
            finally:
                rec.end(None, complete=rec.final_seen if complete is None else complete)

        def close(self) -> None:
            try:
                super().close()
            finally:
                rec.end(None, complete=False)

    TrackedStream._tracked_stream = True
    TrackedStream.__name__ = TrackedStream.__qualname__ = stream_cls.__name__
    return TrackedStream


def _left(exc: BaseException) -> bool:
    """Whether `exc`, raised where a stream is read, means the code left it (closed it, or its
    task was cancelled) rather than that the request failed."""
    return isinstance(exc, (GeneratorExit, asyncio.CancelledError))


def _iterate(items: Iterator[Any], rec: _Recorder) -> Iterator[Any]:
    complete = False
    try:
        rec.iterating = True
        for item in items:
            rec.iterating = False
            if rec.item(item):
                yield item
            rec.iterating = True
        complete = True
    except BaseException as exc:
        if not _left(exc):
            rec.fail(exc)
        raise
    finally:
        rec.iterating = False
        rec.end(None, complete=complete)
        if not complete:  # left early: the SDK's own generator (and its HTTP response) closed now
            close = getattr(items, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass


async def _aiterate(items: AsyncIterator[Any], rec: _Recorder) -> AsyncIterator[Any]:
    complete = False
    try:
        rec.iterating = True
        async for item in items:
            rec.iterating = False
            if rec.item(item):
                yield item
            rec.iterating = True
        complete = True
    except BaseException as exc:
        if not _left(exc):
            rec.fail(exc)
        raise
    finally:
        rec.iterating = False
        rec.end(None, complete=complete)
