"""Exact prices through `tracked.instrument` and the real clients: cache reads, 5-minute and 1-hour cache
writes and web searches (Anthropic), cached and cache-write tokens (OpenAI chat and Responses), and a
gateway serving Claude through OpenAI's chat API with its cache counts at the top level of `usage`.

Every figure is checked against the loopback server's ledger: cost from genai-prices' own
`extract_usage` + `calc_price` on the raw usage the server sent, and the cache and search counts as
genai-prices' extractor reads them from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import genai_prices
import pytest

import tracked
from loopback import Loopback, Sent
from test_instrument import CLAUDE, MESSAGES, aclose, assert_matches_ledger, close
from tracked.testing import capture

#: What the server reports with every request of these clients (see `loopback.py`).
ANTHROPIC_CACHE = "read=300,write5m=1000,write1h=2000,search=3"
OPENAI_CACHE = "read=1024,write5m=512"
GATEWAY_CACHE = "read=300,write5m=1000"  # the chat API has no field for 1-hour writes or web searches
GPT = "gpt-5.6-sol"  # priced for cache reads and cache writes apart from input


_made: list[Any] = []


@pytest.fixture
def lb(server):
    server.ledger.clear()
    server.fail(0)
    yield server
    for name in ("openai", "anthropic"):
        tracked.uninstrument(name)
    while _made:
        close(_made.pop())


def priced_clients(lb: Loopback, *, async_: bool = False) -> dict[str, Any]:
    """Clients whose every response carries cache counts (and web searches), instrumented with the provider
    whose prices apply (the server is local); the gateway serves Claude at Anthropic's prices."""
    out = {
        "anthropic": lb.anthropic(async_=async_, cache=ANTHROPIC_CACHE),
        "openai": lb.openai(async_=async_, cache=OPENAI_CACHE),
        "gateway": lb.openai(async_=async_, cache=GATEWAY_CACHE, gateway=True),
    }
    for name, client in out.items():
        tracked.instrument(client, provider="openai" if name == "openai" else "anthropic")
    if not async_:
        _made.extend(out.values())
    return out


# --- every way of calling, sync ---------------------------------------------------------------------


def messages(c):
    return c["anthropic"].messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES)


def messages_stream_true(c):
    return [e.type for e in c["anthropic"].messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True)]


def messages_stream_helper(c):
    with c["anthropic"].messages.stream(model=CLAUDE, max_tokens=64, messages=MESSAGES) as stream:
        return "".join(stream.text_stream), stream.get_final_message().usage


def chat(c):
    return c["openai"].chat.completions.create(model=GPT, messages=MESSAGES)


def chat_stream(c):
    return [ch for ch in c["openai"].chat.completions.create(model=GPT, messages=MESSAGES, stream=True)]


def responses(c):
    return c["openai"].responses.create(model=GPT, input="Where will Sally look?")


def responses_stream(c):
    return [e.type for e in c["openai"].responses.create(model=GPT, input="Where?", stream=True)]


def gateway_chat(c):
    return c["gateway"].chat.completions.create(model=CLAUDE, messages=MESSAGES)


def gateway_chat_stream(c):
    return [ch for ch in c["gateway"].chat.completions.create(model=CLAUDE, messages=MESSAGES, stream=True)]


SYNC: dict[str, tuple[Callable[[Any], Any], str]] = {
    "messages": (messages, "anthropic.messages.create"),
    "messages stream=True": (messages_stream_true, "anthropic.messages.create"),
    "messages.stream()": (messages_stream_helper, "anthropic.messages.create"),
    "chat": (chat, "openai.chat.completions.create"),
    "chat stream": (chat_stream, "openai.chat.completions.create"),
    "responses": (responses, "openai.responses.create"),
    "responses stream": (responses_stream, "openai.responses.create"),
    "gateway chat": (gateway_chat, "openai.chat.completions.create"),
    "gateway chat stream": (gateway_chat_stream, "openai.chat.completions.create"),
}


def assert_counts_match_ledger(record: dict[str, Any], sent: Sent) -> None:
    """The call record's cache and search counts are those genai-prices reads from what the server sent."""
    usage = genai_prices.extract_usage(sent.usage_body, provider_id=sent.provider, api_flavor=sent.flavor).usage
    assert record["cache_read_tokens"] == usage.reported_value("cache_read_tokens") > 0
    assert record["cache_write_tokens"] == usage.reported_value("cache_write_tokens") > 0
    assert record.get("cache_write_1h_tokens", 0) == usage.reported_value("cache_write_1h_tokens")
    assert record.get("web_searches", 0) == usage.reported_value("web_searches")


@pytest.mark.parametrize("case", list(SYNC))
def test_cache_writes_by_duration_searches_and_gateway_counts_equal_the_ledger(lb, tmp_path, case):
    """An instrumented call whose response reports cache reads, cache writes (5-minute and 1-hour), web searches,
    or a gateway's top-level cache counts costs what genai-prices computes from that response, plain or streamed."""
    fn, name = SYNC[case]
    c = priced_clients(lb)
    with capture() as captured, tracked.experiment("priced", dir=tmp_path, wandb=False) as exp:
        fn(c)
    assert_matches_ledger(lb, exp, name)
    (record,) = captured["priced"].calls
    assert not record.get("incomplete") and not record.get("usage_unknown")
    assert_counts_match_ledger(record, lb.ledger.sent[0])
    if name.startswith("anthropic."):
        assert (record["cache_write_1h_tokens"], record["web_searches"]) == (2000, 3)


# --- the same, async --------------------------------------------------------------------------------


async def amessages_stream_true(c):
    stream = await c["anthropic"].messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True)
    return [e async for e in stream]


async def aresponses(c):
    return await c["openai"].responses.create(model=GPT, input="Where will Sally look?")


async def agateway_chat_stream(c):
    stream = await c["gateway"].chat.completions.create(model=CLAUDE, messages=MESSAGES, stream=True)
    return [ch async for ch in stream]


ASYNC = {
    "messages stream=True": (amessages_stream_true, "anthropic.messages.create"),
    "responses": (aresponses, "openai.responses.create"),
    "gateway chat stream": (agateway_chat_stream, "openai.chat.completions.create"),
}


@pytest.mark.parametrize("case", list(ASYNC))
def test_async_clients_price_the_same_counts_as_the_ledger(lb, tmp_path, case):
    """The async clients give the same figures as the sync ones: cost and counts as genai-prices reads them."""
    fn, name = ASYNC[case]

    async def main():
        c = priced_clients(lb, async_=True)
        with capture() as captured:
            async with tracked.experiment("apriced", dir=tmp_path, wandb=False) as exp:
                await fn(c)
        for client in c.values():
            await aclose(client)
        return exp, captured["apriced"].calls

    exp, (record,) = asyncio.run(main())
    assert_matches_ledger(lb, exp, name)
    assert_counts_match_ledger(record, lb.ledger.sent[0])
