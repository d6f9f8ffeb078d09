"""`tracked.instrument`: the real OpenAI, Anthropic and Ollama clients against a loopback server.

Every figure is checked against the server's ledger: tokens as sent, cost from genai-prices' own
`extract_usage` + `calc_price` on the raw usage the server sent.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import warnings
from collections.abc import Callable
from typing import Any

import pydantic
import pytest

import tracked
import tracked.testing
from loopback import Loopback
from tracked.testing import capture, read_experiment

CLAUDE = "claude-haiku-4-5"
MESSAGES = [{"role": "user", "content": "Where will Sally look for the marble?"}]


_made: list[Any] = []  # sync clients made by a test, closed after it


@pytest.fixture
def lb(server):
    server.ledger.clear()
    server.fail(0)
    yield server
    for name in ("openai", "anthropic", "ollama"):
        tracked.uninstrument(name)
    while _made:
        close(_made.pop())


def close(client: Any) -> None:
    """Close a sync client's connections (Ollama's through its httpx client)."""
    inner = getattr(client, "_client", None)
    (client.close if hasattr(client, "close") and not hasattr(inner, "stream") else inner.close)()


async def aclose(client: Any) -> None:
    inner = getattr(client, "_client", None)
    if hasattr(inner, "aclose"):
        await inner.aclose()
    else:
        await client.close()


def made(client: Any) -> Any:
    """A client to close after the test."""
    _made.append(client)
    return client


def clients(lb: Loopback, *, async_: bool = False) -> dict[str, Any]:
    """One client per library, instrumented with the provider whose prices apply (the server is local)."""
    out = {
        "openai": lb.openai(async_=async_),
        "anthropic": lb.anthropic(async_=async_),
        "ollama": lb.ollama(async_=async_),
    }
    for name, client in out.items():
        tracked.instrument(client, provider=None if name == "ollama" else name)
    if not async_:
        _made.extend(out.values())
    return out


# --- every way of calling, sync ---------------------------------------------------------------------


def chat(c):
    return c["openai"].chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def chat_parse(c):
    return c["openai"].chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES)


def chat_stream(c):
    return "".join(ch.choices[0].delta.content or "" for ch in c["openai"].chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True))  # fmt: skip


def chat_stream_asked(c):
    stream = c["openai"].chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    return [ch.usage for ch in stream if ch.usage is not None]


def chat_raw(c):
    return c["openai"].chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES).parse()


def responses(c):
    return c["openai"].responses.create(model="gpt-4o-mini", input="Where will Sally look?")


def responses_stream(c):
    return [e.type for e in c["openai"].responses.create(model="gpt-4o-mini", input="Where?", stream=True)]


def embeddings(c):
    return c["openai"].embeddings.create(model="text-embedding-3-small", input=["a marble", "a basket"])


def messages(c):
    return c["anthropic"].messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES)


def messages_stream_true(c):
    return [e.type for e in c["anthropic"].messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True)]


def messages_stream_helper(c):
    with c["anthropic"].messages.stream(model=CLAUDE, max_tokens=64, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    return text, final.usage.output_tokens


def ollama_chat(c):
    return c["ollama"].chat(model="llama3.2:3b", messages=MESSAGES)


def ollama_chat_stream(c):
    return "".join(p.message.content for p in c["ollama"].chat(model="llama3.2:3b", messages=MESSAGES, stream=True))


def ollama_generate_stream(c):
    return "".join(p.response for p in c["ollama"].generate(model="llama3.2:3b", prompt="Where?", stream=True))


def ollama_embed(c):
    return c["ollama"].embed(model="nomic-embed-text", input="a marble")


SYNC: dict[str, tuple[Callable[[Any], Any], str]] = {
    "chat": (chat, "openai.chat.completions.create"),
    "chat.parse": (chat_parse, "openai.chat.completions.create"),
    "chat stream": (chat_stream, "openai.chat.completions.create"),
    "chat stream, usage asked": (chat_stream_asked, "openai.chat.completions.create"),
    "chat with_raw_response": (chat_raw, "openai.chat.completions.create"),
    "responses": (responses, "openai.responses.create"),
    "responses stream": (responses_stream, "openai.responses.create"),
    "embeddings": (embeddings, "openai.embeddings.create"),
    "messages": (messages, "anthropic.messages.create"),
    "messages stream=True": (messages_stream_true, "anthropic.messages.create"),
    "messages.stream()": (messages_stream_helper, "anthropic.messages.create"),
    "ollama chat": (ollama_chat, "ollama.chat"),
    "ollama chat stream": (ollama_chat_stream, "ollama.chat"),
    "ollama generate stream": (ollama_generate_stream, "ollama.generate"),
    "ollama embed": (ollama_embed, "ollama.embed"),
}


def assert_matches_ledger(lb: Loopback, exp: tracked.Experiment, name: str) -> None:
    """The experiment's one row, its totals and its call record equal what the server sent."""
    (sent,) = lb.ledger.sent
    want_in, want_out = sent.tokens()
    summary = exp.final_summary
    assert summary["total/llm_calls"] == 1
    assert summary["total/tokens_in"] == want_in
    assert summary["total/tokens_out"] == want_out
    assert summary["total/cost_usd"] == pytest.approx(sent.cost(), rel=1e-9, abs=1e-15)
    assert summary["total/cost_complete"] is True
    assert f"{name}/calls" not in summary  # one call name: its block would repeat total/*


@pytest.mark.parametrize("case", list(SYNC))
def test_each_way_of_calling_is_one_row_equal_to_the_ledger(lb, tmp_path, case):
    """An instrumented call, plain or streamed, is one row whose tokens and cost equal what the server sent."""
    fn, name = SYNC[case]
    c = clients(lb)
    with capture() as captured, tracked.experiment("inst", dir=tmp_path, wandb=False) as exp:
        fn(c)
    assert_matches_ledger(lb, exp, name)
    (row,) = captured["inst"].rows
    assert row["call"] == name
    (record,) = captured["inst"].calls
    assert record["name"] == name and not record.get("incomplete") and not record.get("usage_unknown")
    if lb.ledger.sent[0].stream:
        assert record["ttft_s"] is not None and 0 < record["ttft_s"] <= record["latency_s"]


class Verdict(pydantic.BaseModel):
    """A structured reply the loopback server's plain-text answers never satisfy."""

    location: str


def parse_refused(c: dict[str, Any], library: str) -> Any:
    """`.parse` with a structured format the server's plain-text reply does not satisfy."""
    if library == "openai":
        return c["openai"].chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES, response_format=Verdict)
    return c["anthropic"].messages.parse(model=CLAUDE, max_tokens=64, messages=MESSAGES, output_format=Verdict)


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("library", ["openai", "anthropic"])
def test_a_reply_refused_by_parse_keeps_its_billed_usage_and_the_error(lb, tmp_path, library, async_):
    """`.parse(...)` raising on a reply the server billed records the error and the ledger's usage."""

    async def amain():
        c = clients(lb, async_=True)
        try:
            await parse_refused(c, library)
        finally:
            for client in c.values():
                await aclose(client)

    with capture() as captured, tracked.experiment("refused", dir=tmp_path, wandb=False) as exp:
        with pytest.raises(pydantic.ValidationError):
            if async_:
                asyncio.run(amain())
            else:
                parse_refused(clients(lb), library)
    assert_matches_ledger(lb, exp, f"{library}.{'chat.completions' if library == 'openai' else 'messages'}.create")
    (record,) = captured["refused"].calls
    assert record["error"] == "ValidationError"
    assert exp.final_summary["total/errors"] == 1


# --- the same, async --------------------------------------------------------------------------------


async def achat(c):
    return await c["openai"].chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


async def achat_stream(c):
    stream = await c["openai"].chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    return [ch async for ch in stream]


async def aresponses_stream(c):
    stream = await c["openai"].responses.create(model="gpt-4o-mini", input="Where?", stream=True)
    return [e async for e in stream]


async def amessages(c):
    return await c["anthropic"].messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES)


async def amessages_stream_helper(c):
    async with c["anthropic"].messages.stream(model=CLAUDE, max_tokens=64, messages=MESSAGES) as stream:
        return [t async for t in stream.text_stream], (await stream.get_final_message()).usage


async def aollama_chat_stream(c):
    return [p async for p in await c["ollama"].chat(model="llama3.2:3b", messages=MESSAGES, stream=True)]


async def aollama_generate(c):
    return await c["ollama"].generate(model="llama3.2:3b", prompt="Where?")


ASYNC = {
    "chat": (achat, "openai.chat.completions.create"),
    "chat stream": (achat_stream, "openai.chat.completions.create"),
    "responses stream": (aresponses_stream, "openai.responses.create"),
    "messages": (amessages, "anthropic.messages.create"),
    "messages.stream()": (amessages_stream_helper, "anthropic.messages.create"),
    "ollama chat stream": (aollama_chat_stream, "ollama.chat"),
    "ollama generate": (aollama_generate, "ollama.generate"),
}


@pytest.mark.parametrize("case", list(ASYNC))
def test_each_async_way_of_calling_is_one_row_equal_to_the_ledger(lb, tmp_path, case):
    """The async clients give the same rows as the sync ones, equal to what the server sent."""
    fn, name = ASYNC[case]

    async def main():
        c = clients(lb, async_=True)
        async with tracked.experiment("ainst", dir=tmp_path, wandb=False) as exp:
            await fn(c)
        for client in c.values():
            await aclose(client)
        return exp

    exp = asyncio.run(main())
    assert_matches_ledger(lb, exp, name)


# --- what the user's code sees ------------------------------------------------------------------------


def test_the_usage_chunk_the_code_did_not_ask_for_is_hidden(lb, tmp_path):
    """A chat stream gets its usage from the server, but the code sees the chunks it would without tracked."""
    c = clients(lb)
    with tracked.experiment("hidden", dir=tmp_path, wandb=False):
        chunks = list(c["openai"].chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert all(ch.choices for ch in chunks)
    assert all(ch.usage is None for ch in chunks)
    assert type(chunks[0]).__name__ == "ChatCompletionChunk"


def test_a_stream_asked_for_usage_by_the_code_keeps_its_usage_chunk(lb, tmp_path):
    """Code that asked for usage itself still gets the usage chunk."""
    c = clients(lb)
    with tracked.experiment("asked", dir=tmp_path, wandb=False):
        usages = chat_stream_asked(c)
    assert len(usages) == 1 and usages[0].prompt_tokens == lb.ledger.sent[0].tokens()[0]


def test_without_stream_usage_a_stream_is_usage_unknown_and_warns_once(lb, tmp_path):
    """With `stream_usage=False` the request is left as written; the call is counted, its usage unknown, one warning."""
    client = made(lb.openai())
    tracked.instrument(client, provider="openai", stream_usage=False)
    with pytest.warns(tracked.TrackedWarning, match="unknown") as caught:
        with tracked.experiment("unasked", dir=tmp_path, wandb=False) as exp:
            for _ in range(3):
                list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert len([w for w in caught if "unknown" in str(w.message)]) == 1
    summary = exp.final_summary
    assert summary["total/llm_calls"] == 3 == len(lb.ledger.sent)
    assert summary["total/unpriced_calls"] == 3
    assert summary["total/cost_complete"] is False
    assert not lb.ledger.sent[0].usage_visible


def test_a_stream_left_early_is_marked_incomplete(lb, tmp_path):
    """`break` then `close()` before the final usage: the call ends then, incomplete, its usage unknown (not 0)."""
    c = clients(lb)
    with pytest.warns(tracked.TrackedWarning, match="left before its usage"):
        with capture() as captured, tracked.experiment("early", dir=tmp_path, wandb=False) as exp:
            stream = c["anthropic"].messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True)
            for event in stream:
                if event.type == "content_block_delta":
                    break  # message_start had come, with a placeholder output count of 1
            stream.close()
    (record,) = captured["early"].calls
    assert record["incomplete"] is True and record["usage_unknown"] is True
    assert record["cost_usd"] is None
    assert exp.final_summary["total/cost_complete"] is False
    assert exp.final_summary["total/llm_calls"] == 1


def test_a_stream_left_after_its_final_usage_is_complete(lb, tmp_path):
    """A stream left once its final usage has come has that usage, equal to the ledger."""
    c = clients(lb)
    with capture() as captured, tracked.experiment("late_break", dir=tmp_path, wandb=False):
        stream = c["anthropic"].messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True)
        for event in stream:
            if event.type == "message_delta":
                break
        stream.close()
    (record,) = captured["late_break"].calls
    assert not record.get("usage_unknown")
    assert (record["tokens_in"], record["tokens_out"]) == lb.ledger.sent[0].tokens()


@pytest.mark.parametrize("helper", ["chat", "anthropic"])
def test_a_stream_helper_left_early_ends_its_call_when_its_block_ends(lb, tmp_path, helper):
    """Leaving an SDK stream helper's `with` block early ends the call there (the helper closes the response)."""
    c = clients(lb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tracked.TrackedWarning)
        with capture() as captured, tracked.experiment("helper", dir=tmp_path, wandb=False):
            if helper == "chat":
                manager = c["openai"].chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES)
            else:
                manager = c["anthropic"].messages.stream(model=CLAUDE, max_tokens=64, messages=MESSAGES)
            with manager as stream:
                for _ in stream:
                    break
            assert len(captured["helper"].rows) == 1  # ended when the block did, not at garbage collection
    (record,) = captured["helper"].calls
    assert record["incomplete"] is True


def test_a_stream_dropped_without_close_ends_when_collected(lb, tmp_path):
    """A stream the code drops half-read ends its call when it is garbage collected."""
    c = clients(lb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tracked.TrackedWarning)  # usage unknown: it was dropped early
        with capture() as captured, tracked.experiment("dropped", dir=tmp_path, wandb=False):
            stream = c["openai"].chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            next(iter(stream))
            del stream
            gc.collect()
            assert len(captured["dropped"].rows) == 1  # ended: its row is written
    assert captured["dropped"].calls[0]["incomplete"] is True


def test_an_error_passes_through_unchanged_and_is_recorded(lb, tmp_path):
    """A provider error reaches the code as the SDK raised it, and the call records it."""
    import openai

    c = clients(lb)
    lb.fail(1)
    with capture() as captured, tracked.experiment("err", dir=tmp_path, wandb=False):
        with pytest.raises(openai.BadRequestError) as info:
            chat(c)
    assert "told to fail" in str(info.value)
    (record,) = captured["err"].calls
    assert record["error"] == "BadRequestError"
    assert not record.get("usage_unknown")


def test_outside_an_experiment_nothing_is_recorded_and_the_result_is_the_sdks(lb):
    """With no experiment, an instrumented client returns exactly what the SDK returns."""
    import openai

    c = clients(lb)
    result = chat(c)
    assert type(result) is openai.types.chat.ChatCompletion
    assert result.usage.prompt_tokens == lb.ledger.sent[0].tokens()[0]


def test_a_request_inside_a_tracked_call_is_its_child(lb, tmp_path):
    """Calls made through an instrumented client inside a `@tracked` function roll up into it, counted once."""
    c = clients(lb)

    @tracked.tracked(name="debate")
    def debate():
        replies = [chat(c) for _ in range(2)]
        messages(c)
        return replies[-1]  # returning a response it measured through the client: not counted again

    with capture() as captured, tracked.experiment("nested", dir=tmp_path, wandb=False) as exp:
        debate()
    totals = lb.ledger.totals()
    summary = exp.final_summary
    assert summary["total/calls"] == 1
    assert summary["total/llm_calls"] == 3 == totals["llm_calls"]
    assert summary["total/tokens_in"] == totals["tokens_in"]
    assert summary["total/tokens_out"] == totals["tokens_out"]
    assert summary["total/cost_usd"] == pytest.approx(totals["cost_usd"], rel=1e-9)
    records = captured["nested"].calls
    parent = next(r for r in records if r["name"] == "debate")
    assert sorted(r["name"] for r in records if r["parent_id"] == parent["id"]) == [
        "anthropic.messages.create", "openai.chat.completions.create", "openai.chat.completions.create",
    ]  # fmt: skip
    assert captured["nested"].rows[0]["model"] == "gpt-4o-mini"  # the returned response's, as without instrumenting


def test_a_library_name_instruments_its_clients_made_before_and_after(lb, tmp_path):
    """`instrument("openai")` covers every client of the library; `uninstrument("openai")` undoes it."""
    before = made(lb.openai())
    tracked.instrument("openai", provider="openai")
    after = made(lb.openai())
    with tracked.experiment("lib", dir=tmp_path, wandb=False) as exp:
        chat({"openai": before})
        chat({"openai": after})
    assert exp.final_summary["total/llm_calls"] == 2
    tracked.uninstrument("openai")
    with tracked.experiment("lib2", dir=tmp_path, wandb=False) as exp2:
        chat({"openai": made(lb.openai())})
    assert exp2.final_summary["total/calls"] == 0


@pytest.mark.parametrize("how", ["client", "library"])
def test_an_azure_openai_client_is_instrumented_like_openai(lb, tmp_path, how):
    """An `openai.AzureOpenAI` client, instrumented itself or through its library, records its calls exactly."""
    import openai

    azure = made(
        openai.AzureOpenAI(azure_endpoint=lb.url, api_key="az-loopback", api_version="2024-10-21", max_retries=0)
    )
    tracked.instrument(azure if how == "client" else "openai", provider="openai")
    with tracked.experiment("azure", dir=tmp_path, wandb=False) as exp:
        reply = azure.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        streamed = list(azure.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert reply.choices[0].message.content and streamed
    assert [type(c).__name__ for c in streamed if not c.choices] == []  # the usage chunk tracked asked for is hidden
    ledger = lb.ledger.totals()
    summary = exp.final_summary
    assert summary["total/llm_calls"] == ledger["llm_calls"] == 2
    assert summary["total/tokens_in"] == ledger["tokens_in"]
    assert summary["total/tokens_out"] == ledger["tokens_out"]
    assert summary["total/cost_usd"] == pytest.approx(ledger["cost_usd"], rel=1e-9)


def test_uninstrument_restores_the_client(lb, tmp_path):
    """After `uninstrument(client)` its requests are not recorded, and it works as before."""
    client = made(lb.openai())
    tracked.instrument(client, provider="openai")
    tracked.uninstrument(client)
    assert "request" not in vars(client)
    with tracked.experiment("un", dir=tmp_path, wandb=False) as exp:
        chat({"openai": client})
    assert exp.final_summary["total/calls"] == 0


def test_instrumenting_twice_records_once(lb, tmp_path):
    """Instrumenting a client twice, or a client and its library, records each request once."""
    client = made(lb.openai())
    tracked.instrument(client, provider="openai")
    tracked.instrument(client, provider="openai")
    with tracked.experiment("twice", dir=tmp_path, wandb=False) as exp:
        chat({"openai": client})
    assert exp.final_summary["total/llm_calls"] == 1


def test_a_loopback_endpoint_is_a_local_provider_at_no_cost(lb, tmp_path):
    """An OpenAI-compatible server on a loopback address is local: cost 0, never the hosted price of the model."""
    client = made(lb.openai())
    tracked.instrument(client)  # no provider=: the address decides
    with capture() as captured, tracked.experiment("local", dir=tmp_path, wandb=False) as exp:
        chat({"openai": client})
    assert lb.ledger.sent[0].cost() > 0  # the hosted price would not be 0
    assert exp.final_summary["total/cost_usd"] == 0.0
    assert exp.final_summary["total/cost_complete"] is True
    (record,) = captured["local"].calls
    assert record["provider"] == "local" and record["local"] is True


def test_bad_targets_are_refused_at_the_call(lb):
    """A target that is not a client, a known library name or None is a TypeError."""
    with pytest.raises(TypeError, match="unknown library"):
        tracked.instrument("cohere")
    with pytest.raises(TypeError, match="OpenAI, Anthropic or Ollama client"):
        tracked.instrument(object())
    with pytest.raises(TypeError, match="provider"):
        tracked.instrument(made(lb.openai()), provider="")


# --- a tracked function that returns a provider's stream --------------------------------------------


def consume_slowly(stream: Any, pause: float = 0.02) -> int:
    n = 0
    for _ in stream:
        time.sleep(pause)
        n += 1
    return n


@pytest.mark.parametrize("instrumented", [False, True])
def test_a_returned_openai_stream_ends_its_call_when_it_ends(lb, tmp_path, instrumented):
    """A `@tracked` function returning a stream: the call lasts until the stream ends, with its usage, counted once."""
    client = made(lb.openai())
    if instrumented:
        tracked.instrument(client, provider="openai")

    @tracked.tracked(name="answer", provider="openai")
    def answer():
        return client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )

    with capture() as captured, tracked.experiment("returned", dir=tmp_path, wandb=False) as exp:
        stream = answer()
        assert type(stream).__name__ == "Stream"
        n = consume_slowly(stream)
    (sent,) = lb.ledger.sent
    summary = exp.final_summary
    assert summary["total/llm_calls"] == 1
    assert (summary["total/tokens_in"], summary["total/tokens_out"]) == sent.tokens()
    assert summary["total/cost_usd"] == pytest.approx(sent.cost(), rel=1e-9)
    (row,) = captured["returned"].rows
    assert row["call"] == "answer"
    assert row["latency_s"] >= 0.02 * n  # to the end of the stream, not the return
    assert not any(c.get("late") for c in captured["returned"].calls)


def test_a_returned_stream_closed_early_is_incomplete(lb, tmp_path):
    """A returned stream closed before its end ends the call then, marked incomplete, its usage unknown."""
    client = made(lb.anthropic())

    @tracked.tracked(provider="anthropic")
    def answer():
        return client.messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True)

    with pytest.warns(tracked.TrackedWarning, match="left before its usage"):
        with capture() as captured, tracked.experiment("closed", dir=tmp_path, wandb=False):
            stream = answer()
            for event in stream:
                if event.type == "content_block_delta":
                    break
            stream.close()
            assert len(captured["closed"].rows) == 1
    (record,) = captured["closed"].calls
    assert record["incomplete"] is True and record["usage_unknown"] is True


def test_a_returned_async_stream_lasts_until_its_end(lb, tmp_path):
    """An `async def` returning an `AsyncStream`: the call's latency runs to the stream's end, with its tokens."""

    async def main():
        client = lb.openai(async_=True)

        @tracked.tracked(provider="openai")
        async def answer():
            return await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )

        async with tracked.experiment("astream", dir=tmp_path, wandb=False) as exp:
            stream = await answer()
            async for _ in stream:
                await asyncio.sleep(0.02)
        await client.close()
        return exp

    exp = asyncio.run(main())
    (sent,) = lb.ledger.sent
    summary = exp.final_summary
    assert (summary["total/tokens_in"], summary["total/tokens_out"]) == sent.tokens()
    assert summary["latency_s/mean"] >= 0.02 * 5


def test_a_returned_ollama_stream_is_read_to_its_last_chunk(lb, tmp_path):
    """A `@tracked` function returning Ollama's stream gets the counts of its last chunk."""
    client = made(lb.ollama())

    @tracked.tracked
    def answer():
        return client.chat(model="llama3.2:3b", messages=MESSAGES, stream=True)

    with tracked.experiment("ostream", dir=tmp_path, wandb=False) as exp:
        text = "".join(p.message.content for p in answer())
    (sent,) = lb.ledger.sent
    assert text == sent.text
    assert (exp.final_summary["total/tokens_in"], exp.final_summary["total/tokens_out"]) == sent.tokens()


def test_totals_per_model_and_compare_by_model(lb, tmp_path, capsys):
    """A debate's cost per model (nested LLM calls included) is in the summary and in `compare --by model`."""
    from tracked import cli

    c = clients(lb)

    @tracked.tracked(name="debate")
    def debate():
        for _ in range(3):
            chat(c)
        messages(c)  # the judge

    with tracked.experiment("by_model", dir=tmp_path, config={"strategy": "debate"}) as exp:
        debate()
    by_model: dict[str, dict[str, float]] = {}
    for sent in lb.ledger.sent:
        entry = by_model.setdefault(sent.model, {"llm_calls": 0, "tokens_in": 0, "cost_usd": 0.0})
        entry["llm_calls"] += 1
        entry["tokens_in"] += sent.tokens()[0]
        entry["cost_usd"] += sent.cost()
    summary = exp.final_summary
    for model, key in (("gpt-4o-mini", "gpt-4o-mini"), (CLAUDE, CLAUDE)):
        assert summary[f"model/{key}/name"] == model
        assert summary[f"model/{key}/llm_calls"] == by_model[model]["llm_calls"]
        assert summary[f"model/{key}/tokens_in"] == by_model[model]["tokens_in"]
        assert summary[f"model/{key}/cost_usd"] == pytest.approx(by_model[model]["cost_usd"], rel=1e-9)
    run = tracked.testing.read_wandb_run(summary["wandb"]["dir"])
    assert run.summary[f"model/{CLAUDE}/cost_usd"] == pytest.approx(by_model[CLAUDE]["cost_usd"], rel=1e-9)
    capsys.readouterr()
    assert cli.main(["compare", str(tmp_path), "--by", "model", "--json"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[CLAUDE]["cost_usd"] == pytest.approx(by_model[CLAUDE]["cost_usd"], rel=1e-9)
    assert rows["gpt-4o-mini"]["llm_calls"] == 3


def test_compare_by_model_leaves_an_unpriced_models_cost_unknown(lb, tmp_path, capsys):
    """`compare --by model --json` and `--csv` give a model with no price a null cost, not 0.0."""
    from tracked import cli

    c = made(lb.openai())
    tracked.instrument(c, provider="openai")
    with pytest.warns(tracked.TrackedWarning, match="no price"):
        with tracked.experiment("unpriced", dir=tmp_path, wandb=False):
            c.chat.completions.create(model="unknown-qq", messages=MESSAGES)
    capsys.readouterr()
    assert cli.main(["compare", str(tmp_path), "--by", "model", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["model"] == "unknown-qq" and row["cost_usd"] is None and row["unpriced_calls"] == 1
    assert cli.main(["compare", str(tmp_path), "--by", "model", "--csv"]) == 0
    header, line = capsys.readouterr().out.strip().splitlines()
    assert dict(zip(header.split(","), line.split(","), strict=True))["cost_usd"] == ""


def test_model_names_become_safe_wandb_keys():
    """A model name with dots and colons is one clean key segment."""
    from tracked._totals import model_key

    assert model_key("llama3.2:3b") == "llama3_2_3b"
    assert model_key("accounts/fireworks/models/x") == "accounts_fireworks_models_x"
    assert model_key("::") == "unknown"


# --- what a new user found ---------------------------------------------------------------------------


def test_uninstrument_of_a_library_restores_a_method_the_class_defines_itself(lb):
    """`uninstrument("ollama")` gives `ollama.Client` its own `_request` back: requests work as before."""
    tracked.instrument("ollama")
    tracked.uninstrument("ollama")
    assert ollama_chat({"ollama": made(lb.ollama())}).eval_count == lb.ledger.sent[0].tokens()[1]


def test_a_client_instrumented_on_its_own_and_through_its_library_is_recorded_once(lb, tmp_path):
    """`instrument()` then `instrument(client, provider=...)` records each request once, with the client's provider."""
    tracked.instrument()
    client = made(lb.openai())
    tracked.instrument(client, provider="openai")
    other = made(lb.openai())  # through the library only: a local server
    with capture() as captured, tracked.experiment("once", dir=tmp_path, wandb=False) as exp:
        chat({"openai": client})
        chat({"openai": other})
    assert exp.final_summary["total/llm_calls"] == 2 == len(lb.ledger.sent)
    assert [c["provider"] for c in captured["once"].calls] == ["openai", "local"]
    assert exp.final_summary["total/cost_usd"] == pytest.approx(lb.ledger.sent[0].cost(), rel=1e-9)


@pytest.mark.parametrize("how", ["with_options", "copy"])
def test_a_copy_of_an_instrumented_client_is_instrumented(lb, tmp_path, how):
    """`client.with_options(...)` and `client.copy(...)` of an instrumented client record their requests too."""
    client = made(lb.openai())
    tracked.instrument(client, provider="openai")
    copied = made(getattr(client, how)(timeout=5))
    with tracked.experiment("copies", dir=tmp_path, wandb=False) as exp:
        chat({"openai": copied})
    assert exp.final_summary["total/llm_calls"] == 1
    assert exp.final_summary["total/cost_usd"] == pytest.approx(lb.ledger.sent[0].cost(), rel=1e-9)


def test_raw_streamed_lines_are_as_the_server_sent_them(lb, tmp_path):
    """With `with_streaming_response` the code reads the lines as sent (no usage chunk added); the call is recorded."""
    client = made(lb.openai())
    tracked.instrument(client, provider="openai")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tracked.TrackedWarning)  # its usage is unknown: the code reads raw lines
        with tracked.experiment("raw", dir=tmp_path, wandb=False) as exp:
            with client.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            ) as response:
                lines = [line for line in response.iter_lines() if line]
    assert not any('"usage"' in line for line in lines)
    assert not lb.ledger.sent[0].usage_visible
    assert exp.final_summary["total/llm_calls"] == 1
    assert exp.final_summary["total/cost_complete"] is False


def test_a_stream_keeps_the_sdks_own_type(lb, tmp_path):
    """The stream an instrumented client returns is the SDK's own class, not a subclass."""
    import anthropic
    import openai

    c = clients(lb)
    with tracked.experiment("types", dir=tmp_path, wandb=False):
        s1 = c["openai"].chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        s2 = c["anthropic"].messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True)
        assert type(s1) is openai.Stream and type(s2) is anthropic.Stream
        list(s1), list(s2)


def test_a_tracked_function_returning_an_instrumented_ollama_stream_holds_its_usage(lb, tmp_path):
    """The row of a function returning an instrumented Ollama stream has the stream's usage; nothing is late."""
    c = clients(lb)

    @tracked.tracked
    def answer():
        return c["ollama"].chat(model="llama3.2:3b", messages=MESSAGES, stream=True)

    with capture() as captured, tracked.experiment("ol", dir=tmp_path, wandb=False):
        list(answer())
    (row,) = captured["ol"].rows
    assert (row["tokens_in"], row["tokens_out"]) == lb.ledger.sent[0].tokens()
    assert row["llm_calls"] == 1
    assert not any(c.get("late") for c in captured["ol"].calls)


def test_concurrent_requests_from_threads_and_tasks_equal_the_ledger(lb, tmp_path):
    """Instrumented requests from thread-pool workers and from many concurrent asyncio tasks sum to the ledger."""
    c = clients(lb)

    @tracked.tracked(name="strategy")
    def strategy():
        with tracked.ThreadPoolExecutor(max_workers=4) as pool:
            for f in [pool.submit(chat, c) for _ in range(6)] + [pool.submit(messages, c) for _ in range(2)]:
                f.result()

    async def many() -> None:
        ac = clients(lb, async_=True)

        @tracked.tracked(name="astrategy")
        async def astrategy():
            await asyncio.gather(*(achat(ac) for _ in range(8)), *(amessages(ac) for _ in range(4)))

        await astrategy()
        for client in ac.values():
            await aclose(client)

    with tracked.experiment("concurrent", dir=tmp_path, wandb=False) as exp:
        strategy()
        asyncio.run(many())
    totals = lb.ledger.totals()
    summary = exp.final_summary
    assert summary["total/llm_calls"] == totals["llm_calls"] == 20
    assert summary["strategy/llm_calls"] == 8 and summary["astrategy/llm_calls"] == 12
    assert summary["total/tokens_in"] == totals["tokens_in"]
    assert summary["total/tokens_out"] == totals["tokens_out"]
    assert summary["total/cost_usd"] == pytest.approx(totals["cost_usd"], rel=1e-9)


def test_a_returned_response_names_the_strategys_model_even_when_it_reuses_a_freed_responses_id(lb, tmp_path):
    """A strategy that drops its instrumented calls' responses and returns another client's response
    is named for the model of the response it returned, in every row: a new object may take the id
    of a freed one (which a record of ids alone would mistake for the freed response)."""
    client = lb.openai()
    tracked.instrument(client, provider="openai")
    judge = lb.openai()  # not instrumented

    def ask(prompt):
        reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])
        return reply.choices[0].message.content  # the response itself is freed

    @tracked.tracked(name="strategy")
    def strategy(task):
        answers = [ask(task) for _ in range(3)]
        return judge.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": str(answers)}])

    # (the judge's usage is a report beside the measured calls: warned about once, the measured figures used)
    with pytest.warns(tracked.TrackedWarning, match="disagrees with the LLM calls measured inside it"):
        with tracked.experiment("reuse", dir=tmp_path, wandb=False) as exp:
            for _ in range(500):  # (the regression this guards against showed in 1 to 2 rows of 500)
                strategy("Where will Sally look?")
    models = [row["model"] for row in read_experiment(exp.path).rows]
    assert models == ["gpt-4o-mini"] * 500
