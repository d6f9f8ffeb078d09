"""Every way of writing an LLM call gives the figures the server sent, once.

A table: each way a user writes a call (a decorated function returning the response or the stream,
a generator yielding chunks or text, a function joining a stream's text, no decoration at all, a
stream left early), for the real OpenAI, Anthropic and Ollama clients, sync and async, with the
client instrumented and (where the way carries the usage to tracked by itself) without. Tokens,
cost and `llm_calls` are checked against the loopback server's ledger (cost from genai-prices' own
`extract_usage` + `calc_price` on the raw usage it sent).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

import tracked
import tracked.testing
from loopback import Loopback
from tracked.testing import capture

MESSAGES = [{"role": "user", "content": "Where will Sally look for the marble?"}]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "ollama": "llama3.2:3b"}


# --- one request per library: plain or streamed, and the text of a stream item ---------------------


def create(library: str, client: Any, stream: bool) -> Any:
    """The request as the user writes it (an OpenAI stream asks for its usage: without it, nothing can be read)."""
    model = MODELS[library]
    if library == "openai":
        extra = {"stream_options": {"include_usage": True}} if stream else {}
        return client.chat.completions.create(model=model, messages=MESSAGES, stream=stream, **extra)
    if library == "anthropic":
        return client.messages.create(model=model, max_tokens=64, messages=MESSAGES, stream=stream)
    return client.chat(model=model, messages=MESSAGES, stream=stream)


def text_of(library: str, item: Any) -> str:
    """The text an item of a stream carries ("" for items that carry none)."""
    if library == "openai":
        return (item.choices[0].delta.content or "") if item.choices else ""
    if library == "anthropic":
        return getattr(getattr(item, "delta", None), "text", None) or ""
    return item.message.content or ""


# --- the ways of writing a call: (function of library and client, needs instrumentation) -----------


def return_response(lib: str, c: Any) -> Any:
    return tracked.tracked(lambda: create(lib, c, False), name="ask")()


def return_stream(lib: str, c: Any) -> Any:
    stream = tracked.tracked(lambda: create(lib, c, True), name="ask")()
    return [text_of(lib, item) for item in stream]


def yield_chunks(lib: str, c: Any) -> Any:
    @tracked.tracked(name="ask")
    def ask():
        yield from create(lib, c, True)

    return [text_of(lib, item) for item in ask()]


def yield_text(lib: str, c: Any) -> Any:
    @tracked.tracked(name="ask")
    def ask():
        for item in create(lib, c, True):
            if text := text_of(lib, item):
                yield text

    return "".join(ask())


def join_text(lib: str, c: Any) -> Any:
    @tracked.tracked(name="ask")
    def ask():
        return "".join(text_of(lib, item) for item in create(lib, c, True))

    return ask()


def helper_text_stream(lib: str, c: Any) -> Any:
    """Anthropic's `messages.stream()` helper, yielding its `text_stream` (other libraries: their stream's text)."""

    @tracked.tracked(name="ask")
    def ask():
        if lib == "anthropic":
            with c.messages.stream(model=MODELS[lib], max_tokens=64, messages=MESSAGES) as s:
                yield from s.text_stream
        else:
            yield from (text_of(lib, item) for item in create(lib, c, True))

    return "".join(ask())


def bare(lib: str, c: Any) -> Any:
    return create(lib, c, False)


def bare_stream(lib: str, c: Any) -> Any:
    return [text_of(lib, item) for item in create(lib, c, True)]


SYNC: dict[str, tuple[Callable[[str, Any], Any], bool]] = {
    "decorated, returns the response": (return_response, False),
    "decorated, returns the stream": (return_stream, False),
    "generator yielding chunks": (yield_chunks, False),
    "generator yielding text": (yield_text, True),
    "decorated, joins the stream's text": (join_text, True),
    "generator over a stream helper's text": (helper_text_stream, True),
    "no decoration": (bare, True),
    "no decoration, streamed": (bare_stream, True),
}


async def acreate(library: str, client: Any, stream: bool) -> Any:
    model = MODELS[library]
    if library == "openai":
        extra = {"stream_options": {"include_usage": True}} if stream else {}
        return await client.chat.completions.create(model=model, messages=MESSAGES, stream=stream, **extra)
    if library == "anthropic":
        return await client.messages.create(model=model, max_tokens=64, messages=MESSAGES, stream=stream)
    return await client.chat(model=model, messages=MESSAGES, stream=stream)


async def areturn_response(lib: str, c: Any) -> Any:
    @tracked.tracked(name="ask")
    async def ask():
        return await acreate(lib, c, False)

    return await ask()


async def areturn_stream(lib: str, c: Any) -> Any:
    @tracked.tracked(name="ask")
    async def ask():
        return await acreate(lib, c, True)

    return [text_of(lib, item) async for item in await ask()]


async def ayield_chunks(lib: str, c: Any) -> Any:
    @tracked.tracked(name="ask")
    async def ask():
        async for item in await acreate(lib, c, True):
            yield item

    return [text_of(lib, item) async for item in ask()]


async def ayield_text(lib: str, c: Any) -> Any:
    @tracked.tracked(name="ask")
    async def ask():
        async for item in await acreate(lib, c, True):
            if text := text_of(lib, item):
                yield text

    return "".join([t async for t in ask()])


async def ajoin_text(lib: str, c: Any) -> Any:
    @tracked.tracked(name="ask")
    async def ask():
        return "".join([text_of(lib, item) async for item in await acreate(lib, c, True)])

    return await ask()


async def abare(lib: str, c: Any) -> Any:
    return await acreate(lib, c, False)


async def abare_stream(lib: str, c: Any) -> Any:
    return [text_of(lib, item) async for item in await acreate(lib, c, True)]


ASYNC: dict[str, tuple[Callable[[str, Any], Any], bool]] = {
    "decorated, returns the response": (areturn_response, False),
    "decorated, returns the stream": (areturn_stream, False),
    "generator yielding chunks": (ayield_chunks, False),
    "generator yielding text": (ayield_text, True),
    "decorated, joins the stream's text": (ajoin_text, True),
    "no decoration": (abare, True),
    "no decoration, streamed": (abare_stream, True),
}


def cases(table: dict[str, tuple[Any, bool]]) -> list[Any]:
    out = []
    for way, (_, needs) in table.items():
        for lib in MODELS:
            for instrumented in (True, False):
                if instrumented or not needs:
                    out.append(
                        pytest.param(way, lib, instrumented, id=f"{lib}-{way}-{'inst' if instrumented else 'plain'}")
                    )
    return out


# --- fixtures and the check --------------------------------------------------------------------------


@pytest.fixture
def lb(server):
    server.ledger.clear()
    yield server
    for name in MODELS:
        tracked.uninstrument(name)


def client(lb: Loopback, lib: str, instrumented: bool, *, async_: bool = False) -> Any:
    c = getattr(lb, lib)(async_=async_)
    if instrumented:  # the server is on loopback: say which price list applies (Ollama's is local)
        tracked.instrument(c, provider=None if lib == "ollama" else lib)
    return c


def assert_equals_ledger(lb: Loopback, summary: dict[str, Any], lib: str) -> None:
    (sent,) = lb.ledger.sent
    want_in, want_out = sent.tokens()
    assert want_in > 0 and want_out > 0
    assert summary["total/calls"] == 1
    assert summary["total/llm_calls"] == 1
    assert summary["total/tokens_in"] == want_in
    assert summary["total/tokens_out"] == want_out
    assert summary["total/cost_usd"] == pytest.approx(sent.cost(), rel=1e-9, abs=1e-15)
    assert summary["total/cost_complete"] is True
    assert (summary["total/cost_usd"] > 0) is (lib != "ollama")


@pytest.mark.parametrize(("way", "lib", "instrumented"), cases(SYNC))
def test_each_way_of_writing_a_call_equals_the_ledger(lb, tmp_path, way, lib, instrumented):
    """Written this way, with this client, the call is counted once with the tokens and cost the server sent."""
    fn, _ = SYNC[way]
    c = client(lb, lib, instrumented)
    with tracked.experiment("ways", dir=tmp_path, wandb=False) as exp:
        fn(lib, c)
    assert_equals_ledger(lb, exp.final_summary, lib)
    (c._client if lib == "ollama" else c).close()


@pytest.mark.parametrize(("way", "lib", "instrumented"), cases(ASYNC))
def test_each_async_way_of_writing_a_call_equals_the_ledger(lb, tmp_path, way, lib, instrumented):
    """Async, written this way, the call is counted once with the tokens and cost the server sent."""
    fn, _ = ASYNC[way]

    async def main() -> tracked.Experiment:
        c = client(lb, lib, instrumented, async_=True)
        async with tracked.experiment("aways", dir=tmp_path, wandb=False) as exp:
            await fn(lib, c)
        await (c._client.aclose() if lib == "ollama" else c.close())
        return exp

    exp = asyncio.run(main())
    assert_equals_ledger(lb, exp.final_summary, lib)


@pytest.mark.parametrize("lib", list(MODELS))
@pytest.mark.parametrize("instrumented", [True, False], ids=["inst", "plain"])
def test_a_stream_left_early_is_one_incomplete_llm_call_of_unknown_cost(lb, tmp_path, lib, instrumented):
    """A stream the code leaves is one LLM call, incomplete, of unknown usage (not its partial counts), warned once."""

    @tracked.tracked(name="ask")
    def ask():
        for item in create(lib, c, True):
            if text_of(lib, item):
                return text_of(lib, item)
        return ""

    c = client(lb, lib, instrumented)
    with pytest.warns(tracked.TrackedWarning, match="left before its usage"):
        with capture() as captured, tracked.experiment("early", dir=tmp_path, wandb=False) as exp:
            if instrumented:
                ask()
            else:  # a decorated function returning the stream, left early by its caller
                stream = tracked.tracked(lambda: create(lib, c, True), name="ask")()
                for item in stream:
                    if text_of(lib, item):
                        break
                stream.close()
    summary = exp.final_summary
    assert summary["total/llm_calls"] == 1
    # Its tokens are unknown; its cost too, unless the client is known to be local (free whatever it used).
    local = lib == "ollama" and instrumented
    assert summary["total/cost_complete"] is local
    assert summary["total/unpriced_calls"] == (0 if local else 1)
    records = captured["early"].calls
    assert any(r.get("incomplete") and r.get("usage_unknown") for r in records)
    (c._client if lib == "ollama" else c).close()


@pytest.mark.parametrize("lib", list(MODELS))
def test_an_async_stream_left_early_is_one_incomplete_llm_call_of_unknown_cost(lb, tmp_path, lib):
    """An async stream left in its loop is one incomplete LLM call of unknown usage, in the totals."""

    @tracked.tracked(name="ask")
    async def ask(c: Any) -> str:
        async for item in await acreate(lib, c, True):
            if text := text_of(lib, item):
                return text
        return ""

    async def main() -> tracked.Experiment:
        c = client(lb, lib, True, async_=True)
        async with tracked.experiment("aearly", dir=tmp_path, wandb=False) as exp:
            await ask(c)
        await (c._client.aclose() if lib == "ollama" else c.close())
        return exp

    with pytest.warns(tracked.TrackedWarning) as caught:
        with capture() as captured:
            exp = asyncio.run(main())
    messages = [str(w.message) for w in caught]
    assert any("left before its usage" in m for m in messages), messages
    # Ended when asyncio closes the generator, which may be after ask returned: then late, and said so.
    summary = exp.final_summary
    assert summary["total/llm_calls"] == 1
    assert summary["total/cost_complete"] is (lib == "ollama")
    (record,) = [r for r in captured["aearly"].calls if r["name"] != "ask"]
    assert record["incomplete"] and record["usage_unknown"]
    assert bool(record.get("late")) is any("ended after ask" in m for m in messages)


@pytest.mark.parametrize("lib", list(MODELS))
def test_a_stream_still_open_when_its_experiment_ends_is_counted(lb, tmp_path, lib):
    """A stream the code still holds, unfinished, when the experiment ends is one incomplete LLM call in its totals."""
    c = client(lb, lib, True)
    with pytest.warns(tracked.TrackedWarning, match="still running when its experiment finished"):
        with capture() as captured, tracked.experiment("open", dir=tmp_path, wandb=False) as exp:
            stream = create(lib, c, True)
            first = next(iter(stream))
    assert first is not None
    summary = exp.final_summary
    assert summary["total/calls"] == 1
    assert summary["total/llm_calls"] == 1
    assert summary["total/cost_complete"] is (lib == "ollama")
    (record,) = captured["open"].calls
    assert record["incomplete"] and record["usage_unknown"]
    assert record["tokens_in"] is None and record["tokens_out"] is None  # unknown, not 0
    del stream
    (c._client if lib == "ollama" else c).close()


def test_requests_still_running_when_the_experiment_ends_are_counted_as_unknown(lb, tmp_path):
    """LLM calls still in flight in a thread pool when the block exits are counted, usage unknown, and said so."""
    c = client(lb, "openai", True)
    pool = tracked.ThreadPoolExecutor(2)

    @tracked.tracked
    def fire_and_forget(n: int) -> list[Any]:
        return [pool.submit(create, "openai", c, False) for _ in range(n)]

    lb.set_delay(0.3)
    try:
        with pytest.warns(tracked.TrackedWarning) as caught:
            with tracked.experiment("inflight", dir=tmp_path, wandb=False) as exp:
                futures = fire_and_forget(2)
                time.sleep(0.1)  # the requests are sent; their answers take 0.3 s
            replies = [f.result() for f in futures]
    finally:
        lb.set_delay(0)
        pool.shutdown()
    assert all(r.choices for r in replies)  # the code's own results are untouched
    summary = exp.final_summary
    assert summary["total/llm_calls"] == 2 == len(lb.ledger.sent)
    assert summary["total/cost_complete"] is False and summary["total/unpriced_calls"] == 2
    assert any("still running when its experiment finished" in str(w.message) for w in caught)
    c.close()


@pytest.mark.parametrize("lib", ["openai", "anthropic"])  # (Ollama sends nothing until iterated: tested below)
def test_a_stream_dropped_without_being_read_ends_when_dropped(lb, tmp_path, lib):
    """A stream the code drops without iterating it ends then (not at the experiment's end), incomplete."""
    c = client(lb, lib, True)
    with pytest.warns(tracked.TrackedWarning, match="left before its usage"):
        with tracked.experiment("dropped", dir=tmp_path, wandb=False) as exp:
            stream = create(lib, c, True)
            del stream
            calls_after_drop = exp.totals["total/calls"]
            time.sleep(0.2)
    assert calls_after_drop == 1
    record = tracked.testing.read_experiment(exp.dir).calls[0]
    assert record["incomplete"] and record["latency_s"] < 0.2
    (c._client if lib == "ollama" else c).close()


@pytest.mark.parametrize("lib", ["openai"])
def test_a_stream_read_to_its_end_without_usage_says_so(lb, tmp_path, lib):
    """A stream read to its end with usage not asked for warns that it ended without usage, not that it was left."""
    c = lb.openai()
    tracked.instrument(c, provider="openai", stream_usage=False)
    with pytest.warns(tracked.TrackedWarning, match="ended without its usage"):
        with tracked.experiment("nousage", dir=tmp_path, wandb=False) as exp:
            chunks = list(c.chat.completions.create(model=MODELS[lib], messages=MESSAGES, stream=True))
    assert chunks
    assert exp.final_summary["total/llm_calls"] == 1
    c.close()


def test_a_call_started_after_its_experiment_finished_warns(tmp_path):
    """Work begun in an experiment's context after it finished is in none of its figures, and a warning says so."""
    import contextvars

    with tracked.experiment("gone", dir=tmp_path, wandb=False) as exp:
        ctx = contextvars.copy_context()

    @tracked.tracked
    def straggler() -> int:
        return 1

    with pytest.warns(tracked.TrackedWarning, match="started after its experiment 'gone' had finished"):
        assert ctx.run(straggler) == 1
    assert exp.final_summary["total/calls"] == 0


@pytest.mark.parametrize("leave", [False, True], ids=["read whole", "left early"])
def test_a_generator_yielding_chunks_without_usage_is_one_llm_call_of_unknown_cost(lb, tmp_path, leave):
    """Uninstrumented, a generator yielding OpenAI chunks without their usage is an LLM call of unknown cost, not $0."""
    c = lb.openai()

    @tracked.tracked(name="ask")
    def ask(include_usage: bool):
        extra = {"stream_options": {"include_usage": True}} if include_usage else {}
        yield from c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, **extra)

    with pytest.warns(tracked.TrackedWarning, match="tokens and cost are unknown"):
        with tracked.experiment("chunks", dir=tmp_path, wandb=False) as exp:
            if leave:
                for _ in ask(True):
                    break
            else:
                assert list(ask(False))
    summary = exp.final_summary
    assert summary["total/llm_calls"] == 1
    assert summary["total/cost_usd"] is None and summary["total/cost_complete"] is False
    c.close()


def test_a_tracked_call_still_running_when_the_experiment_ends_keeps_its_finished_llm_calls(lb, tmp_path):
    """A strategy still running in an unwaited pool at the block's exit: its finished LLM call counts, warned."""
    import threading

    c = client(lb, "openai", True)
    pool = tracked.ThreadPoolExecutor(1)
    called, release = threading.Event(), threading.Event()

    @tracked.tracked
    def strategy() -> None:
        create("openai", c, False)
        called.set()
        release.wait(5)

    try:
        with pytest.warns(tracked.TrackedWarning) as caught:
            with tracked.experiment("cut", dir=tmp_path, wandb=False) as exp:
                future = pool.submit(strategy)
                assert called.wait(5)
            release.set()
            future.result()
    finally:
        pool.shutdown()
    (sent,) = lb.ledger.sent
    summary = exp.final_summary
    assert summary["total/llm_calls"] == 1
    assert (summary["total/tokens_in"], summary["total/tokens_out"]) == sent.tokens()
    assert summary["total/cost_usd"] == pytest.approx(sent.cost(), rel=1e-9)
    assert summary["total/cost_complete"] is True
    assert any("still running when experiment 'cut' finished" in str(w.message) for w in caught)
    c.close()


@pytest.mark.parametrize("inner", ["plain call", "uninstrumented stream"])
def test_a_generator_suspended_when_the_experiment_ends_is_counted(lb, tmp_path, inner):
    """A tracked generator held unfinished past the block: its finished call counts, or its stream as unknown."""
    c = lb.openai()
    if inner == "plain call":
        tracked.instrument(c, provider="openai")

    @tracked.tracked
    def gen():
        if inner == "plain call":
            yield create("openai", c, False)
        else:
            yield from create("openai", c, True)

    with pytest.warns(tracked.TrackedWarning, match="still running when experiment"):
        with tracked.experiment("held", dir=tmp_path, wandb=False) as exp:
            g = gen()
            next(g)
    summary = exp.final_summary
    assert summary["total/llm_calls"] == 1
    if inner == "plain call":
        (sent,) = lb.ledger.sent
        assert summary["total/cost_usd"] == pytest.approx(sent.cost(), rel=1e-9)
    else:
        assert summary["total/cost_usd"] is None and summary["total/cost_complete"] is False
    g.close()
    c.close()


def test_an_async_generator_passing_an_instrumented_stream_on_counts_it_once(lb, tmp_path):
    """An async tracked generator yielding an instrumented stream's chunks, left early, is one LLM call, not two."""

    @tracked.tracked(name="relay")
    async def relay(c: Any):
        async for chunk in await acreate("openai", c, True):
            yield chunk

    async def main() -> tracked.Experiment:
        c = client(lb, "openai", True, async_=True)
        async with tracked.experiment("relay", dir=tmp_path, wandb=False) as exp:
            async for _ in relay(c):
                break
            await asyncio.sleep(0.05)
        await c.close()
        return exp

    with pytest.warns(tracked.TrackedWarning):
        exp = asyncio.run(main())
    assert exp.final_summary["total/llm_calls"] == 1 == len(lb.ledger.sent)


def test_an_unawaited_task_running_at_the_experiments_end_keeps_its_finished_llm_calls(lb, tmp_path):
    """An asyncio task still running as `async with experiment` exits: its finished LLM call counts, warned."""

    @tracked.tracked
    async def strategy(c: Any, started: asyncio.Event, release: asyncio.Event) -> None:
        await acreate("openai", c, False)
        started.set()
        await release.wait()

    async def main() -> tracked.Experiment:
        c = client(lb, "openai", True, async_=True)
        started, release = asyncio.Event(), asyncio.Event()
        async with tracked.experiment("atask", dir=tmp_path, wandb=False) as exp:
            task = asyncio.create_task(strategy(c, started, release))
            await started.wait()
        release.set()
        await task
        await c.close()
        return exp

    with pytest.warns(tracked.TrackedWarning, match="still running when experiment 'atask' finished"):
        exp = asyncio.run(main())
    (sent,) = lb.ledger.sent
    summary = exp.final_summary
    assert summary["total/llm_calls"] == 1
    assert (summary["total/tokens_in"], summary["total/tokens_out"]) == sent.tokens()
    assert summary["total/cost_usd"] == pytest.approx(sent.cost(), rel=1e-9)


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
def test_an_ollama_stream_dropped_before_its_first_item_is_no_llm_call(lb, tmp_path, async_):
    """Ollama's stream sends its request when first iterated: dropped before, it is no LLM call (none sent)."""

    async def amain() -> None:
        c = client(lb, "ollama", True, async_=True)
        stream = await acreate("ollama", c, True)
        del stream
        await c._client.aclose()

    with tracked.experiment("unsent", dir=tmp_path, wandb=False) as exp:
        if async_:
            asyncio.run(amain())
        else:
            c = client(lb, "ollama", True)
            stream = create("ollama", c, True)
            del stream
            c._client.close()
    assert lb.ledger.sent == []
    assert exp.final_summary["total/llm_calls"] == 0
    assert exp.final_summary["total/cost_complete"] is True


def test_a_call_made_by_a_generator_after_its_experiment_finished_says_it_is_not_counted(lb, tmp_path):
    """A held generator's LLM call made after the block exits warns that it is in none of the experiment's figures."""
    c = client(lb, "openai", True)

    @tracked.tracked
    def gen():
        while True:
            yield create("openai", c, False)

    with pytest.warns(tracked.TrackedWarning) as caught:
        with tracked.experiment("after", dir=tmp_path, wandb=False) as exp:
            g = gen()
            next(g)
        next(g)  # a second LLM call, after the experiment finished
    g.close()
    messages = [str(w.message) for w in caught]
    assert any("ended after its experiment 'after' had finished" in m for m in messages)
    assert not any("counted in the experiment's totals" in m for m in messages)
    assert exp.final_summary["total/llm_calls"] == 1 and len(lb.ledger.sent) == 2
    c.close()


def test_a_parents_record_says_how_many_of_its_llm_calls_have_no_cost(lb, tmp_path):
    """A strategy with one priced call and one stream left early: its record's cost leaves one call out, and says so."""
    c = client(lb, "openai", True)

    @tracked.tracked
    def strategy() -> None:
        create("openai", c, False)
        for _ in create("openai", c, True):
            break

    with pytest.warns(tracked.TrackedWarning, match="left before its usage"):
        with capture() as captured, tracked.experiment("partial", dir=tmp_path, wandb=False):
            strategy()
    (record,) = [r for r in captured["partial"].calls if r["name"] == "strategy"]
    priced = lb.ledger.sent[0]
    assert record["llm_calls"] == 2 and record["unpriced_calls"] == 1
    assert record["cost_usd"] == pytest.approx(priced.cost(), rel=1e-9)
    c.close()
