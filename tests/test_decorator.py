"""The `@tracked` decorator on every kind of callable: transparency, errors, timing, generators."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import traceback

import pytest

import tracked
from helpers import run_python
from tracked import _config, current_call
from tracked import _tracked as tracked_mod


class FakeClock:
    """A `perf_counter` stand-in that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    """The decorator's clock, replaced by one the test moves by hand."""
    fake = FakeClock()
    monkeypatch.setattr(tracked_mod, "perf_counter", fake)
    return fake


# --- metadata kept -----------------------------------------------------------------------------


def test_bare_decorator_keeps_name_doc_and_signature():
    """`@tracked` keeps the function's name, docstring and signature, and still returns its result."""

    def add(a: int, b: int = 2, *, scale: float = 1.0) -> float:
        """Add two numbers."""
        return (a + b) * scale

    wrapped = tracked.tracked(add)
    assert wrapped.__name__ == "add"
    assert wrapped.__qualname__ == add.__qualname__
    assert wrapped.__doc__ == "Add two numbers."
    assert inspect.signature(wrapped) == inspect.signature(add)
    assert wrapped(1, scale=3.0) == 9.0
    assert not inspect.iscoroutinefunction(wrapped)
    assert not inspect.isgeneratorfunction(wrapped)
    assert not inspect.isasyncgenfunction(wrapped)


def test_decorator_with_arguments_keeps_metadata_and_sets_name():
    """`@tracked(name=...)` keeps metadata and records the call under the given name."""
    seen = []

    @tracked.tracked(name="custom-name", provider="openai", model="gpt-4o", capture_io=False)
    def solve(task: str) -> str:
        """Solve a task."""
        seen.append(current_call())
        return task.upper()

    assert solve.__name__ == "solve"
    assert solve.__doc__ == "Solve a task."
    assert list(inspect.signature(solve).parameters) == ["task"]
    assert solve("x") == "X"
    (call,) = seen
    assert call.name == "custom-name"
    assert call.ended
    assert call.model == "gpt-4o"
    assert call.provider == "openai"
    assert call.inputs is None


def test_default_name_is_qualname_without_locals():
    """The default call name is the qualified name with the `<locals>` prefix dropped."""
    seen = []

    class Solver:
        @tracked.tracked
        def run(self):
            seen.append(current_call())

    @tracked.tracked
    def helper():
        seen.append(current_call())

    Solver().run()
    helper()
    assert [c.name for c in seen] == ["Solver.run", "helper"]


def test_async_function_keeps_coroutine_nature_and_signature():
    """An `async def` stays a coroutine function with the same signature, and returns its result when awaited."""

    async def fetch(url: str, retries: int = 3) -> str:
        """Fetch a url."""
        return f"{url}:{retries}"

    wrapped = tracked.tracked(fetch)
    assert inspect.iscoroutinefunction(wrapped)
    assert asyncio.iscoroutinefunction(wrapped)
    assert not inspect.isasyncgenfunction(wrapped)
    assert inspect.signature(wrapped) == inspect.signature(fetch)
    assert wrapped.__doc__ == "Fetch a url."
    assert asyncio.run(wrapped("u", retries=1)) == "u:1"


def test_generator_function_keeps_generator_nature():
    """A generator function stays a generator function and yields the same items."""

    def count(n: int):
        """Count to n."""
        yield from range(n)

    wrapped = tracked.tracked(count)
    assert inspect.isgeneratorfunction(wrapped)
    assert not inspect.iscoroutinefunction(wrapped)
    assert inspect.signature(wrapped) == inspect.signature(count)
    assert wrapped.__doc__ == "Count to n."
    assert list(wrapped(4)) == [0, 1, 2, 3]


def test_async_generator_function_keeps_its_nature():
    """An async generator function stays one and yields the same items."""

    async def count(n: int):
        """Count to n, asynchronously."""
        for i in range(n):
            yield i

    wrapped = tracked.tracked(count)
    assert inspect.isasyncgenfunction(wrapped)
    assert not inspect.iscoroutinefunction(wrapped)
    assert not inspect.isgeneratorfunction(wrapped)
    assert inspect.signature(wrapped) == inspect.signature(count)

    async def collect():
        return [i async for i in wrapped(3)]

    assert asyncio.run(collect()) == [0, 1, 2]


# --- methods -----------------------------------------------------------------------------------


class Agent:
    """A class with every kind of tracked method."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.seen: list = []

    @tracked.tracked
    def act(self, prompt: str, model: str = "default-model") -> str:
        """Act on a prompt."""
        self.seen.append(current_call())
        return f"{self.tag}:{prompt}"

    @tracked.tracked
    @classmethod
    def build(cls, tag: str, model: str = "cls-default") -> tuple:
        """Build an agent."""
        return cls(tag), current_call()

    @tracked.tracked
    @staticmethod
    def helper(x: int, model: str = "static-default") -> tuple:
        """A static helper."""
        return x * 2, current_call()

    @tracked.tracked
    async def aact(self, prompt: str) -> str:
        """Act asynchronously."""
        self.seen.append(current_call())
        return f"{self.tag}:{prompt}"

    @tracked.tracked
    def stream(self, n: int):
        """Stream n items."""
        for i in range(n):
            self.seen.append(current_call())
            yield f"{self.tag}{i}"


def test_method_binds_self_and_keeps_metadata():
    """A tracked method receives `self`, keeps its docstring, and its bound signature omits `self`."""
    agent = Agent("a")
    assert agent.act("hi") == "a:hi"
    assert Agent.act.__doc__ == "Act on a prompt."
    assert list(inspect.signature(agent.act).parameters) == ["prompt", "model"]
    assert list(inspect.signature(Agent.act).parameters) == ["self", "prompt", "model"]
    assert agent.seen[0].name == "Agent.act"
    assert agent.seen[0].ended


def test_method_called_through_class_gets_instance():
    """Calling `Class.method(instance, ...)` works and reads `model` at the right position."""
    agent = Agent("b")
    assert Agent.act(agent, "yo", "positional-model") == "b:yo"
    assert agent.seen[-1].model == "positional-model"


def test_method_model_argument_positional_skips_self():
    """A method's positional `model` argument is found even though `self` comes first."""
    agent = Agent("c")
    agent.act("p", "gpt-4o-mini")
    agent.act("p")
    agent.act("p", model="kw-model")
    assert [c.model for c in agent.seen] == ["gpt-4o-mini", "default-model", "kw-model"]


def test_classmethod_and_staticmethod_work_through_class_and_instance():
    """Tracked classmethods receive the class and staticmethods receive no implicit argument."""
    built, call = Agent.build("x")
    assert isinstance(built, Agent) and built.tag == "x"
    assert call.name == "Agent.build" and call.ended
    assert call.model == "cls-default"
    built2, call2 = Agent("y").build("z", "given-model")
    assert built2.tag == "z"
    assert call2.model == "given-model"

    doubled, scall = Agent.helper(21)
    assert doubled == 42
    assert scall.name == "Agent.helper"
    assert scall.model == "static-default"
    doubled2, scall2 = Agent("q").helper(5, "m2")
    assert doubled2 == 10
    assert scall2.model == "m2"
    assert Agent.build.__doc__ == "Build an agent."
    assert Agent.helper.__doc__ == "A static helper."
    assert list(inspect.signature(Agent.build).parameters) == ["tag", "model"]
    assert list(inspect.signature(Agent.helper).parameters) == ["x", "model"]


def test_async_and_generator_methods():
    """Async and generator methods are tracked and still recognised by `inspect`."""
    agent = Agent("g")
    assert inspect.iscoroutinefunction(agent.aact)
    assert inspect.isgeneratorfunction(agent.stream)
    assert asyncio.run(agent.aact("p")) == "g:p"
    assert list(agent.stream(2)) == ["g0", "g1"]
    names = [c.name for c in agent.seen]
    assert names == ["Agent.aact", "Agent.stream", "Agent.stream"]
    assert agent.seen[1] is agent.seen[2]
    assert all(c.ended for c in agent.seen)


# --- bad arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"name": 3},
        {"provider": ""},
        {"provider": ["openai"]},
        {"model": b"gpt-4o"},
        {"model": ""},
        {"capture_io": "yes"},
        {"capture_io": 1},
    ],
)
def test_bad_decorator_arguments_raise_type_error(kwargs):
    """Invalid `@tracked(...)` arguments raise TypeError when decorating."""
    with pytest.raises(TypeError):
        tracked.tracked(**kwargs)


@pytest.mark.parametrize("target", [42, "name", 3.5, object()])
def test_decorating_a_non_callable_raises_type_error(target):
    """`tracked(x)` on something that is not callable raises TypeError."""
    with pytest.raises(TypeError):
        tracked.tracked(target)


def test_tracked_none_is_the_decorator_factory():
    """`tracked(None)` behaves like `tracked()` and returns a decorator."""
    decorator = tracked.tracked(None)

    seen = []

    @decorator
    def f():
        seen.append(current_call())
        return "result"

    assert f() == "result"
    assert f.__name__ == "f"
    assert seen[0].name == "f" and seen[0].ended


# --- disabled ------------------------------------------------------------------------------------


def test_configure_disabled_after_decorating_is_passthrough(monkeypatch):
    """Functions decorated before `configure(enabled=False)` become plain passthroughs."""
    seen = []

    @tracked.tracked
    def f(x):
        seen.append(current_call())
        return x + 1

    @tracked.tracked
    async def af(x):
        seen.append(current_call())
        return x * 2

    @tracked.tracked
    def gen(n):
        for i in range(n):
            seen.append(current_call())
            yield i

    @tracked.tracked
    async def agen(n):
        for i in range(n):
            seen.append(current_call())
            yield i

    async def consume():
        return [i async for i in agen(2)]

    tracked.configure(enabled=False)

    def no_begin(*args, **kwargs):
        raise AssertionError("a call was recorded while disabled")

    monkeypatch.setattr(tracked_mod, "_begin", no_begin)
    assert f(1) == 2
    assert asyncio.run(af(3)) == 6
    assert list(gen(2)) == [0, 1]
    assert asyncio.run(consume()) == [0, 1]
    assert seen == [None] * 6


def test_reenabling_tracks_again():
    """After `configure(enabled=True)` a function decorated while disabled is tracked again."""
    tracked.configure(enabled=False)
    seen = []

    @tracked.tracked
    def f():
        seen.append(current_call())

    f()
    tracked.configure(enabled=True)
    f()
    assert seen[0] is None
    assert seen[1] is not None and seen[1].ended


def test_tracked_disabled_env_var_makes_passthrough_in_fresh_process():
    """`TRACKED_DISABLED=1` at import makes every tracked function a passthrough."""
    result = run_python(
        """
        import asyncio
        import tracked

        seen = []

        @tracked.tracked
        def f(x):
            seen.append(tracked.current_call())
            return x + 1

        @tracked.tracked
        async def af():
            seen.append(tracked.current_call())
            return 7

        @tracked.tracked
        def gen():
            seen.append(tracked.current_call())
            yield 1

        assert f(1) == 2
        assert asyncio.run(af()) == 7
        assert list(gen()) == [1]
        assert seen == [None, None, None], seen
        print("OK")
        """,
        TRACKED_DISABLED="1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"


@pytest.mark.parametrize(
    ("value", "enabled"), [("1", False), ("true", False), (" YES ", False), ("0", True), ("", True)]
)
def test_tracked_disabled_env_values(monkeypatch, value, enabled):
    """Truthy `TRACKED_DISABLED` values disable tracking and anything else leaves it on."""
    monkeypatch.setenv("TRACKED_DISABLED", value)
    assert _config._Config().enabled is enabled


def test_import_does_not_pull_heavy_modules():
    """`import tracked` in a fresh interpreter imports neither wandb, genai_prices, IPython nor numpy."""
    result = run_python(
        """
        import sys
        import tracked

        @tracked.tracked
        def f():
            return "no usage"

        f()
        heavy = [m for m in ("wandb", "genai_prices", "IPython", "numpy") if m in sys.modules]
        print(heavy)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- errors --------------------------------------------------------------------------------------


class UserError(Exception):
    """An exception raised by user code."""


def test_sync_exception_is_reraised_unchanged_and_recorded():
    """A user exception propagates as the same object with the user's frame in its traceback, and is recorded."""
    seen = []
    err = UserError("bad input 42")

    @tracked.tracked
    def failing_function():
        seen.append(current_call())
        raise err

    with pytest.raises(UserError) as info:
        failing_function()
    assert info.value is err
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "failing_function" in frames
    call = seen[0]
    assert call.ended
    assert call.error_type == "UserError"
    assert call.error_message == "bad input 42"
    assert call.latency_s is not None and call.latency_s >= 0
    assert current_call() is None


def test_async_exception_is_reraised_unchanged_and_recorded():
    """An exception from an awaited tracked coroutine is the same object and is recorded on the call."""
    seen = []
    err = UserError("async boom")

    @tracked.tracked
    async def failing_coroutine():
        seen.append(current_call())
        await asyncio.sleep(0)
        raise err

    with pytest.raises(UserError) as info:
        asyncio.run(failing_coroutine())
    assert info.value is err
    assert "failing_coroutine" in [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert seen[0].error_type == "UserError"
    assert seen[0].error_message == "async boom"
    assert seen[0].ended


def test_generator_exception_is_reraised_unchanged_and_recorded():
    """An exception raised mid-stream by a tracked generator reaches the consumer unchanged and is recorded."""
    seen = []
    err = UserError("stream broke")

    @tracked.tracked
    def failing_generator():
        seen.append(current_call())
        yield 1
        raise err

    got = []
    with pytest.raises(UserError) as info:
        for item in failing_generator():
            got.append(item)
    assert got == [1]
    assert info.value is err
    assert "failing_generator" in [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert seen[0].error_type == "UserError"
    assert seen[0].error_message == "stream broke"
    assert seen[0].ended


def test_async_generator_exception_is_reraised_unchanged_and_recorded():
    """An exception raised by a tracked async generator reaches the consumer unchanged and is recorded."""
    seen = []
    err = UserError("async stream broke")

    @tracked.tracked
    async def failing_agen():
        seen.append(current_call())
        yield 1
        raise err

    async def consume():
        return [i async for i in failing_agen()]

    with pytest.raises(UserError) as info:
        asyncio.run(consume())
    assert info.value is err
    assert seen[0].error_type == "UserError"
    assert seen[0].error_message == "async stream broke"
    assert seen[0].ended


def test_base_exception_is_recorded_and_reraised():
    """A KeyboardInterrupt raised inside a tracked function is recorded and propagates."""
    seen = []

    @tracked.tracked
    def interrupted():
        seen.append(current_call())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert seen[0].error_type == "KeyboardInterrupt"
    assert seen[0].ended


def test_unprintable_exception_message_is_recorded_safely():
    """An exception whose `__str__` raises is still re-raised, and recorded with a placeholder message."""

    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no str for you")

    seen = []
    err = Unprintable()

    @tracked.tracked
    def f():
        seen.append(current_call())
        raise err

    with pytest.raises(Unprintable) as info:
        f()
    assert info.value is err
    assert seen[0].error_type.endswith("Unprintable")
    assert "unprintable" in seen[0].error_message


def test_successful_call_has_no_error():
    """A call that returns normally records no error type or message."""
    seen = []

    @tracked.tracked
    def ok():
        seen.append(current_call())
        return 1

    ok()
    assert seen[0].error_type is None
    assert seen[0].error_message is None


# --- timing --------------------------------------------------------------------------------------


def test_sync_latency_is_measured_with_the_clock(clock):
    """A sync call's latency is the time between entry and return."""
    seen = []

    @tracked.tracked
    def work():
        seen.append(current_call())
        clock.advance(2.5)

    work()
    assert seen[0].latency_s == pytest.approx(2.5)
    assert seen[0].ttft_s is None


def test_async_latency_is_awaited_time_not_creation(clock):
    """An async call's latency counts from when it is awaited, not when the coroutine was created."""
    seen = []

    @tracked.tracked
    async def work():
        seen.append(current_call())
        clock.advance(3.0)
        await asyncio.sleep(0)
        clock.advance(1.0)
        return "done"

    async def main():
        coro = work()
        clock.advance(100.0)  # time between creating and awaiting the coroutine
        assert seen == []  # nothing runs, and no call starts, before the await
        return await coro

    assert asyncio.run(main()) == "done"
    assert seen[0].latency_s == pytest.approx(4.0)


def test_generator_ttft_and_latency(clock):
    """A generator's ttft is the time to its first item and its latency runs from the first `next` to exhaustion."""
    seen = []

    @tracked.tracked
    def stream():
        seen.append(current_call())
        clock.advance(1.0)
        yield "a"
        clock.advance(2.0)
        yield "b"
        clock.advance(4.0)

    gen = stream()
    clock.advance(50.0)  # creation is not the start
    assert next(gen) == "a"
    call = seen[0]
    assert call.ttft_s == pytest.approx(1.0)
    assert not call.ended
    clock.advance(8.0)  # consumer time between items is part of the stream's wall time
    assert next(gen) == "b"
    with pytest.raises(StopIteration):
        next(gen)
    assert call.ended
    assert call.latency_s == pytest.approx(15.0)
    assert call.ttft_s == pytest.approx(1.0)


def test_async_generator_ttft_and_latency(clock):
    """An async generator's ttft is the time to its first item and its latency ends at exhaustion."""
    seen = []

    @tracked.tracked
    async def stream():
        seen.append(current_call())
        clock.advance(0.5)
        yield 1
        await asyncio.sleep(0)
        clock.advance(1.5)
        yield 2

    async def main():
        agen = stream()
        clock.advance(10.0)
        return [i async for i in agen]

    assert asyncio.run(main()) == [1, 2]
    assert seen[0].ttft_s == pytest.approx(0.5)
    assert seen[0].latency_s == pytest.approx(2.0)
    assert seen[0].ended


# --- generators: early ends, context, send/throw -------------------------------------------------


def make_stream(seen: list, n: int = 5):
    """A tracked generator that records its call and whether its cleanup ran."""

    @tracked.tracked
    def stream():
        seen.append(current_call())
        try:
            yield from range(n)
        finally:
            seen.append(("cleanup", current_call()))

    return stream


def test_generator_closed_early_ends_call(clock):
    """Closing a tracked generator early ends its call without an error and runs the user's cleanup."""
    seen: list = []
    gen = make_stream(seen)()
    next(gen)
    clock.advance(2.0)
    assert not seen[0].ended
    gen.close()
    call = seen[0]
    assert call.ended
    assert call.error_type is None
    assert call.latency_s == pytest.approx(2.0)
    assert seen[1] == ("cleanup", call)


def test_generator_break_ends_call():
    """Breaking out of a `for` loop over a tracked generator ends its call."""
    seen: list = []
    for item in make_stream(seen)():
        if item == 1:
            break
    assert seen[0].ended
    assert seen[0].error_type is None
    assert seen[1] == ("cleanup", seen[0])


def test_generator_garbage_collected_ends_call():
    """A partially consumed tracked generator that is garbage collected still ends its call."""
    seen: list = []
    gen = make_stream(seen)()
    next(gen)
    call = seen[0]
    assert not call.ended
    del gen
    gc.collect()
    assert call.ended
    assert call.error_type is None


def test_generator_never_started_records_nothing():
    """A tracked generator that is created and dropped without being iterated never starts a call."""
    seen: list = []
    gen = make_stream(seen)()
    del gen
    gc.collect()
    assert seen == []


def test_async_generator_aclose_ends_call():
    """Closing a tracked async generator early (via `aclosing` and break) ends its call."""
    seen = []

    @tracked.tracked
    async def stream():
        seen.append(current_call())
        try:
            for i in range(10):
                yield i
        finally:
            seen.append(("cleanup", current_call()))

    async def main():
        async with contextlib.aclosing(stream()) as agen:
            async for item in agen:
                if item == 2:
                    break
        return seen[0].ended

    assert asyncio.run(main()) is True
    assert seen[0].error_type is None
    assert seen[1] == ("cleanup", seen[0])


def test_generator_body_sees_its_call_and_consumer_sees_outer():
    """Inside a tracked generator `current_call()` is the generator's call; between items the consumer sees its own."""
    inner_seen = []
    consumer_seen = []
    children = []
    outer_seen = []

    @tracked.tracked
    def child():
        children.append(current_call())

    @tracked.tracked
    def stream():
        for i in range(3):
            inner_seen.append(current_call())
            yield i

    @tracked.tracked
    def outer():
        outer_seen.append(current_call())
        for _ in stream():
            consumer_seen.append(current_call())
            child()

    outer()
    outer_call = outer_seen[0]
    gen_call = inner_seen[0]
    assert len(inner_seen) == 3
    assert all(c is gen_call for c in inner_seen)
    assert gen_call is not outer_call
    assert gen_call.parent_id == outer_call.id
    assert consumer_seen == [outer_call] * 3
    assert len(children) == 3
    assert all(c.parent_id == outer_call.id for c in children)  # not the generator's children
    assert current_call() is None


def test_async_generator_body_sees_its_call_and_consumer_sees_outer():
    """Inside a tracked async generator `current_call()` is its call; between items the consumer sees the outer one."""
    inner_seen = []
    consumer_seen = []
    outer_seen = []

    @tracked.tracked
    async def stream():
        for i in range(3):
            inner_seen.append(current_call())
            await asyncio.sleep(0)
            yield i

    @tracked.tracked
    async def outer():
        outer_seen.append(current_call())
        async for _ in stream():
            consumer_seen.append(current_call())

    asyncio.run(outer())
    outer_call = outer_seen[0]
    assert len(inner_seen) == 3
    assert all(c is inner_seen[0] for c in inner_seen)
    assert inner_seen[0].parent_id == outer_call.id
    assert consumer_seen == [outer_call] * 3


def test_generator_send_and_throw_are_forwarded():
    """Values sent into and exceptions thrown into a tracked generator reach the user's generator."""
    seen = []

    @tracked.tracked
    def echo():
        seen.append(current_call())
        received = yield "ready"
        try:
            yield received * 2
        except ValueError as exc:
            yield f"caught {exc}"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send(21) == 42
    assert gen.throw(ValueError("x")) == "caught x"
    with pytest.raises(StopIteration):
        next(gen)
    assert seen[0].ended
    assert seen[0].error_type is None


def test_async_generator_asend_is_forwarded():
    """Values sent into a tracked async generator reach the user's async generator."""

    @tracked.tracked
    async def echo():
        received = yield "ready"
        yield received + 1

    async def main():
        agen = echo()
        first = await agen.asend(None)
        second = await agen.asend(41)
        await agen.aclose()
        return first, second

    assert asyncio.run(main()) == ("ready", 42)


def test_generator_return_value_is_kept():
    """`yield from` a tracked generator returns the generator's own return value."""

    @tracked.tracked
    def stream():
        yield 1
        return "summary"

    def consumer():
        result = yield from stream()
        return result

    gen = consumer()
    assert next(gen) == 1
    with pytest.raises(StopIteration) as info:
        next(gen)
    assert info.value.value == "summary"


def test_async_generator_athrow_is_forwarded():
    """Exceptions thrown into a tracked async generator reach the user's async generator."""
    seen = []

    @tracked.tracked
    async def guarded():
        seen.append(current_call())
        try:
            yield "first"
        except ValueError as exc:
            yield f"caught {exc}"

    async def main():
        agen = guarded()
        first = await agen.__anext__()
        second = await agen.athrow(ValueError("boom"))
        await agen.aclose()
        return first, second

    assert asyncio.run(main()) == ("first", "caught boom")
    assert seen[0].ended
    assert seen[0].error_type is None


def test_cancelled_coroutine_records_cancellation_and_propagates():
    """Cancelling a task running a tracked coroutine records CancelledError and still cancels the task."""
    seen = []

    @tracked.tracked
    async def wait_forever():
        seen.append(current_call())
        await asyncio.Event().wait()

    async def main():
        task = asyncio.create_task(wait_forever())
        while not seen:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert asyncio.run(main()) is True
    assert seen[0].error_type == "CancelledError"
    assert seen[0].ended


# --- model, provider and capture_io options --------------------------------------------------


def test_model_argument_and_default_are_recorded():
    """Without usage, the call's model comes from the decorator, else the `model` argument or its default."""
    seen = []

    @tracked.tracked
    def ask(prompt, model="llama3.2:3b"):
        seen.append(current_call())

    @tracked.tracked(model="deco-model")
    def ask_fixed(prompt, model="arg-default"):
        seen.append(current_call())

    @tracked.tracked
    def ask_kwonly(prompt, *, model="kw-default"):
        seen.append(current_call())

    ask("p")
    ask("p", "positional")
    ask("p", model="keyword")
    ask_fixed("p", model="ignored")
    ask_kwonly("p")
    ask_kwonly("p", model="kw-given")
    assert [c.model for c in seen] == ["llama3.2:3b", "positional", "keyword", "deco-model", "kw-default", "kw-given"]


def test_capture_io_records_redacted_inputs_and_output():
    """`capture_io=True` records the named inputs, redacting secrets, and the output."""
    seen = []

    @tracked.tracked(capture_io=True)
    def ask(prompt, api_key, temperature=0.5):
        seen.append(current_call())
        return "the answer"

    ask("what is 2+2?", "sk-abcdefghijklmnop", temperature=0.1)
    call = seen[0]
    assert call.inputs == {"prompt": "what is 2+2?", "api_key": "[REDACTED]", "temperature": 0.1}
    assert call.output == "the answer"


def test_capture_io_false_overrides_global_setting():
    """`capture_io=False` on the decorator wins over `configure(capture_io=True)`, and None follows it."""
    tracked.configure(capture_io=True)
    seen = []

    @tracked.tracked(capture_io=False)
    def quiet(x):
        seen.append(current_call())
        return x

    @tracked.tracked
    def loud(x):
        seen.append(current_call())
        return x

    quiet("secret stuff")
    loud("visible")
    assert seen[0].inputs is None and seen[0].output is None
    assert seen[1].inputs == {"x": "visible"}
    assert seen[1].output == "visible"


def test_capture_io_method_skips_self():
    """Captured inputs of a method do not include `self`."""
    seen = []

    class Bot:
        @tracked.tracked(capture_io=True)
        def reply(self, text):
            seen.append(current_call())
            return text[::-1]

    Bot().reply("abc")
    assert seen[0].inputs == {"text": "abc"}
    assert seen[0].output == "cba"


def test_plain_function_with_first_parameter_named_cls():
    """A plain function whose first parameter is named `cls` has its `model` argument and inputs read correctly."""
    seen = []

    @tracked.tracked(capture_io=True)
    def build(cls, model="default-model"):
        seen.append(current_call())
        return cls.__name__

    assert build(dict, "gpt-4o") == "dict"
    assert seen[0].model == "gpt-4o"
    assert seen[0].inputs == {"cls": "<class 'dict'>", "model": "gpt-4o"}


def test_method_with_unconventional_self_name():
    """A method whose receiver is not called `self` still has its `model` argument and inputs read correctly."""
    seen = []

    class Client:
        @tracked.tracked(capture_io=True)
        def ask(this, prompt, model="default-model"):
            seen.append(current_call())
            return prompt

    assert Client().ask("hello", "gpt-4o") == "hello"
    assert seen[0].model == "gpt-4o"
    assert seen[0].inputs == {"prompt": "hello", "model": "gpt-4o"}


def test_call_ids_are_unique_and_call_is_not_current_after_return():
    """Every call has a distinct id, and `current_call()` is None again once a top-level call returns."""
    seen = []

    @tracked.tracked
    def f():
        seen.append(current_call())

    for _ in range(20):
        f()
    assert len({c.id for c in seen}) == 20
    assert all(c.parent_id is None for c in seen)
    assert current_call() is None


# --- wrappers: the kind is the decorated object's, not what it wraps ------------------------------

KINDS = ["plain", "coroutine", "generator", "async generator"]


def _inner(kind: str):
    """A function of `kind` whose items (or value) are [1, 2]."""
    if kind == "plain":

        def inner():
            return [1, 2]

    elif kind == "coroutine":

        async def inner():
            return [1, 2]

    elif kind == "generator":

        def inner():
            yield 1
            yield 2

    else:

        async def inner():
            yield 1
            yield 2

    return inner


def _sync_value(fn, kind: str) -> list:
    if kind == "plain":
        return fn()
    if kind == "coroutine":
        return asyncio.run(fn())
    if kind == "generator":
        return list(fn())

    async def collect():
        return [x async for x in fn()]

    return asyncio.run(collect())


async def _async_value(fn, kind: str) -> list:
    if kind == "plain":
        return fn()
    if kind == "coroutine":
        return await fn()
    if kind == "generator":
        return list(fn())
    return [x async for x in fn()]


def _helper(outer: str, inner_kind: str, seen: list):
    """A `functools.wraps` helper of kind `outer` around a function of kind `inner_kind`."""
    inner = _inner(inner_kind)
    if outer == "plain":

        @functools.wraps(inner)
        def helper():
            seen.append(current_call())
            return _sync_value(inner, inner_kind)

    elif outer == "coroutine":

        @functools.wraps(inner)
        async def helper():
            seen.append(current_call())
            return await _async_value(inner, inner_kind)

    elif outer == "generator":

        @functools.wraps(inner)
        def helper():
            seen.append(current_call())
            yield from _sync_value(inner, inner_kind)

    else:

        @functools.wraps(inner)
        async def helper():
            seen.append(current_call())
            for x in await _async_value(inner, inner_kind):
                yield x

    return helper


def _kind_of_callable(fn) -> tuple[bool, bool, bool]:
    return inspect.iscoroutinefunction(fn), inspect.isgeneratorfunction(fn), inspect.isasyncgenfunction(fn)


@pytest.mark.parametrize("inner", KINDS)
@pytest.mark.parametrize("outer", KINDS)
def test_a_wraps_helper_keeps_its_own_kind_whatever_it_wraps(outer, inner):
    """A `functools.wraps` helper of one kind around another kind keeps its own kind and result once decorated."""
    seen: list = []
    helper = _helper(outer, inner, seen)
    decorated = tracked.tracked(helper)
    assert _kind_of_callable(decorated) == _kind_of_callable(helper)
    assert _sync_value(helper, outer) == [1, 2]
    assert _sync_value(decorated, outer) == [1, 2]
    assert seen[0] is None  # the undecorated run
    assert seen[1] is not None and seen[1].name == "inner" and seen[1].ended


def test_a_decorated_partial_is_named_for_the_function_it_calls():
    """`tracked(functools.partial(f, 1))` is named `f`, not a repr with a memory address, so its keys are stable."""
    import functools

    def add(x: int, y: int) -> int:
        return x + y

    call = tracked.tracked(functools.partial(add, 1))
    with tracked.experiment("partial", wandb=False, local=False) as exp:
        assert call(2) == 3
    assert exp.final_summary["total/calls"] == 1
    assert tracked._tracked._Spec(functools.partial(functools.partial(add, 1), 2), None, None, None, None).name == "add"
