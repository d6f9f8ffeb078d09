"""The older tracker with measured LLM calls: the seed guide's examples against a loopback server.

The guide's "Example 1: Benchmark All Strategies" runs unchanged but for `instrument=True`; its
`run_strategy` (a stand-in for the research harness's) calls the real `ollama` or `openai` client
and reports its own tokens with `cost_usd=0.0`, as the harness's dataclass default does. Every
figure is checked against the loopback server's ledger (tokens as sent, cost from genai-prices'
own `extract_usage` + `calc_price`), per strategy, in the local store and in the W&B run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

import tracked
from loopback import Loopback
from tracked import harness
from tracked.harness import ExperimentConfig, ExperimentTracker, get_tracker
from tracked.testing import read_experiment, read_wandb_run

CALLS = {"single": 1, "debate": 7, "self_consistency": 5}  # debate: 3 debaters x 2 rounds + a judge


@dataclass
class StrategyResult:
    """What the research harness's `run_strategy` returns: its own token counts, and no cost."""

    latency_s: float
    tokens_in: int
    tokens_out: int
    output: str
    cost_usd: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Benchmark:
    problems: list[str]


def load_benchmark(name: str) -> Benchmark:
    return Benchmark([f"{name} problem {i}: where will Sally look for the marble?" for i in range(12)])


class Harness:
    """`run_strategy` as the research harness writes it: plain functions calling a provider client."""

    def __init__(self, lb: Loopback) -> None:
        self.ollama = lb.ollama()
        self.openai = lb.openai()

    def close(self) -> None:
        self.ollama._client.close()
        self.openai.close()

    def llm(self, prompt: str, provider: str) -> tuple[str, int, int]:
        if provider == "ollama":
            r = self.ollama.chat(model="llama3.2:latest", messages=[{"role": "user", "content": prompt}])
            return r.message.content, r.prompt_eval_count, r.eval_count
        c = self.openai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
        return c.choices[0].message.content, c.usage.prompt_tokens, c.usage.completion_tokens

    def run_strategy(self, strategy: str, problem: str, provider: str = "ollama") -> StrategyResult:
        replies = []
        if strategy == "single":
            replies.append(self.llm(problem, provider))
        elif strategy == "debate":
            for round_ in range(2):
                for debater in range(3):
                    replies.append(self.llm(f"round {round_} debater {debater}: {problem}", provider))
            replies.append(self.llm(f"judge: {problem}", provider))
        else:
            for sample in range(5):
                replies.append(self.llm(f"sample {sample}: {problem}", provider))
        return StrategyResult(
            latency_s=0.01,
            tokens_in=sum(r[1] for r in replies),
            tokens_out=sum(r[2] for r in replies),
            output=replies[-1][0],
            metadata={"correct": len(replies[-1][0]) % 2},
        )


@pytest.fixture
def lab(server, monkeypatch):
    """A fresh tracker, the ledger emptied, and every library uninstrumented afterwards."""
    monkeypatch.setattr(harness, "_tracker", None)
    monkeypatch.delenv("WANDB_ENABLED", raising=False)
    server.ledger.clear()
    h = Harness(server)
    yield h
    h.close()
    for name in ("openai", "anthropic", "ollama"):
        tracked.uninstrument(name)


def benchmark_all_strategies(lab: Harness, server: Loopback, provider: str) -> dict[str, Any]:
    """The guide's Example 1, with `instrument=True`; returns per strategy (summary, ledger, store path)."""
    run_strategy = lab.run_strategy
    benchmark = load_benchmark("tombench")
    strategies = ["single", "debate", "self_consistency"]
    out = {}
    for strategy in strategies:
        server.ledger.clear()
        config = ExperimentConfig(
            experiment_name=f"tombench_{strategy}",
            strategy=strategy,
            provider=provider,
            model="llama3.2:latest" if provider == "ollama" else "gpt-4o-mini",
        )

        tracker = get_tracker(use_wandb=True, instrument=True)
        if provider == "openai":  # the loopback server is local; say which price list applies
            tracked.instrument(lab.openai, provider="openai")
        path = tracker.start_experiment(config)

        for problem in benchmark.problems[:10]:
            result = run_strategy(strategy, problem, provider=provider)
            tracker.log_result(result)

        summary = tracker.finish_experiment()
        out[strategy] = (summary, server.ledger.totals(), path)
    return out


@pytest.mark.slow
def test_guide_example_1_on_ollama_counts_every_llm_call_of_each_strategy(lab, server):
    """Each strategy's run holds the LLM calls, tokens and (free, local) cost of the ledger, a row per result."""
    runs = benchmark_all_strategies(lab, server, "ollama")
    for strategy, (summary, ledger, _path) in runs.items():
        assert ledger["llm_calls"] == 10 * CALLS[strategy]
        assert summary["total/calls"] == 10
        assert summary["total/llm_calls"] == ledger["llm_calls"]
        assert summary["total/tokens_in"] == ledger["tokens_in"]
        assert summary["total/tokens_out"] == ledger["tokens_out"]
        assert summary["total/cost_usd"] == 0.0
        assert summary["total/cost_complete"] is True
        run = read_wandb_run(summary["wandb"]["dir"])
        assert run.summary["total/llm_calls"] == ledger["llm_calls"]
        assert run.summary["total/tokens_in"] == ledger["tokens_in"]
        assert [row["llm_calls"] for row in run.history] == [CALLS[strategy]] * 10
        assert sum(row["tokens_out"] for row in run.history) == ledger["tokens_out"]


@pytest.mark.slow
def test_guide_example_1_on_openai_costs_what_the_ledger_costs_despite_a_reported_zero(lab, server):
    """With the harness reporting cost_usd=0.0, each strategy costs what the ledger costs, with one warning."""
    with pytest.warns(tracked.TrackedWarning, match=r"cost_usd 0\.0 reported"):
        runs = benchmark_all_strategies(lab, server, "openai")
    costs = {}
    for strategy, (summary, ledger, path) in runs.items():
        assert ledger["llm_calls"] == 10 * CALLS[strategy]
        assert summary["total/llm_calls"] == ledger["llm_calls"]
        assert summary["total/tokens_in"] == ledger["tokens_in"]
        assert summary["total/tokens_out"] == ledger["tokens_out"]
        assert math.isclose(summary["total/cost_usd"], ledger["cost_usd"], rel_tol=1e-9)
        assert summary["total/cost_complete"] is True
        run = read_wandb_run(summary["wandb"]["dir"])
        assert math.isclose(run.summary["total/cost_usd"], ledger["cost_usd"], rel_tol=1e-9)
        assert math.isclose(sum(row["cost_usd"] for row in run.history), ledger["cost_usd"], rel_tol=1e-9)
        costs[strategy] = summary["total/cost_usd"]
        stored = read_experiment(path)
        reported = [c for c in stored.calls if c["name"] == "result"]
        assert len(reported) == 10 and all(c["reported_cost_usd"] == 0.0 for c in reported)
    assert costs["single"] < costs["self_consistency"] < costs["debate"]


def test_calls_after_the_last_result_are_counted_as_one_more_row(lab, server):
    """LLM calls made after the last log_result are counted in the totals (one more row), not lost."""
    tracker = ExperimentTracker(instrument=True)
    tracker.start_experiment(ExperimentConfig(experiment_name="trailing", strategy="single", provider="ollama"))
    tracker.log_result(lab.run_strategy("single", "p0"))
    lab.run_strategy("debate", "p1")  # never logged
    summary = tracker.finish_experiment()
    ledger = server.ledger.totals()
    assert summary["total/calls"] == 2
    assert summary["total/llm_calls"] == ledger["llm_calls"] == 8
    assert summary["total/tokens_in"] == ledger["tokens_in"]


def test_a_result_with_nothing_measured_warns_once_and_invents_no_llm_call(lab):
    """Without instrumentation a result keeps its own tokens, counts no LLM call, and one warning says why."""
    tracker = ExperimentTracker()
    tracker.start_experiment(ExperimentConfig(experiment_name="blind", strategy="debate", provider="ollama"))
    with pytest.warns(tracked.TrackedWarning, match="no LLM call was measured") as caught:
        for i in range(3):
            tracker.log_result(StrategyResult(0.1, 100, 10, f"answer {i}"))
    summary = tracker.finish_experiment()
    assert len([w for w in caught if "no LLM call was measured" in str(w.message)]) == 1
    assert summary["total/calls"] == 3
    assert summary["total/tokens_in"] == 300
    assert summary["total/llm_calls"] == 0


def test_instrument_argument_must_be_a_bool():
    """`get_tracker(instrument=...)` and `ExperimentTracker(instrument=...)` refuse a non-bool at the call."""
    with pytest.raises(TypeError, match="instrument must be True or False"):
        ExperimentTracker(instrument="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="instrument must be True or False"):
        get_tracker(instrument=1)  # type: ignore[arg-type]


def test_calls_from_plain_threads_and_asyncio_tasks_belong_to_the_next_result(lab, server):
    """LLM calls a strategy makes from a plain thread pool or from asyncio.gather tasks are its result's children."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    def threaded(problem: str) -> StrategyResult:
        with ThreadPoolExecutor(3) as pool:
            replies = list(pool.map(lambda i: lab.llm(f"{i} {problem}", "ollama"), range(3)))
        return StrategyResult(0.1, sum(r[1] for r in replies), sum(r[2] for r in replies), replies[-1][0])

    async def gathered(problem: str) -> StrategyResult:
        client = server.ollama(async_=True)
        tracked.instrument(client)
        try:
            replies = await asyncio.gather(
                *(client.chat(model="llama3.2:latest", messages=[{"role": "user", "content": f"{i} {problem}"}])
                  for i in range(4))
            )  # fmt: skip
        finally:
            await client._client.aclose()
        return StrategyResult(0.1, sum(r.prompt_eval_count for r in replies), sum(r.eval_count for r in replies), "x")

    tracker = ExperimentTracker(instrument=True)
    path = tracker.start_experiment(ExperimentConfig(experiment_name="concurrent", strategy="x", provider="ollama"))
    tracker.log_result(threaded("p0"))
    tracker.log_result(asyncio.run(gathered("p1")))
    summary = tracker.finish_experiment()
    ledger = server.ledger.totals()
    rows = read_experiment(path).rows
    assert [r["llm_calls"] for r in rows] == [3, 4]
    assert summary["total/llm_calls"] == ledger["llm_calls"] == 7
    assert summary["total/tokens_in"] == ledger["tokens_in"]
    assert summary["total/tokens_out"] == ledger["tokens_out"]


def test_a_results_latency_is_measured_from_its_first_call(lab, server):
    """A result's row latency runs from its first measured call to log_result, not the 0.01 s the result reports."""
    tracker = ExperimentTracker(instrument=True)
    path = tracker.start_experiment(ExperimentConfig(experiment_name="timing", strategy="debate", provider="ollama"))
    server.set_delay(0.02)
    try:
        import time

        time.sleep(0.5)  # before the first call: not the result's time
        tracker.log_result(lab.run_strategy("debate", "p0"))  # 7 calls of at least 0.02 s each
    finally:
        server.set_delay(0)
    tracker.finish_experiment()
    (row,) = read_experiment(path).rows
    assert 7 * 0.02 <= row["latency_s"] < 0.5
