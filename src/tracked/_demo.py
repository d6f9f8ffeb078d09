"""`tracked demo`: a small strategy comparison against a simulated model, tracked end to end.

The simulated local model answers like Ollama's `/api/chat` (the same JSON fields, token counts
that grow with the prompt, a latency that grows with the tokens), deterministically: the same
prompt always gets the same answer. The debate's judge is a simulated hosted model answering like
OpenAI's chat completions for `gpt-4o-mini`, so that strategy has a real cost from genai-prices.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ._experiment import experiment
from ._tracked import tracked

LOCAL_MODEL = "llama3.2:3b"
HOSTED_MODEL = "gpt-4o-mini"
STRATEGIES = ("single", "debate", "self_consistency")

_PEOPLE = ("Sally", "Anne", "Max", "Ada", "Yuki", "Omar", "Lena", "Ravi")
_OBJECTS = ("marble", "key", "letter", "coin", "ring", "ticket")
_PLACES = ("basket", "box", "drawer", "bag", "cupboard", "jar")


def make_tasks(n: int) -> list[dict[str, Any]]:
    """False-belief tasks (ToMBench style) with a known answer."""
    tasks = []
    for i in range(n):
        a, b = _PEOPLE[i % len(_PEOPLE)], _PEOPLE[(i + 3) % len(_PEOPLE)]
        obj = _OBJECTS[i % len(_OBJECTS)]
        first, second = _PLACES[i % len(_PLACES)], _PLACES[(i + 2) % len(_PLACES)]
        story = (
            f"{a} puts the {obj} in the {first} and leaves the room. While {a} is away, "
            f"{b} moves the {obj} to the {second}. {a} comes back."
        )
        tasks.append(
            {
                "id": i,
                "question": f"{story} Where will {a} look for the {obj}?",
                "answer": first,
                "options": [first, second],
            }
        )
    return tasks


def _digest(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def _tokens(text: str) -> int:
    return max(1, round(len(text.split()) * 1.3))


def _simulated_answer(prompt: str, options: list[str], skill: float, salt: Any) -> str:
    correct, wrong = options[0], options[1]
    return correct if (_digest(prompt, salt) % 1000) / 1000 < skill else wrong


@tracked(provider="ollama")
def call_llm(
    prompt: str, options: list[str], *, model: str = LOCAL_MODEL, temperature: float = 0.7, seed: int = 0
) -> dict[str, Any]:
    """The simulated local model: an Ollama `/api/chat` response."""
    answer = _simulated_answer(prompt, options, skill=0.62, salt=(model, temperature, seed))
    content = f"{answer}. Because of what they last saw, they will look in the {answer}."
    prompt_tokens, output_tokens = _tokens(prompt), _tokens(content)
    seconds = 0.0005 + output_tokens * 0.00004 + prompt_tokens * 0.000005
    time.sleep(seconds)
    return {
        "model": model,
        "created_at": datetime.now().astimezone().isoformat(),
        "message": {"role": "assistant", "content": content},
        "done": True,
        "done_reason": "stop",
        "total_duration": int(seconds * 1e9),
        "load_duration": 0,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": int(seconds * 0.2e9),
        "eval_count": output_tokens,
        "eval_duration": int(seconds * 0.8e9),
    }


@tracked(provider="openai")
def call_hosted(prompt: str, options: list[str], *, model: str = HOSTED_MODEL) -> dict[str, Any]:
    """The simulated hosted judge: an OpenAI chat completion."""
    answer = _simulated_answer(prompt, options, skill=0.85, salt=model)
    content = f"The debaters' strongest argument points to the {answer}."
    prompt_tokens, output_tokens = _tokens(prompt), _tokens(content)
    time.sleep(0.002 + output_tokens * 0.00002)
    return {
        "id": f"chatcmpl-{_digest(prompt) % 10**12}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": f"{model}-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": prompt_tokens + output_tokens,
        },
    }


def _pick(text: str, options: list[str]) -> str:
    return options[0] if text.startswith(options[0]) or f"the {options[0]}." in text else options[1]


def single(task: dict[str, Any], temperature: float = 0.7) -> str:
    reply = call_llm(task["question"], task["options"], temperature=temperature)
    return _pick(reply["message"]["content"], task["options"])


def debate(task: dict[str, Any], temperature: float = 0.7, n_debaters: int = 3, rounds: int = 2) -> str:
    transcript = task["question"]
    for r in range(rounds):
        replies = [
            call_llm(
                f"{transcript}\nDebater {d + 1}, round {r + 1}: argue your answer.",
                task["options"],
                temperature=temperature,
                seed=d,
            )
            for d in range(n_debaters)
        ]
        transcript += "\n" + "\n".join(reply["message"]["content"] for reply in replies)
    verdict = call_hosted(f"{transcript}\nJudge: which answer is right?", task["options"])
    return _pick(verdict["choices"][0]["message"]["content"], task["options"])


def self_consistency(task: dict[str, Any], temperature: float = 0.9, n_samples: int = 5) -> str:
    votes = Counter(
        _pick(
            call_llm(task["question"], task["options"], temperature=temperature, seed=s)["message"]["content"],
            task["options"],
        )
        for s in range(n_samples)
    )
    return votes.most_common(1)[0][0]


_RUN: dict[str, Callable[..., str]] = {"single": single, "debate": debate, "self_consistency": self_consistency}
_TEMPERATURE = {"single": 0.7, "debate": 0.7, "self_consistency": 0.9}


@tracked
def run_strategy(strategy: str, task: dict[str, Any], temperature: float | None = None) -> str:
    """One task with one strategy; its LLM calls roll up into this call."""
    return _RUN[strategy](task, temperature=_TEMPERATURE[strategy] if temperature is None else temperature)


def run_demo(n_tasks: int, dir: str, progress: Callable[[str, int], None] | None = None) -> Any:
    """The comparison: a parent experiment, one child per strategy, one row per task."""
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    tasks = make_tasks(n_tasks)
    with experiment(
        "demo_strategy_comparison",
        project="tracked-demo",
        group=f"demo_{stamp}",
        config={
            "benchmark": "false-belief (simulated)",
            "n_tasks": n_tasks,
            "model": LOCAL_MODEL,
            "provider": "ollama",
        },
        tags=["demo", "benchmark:false-belief"],
        notes="Does debate or self-consistency beat a single call on false-belief tasks?",
        dir=dir,
    ) as parent:
        for strategy in STRATEGIES:
            config: dict[str, Any] = {"strategy": strategy, "temperature": 0.7}
            if strategy == "debate":
                config.update(n_debaters=3, rounds=2, judge=HOSTED_MODEL)
            elif strategy == "self_consistency":
                config.update(n_samples=5, temperature=0.9)
            with experiment(f"demo_{strategy}", config=config, tags=[f"strategy:{strategy}"]) as exp:
                for task in tasks:
                    answer = run_strategy(strategy, task)
                    exp.log({"accuracy": 1.0 if answer == task["answer"] else 0.0})
                    if progress is not None:
                        progress(strategy, 1)
    return parent
