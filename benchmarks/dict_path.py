#!/usr/bin/env python
"""A dict-shaped response against the same response as an object: ns per `@tracked` call.

    python benchmarks/dict_path.py [--rounds 7] [--calls 20000] [--capture-io]

Subjects, each a `@tracked` function returning a value built once:
  (a) an OpenAI `ChatCompletion` (a pydantic model, the object path),
  (b) the same as a dict (`completion.model_dump()`, what raw JSON through httpx gives),
  (c) an Ollama chat response as a dict,
  (d) a user's dict with `tokens_in` / `tokens_out` / `cost_usd`,
and, for reference, (t) a trivial call returning its argument.
Blocks of `--calls` calls are interleaved subject by subject inside each round (the order rotated
per round); a subject's figure is the median of its round medians, and the ratios to (a) are taken
round by round (each within one round, then their median), so that the machine's noise cancels.
Before timing, the usage read from every subject's value is printed once. `--capture-io` runs
the same with `tracked.configure(capture_io=True)` (each call's arguments and output recorded too).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

try:
    import tracked
except ImportError:  # run from a source tree without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import tracked

from harness import make_response, rotated, sync_block

from tracked.usage import extract

COMPLETION = make_response()
AS_DICT = COMPLETION.model_dump()
OLLAMA = {
    "model": "llama3.2:3b",
    "created_at": "2024-01-01T00:00:00Z",
    "message": {"role": "assistant", "content": "The answer is 42."},
    "done": True,
    "done_reason": "stop",
    "total_duration": 4_883_583_458,
    "load_duration": 1_334_875,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 342_546_000,
    "eval_count": 298,
    "eval_duration": 4_535_599_000,
}
USER = {"answer": "42", "tokens_in": 1000, "tokens_out": 500, "cost_usd": 0.0125, "model": "my-model"}


@tracked.tracked
def trivial(x: Any) -> Any:
    return x


@tracked.tracked
def as_object(x: Any) -> Any:
    return COMPLETION


@tracked.tracked
def as_dict(x: Any) -> Any:
    return AS_DICT


@tracked.tracked
def ollama_dict(x: Any) -> Any:
    return OLLAMA


@tracked.tracked
def user_dict(x: Any) -> Any:
    return USER


SUBJECTS = {
    "t trivial (returns its argument)": trivial,
    "a OpenAI ChatCompletion object": as_object,
    "b the same as a dict (model_dump)": as_dict,
    "c Ollama chat response dict": ollama_dict,
    "d user dict tokens_in/tokens_out/cost_usd": user_dict,
}
OBJECT = "a OpenAI ChatCompletion object"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000, help="calls per timed block")
    parser.add_argument("--capture-io", action="store_true", help="with configure(capture_io=True)")
    args = parser.parse_args()
    if args.capture_io:
        tracked.configure(capture_io=True)

    for label, fn in SUBJECTS.items():
        print(f"{label:44} {extract(fn(1))}")

    blocks = {label: sync_block(fn) for label, fn in SUBJECTS.items()}
    for block in blocks.values():  # warm every cache
        block(1000)
    medians: dict[str, list[float]] = {label: [] for label in blocks}
    for r in range(args.rounds):
        for label in rotated(list(blocks), r):
            block = blocks[label]
            per = [block(args.calls) / args.calls for _ in range(3)]
            medians[label].append(statistics.median(per))
    io = ", capture_io=True" if args.capture_io else ""
    print(f"\nns per tracked call{io}, median of {args.rounds} rounds of 3 blocks x {args.calls} calls; ratio to (a)")
    for label, rounds in medians.items():
        ratio = statistics.median(m / o for m, o in zip(rounds, medians[OBJECT], strict=True))
        print(f"{label:44} {statistics.median(rounds):9,.0f} ns   {ratio:5.2f}x")


if __name__ == "__main__":
    main()
