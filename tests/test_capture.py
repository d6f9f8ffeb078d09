"""`capture_io`: the messages sent and the reply text, as the loopback server received and sent them.

The expected messages are read from the request body the server received (its ledger), the
expected reply from the text it sent; every record is read back from the local store's `calls.jsonl`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from anthropic.types import Message, RawContentBlockDeltaEvent, RawContentBlockStartEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response

import tracked
from loopback import Loopback, Sent
from tracked import current_call
from tracked.testing import read_experiment

CLAUDE = "claude-haiku-4-5"
SYSTEM = "You answer in one short sentence."
CHAT = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Sally puts her marble in the basket and leaves."},
    {"role": "assistant", "content": "Anne moves it to the box."},
    {"role": "user", "content": "Where will Sally look for the marble?"},
]
TURNS = CHAT[1:]  # the conversation without its system prompt (Anthropic's and Ollama generate's `system`)
KEY = "sk-proj-" + "Abc123XyZ" * 5  # looks like an OpenAI key


_made: list[Any] = []  # sync clients made by a test, closed after it


@pytest.fixture
def lb(server):
    server.ledger.clear()
    yield server
    for name in ("openai", "anthropic", "ollama"):
        tracked.uninstrument(name)
    while _made:
        client = _made.pop()
        inner = getattr(client, "_client", None)
        (inner.close if hasattr(inner, "stream") else client.close)()  # Ollama's through its httpx client


def made(client: Any) -> Any:
    """A sync client, closed after the test."""
    _made.append(client)
    return client


def calls_of(exp: tracked.Experiment) -> list[dict[str, Any]]:
    """The call records of an experiment, read back from its `calls.jsonl`."""
    return read_experiment(exp.path).calls


# --- the oracle: the messages in the request body the server received ----------------------------------


def wire_messages(sent: Sent) -> list[dict[str, str]]:
    """The messages of the request `sent` answered, read from its JSON body as the server received it."""
    body = sent.request
    if sent.provider == "anthropic":
        system = body.get("system")
        if isinstance(system, list):
            system = "\n".join(block["text"] for block in system)
        head = [{"role": "system", "content": system}] if system else []
        return head + [{"role": m["role"], "content": m["content"]} for m in body["messages"]]
    if sent.flavor == "responses":
        head = [{"role": "system", "content": body["instructions"]}] if "instructions" in body else []
        given = body["input"]
        if isinstance(given, str):
            return [*head, {"role": "user", "content": given}]
        return head + [{"role": m["role"], "content": m["content"]} for m in given]
    if "prompt" in body:  # Ollama generate
        head = [{"role": "system", "content": body["system"]}] if "system" in body else []
        return [*head, {"role": "user", "content": body["prompt"]}]
    return [{"role": m["role"], "content": m["content"]} for m in body["messages"]]


def assert_captured(lb: Loopback, exp: tracked.Experiment) -> None:
    """The experiment's one call recorded the messages the server received and the text it sent."""
    (sent,) = lb.ledger.sent
    (record,) = calls_of(exp)
    assert record["inputs"] == {"messages": wire_messages(sent)}
    assert sent.text and record["output"] == sent.text


# --- instrumented requests, sync ----------------------------------------------------------------------


def chat(c):
    c["openai"].chat.completions.create(model="gpt-4o-mini", messages=CHAT)


def chat_stream(c):
    for _ in c["openai"].chat.completions.create(model="gpt-4o-mini", messages=CHAT, stream=True):
        pass


def responses(c):
    c["openai"].responses.create(model="gpt-4o-mini", instructions=SYSTEM, input="Where will Sally look?")


def responses_stream(c):
    for _ in c["openai"].responses.create(model="gpt-4o-mini", instructions=SYSTEM, input=TURNS, stream=True):
        pass


def messages(c):
    c["anthropic"].messages.create(model=CLAUDE, max_tokens=64, system=SYSTEM, messages=TURNS)


def messages_stream_true(c):
    for _ in c["anthropic"].messages.create(model=CLAUDE, max_tokens=64, system=SYSTEM, messages=TURNS, stream=True):
        pass


def messages_stream_helper(c):
    system = [{"type": "text", "text": SYSTEM}, {"type": "text", "text": "Be kind."}]
    with c["anthropic"].messages.stream(model=CLAUDE, max_tokens=64, system=system, messages=TURNS) as stream:
        assert "".join(stream.text_stream)


def ollama_chat(c):
    c["ollama"].chat(model="llama3.2:3b", messages=CHAT)


def ollama_chat_stream(c):
    for _ in c["ollama"].chat(model="llama3.2:3b", messages=CHAT, stream=True):
        pass


def ollama_generate(c):
    c["ollama"].generate(model="llama3.2:3b", system=SYSTEM, prompt="Where will Sally look?")


def ollama_generate_stream(c):
    for _ in c["ollama"].generate(model="llama3.2:3b", prompt="Where will Sally look?", stream=True):
        pass


SYNC: dict[str, Callable[[Any], None]] = {
    "chat": chat,
    "chat stream": chat_stream,
    "responses": responses,
    "responses stream": responses_stream,
    "messages": messages,
    "messages stream=True": messages_stream_true,
    "messages.stream() text_stream": messages_stream_helper,
    "ollama chat": ollama_chat,
    "ollama chat stream": ollama_chat_stream,
    "ollama generate": ollama_generate,
    "ollama generate stream": ollama_generate_stream,
}


def instrumented(lb: Loopback, *, async_: bool = False, **options: Any) -> dict[str, Any]:
    c = {
        "openai": lb.openai(async_=async_),
        "anthropic": lb.anthropic(async_=async_),
        "ollama": lb.ollama(async_=async_),
    }
    for client in c.values():
        tracked.instrument(client, **options)
        if not async_:
            made(client)
    return c


@pytest.mark.parametrize("case", list(SYNC))
def test_an_instrumented_request_records_the_messages_sent_and_the_reply_text(lb, tmp_path, case):
    """With capture_io, an instrumented request records the messages the server received and the text it sent."""
    c = instrumented(lb, capture_io=True)
    with tracked.experiment("io", dir=tmp_path, wandb=False) as exp:
        SYNC[case](c)
    assert_captured(lb, exp)


# --- the same, async ------------------------------------------------------------------------------------


async def achat(c):
    await c["openai"].chat.completions.create(model="gpt-4o-mini", messages=CHAT)


async def achat_stream(c):
    async for _ in await c["openai"].chat.completions.create(model="gpt-4o-mini", messages=CHAT, stream=True):
        pass


async def aresponses_stream(c):
    stream = await c["openai"].responses.create(model="gpt-4o-mini", instructions=SYSTEM, input=TURNS, stream=True)
    async for _ in stream:
        pass


async def amessages(c):
    await c["anthropic"].messages.create(model=CLAUDE, max_tokens=64, system=SYSTEM, messages=TURNS)


async def amessages_stream_helper(c):
    async with c["anthropic"].messages.stream(model=CLAUDE, max_tokens=64, system=SYSTEM, messages=TURNS) as stream:
        assert [t async for t in stream.text_stream]


async def aollama_chat_stream(c):
    async for _ in await c["ollama"].chat(model="llama3.2:3b", messages=CHAT, stream=True):
        pass


async def aollama_generate(c):
    await c["ollama"].generate(model="llama3.2:3b", system=SYSTEM, prompt="Where will Sally look?")


ASYNC = {
    "chat": achat,
    "chat stream": achat_stream,
    "responses stream": aresponses_stream,
    "messages": amessages,
    "messages.stream() text_stream": amessages_stream_helper,
    "ollama chat stream": aollama_chat_stream,
    "ollama generate": aollama_generate,
}


@pytest.mark.parametrize("case", list(ASYNC))
def test_an_async_instrumented_request_records_the_messages_sent_and_the_reply_text(lb, tmp_path, case):
    """The async clients record the same messages and reply text as the server received and sent."""

    async def main():
        c = instrumented(lb, async_=True, capture_io=True)
        async with tracked.experiment("aio", dir=tmp_path, wandb=False) as exp:
            await ASYNC[case](c)
        await c["openai"].close()
        await c["anthropic"].close()
        await c["ollama"]._client.aclose()
        return exp

    assert_captured(lb, asyncio.run(main()))


# --- switching it on ------------------------------------------------------------------------------------


def test_without_capture_io_an_instrumented_request_records_no_inputs_or_output(lb, tmp_path):
    """By default an instrumented request records neither the messages nor the reply."""
    c = instrumented(lb)
    with tracked.experiment("quiet", dir=tmp_path, wandb=False) as exp:
        chat(c)
        chat_stream(c)
    assert [("inputs" in r, "output" in r) for r in calls_of(exp)] == [(False, False)] * 2


def test_instrument_follows_the_global_setting_unless_told(lb, tmp_path):
    """`instrument(capture_io=None)` follows `configure(capture_io=...)` at each request; False or True wins over it."""
    follows = instrumented(lb)
    never = {"openai": made(lb.openai())}
    tracked.instrument(never["openai"], capture_io=False)
    tracked.configure(capture_io=True)
    with tracked.experiment("global", dir=tmp_path, wandb=False) as exp:
        chat(follows)
        chat(never)
        tracked.configure(capture_io=False)
        chat(follows)
    assert ["inputs" in r for r in calls_of(exp)] == [True, False, False]


def test_instrument_refuses_a_capture_io_that_is_not_a_bool(lb):
    """`instrument(capture_io="yes")` is a TypeError at the call."""
    with pytest.raises(TypeError, match="capture_io"):
        tracked.instrument(made(lb.openai()), capture_io="yes")  # type: ignore[arg-type]


# --- recognised calls: a @tracked function returning or yielding a provider's response ------------------


def recognised(c: dict[str, Any]) -> dict[str, Callable[[str], Any]]:
    """Tracked functions that return or yield a provider's response or stream, uninstrumented."""

    @tracked.tracked(capture_io=True)
    def returns_response(question: str) -> Any:
        return c["openai"].chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
        )

    @tracked.tracked(capture_io=True)
    def returns_stream(question: str) -> Any:
        return c["anthropic"].messages.create(
            model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": question}], stream=True
        )

    @tracked.tracked(capture_io=True)
    def yields_chunks(question: str) -> Any:
        yield from c["openai"].responses.create(model="gpt-4o-mini", input=question, stream=True)

    @tracked.tracked(capture_io=True)
    def yields_text(question: str) -> Any:
        with c["anthropic"].messages.stream(
            model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": question}]
        ) as stream:
            yield from stream.text_stream

    @tracked.tracked(capture_io=True)
    def yields_ollama_text(question: str) -> Any:
        for part in c["ollama"].chat(
            model="llama3.2:3b", messages=[{"role": "user", "content": question}], stream=True
        ):
            yield part.message.content

    return {f.__name__: f for f in (returns_response, returns_stream, yields_chunks, yields_text, yields_ollama_text)}


@pytest.mark.parametrize(
    "case", ["returns_response", "returns_stream", "yields_chunks", "yields_text", "yields_ollama_text"]
)
def test_a_tracked_function_records_its_arguments_and_the_reply_text(lb, tmp_path, case):
    """A @tracked function returning or yielding a provider's response records its arguments and the reply text."""
    c = {"openai": made(lb.openai()), "anthropic": made(lb.anthropic()), "ollama": made(lb.ollama())}
    fn = recognised(c)[case]
    with tracked.experiment("fn", dir=tmp_path, wandb=False) as exp:
        result = fn("Where will Sally look?")
        if not hasattr(result, "choices"):
            for _ in result:
                pass
    (sent,) = lb.ledger.sent
    (record,) = calls_of(exp)
    assert record["inputs"] == {"question": "Where will Sally look?"}
    assert record["output"] == sent.text


def test_an_async_generator_yielding_events_records_the_reply_text(lb, tmp_path):
    """A @tracked async generator yielding Anthropic stream events records the text the server sent."""
    client = lb.anthropic(async_=True)

    @tracked.tracked(capture_io=True)
    async def ask(question: str) -> Any:
        stream = await client.messages.create(
            model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": question}], stream=True
        )
        async for event in stream:
            yield event

    async def main():
        async with tracked.experiment("agen", dir=tmp_path, wandb=False) as exp:
            async for _ in ask("Where?"):
                pass
        await client.close()
        return exp

    exp = asyncio.run(main())
    (sent,) = lb.ledger.sent
    assert calls_of(exp)[0]["output"] == sent.text


def test_decorated_and_instrumented_each_record_their_own(lb, tmp_path):
    """A @tracked function over an instrumented client records its arguments; its child records the messages sent."""
    c = instrumented(lb, capture_io=True)

    @tracked.tracked(capture_io=True)
    def ask(question: str) -> Any:
        return c["openai"].chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
        )

    with tracked.experiment("both", dir=tmp_path, wandb=False) as exp:
        ask("Where?")
    (sent,) = lb.ledger.sent
    child, parent = calls_of(exp)
    assert child["parent_id"] == parent["id"]
    assert child["inputs"] == {"messages": [{"role": "user", "content": "Where?"}]}
    assert parent["inputs"] == {"question": "Where?"}
    assert child["output"] == parent["output"] == sent.text


def test_a_stream_left_early_records_the_text_the_code_read(lb, tmp_path):
    """An instrumented stream left after two chunks records the text of those two chunks."""
    c = instrumented(lb, capture_io=True)
    with tracked.experiment("early", dir=tmp_path, wandb=False) as exp:
        stream = c["openai"].chat.completions.create(model="gpt-4o-mini", messages=CHAT, stream=True)
        for i, _ in enumerate(stream):
            if i == 1:
                break
        with pytest.warns(tracked.TrackedWarning, match="left before its usage"):
            stream.close()
    (sent,) = lb.ledger.sent
    (record,) = calls_of(exp)
    assert record["incomplete"] is True
    assert record["output"] == " ".join(sent.text.split(" ")[:2])


def test_a_generator_of_other_values_records_what_it_yielded():
    """A generator yielding neither text nor a provider's items records what it yielded, as a list."""
    seen = []

    @tracked.tracked(capture_io=True)
    def steps(n: int) -> Any:
        seen.append(current_call())
        yield from ({"step": i} for i in range(n))

    assert list(steps(3)) == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert seen[0].output == [{"step": 0}, {"step": 1}, {"step": 2}]


# --- limits and secrets ---------------------------------------------------------------------------------


def test_long_messages_and_replies_are_cut_at_io_max_chars(lb, tmp_path):
    """Each message and the reply text are cut at `io_max_chars`, saying how many characters were left out."""
    tracked.configure(io_max_chars=20)
    long = "Sally " * 100
    c = instrumented(lb, capture_io=True)
    with tracked.experiment("cut", dir=tmp_path, wandb=False) as exp:
        for _ in c["openai"].chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": long}], stream=True
        ):
            pass
    (sent,) = lb.ledger.sent
    (record,) = calls_of(exp)
    assert record["inputs"]["messages"] == [{"role": "user", "content": long[:20] + "...[580 more chars]"}]
    assert record["output"] == sent.text[:20] + f"...[{len(sent.text) - 20} more chars]"


def test_a_long_streamed_reply_is_kept_only_to_the_limit_and_counted():
    """A reply streamed in many pieces is cut at `io_max_chars`, the pieces past it counted, not kept."""
    seen = []

    @tracked.tracked(capture_io=True)
    def talk() -> Any:
        seen.append(current_call())
        for _ in range(5000):
            yield "ab"

    for _ in talk():
        pass
    assert seen[0].output == "ab" * 1000 + "...[8000 more chars]"


def test_a_long_conversation_keeps_its_first_message_and_the_latest_turns(lb, tmp_path):
    """Past 50 messages, the first and the last 48 are recorded, with a note of how many were left out."""
    turns = [{"role": "user" if i % 2 else "assistant", "content": f"turn {i}"} for i in range(1, 80)]
    c = instrumented(lb, capture_io=True)
    with tracked.experiment("long", dir=tmp_path, wandb=False) as exp:
        c["openai"].chat.completions.create(model="gpt-4o-mini", messages=[CHAT[0], *turns])
    (record,) = calls_of(exp)
    assert record["inputs"]["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "tracked", "content": "[31 messages left out]"},
        *turns[-48:],
    ]


def test_a_key_in_a_message_or_the_reply_is_redacted(lb, tmp_path):
    """A provider key in a message sent, or split across the chunks of a reply, is written nowhere."""
    c = instrumented(lb, capture_io=True)

    @tracked.tracked(capture_io=True)
    def leaky() -> Any:
        yield f"your key is {KEY[:10]}"
        yield f"{KEY[10:]}, keep it"

    with tracked.experiment("keys", dir=tmp_path, wandb=False) as exp:
        c["openai"].chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"use {KEY}"}])
        for _ in leaky():
            pass
    assert lb.ledger.sent[0].request["messages"][0]["content"] == f"use {KEY}"  # the server did get it
    request, generator = calls_of(exp)
    assert request["inputs"]["messages"] == [{"role": "user", "content": "use [REDACTED]"}]
    assert generator["output"] == "your key is [REDACTED], keep it"
    written = [p for p in tmp_path.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert written == []


# --- tool calls, read from the SDKs' own objects ---------------------------------------------------------


def output_of(value: Any) -> Any:
    """The output a @tracked function records when it returns `value`."""
    seen = []

    @tracked.tracked(capture_io=True)
    def call() -> Any:
        seen.append(current_call())
        return value

    call()
    return seen[0].output


def test_openai_tool_calls_read_the_same_whole_and_streamed():
    """An OpenAI chat reply's tool calls read as one line each, the same from a completion and from its chunks."""
    tool = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    completion = ChatCompletion.model_validate(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {"role": "assistant", "content": "Checking.", "tool_calls": [tool]},
                }
            ],
        }
    )
    base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o-mini"}

    def chunk(delta: dict[str, Any]) -> ChatCompletionChunk:
        return ChatCompletionChunk.model_validate({**base, "choices": [{"index": 0, "delta": delta}]})

    fragments = [
        {"role": "assistant", "content": "Check"},
        {"content": "ing."},
        {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather"}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
    ]
    seen = []

    @tracked.tracked(capture_io=True)
    def stream() -> Any:
        seen.append(current_call())
        yield from (chunk(f) for f in fragments)

    with pytest.warns(tracked.TrackedWarning, match="tokens and cost are unknown"):  # chunks without usage
        list(stream())
    want = 'Checking.\n[tool call] get_weather({"city": "Paris"})'
    assert output_of(completion) == want
    assert seen[0].output == want


def test_anthropic_tool_use_reads_the_same_whole_and_streamed():
    """An Anthropic reply's text blocks are joined and its tool_use blocks read as a line each, whole or streamed."""
    message = Message.model_validate(
        {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "model": CLAUDE,
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Let me "},
                {"type": "text", "text": "check."},
                {"type": "tool_use", "id": "t", "name": "get_weather", "input": {"city": "Paris"}},
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 7},
        }
    )
    events = [
        RawContentBlockStartEvent.model_validate(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        ),
        RawContentBlockDeltaEvent.model_validate(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check."}}
        ),
        RawContentBlockStartEvent.model_validate(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "t", "name": "get_weather", "input": {}},
            }
        ),
        RawContentBlockDeltaEvent.model_validate(
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"ci'}}
        ),
        RawContentBlockDeltaEvent.model_validate(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": 'ty": "Paris"}'},
            }
        ),
    ]
    seen = []

    @tracked.tracked(capture_io=True)
    def stream() -> Any:
        seen.append(current_call())
        yield from events

    with pytest.warns(tracked.TrackedWarning, match="tokens and cost are unknown"):  # chunks without usage
        list(stream())
    want = 'Let me check.\n[tool call] get_weather({"city": "Paris"})'
    assert output_of(message) == want
    assert seen[0].output == want


def test_a_responses_function_call_and_an_ollama_tool_call_read_as_lines():
    """A Responses function call and an Ollama tool call read as `[tool call] name(arguments)`."""
    response = Response.model_validate(
        {
            "id": "r",
            "object": "response",
            "created_at": 0,
            "model": "gpt-4o-mini",
            "output": [
                {"type": "function_call", "call_id": "c", "name": "get_weather", "arguments": '{"city":"Paris"}'}
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
        }
    )
    ollama_reply = {
        "model": "llama3.2:3b",
        "done": True,
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        "prompt_eval_count": 3,
        "eval_count": 2,
    }
    want = '[tool call] get_weather({"city": "Paris"})'
    assert output_of(response) == want
    assert output_of(ollama_reply) == want


def test_tool_calls_and_images_in_the_messages_sent_are_summarised():
    """Tool calls, tool results and images in the messages sent read as short markers, per provider."""
    from tracked.usage import anthropic, ollama, openai

    tool = {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    chat_body = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {}}],
            },
            {"role": "assistant", "content": None, "tool_calls": [tool]},
            {"role": "tool", "tool_call_id": "c", "content": "sunny"},
        ]
    }
    assert openai.inputs("openai.chat.completions.create", chat_body) == {
        "messages": [
            {"role": "user", "content": "What is this?\n[image]"},
            {"role": "assistant", "content": '[tool call] get_weather({"city": "Paris"})'},
            {"role": "tool", "content": "[tool result] sunny"},
        ]
    }
    claude_body = {
        "system": "Be brief.",
        "messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"x": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "42"}]},
        ],
    }
    assert anthropic.inputs("anthropic.messages.create", claude_body) == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "assistant", "content": '[tool call] f({"x": 1})'},
            {"role": "user", "content": "[tool result] 42"},
        ]
    }
    ollama_body = {"messages": [{"role": "user", "content": "Describe", "images": ["aGk="]}]}
    assert ollama.inputs("ollama.chat", ollama_body) == {"messages": [{"role": "user", "content": "Describe\n[image]"}]}


@pytest.mark.parametrize("body", [None, "text", 42, {"messages": "nope"}, {"messages": [None, 3, {"content": 5}]}])
def test_the_readers_of_the_messages_sent_are_total(body):
    """Every provider's reader of a request body returns a value, never raises, whatever the body."""
    from tracked.usage import anthropic, ollama, openai

    for read, name in (
        (openai.inputs, "openai.chat.completions.create"),
        (openai.inputs, "openai.responses.create"),
        (anthropic.inputs, "anthropic.messages.create"),
        (ollama.inputs, "ollama.chat"),
        (ollama.inputs, "ollama.generate"),
    ):
        found = read(name, body)
        assert found is None or isinstance(found, dict)
