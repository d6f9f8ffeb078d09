"""Loading the price data (genai-prices, once per process) is in no call's measured latency."""

from __future__ import annotations

import json  # noqa: F401
import textwrap

import pytest

from helpers import run_python
from tracked.testing import read_experiment

FIRST_CALL_CHILD = textwrap.dedent(
    """
    import json, sys, time
    import tracked

    @tracked.tracked
    def llm(prompt):
        time.sleep(0.01)
        return {"model": "gpt-4o-mini", "tokens_in": 100, "tokens_out": 20}

    @tracked.tracked
    def strategy(i):
        return llm(f"task {i}")

    with tracked.experiment("first_call", wandb=False) as exp:
        for i in range(3):
            strategy(i)
    print(json.dumps({"loaded_before": "genai_prices.data" in sys.modules}))
    """
)


def test_loading_the_price_data_is_in_no_calls_latency(tmp_path):
    """A fresh process's first priced call (the price data loads then, 0.3 to 1 s) has the latency
    of its work: its parent's too (the load is waited for before the first call's clock starts)."""
    done = run_python(FIRST_CALL_CHILD, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    stored = read_experiment(next((tmp_path / "experiments").glob("first_call_*")))
    strategies = [r["latency_s"] for r in stored.rows]
    llms = [c["latency_s"] for c in stored.calls if c["name"] == "llm"]
    assert len(strategies) == 3 and len(llms) == 3
    assert all(0.01 <= s < 0.01 + 0.15 for s in strategies), strategies
    assert stored.rows[0]["cost_usd"] == pytest.approx(llm_cost := stored.calls[0]["cost_usd"]) and llm_cost > 0
