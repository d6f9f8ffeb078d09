"""Figures a user reads in the run that could be silently wrong: found by trying the SDK as a new user.

Each test reads what W&B received from the offline run (or what the call raised), against the
loopback server's ledger where the figure is a cost.
"""

from __future__ import annotations

import math
import warnings

import pytest

import tracked
from helpers import wandb_run
from helpers import wandb_run_dirs as run_dirs
from tracked._totals import Totals
from workloads import work

MESSAGES = [{"role": "user", "content": "Where will Sally look for the marble?"}]


@pytest.mark.parametrize("key", ["cost_usd", "tokens_in", "latency_s", "model", "error", "llm_calls"])
def test_a_metric_named_as_a_measured_figure_is_refused_at_the_call(key):
    """`exp.log` and `current_call().log` refuse a measured figure's name: no row shows a user's value as measured."""
    with tracked.experiment("clash", wandb=False, local=False) as exp:
        with pytest.raises(ValueError, match=f"'{key}' is a figure tracked measures.*reported_{key}"):
            exp.log({key: 1, "accuracy": 1})

        @tracked.tracked
        def solve() -> None:
            with pytest.raises(ValueError, match=f"'{key}' is a figure tracked measures"):
                tracked.current_call().log({key: 1})

        solve()
    assert exp.final_summary["total/calls"] == 1


def test_the_older_trackers_wandb_log_of_measured_names_is_kept_as_a_report(tmp_path):
    """The guide's `wandb.log({"cost_usd": ...})` after `log_result` keeps its values as `reported_*`; one warning."""
    from tracked.harness import ExperimentConfig, ExperimentTracker

    tracker = ExperimentTracker(use_wandb=False)
    tracker.start_experiment(ExperimentConfig(experiment_name="guide", strategy="single", provider="ollama", model="m"))
    result = {"output": "4", "latency_s": 0.5, "tokens_in": 10, "tokens_out": 2, "cost_usd": 0.0}
    with pytest.warns(tracked.TrackedWarning, match="no LLM call was measured"):
        tracker.log_result(result)  # (a result with nothing measured under it: its own figures)
    with pytest.warns(tracked.TrackedWarning, match="cost_usd, latency_s are measured by tracked") as caught:
        tracker.log({"latency_s": 9.0, "cost_usd": 1.5, "accuracy": 1})
        tracker.log({"latency_s": 9.0, "cost_usd": 1.5})
    assert len([w for w in caught if "measured by tracked" in str(w.message)]) == 1
    exp = tracker.experiment
    summary = tracker.finish_experiment()
    assert summary is not None and exp is not None
    rows = tracked.testing.read_experiment(exp.dir).rows
    assert rows[0]["latency_s"] == 0.5 and rows[0]["reported_latency_s"] == 9.0
    assert rows[0]["reported_cost_usd"] == 1.5 and rows[0]["accuracy"] == 1


def test_cost_per_task_is_the_mean_of_the_tasks_whose_cost_is_known(server, tmp_path):
    """A task with an LLM call of unknown cost is left out of `cost_usd/mean` (not taken as free); `/n` counts."""
    client = server.openai()
    tracked.instrument(client, provider="openai", stream_usage=False)
    server.ledger.clear()

    @tracked.tracked(name="task")
    def task(stream: bool) -> None:
        if stream:
            list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
        else:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    try:
        with pytest.warns(tracked.TrackedWarning, match="unknown"):
            with tracked.experiment("mixed", dir=tmp_path) as exp:
                task(False)
                task(True)
                task(False)
    finally:
        tracked.uninstrument(client)
    known = [s.cost() for s in server.ledger.sent if s.usage_visible]
    assert len(known) == 2 and len(server.ledger.sent) == 3
    run = wandb_run(exp)
    for summary in (exp.final_summary, run.summary):
        assert math.isclose(summary["cost_usd/mean"], sum(known) / 2, rel_tol=1e-9)
        assert summary["cost_usd/n"] == 2
        assert summary["total/unpriced_calls"] == 1


def test_a_task_that_made_no_llm_call_costs_nothing_in_the_mean():
    """A row with no LLM call (a task that failed first) counts as $0 in the mean, which it did cost."""
    totals = Totals()
    totals.add_call("t", 1.0, False, 1, 10, 2, 0.25, 0)
    totals.add_call("t", 1.0, True, 0, 0, 0, None, 0)
    out = totals.as_dict()
    assert out["cost_usd/mean"] == 0.125 and out["cost_usd/n"] == 2


def test_saving_a_file_in_a_folder_without_the_local_store_keeps_it_in_wandb(tmp_path):
    """`exp.save("a/n.json")` with `local=False` reaches W&B's files artifact, with no error in the user's code."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "n.json").write_text("{}")
    with tracked.experiment("nolocal", local=False) as exp:
        work(1)
        exp.save("a/n.json")
    assert exp.final_summary["status"] == "finished"
    assert wandb_run(exp).saved() == {"a/n.json": b"{}"}


def test_saving_a_directory_says_it_is_one():
    """`exp.save(dir)` raises IsADirectoryError naming it, not "no such file"."""
    with tracked.experiment("dir", wandb=False, local=False) as exp:
        with pytest.raises(IsADirectoryError, match="is a directory"):
            exp.save(".")


def test_wandb_dir_wins_over_the_experiments_dir_for_the_wandb_run(tmp_path, monkeypatch):
    """With WANDB_DIR set, the W&B run is there, and `dir=` holds the local store only."""
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    with tracked.experiment("where", dir=tmp_path / "store") as exp:
        work(1)
    assert len(run_dirs(tmp_path / "wb")) == 1
    assert run_dirs(tmp_path / "store") == []
    assert exp.dir is not None and exp.dir.parent == tmp_path / "store" / "experiments"


def test_without_wandb_dir_the_wandb_run_goes_under_the_experiments_dir(tmp_path, monkeypatch):
    """With no WANDB_DIR, `dir=` holds both the local store and the W&B run."""
    monkeypatch.delenv("WANDB_DIR")
    with tracked.experiment("where", dir=tmp_path / "store"):
        work(1)
    assert len(run_dirs(tmp_path / "store")) == 1


def test_models_whose_keys_would_collide_keep_their_own_totals(tmp_path):
    """ "gpt-4.1-mini" and "gpt-4_1-mini" get keys of their own (a hash added), each with its own figures."""

    @tracked.tracked
    def call(model: str, tokens: int) -> None:
        tracked.current_call().add_usage(tokens_in=tokens, tokens_out=1, model=model, cost_usd=0.0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tracked.experiment("models", wandb=False, local=False) as exp:
            call("gpt-4.1-mini", 10)
            call("gpt-4_1-mini", 20)
            call("llama3.2:3b", 5)
    s = exp.final_summary
    names = {k: v for k, v in s.items() if k.startswith("model/") and k.endswith("/name")}
    assert sorted(names.values()) == ["gpt-4.1-mini", "gpt-4_1-mini", "llama3.2:3b"]
    by_name = {v: k[: -len("/name")] for k, v in names.items()}
    assert by_name["llama3.2:3b"] == "model/llama3_2_3b"  # no collision: the plain key
    assert by_name["gpt-4.1-mini"] != by_name["gpt-4_1-mini"]
    assert s[f"{by_name['gpt-4.1-mini']}/tokens_in"] == 10 and s[f"{by_name['gpt-4_1-mini']}/tokens_in"] == 20
