"""LLM calls whose usage could not be read: counted, said so at every level, never a silent 0.

Real clients against the loopback server; the known tokens are the ledger's for the requests whose
usage the client received, and W&B's figures are read back from the offline run.
"""

from __future__ import annotations

import json
import warnings

import pytest

import tracked
from helpers import wandb_run
from tracked.testing import read_experiment

MESSAGES = [{"role": "user", "content": "Where will Sally look for the marble?"}]


@pytest.fixture
def lb(server):
    server.ledger.clear()
    yield server
    tracked.uninstrument("ollama")
    tracked.uninstrument("openai")


def test_a_local_models_unknown_usage_is_counted_in_rows_records_and_summaries(lb, tmp_path):
    """An Ollama stream left early beside a whole chat: tokens are the whole one's; every level counts 1 unknown."""
    client = lb.ollama()
    tracked.instrument(client)

    @tracked.tracked(name="strategy")
    def strategy() -> None:
        client.chat(model="llama3.2", messages=MESSAGES)
        for _chunk in client.chat(model="llama3.2", messages=MESSAGES, stream=True):
            break  # left before the final chunk, which carries Ollama's counts

    with pytest.warns(tracked.TrackedWarning, match="usage"):
        with tracked.experiment("local", dir=tmp_path) as exp:
            strategy()
    whole = lb.ledger.sent[0]
    assert len(lb.ledger.sent) == 2 and not whole.stream
    tokens_in, tokens_out = whole.tokens()
    summary = exp.final_summary
    assert summary["total/llm_calls"] == 2
    assert summary["total/usage_unknown_calls"] == 1  # (cost is known: a local model is free)
    assert summary["total/cost_complete"] is True and summary["total/cost_usd"] == 0
    assert (summary["total/tokens_in"], summary["total/tokens_out"]) == (tokens_in, tokens_out)
    assert summary["model/llama3_2/usage_unknown_calls"] == 1
    local = read_experiment(exp.dir)
    (row,) = local.rows
    assert (row["tokens_in"], row["usage_unknown_calls"]) == (tokens_in, 1)
    parent = next(r for r in local.calls if r["name"] == "strategy")
    assert parent["usage_unknown_calls"] == 1 and parent["tokens_in"] == tokens_in
    run = wandb_run(exp)
    assert run.summary["total/usage_unknown_calls"] == 1
    assert run.summary["total/tokens_in"] == tokens_in
    (task,) = run.table("tasks")
    assert (task["tokens_in"], task["usage_unknown_calls"]) == (tokens_in, 1)
    leaves = [c for c in run.table("calls") if c["llm"]]
    assert sorted(c["usage_unknown_calls"] for c in leaves) == [0, 1]  # 0, not null: null is unknown


def test_a_parent_whose_every_llm_call_has_unknown_usage_has_unknown_tokens_not_0(lb, tmp_path):
    """A parent over streams whose usage was never sent: its row, record and totals have null tokens, not 0."""
    client = lb.openai()
    tracked.instrument(client, provider="openai", stream_usage=False)

    @tracked.tracked(name="strategy")
    def strategy() -> None:
        for _ in range(2):
            list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))

    with pytest.warns(tracked.TrackedWarning, match="unknown"):
        with tracked.experiment("blind", dir=tmp_path) as exp:
            strategy()
            strategy()
    assert len(lb.ledger.sent) == 4 and not any(s.usage_visible for s in lb.ledger.sent)
    summary = exp.final_summary
    assert summary["total/llm_calls"] == summary["total/usage_unknown_calls"] == 4
    assert summary["total/tokens_in"] is None and summary["total/tokens_out"] is None
    assert summary["total/cost_usd"] is None and summary["total/cost_complete"] is False
    local = read_experiment(exp.dir)
    assert [(r["tokens_in"], r["usage_unknown_calls"]) for r in local.rows] == [(None, 2), (None, 2)]
    parents = [r for r in local.calls if r["name"] == "strategy"]
    assert [(r["tokens_in"], r["tokens_out"], r["usage_unknown_calls"]) for r in parents] == [(None, None, 2)] * 2
    stored = json.loads((exp.dir / "summary.json").read_text())
    assert stored["total/tokens_in"] is None and stored["total/usage_unknown_calls"] == 4
    run = wandb_run(exp)
    assert "total/tokens_in" not in run.summary  # unknown: left out, never 0
    assert run.summary["total/usage_unknown_calls"] == 4
    assert all("tokens_in" not in step for step in run.history)


def test_rows_read_back_keep_the_count_and_older_rows_with_null_tokens_count_as_unknown():
    """Totals made from stored rows (workers, `tracked ls`) count unknown usage as the live ones do."""
    from tracked._totals import Totals

    totals = Totals()
    totals.add_row({"call": "s", "latency_s": 1.0, "llm_calls": 2, "tokens_in": 5, "tokens_out": 1,
                    "cost_usd": 0.0, "usage_unknown_calls": 1})  # fmt: skip
    totals.add_row({"call": "s", "latency_s": 1.0, "llm_calls": 1, "tokens_in": None, "tokens_out": None,
                    "cost_usd": None})  # fmt: skip
    out = totals.as_dict()
    assert out["total/usage_unknown_calls"] == 2 and out["total/llm_calls"] == 3
    assert out["total/tokens_in"] == 5


def test_compare_says_what_the_tokens_leave_out(lb, tmp_path, capsys):
    """`tracked compare` shows "N + k unknown" tokens beside a partly read run, "unknown (k call)" for a blind one."""
    from tracked import cli

    client = lb.ollama()
    tracked.instrument(client)
    with pytest.warns(tracked.TrackedWarning, match="usage"):
        for name, early in (("partly", True), ("blind", False)):
            with tracked.experiment(name, dir=tmp_path, wandb=False, config={"strategy": name}):
                if early:
                    client.chat(model="llama3.2", messages=MESSAGES)
                for _chunk in client.chat(model="llama3.2", messages=MESSAGES, stream=True):
                    break
    known_in, known_out = lb.ledger.sent[0].tokens()
    capsys.readouterr()
    assert cli.main(["compare", str(tmp_path / "experiments")]) == 0
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines()
            if line.startswith("│")}  # fmt: skip
    # strategy, runs, status, calls, errors, LLM calls, tokens in, tokens out, cost, ...
    assert rows["partly"][6:8] == [f"{known_in:,} + 1 unknown", f"{known_out:,} + 1 unknown"]
    assert rows["blind"][6:8] == ["unknown (1 call)", "unknown (1 call)"]
    assert rows["blind"][8] == "$0.00"  # a local model: free, whatever its usage


@pytest.mark.parametrize("streams", [[True, True], [False, True], [False, False]])
def test_a_call_record_and_its_row_hold_the_calls_own_figures(lb, streams):
    """Each figure of a strategy's call record and row is the ended call's own (its properties),
    tokens the ledger's for known usage and null when every LLM call's usage is unknown."""
    from tracked import _rows

    client = lb.openai()
    tracked.instrument(client, provider="openai", stream_usage=False)  # a stream's usage never comes

    @tracked.tracked(name="strategy")
    def strategy():
        for stream in streams:
            response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=stream)
            if stream:
                list(response)
        return tracked.current_call()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tracked.TrackedWarning)
        call = strategy()
    record, row = call.to_record(), _rows.call_row(call)
    for key in ("latency_s", "model", "provider", "cache_read_tokens", "cache_write_tokens", "cost_usd",
                "cost_source", "local", "llm_calls", "start_time", "id", "parent_id"):  # fmt: skip
        assert record[key] == getattr(call, key), key
    unknown = streams.count(True)
    assert call.usage_unknown_calls == unknown
    assert record.get("usage_unknown_calls", 0) == row.get("usage_unknown_calls", 0) == unknown
    known = [s.tokens() for s in lb.ledger.sent if not s.stream]
    expected = (sum(t[0] for t in known), sum(t[1] for t in known)) if known else (None, None)
    assert (record["tokens_in"], record["tokens_out"]) == (row["tokens_in"], row["tokens_out"]) == expected
    assert row["latency_s"] == call.latency_s and row["llm_calls"] == call.llm_calls == len(streams)
    assert row["cost_usd"] == record["cost_usd"]
