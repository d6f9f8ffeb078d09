#!/usr/bin/env python
"""`tracked.usage.extract` on real provider objects, for two source trees in one run.

    python benchmarks/usage_extract.py [--before SRC] [--after SRC] [--rounds 5]

Each tree is imported in its own process (`PYTHONPATH=SRC`), and the two alternate `--rounds` times
so that both see the same machine load. Every process builds the same six objects with the real
`openai`, `anthropic` and `ollama` packages, extracts each once to warm the caches, then times
`extract(obj)` with `timeit` (the minimum of its repeats). The table gives, per object and tree,
the minimum over the rounds and the median of the rounds' minima, in nanoseconds per call; the
run fails if the two trees read a different usage from any object (in the fields both have).

`--after` defaults to this checkout's `src`; without `--before` only that tree is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import timeit
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

CASES = [
    ("a", "openai ChatCompletion with usage"),
    ("b", "openai ChatCompletionChunk without usage"),
    ("c", "anthropic RawContentBlockDeltaEvent"),
    ("d", "anthropic Message"),
    ("e", "ollama ChatResponse"),
    ("f", "dict with OpenAI chat usage"),
]


def objects() -> dict[str, Any]:
    """The measured values, one per case, built by the providers' own classes."""
    import ollama
    from anthropic.types import Message, RawContentBlockDeltaEvent
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    choice = {"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}
    completion = ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini",
            "choices": [choice],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
        }
    )
    chunk = ChatCompletionChunk.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}],
            "usage": None,
        }
    )
    delta = RawContentBlockDeltaEvent.model_validate(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
    )
    message = Message.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": "Hello!"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1000, "output_tokens": 500},
        }
    )
    chat = ollama.ChatResponse.model_validate(
        {
            "model": "llama3.2:3b",
            "created_at": "2024-01-01T00:00:00Z",
            "done": True,
            "message": {"role": "assistant", "content": "hi"},
            "prompt_eval_count": 26,
            "eval_count": 298,
        }
    )
    plain = {"usage": {"prompt_tokens": 3, "completion_tokens": 4}, "model": "gpt-4o-mini"}
    return dict(zip("abcdef", (completion, chunk, delta, message, chat, plain), strict=True))


def worker(number: int, repeat: int) -> None:
    """Times every case in this process and prints one JSON line: ns per call, and what was read."""
    from tracked.usage import extract

    out: dict[str, Any] = {"file": extract.__code__.co_filename, "ns": {}, "read": {}}
    for key, obj in objects().items():
        found = extract(obj)  # field by field: a tree may have fields the other has not
        out["read"][key] = None if found is None else {f: repr(v) for f, v in found._asdict().items()}
        for _ in range(100):  # the caches a class fills on first sight
            extract(obj)
        timer = timeit.Timer("extract(obj)", globals={"extract": extract, "obj": obj})
        out["ns"][key] = min(timer.repeat(repeat=repeat, number=number)) / number * 1e9
    print(json.dumps(out))


def run(src: str, number: int, repeat: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
    done = subprocess.run(
        [sys.executable, __file__, "--worker", "--number", str(number), "--repeat", str(repeat)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="the src directory of the tree to compare against")
    parser.add_argument("--after", default=str(HERE.parent / "src"), help="the src directory measured (default: ./src)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--number", type=int, default=20_000, help="calls per timeit repeat")
    parser.add_argument("--repeat", type=int, default=7, help="timeit repeats per process")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.number, args.repeat)
        return

    trees = {"before": args.before, "after": args.after} if args.before else {"after": args.after}
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in trees}
    for _ in range(args.rounds):
        for label, src in trees.items():
            runs[label].append(run(src, args.number, args.repeat))
    for label in trees:
        print(f"{label}: {runs[label][0]['file']}")
    if args.before:
        for key, _ in CASES:
            before, after = runs["before"][0]["read"][key], runs["after"][0]["read"][key]
            if before is not None and after is not None:  # the fields both trees have
                before = {f: v for f, v in before.items() if f in after}
                after = {f: v for f, v in after.items() if f in before}
            if before != after:
                sys.exit(f"case {key}: before read {before}, after read {after}")

    header = "".join(f"{label + ' min':>12}{label + ' median':>15}" for label in trees)
    print(f"\nns per extract() call, {args.rounds} rounds of {args.repeat} x {args.number} calls\n")
    print(f"{'case':<46}{header}")
    for key, title in CASES:
        cells = ""
        for label in trees:
            per_round = [r["ns"][key] for r in runs[label]]
            cells += f"{min(per_round):>12.0f}{statistics.median(per_round):>15.0f}"
        print(f"{key}) {title:<43}{cells}")


if __name__ == "__main__":
    main()
