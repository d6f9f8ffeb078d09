"""A loopback server speaking the providers' wire formats to the real client libraries, with a ledger.

It answers OpenAI (chat completions plain and SSE, with and without `include_usage`; Responses
plain and SSE; embeddings), Anthropic (messages plain and SSE, cache reads and 5-minute and 1-hour
cache writes, server-side web searches, a `message_delta` that repeats the input counts), a gateway
serving Claude through OpenAI's chat API (under `/gateway`: cache counts at the top level of
`usage`) and Ollama (chat and generate, plain and NDJSON streams; embed). Every response's usage is
written to the ledger in the provider's own raw shape, so the expected cost comes from
genai-prices' own `extract_usage` + `calc_price` on it, never from tracked's arithmetic. For the
gateway, whose top-level cache counts genai-prices' OpenAI extractor does not read, the ledger holds
the same call as Anthropic itself reports it.

Each ledger entry also keeps the request's JSON body and the reply text sent (for `capture_io`).
Usage is derived from the request: input tokens from the length of the prompt, output tokens from
the reply's words; a request header `X-Loopback-Cache: read=N,write5m=N,write1h=N,search=N` adds
cache reads, 5-minute and 1-hour cache writes (OpenAI has one kind: their sum) and Anthropic web
search requests. OpenAI's input counts include the cache counts; Anthropic's do not.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WORDS = ("the", "answer", "is", "forty", "two", "because", "sally", "thinks", "the", "marble", "moved")


@dataclass
class Sent:
    """One response the server sent: its usage in the provider's raw shape, and what it was for."""

    provider: str  # "openai", "anthropic", "ollama"
    flavor: str  # genai-prices' api_flavor: "chat", "responses", "embeddings", "default"
    model: str
    stream: bool
    usage_body: dict[str, Any]  # what genai-prices' extract_usage reads
    usage_visible: bool  # whether the client was sent the usage (not for a stream without include_usage)
    text: str = ""  # the reply text sent (the text of every chunk of a stream, joined)
    request: dict[str, Any] = field(default_factory=dict)  # the request's JSON body, as received

    def tokens(self) -> tuple[int, int]:
        """(tokens in, cached included; tokens out), as genai-prices reads them."""
        if self.provider == "ollama":
            return self.usage_body.get("prompt_eval_count", 0), self.usage_body.get("eval_count", 0)
        usage = _extracted(self).usage
        return usage.input_tokens or 0, usage.output_tokens or 0

    def cost(self) -> float:
        """The cost genai-prices computes from the raw usage (0 for Ollama, a local provider)."""
        if self.provider == "ollama":
            return 0.0
        import genai_prices

        extracted = _extracted(self)
        return float(
            genai_prices.calc_price(extracted.usage, extracted.model.id, provider_id=self.provider).total_price
        )


def _extracted(sent: Sent) -> Any:
    import genai_prices

    return genai_prices.extract_usage(sent.usage_body, provider_id=sent.provider, api_flavor=sent.flavor)


@dataclass
class Ledger:
    """Everything the server sent, in order."""

    sent: list[Sent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entry: Sent) -> None:
        with self.lock:
            self.sent.append(entry)

    def clear(self) -> None:
        with self.lock:
            self.sent.clear()

    def totals(self) -> dict[str, Any]:
        """LLM calls, tokens in and out, and cost, summed over what was sent."""
        with self.lock:
            sent = list(self.sent)
        tokens = [s.tokens() for s in sent]
        return {
            "llm_calls": len(sent),
            "tokens_in": sum(t[0] for t in tokens),
            "tokens_out": sum(t[1] for t in tokens),
            "cost_usd": sum(s.cost() for s in sent),
        }


def _reply(prompt: str) -> list[str]:
    n = 3 + len(prompt) % 7
    return [WORDS[i % len(WORDS)] for i in range(n)]


def _prompt_text(body: dict[str, Any]) -> str:
    parts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, dict):
            for key in ("content", "text", "input", "prompt", "system"):
                if key in value:
                    walk(value[key])
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for key in ("messages", "input", "prompt", "system"):
        if key in body:
            walk(body[key])
    return " ".join(parts)


def _cache(header: str | None) -> dict[str, int]:
    out = {"read": 0, "write5m": 0, "write1h": 0, "search": 0}
    for part in (header or "").split(","):
        if "=" in part:
            key, value = part.split("=", 1)
            out[key.strip()] = int(value)
    return out


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body are written apart: with Nagle's algorithm each answer waited 40 ms for an ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        path = self.path.split("?", 1)[0]
        cache = _cache(self.headers.get("X-Loopback-Cache"))
        delay = self.server.delay_s
        if delay:
            time.sleep(delay)
        routes = {
            "/gateway/v1/chat/completions": self._gateway_chat,
            "/v1/chat/completions": self._openai_chat,
            "/chat/completions": self._openai_chat,
            "/v1/responses": self._openai_responses,
            "/responses": self._openai_responses,
            "/v1/embeddings": self._openai_embeddings,
            "/embeddings": self._openai_embeddings,
            "/v1/messages": self._anthropic_messages,
            "/api/chat": self._ollama,
            "/api/generate": self._ollama,
            "/api/embed": self._ollama_embed,
        }
        if path.startswith("/openai/deployments/"):  # Azure OpenAI: /openai/deployments/<name>/chat/completions
            path = "/" + path.split("/", 4)[4]
        route = routes.get(path)
        if route is None:
            self._json(404, {"error": {"message": f"no route {path}"}})
            return
        if self.server.fail_next:
            self.server.fail_next -= 1
            self._json(400, {"error": {"message": "the loopback server was told to fail", "type": "invalid_request"}})
            return
        self._request = body
        route(body, cache, path)

    # --- plumbing ---------------------------------------------------------------------------

    def _record(self, entry: Sent) -> None:
        """Write what is being sent to the ledger, with the request it answers."""
        entry.request = self._request
        self.server.ledger.add(entry)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client left early
            pass

    def _end_stream(self) -> None:
        self._chunk(b"")

    def _sse(self, data: dict[str, Any] | str, event: str | None = None) -> None:
        payload = data if isinstance(data, str) else json.dumps(data)
        head = f"event: {event}\n" if event else ""
        self._chunk(f"{head}data: {payload}\n\n".encode())

    # --- OpenAI -----------------------------------------------------------------------------

    def _openai_chat(self, body: dict[str, Any], cache: dict[str, int], path: str) -> None:
        model = body.get("model", "gpt-4o-mini")
        prompt = _prompt_text(body)
        words = _reply(prompt)
        write = cache["write5m"] + cache["write1h"]
        usage: dict[str, Any] = {
            "prompt_tokens": 3 + len(prompt) // 4 + cache["read"] + write,
            "completion_tokens": len(words),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if cache["read"] or write:
            usage["prompt_tokens_details"] = {"cached_tokens": cache["read"], "cache_write_tokens": write}
        stream = bool(body.get("stream"))
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        self._record(
            Sent(
                "openai",
                "chat",
                model,
                stream,
                {"model": model, "usage": usage},
                not stream or include,
                " ".join(words),
            )
        )
        self._chat_reply(model, words, usage, stream, include)

    def _gateway_chat(self, body: dict[str, Any], cache: dict[str, int], path: str) -> None:
        """A gateway serving Claude through OpenAI's chat API, as LiteLLM and others do: `prompt_tokens`
        includes the cache counts, which are given again beside it; the ledger holds Anthropic's own report."""
        model = body.get("model", "claude-haiku-4-5")
        prompt = _prompt_text(body)
        words = _reply(prompt)
        native = _anthropic_usage(3 + len(prompt) // 4, len(words), cache)
        read, write = native["cache_read_input_tokens"], native["cache_creation_input_tokens"]
        usage: dict[str, Any] = {
            "prompt_tokens": native["input_tokens"] + read + write,
            "completion_tokens": len(words),
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": write,
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        stream = bool(body.get("stream"))
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        self.server.ledger.add(
            Sent(
                "anthropic",
                "default",
                model,
                stream,
                {"model": model, "usage": native},
                not stream or include,
                " ".join(words),
            )
        )
        self._chat_reply(model, words, usage, stream, include)

    def _chat_reply(self, model: str, words: list[str], usage: dict[str, Any], stream: bool, include: bool) -> None:
        base = {"id": "chatcmpl-loopback", "created": 1_700_000_000, "model": model}
        if not stream:
            message = {"role": "assistant", "content": " ".join(words)}
            choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
            self._json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
            return
        self._start_stream("text/event-stream")
        chunk = {**base, "object": "chat.completion.chunk"}
        for i, word in enumerate(words):
            delta = {"content": (" " if i else "") + word, **({"role": "assistant"} if i == 0 else {})}
            self._sse({**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        self._sse({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if include:
            self._sse({**chunk, "choices": [], "usage": usage})
        self._sse("[DONE]")
        self._end_stream()

    def _openai_responses(self, body: dict[str, Any], cache: dict[str, int], path: str) -> None:
        model = body.get("model", "gpt-4o-mini")
        prompt = _prompt_text(body)
        words = _reply(prompt)
        write = cache["write5m"] + cache["write1h"]
        usage: dict[str, Any] = {
            "input_tokens": 3 + len(prompt) // 4 + cache["read"] + write,
            "output_tokens": len(words),
            "input_tokens_details": {"cached_tokens": cache["read"], "cache_write_tokens": write},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        stream = bool(body.get("stream"))
        text = " ".join(words)
        self._record(Sent("openai", "responses", model, stream, {"model": model, "usage": usage}, True, text))
        item = {
            "id": "msg_loopback",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        response = {
            "id": "resp_loopback",
            "object": "response",
            "created_at": 1_700_000_000,
            "model": model,
            "status": "completed",
            "output": [item],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": usage,
        }
        if not stream:
            self._json(200, response)
            return
        self._start_stream("text/event-stream")
        created = {**response, "status": "in_progress", "output": [], "usage": None}
        self._sse({"type": "response.created", "sequence_number": 0, "response": created}, "response.created")
        for i, word in enumerate(words):
            delta = {
                "type": "response.output_text.delta",
                "sequence_number": i + 1,
                "item_id": "msg_loopback",
                "output_index": 0,
                "content_index": 0,
                "delta": (" " if i else "") + word,
                "logprobs": [],
            }
            self._sse(delta, "response.output_text.delta")
        done = {"type": "response.completed", "sequence_number": len(words) + 1, "response": response}
        self._sse(done, "response.completed")
        self._end_stream()

    def _openai_embeddings(self, body: dict[str, Any], cache: dict[str, int], path: str) -> None:
        model = body.get("model", "text-embedding-3-small")
        inputs = body.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        tokens = sum(3 + len(str(x)) // 4 for x in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._record(Sent("openai", "embeddings", model, False, {"model": model, "usage": usage}, True))
        data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(inputs))]
        self._json(200, {"object": "list", "data": data, "model": model, "usage": usage})

    # --- Anthropic --------------------------------------------------------------------------

    def _anthropic_messages(self, body: dict[str, Any], cache: dict[str, int], path: str) -> None:
        model = body.get("model", "claude-sonnet-4-5")
        prompt = _prompt_text(body)
        words = _reply(prompt)
        usage = _anthropic_usage(3 + len(prompt) // 4, len(words), cache)
        stream = bool(body.get("stream"))
        text = " ".join(words)
        self._record(Sent("anthropic", "default", model, stream, {"model": model, "usage": usage}, True, text))
        message = {
            "id": "msg_loopback",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if not stream:
            self._json(200, message)
            return
        self._start_stream("text/event-stream")
        # The searches are made after message_start: it says none, the final message_delta says how many.
        start_usage = {
            **usage,
            "output_tokens": 1,
            "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        }
        start = {**message, "content": [], "stop_reason": None, "usage": start_usage}
        self._sse({"type": "message_start", "message": start}, "message_start")
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        self._sse(block, "content_block_start")
        for i, word in enumerate(words):
            delta = {"type": "text_delta", "text": (" " if i else "") + word}
            self._sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")
        self._sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        # The final delta repeats the input counts, as the API does: cumulative, never to be added.
        final = {k: v for k, v in usage.items() if k != "cache_creation"}
        delta = {"stop_reason": "end_turn", "stop_sequence": None}
        self._sse({"type": "message_delta", "delta": delta, "usage": final}, "message_delta")
        self._sse({"type": "message_stop"}, "message_stop")
        self._end_stream()

    # --- Ollama -----------------------------------------------------------------------------

    def _ollama(self, body: dict[str, Any], cache: dict[str, int], path: str) -> None:
        model = body.get("model", "llama3.2:3b")
        prompt = _prompt_text(body)
        words = _reply(prompt)
        counts = {"prompt_eval_count": 3 + len(prompt) // 4, "eval_count": len(words)}
        stream = body.get("stream", True) is not False  # Ollama streams unless told not to
        chat = path.endswith("/chat")
        text = " ".join(words)
        self._record(Sent("ollama", "default", model, stream, {"model": model, **counts}, True, text))
        base = {"model": model, "created_at": "2026-11-30T00:00:00Z"}

        def piece(content: str) -> dict[str, Any]:
            return {"message": {"role": "assistant", "content": content}} if chat else {"response": content}

        final = {**base, **piece(""), "done": True, "done_reason": "stop", "total_duration": 1000, **counts}
        if not stream:
            self._json(200, {**final, **piece(text)})
            return
        self._start_stream("application/x-ndjson")
        for i, word in enumerate(words):
            self._chunk((json.dumps({**base, **piece((" " if i else "") + word), "done": False}) + "\n").encode())
        self._chunk((json.dumps(final) + "\n").encode())
        self._end_stream()

    def _ollama_embed(self, body: dict[str, Any], cache: dict[str, int], path: str) -> None:
        model = body.get("model", "nomic-embed-text")
        inputs = body.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        counts = {"prompt_eval_count": sum(3 + len(str(x)) // 4 for x in inputs)}
        self._record(Sent("ollama", "default", model, False, {"model": model, **counts}, True))
        self._json(200, {"model": model, "embeddings": [[0.1, 0.2, 0.3] for _ in inputs], **counts})


def _anthropic_usage(input_tokens: int, output_tokens: int, cache: dict[str, int]) -> dict[str, Any]:
    """An Anthropic `usage`: input excludes the cache reads and writes; the writes broken down by duration."""
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": cache["read"],
        "cache_creation_input_tokens": cache["write5m"] + cache["write1h"],
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache["write5m"],
            "ephemeral_1h_input_tokens": cache["write1h"],
        },
        "server_tool_use": {"web_search_requests": cache["search"], "web_fetch_requests": 0},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.ledger = Ledger()
        self.delay_s = 0.0
        self.fail_next = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that leaves a stream early resets the connection: expected, not printed."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class Loopback:
    """The server, running on a thread: `url` is its base address (`http://127.0.0.1:<port>`)."""

    def __init__(self) -> None:
        self._server = _Server()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback", daemon=True)
        self._thread.start()

    @property
    def ledger(self) -> Ledger:
        return self._server.ledger

    def set_delay(self, seconds: float) -> None:
        """Answer every request after `seconds` (to measure latency)."""
        self._server.delay_s = seconds

    def fail(self, n: int = 1) -> None:
        """Answer the next `n` requests with HTTP 400."""
        self._server.fail_next = n

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- clients of the real libraries, pointed here ---------------------------------------

    def openai(self, *, async_: bool = False, cache: str | None = None, gateway: bool = False) -> Any:
        """An OpenAI client; `cache` is an `X-Loopback-Cache` value sent with every request, `gateway`
        points it at the gateway serving Claude."""
        import openai

        cls = openai.AsyncOpenAI if async_ else openai.OpenAI
        headers = {"X-Loopback-Cache": cache} if cache else None
        base = f"{self.url}/gateway/v1" if gateway else f"{self.url}/v1"
        return cls(base_url=base, api_key="sk-loopback", max_retries=0, default_headers=headers)

    def anthropic(self, *, async_: bool = False, cache: str | None = None) -> Any:
        """An Anthropic client; `cache` is an `X-Loopback-Cache` value sent with every request."""
        import anthropic

        cls = anthropic.AsyncAnthropic if async_ else anthropic.Anthropic
        headers = {"X-Loopback-Cache": cache} if cache else None
        return cls(base_url=self.url, api_key="sk-ant-loopback", max_retries=0, default_headers=headers)

    def ollama(self, *, async_: bool = False) -> Any:
        import ollama

        cls = ollama.AsyncClient if async_ else ollama.Client
        return cls(host=self.url)
