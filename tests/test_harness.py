"""The older tracker API (`tracked.harness`), driven exactly as the W&B integration guide's users do."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pytest

import tracked
from helpers import wandb_run_dirs
from tracked import harness
from tracked.harness import ExperimentConfig, ExperimentTracker, get_tracker
from tracked.testing import read_experiment, read_wandb_run

# Most tests here log results with no LLM call measured for them, which warns once (tested below).
pytestmark = pytest.mark.filterwarnings("ignore:log_result. no LLM call was measured")


@dataclass
class StrategyResult:
    """What the research harness's `run_strategy` returns."""

    latency_s: float
    tokens_in: int
    tokens_out: int
    cost_usd: float
    output: str
    metadata: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(autouse=True)
def fresh_tracker(monkeypatch):
    """`get_tracker()` keeps one tracker per process: every test starts without one, W&B not enabled."""
    monkeypatch.setattr(harness, "_tracker", None)
    monkeypatch.delenv("WANDB_ENABLED", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)


@tracked.tracked
def run_strategy(strategy: str, task: str, *, tokens_in: int = 100, cost: float = 0.002) -> StrategyResult:
    """A tracked strategy run that reports its own usage, like the harness's."""
    return StrategyResult(
        latency_s=0.25,
        tokens_in=tokens_in,
        tokens_out=20,
        cost_usd=cost,
        output=f"{strategy}: answer to {task}",
        metadata={"accuracy": 1 if task.endswith("0") else 0},
    )


@pytest.fixture
def no_wandb_init(monkeypatch):
    """Any `wandb.init` in the test fails it (through the sink's TrackedWarning, an error in this suite)."""
    import wandb

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("wandb.init was called although W&B is off")

    monkeypatch.setattr(wandb, "init", refuse)


# --- ExperimentConfig ------------------------------------------------------------------------------


def test_config_holds_the_guide_fields_and_extras():
    """ExperimentConfig keeps strategy, provider, model, temperature and extra keyword fields, also as attributes."""
    config = ExperimentConfig(
        experiment_name="tombench_llama32",
        strategy="debate",
        provider="ollama",
        model="llama3.2:latest",
        temperature=0.7,
        n_debaters=3,
        benchmark="tombench",
    )
    assert config.experiment_name == "tombench_llama32"
    assert (config.strategy, config.provider, config.model, config.temperature) == (
        "debate",
        "ollama",
        "llama3.2:latest",
        0.7,
    )
    assert config.n_debaters == 3
    assert config.benchmark == "tombench"
    assert config.to_dict() == {
        "strategy": "debate",
        "provider": "ollama",
        "model": "llama3.2:latest",
        "temperature": 0.7,
        "n_debaters": 3,
        "benchmark": "tombench",
    }
    with pytest.raises(AttributeError):
        _ = config.not_a_field


def test_config_model_and_temperature_default_to_none():
    """Only experiment_name, strategy and provider are required, as in the guide's examples."""
    config = ExperimentConfig(experiment_name="debate_energy", strategy="debate", provider="ollama")
    assert config.model is None
    assert config.temperature is None
    assert config.to_dict() == {"strategy": "debate", "provider": "ollama", "model": None, "temperature": None}


@pytest.mark.parametrize("name", ["", None, 3])
def test_config_rejects_a_missing_name(name):
    """An empty or non-string experiment_name is refused with ValueError."""
    with pytest.raises(ValueError, match="experiment_name"):
        ExperimentConfig(experiment_name=name, strategy="single", provider="ollama")


# --- get_tracker and WANDB_ENABLED ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("true", True), ("True", True), ("false", False), ("1", False), ("yes", False)],
)
def test_get_tracker_reads_wandb_enabled(monkeypatch, value, expected):
    """`get_tracker()` turns W&B on only when WANDB_ENABLED is "true" (any case), as the older tracker did."""
    if value is None:
        monkeypatch.delenv("WANDB_ENABLED", raising=False)
    else:
        monkeypatch.setenv("WANDB_ENABLED", value)
    assert get_tracker().use_wandb is expected
    assert harness.wandb_enabled() is expected


def test_get_tracker_argument_wins_over_the_environment(monkeypatch):
    """An explicit `use_wandb` beats WANDB_ENABLED, and the process keeps one tracker."""
    monkeypatch.setenv("WANDB_ENABLED", "true")
    first = get_tracker(use_wandb=False)
    assert first.use_wandb is False
    second = get_tracker(use_wandb=True)
    assert second is first
    assert second.use_wandb is True
    monkeypatch.setenv("WANDB_ENABLED", "false")
    assert get_tracker().use_wandb is False


def test_wandb_stays_off_by_default_and_the_local_store_is_written(tmp_path, no_wandb_init):
    """Without WANDB_ENABLED no W&B run is made, yet the experiment is in the local store."""
    config = ExperimentConfig(
        experiment_name="tombench_llama32", strategy="single", provider="ollama", model="llama3.2:latest"
    )
    tracker = get_tracker()
    path = tracker.start_experiment(config)
    tracker.log_result(StrategyResult(0.5, 10, 2, 0.0, "basket", {"accuracy": 1}))
    summary = tracker.finish_experiment()

    assert path is not None
    assert path.parent == tmp_path / "experiments"
    assert path.name.startswith("tombench_llama32_")
    assert summary["status"] == "finished"
    assert summary["sinks"] == {"local": "ok", "wandb": "off"}
    assert "wandb" not in summary
    assert wandb_run_dirs(tmp_path) == []
    stored = read_experiment(path)
    assert stored.summary["total/calls"] == 1
    assert len(stored.rows) == 1


def test_explicit_use_wandb_false_beats_wandb_enabled(monkeypatch, tmp_path, no_wandb_init):
    """`ExperimentTracker(use_wandb=False)` writes no W&B run even with WANDB_ENABLED=true and WANDB_MODE=offline."""
    monkeypatch.setenv("WANDB_ENABLED", "true")
    tracker = ExperimentTracker(use_wandb=False)
    tracker.start_experiment(ExperimentConfig(experiment_name="off", strategy="single", provider="ollama"))
    run_strategy("single", "t0")
    tracker.log_result({"latency_s": 0.1, "tokens_in": 100, "tokens_out": 20, "cost_usd": 0.002})
    summary = tracker.finish_experiment()
    assert summary["sinks"]["wandb"] == "off"
    assert wandb_run_dirs(tmp_path) == []


# --- log_result rows and totals -----------------------------------------------------------------------


def test_log_result_with_result_objects_makes_rows_and_totals(tmp_path):
    """Each log_result with nothing measured for it is one row of its own tokens and cost, and no LLM call."""
    config = ExperimentConfig(experiment_name="objects", strategy="debate", provider="openai", model="gpt-4o-mini")
    tracker = ExperimentTracker(use_wandb=False)
    path = tracker.start_experiment(config)
    results = [
        StrategyResult(0.5, 100, 10, 0.001, "basket", {"accuracy": 1, "confidence": 0.9}),
        StrategyResult(1.5, 200, 30, 0.004, "box", {"accuracy": 0, "confidence": 0.5}),
        StrategyResult(1.0, 300, 20, 0.002, "basket", {"accuracy": 1, "confidence": 0.7}),
    ]
    for result in results:
        tracker.log_result(result)
    summary = tracker.finish_experiment()

    assert summary["total/calls"] == 3
    assert summary["total/tokens_in"] == 600
    assert summary["total/tokens_out"] == 60
    assert summary["total/cost_usd"] == pytest.approx(0.007)
    assert summary["total/llm_calls"] == 0  # not measured: not invented
    # Its reported usage counts under its model (the config's), with no LLM call either.
    assert summary["model/gpt-4o-mini/tokens_in"] == 600
    assert summary["model/gpt-4o-mini/cost_usd"] == pytest.approx(0.007)
    assert summary["model/gpt-4o-mini/llm_calls"] == 0
    assert summary["latency_s/mean"] == pytest.approx(1.0)
    assert summary["metadata/accuracy/mean"] == pytest.approx(2 / 3)
    assert summary["metadata/confidence/mean"] == pytest.approx(0.7)

    rows = read_experiment(path).rows
    assert [r["output"] for r in rows] == ["basket", "box", "basket"]
    assert [r["tokens_in"] for r in rows] == [100, 200, 300]
    assert [r["latency_s"] for r in rows] == [0.5, 1.5, 1.0]
    assert [r["cost_usd"] for r in rows] == [0.001, 0.004, 0.002]
    assert [r["metadata/accuracy"] for r in rows] == [1, 0, 1]
    assert all(r["call"] == "result" for r in rows)
    assert all(r["model"] == "gpt-4o-mini" for r in rows)  # from the config when the result has none
    assert read_experiment(path).summary["total/calls"] == 3


def test_log_result_with_dicts_makes_rows_and_totals():
    """log_result takes dicts with the same fields; strategy/provider/model in a result are kept on its row."""
    tracker = ExperimentTracker(use_wandb=False)
    path = tracker.start_experiment(ExperimentConfig(experiment_name="dicts", strategy="single", provider="ollama"))
    tracker.log_result(
        {"latency_s": 0.2, "tokens_in": 7, "tokens_out": 3, "cost_usd": 0.5, "output": "a", "metadata": {"accuracy": 1},
         "model": "llama3.2:3b", "strategy": "single"}
    )  # fmt: skip
    tracker.log_result(
        {
            "latency_s": 0.4,
            "tokens_in": 5,
            "tokens_out": 1,
            "cost_usd": 0.25,
            "output": "b",
            "metadata": {"accuracy": 0},
        }
    )
    summary = tracker.finish_experiment()

    assert summary["total/calls"] == 2
    assert summary["total/tokens_in"] == 12
    assert summary["total/tokens_out"] == 4
    assert summary["total/cost_usd"] == pytest.approx(0.75)
    assert summary["metadata/accuracy/mean"] == pytest.approx(0.5)
    rows = read_experiment(path).rows
    assert [r["output"] for r in rows] == ["a", "b"]
    assert rows[0]["model"] == "llama3.2:3b"
    assert rows[0]["strategy"] == "single"
    assert "model" not in rows[1]  # no model in the result nor the config
    assert [r["_step"] for r in rows] == [0, 1]


def test_non_string_output_is_recorded_as_its_repr():
    """An output that is not a string is stored as its repr, so the row stays JSON."""
    tracker = ExperimentTracker()
    path = tracker.start_experiment(ExperimentConfig(experiment_name="repr", strategy="single", provider="ollama"))
    tracker.log_result({"latency_s": 0.1, "tokens_in": 1, "tokens_out": 1, "cost_usd": 0.0, "output": ["basket", 2]})
    tracker.finish_experiment()
    assert read_experiment(path).rows[0]["output"] == "['basket', 2]"


def test_tracked_calls_after_the_last_result_are_one_more_row():
    """`@tracked` calls made with no log_result after them are counted, as one row ended by finish_experiment."""
    tracker = ExperimentTracker(use_wandb=False)
    path = tracker.start_experiment(ExperimentConfig(experiment_name="captured", strategy="debate", provider="ollama"))
    for i in range(4):
        run_strategy("debate", f"task{i}", tokens_in=10 * (i + 1), cost=0.001)
    summary = tracker.finish_experiment()
    run_strategy("debate", "after finish")  # not recorded anywhere

    assert summary["total/calls"] == 1
    assert summary["total/llm_calls"] == 4
    assert summary["total/tokens_in"] == 100
    assert summary["total/tokens_out"] == 80
    assert summary["total/cost_usd"] == pytest.approx(0.004)
    stored = read_experiment(path)
    assert [(r["call"], r["tokens_in"], r["llm_calls"]) for r in stored.rows] == [("result", 100, 4)]
    (row_call,) = [c for c in stored.calls if c["parent_id"] is None]
    assert [c["tokens_in"] for c in stored.calls if c["parent_id"] == row_call["id"]] == [10, 20, 30, 40]


def test_log_result_after_a_tracked_call_makes_it_the_result_child():
    """The guide's loop (`result = run_strategy(...)`; `log_result(result)`) counts each task once, with its output."""
    tracker = ExperimentTracker(use_wandb=False)
    path = tracker.start_experiment(ExperimentConfig(experiment_name="joined", strategy="single", provider="ollama"))
    for i in range(3):
        result = run_strategy("single", f"task{i}", tokens_in=100, cost=0.002)
        tracker.log_result(result)
    summary = tracker.finish_experiment()

    assert summary["total/calls"] == 3  # number of tracked calls, not 6
    assert summary["total/tokens_in"] == 300
    assert summary["total/tokens_out"] == 60
    assert summary["total/cost_usd"] == pytest.approx(0.006)
    assert summary["total/llm_calls"] == 3
    assert summary["metadata/accuracy/mean"] == pytest.approx(1 / 3)
    stored = read_experiment(path)
    rows = stored.rows
    assert len(rows) == 3
    assert [r["call"] for r in rows] == ["result"] * 3
    assert [c["name"] for c in stored.calls if c["parent_id"] is not None] == ["run_strategy"] * 3
    assert [r["output"] for r in rows] == [
        "single: answer to task0",
        "single: answer to task1",
        "single: answer to task2",
    ]
    assert [r["metadata/accuracy"] for r in rows] == [1, 0, 0]


def test_log_result_without_a_tracked_call_before_is_its_own_row():
    """A log_result with nothing measured is a row of its own figures; one after a tracked call has it as a child."""
    tracker = ExperimentTracker(use_wandb=False)
    path = tracker.start_experiment(ExperimentConfig(experiment_name="mixed", strategy="single", provider="ollama"))
    tracker.log_result({"latency_s": 0.3, "tokens_in": 4, "tokens_out": 2, "cost_usd": 0.01, "output": "first"})
    run_strategy("single", "task1", tokens_in=100, cost=0.002)
    tracker.log_result({"output": "second"})  # joins the tracked call's row
    summary = tracker.finish_experiment()

    assert summary["total/calls"] == 2
    assert summary["total/tokens_in"] == 104
    assert summary["total/cost_usd"] == pytest.approx(0.012)
    rows = read_experiment(path).rows
    assert [(r["call"], r["output"], r["llm_calls"]) for r in rows] == [("result", "first", 0), ("result", "second", 1)]


def test_two_log_results_after_one_tracked_call_are_two_results():
    """Only the first log_result after a tracked call joins its row; a second result is a row of its own."""
    tracker = ExperimentTracker(use_wandb=False)
    path = tracker.start_experiment(ExperimentConfig(experiment_name="twice", strategy="single", provider="ollama"))
    result = run_strategy("single", "task0", tokens_in=100, cost=0.002)
    tracker.log_result(result)
    tracker.log_result(
        {
            "latency_s": 1.0,
            "tokens_in": 7,
            "tokens_out": 3,
            "cost_usd": 0.5,
            "output": "other",
            "metadata": {"accuracy": 0},
        }
    )
    summary = tracker.finish_experiment()

    rows = read_experiment(path).rows
    assert [r["output"] for r in rows] == ["single: answer to task0", "other"]
    assert summary["total/calls"] == 2
    assert summary["total/tokens_in"] == 107
    assert summary["total/cost_usd"] == pytest.approx(0.502)


def test_log_result_inside_a_tracked_call_is_not_counted_twice():
    """A log_result made inside a tracked call (a decorated per-task function) does not double the call's usage."""
    tracker = ExperimentTracker(use_wandb=False)
    path = tracker.start_experiment(ExperimentConfig(experiment_name="inside", strategy="single", provider="ollama"))

    @tracked.tracked
    def evaluate(task: str) -> StrategyResult:
        result = run_strategy("single", task, tokens_in=10, cost=0.01)
        tracker.log_result(result)
        return result

    evaluate("task0")
    evaluate("task1")
    summary = tracker.finish_experiment()

    assert summary["total/tokens_in"] == 20
    assert summary["total/cost_usd"] == pytest.approx(0.02)
    assert summary["total/calls"] == 2
    outputs = [r.get("output") for r in read_experiment(path).rows]
    assert "single: answer to task0" in outputs and "single: answer to task1" in outputs


def test_result_without_cost_is_counted_as_unpriced():
    """A result with tokens but no cost_usd keeps cost_usd None on its row and is counted in total/unpriced_calls."""
    tracker = ExperimentTracker(use_wandb=False)
    path = tracker.start_experiment(ExperimentConfig(experiment_name="nocost", strategy="single", provider="mystery"))
    tracker.log_result({"latency_s": 0.1, "tokens_in": 1000, "tokens_out": 100, "output": "a"})
    tracker.log_result({"latency_s": 0.1, "tokens_in": 10, "tokens_out": 1, "cost_usd": 0.5, "output": "b"})
    summary = tracker.finish_experiment()

    rows = read_experiment(path).rows
    assert rows[0]["cost_usd"] is None
    assert summary["total/calls"] == 2
    assert summary["total/cost_usd"] == pytest.approx(0.5)
    assert summary["total/unpriced_calls"] == 1


def test_results_without_any_cost_have_an_unknown_total_cost():
    """Results that report tokens but no cost give an unknown total cost (None, not $0) and cost_complete false."""
    tracker = ExperimentTracker(use_wandb=False)
    tracker.start_experiment(ExperimentConfig(experiment_name="nocost2", strategy="single", provider="mystery"))
    tracker.log_result({"latency_s": 0.1, "tokens_in": 1000, "tokens_out": 100, "output": "a"})
    summary = tracker.finish_experiment()
    assert summary["total/cost_usd"] is None
    assert summary["total/cost_complete"] is False
    assert summary["total/unpriced_calls"] == 1


def test_config_json_holds_the_experiment_config(tmp_path):
    """The stored config holds strategy, provider, model, temperature and extra fields; the project is hidden-layer."""
    config = ExperimentConfig(
        experiment_name="cfg",
        strategy="self_consistency",
        provider="ollama",
        model="llama3.2:3b",
        temperature=0.9,
        n_samples=5,
    )
    tracker = ExperimentTracker()
    path = tracker.start_experiment(config)
    tracker.finish_experiment()
    record = json.loads((path / "config.json").read_text())
    assert record["name"] == "cfg"
    assert record["project"] == "hidden-layer"
    assert record["config"] == {
        "strategy": "self_consistency",
        "provider": "ollama",
        "model": "llama3.2:3b",
        "temperature": 0.9,
        "n_samples": 5,
    }


def test_wandb_project_environment_variable_overrides_hidden_layer(monkeypatch):
    """WANDB_PROJECT, when set, names the project instead of the default "hidden-layer"."""
    monkeypatch.setenv("WANDB_PROJECT", "my-project")
    tracker = ExperimentTracker()
    path = tracker.start_experiment(ExperimentConfig(experiment_name="proj", strategy="single", provider="ollama"))
    tracker.finish_experiment()
    assert json.loads((path / "config.json").read_text())["project"] == "my-project"


# --- misuse ---------------------------------------------------------------------------------------------


def test_log_result_before_start_or_after_finish_raises():
    """log_result needs a started, unfinished experiment, and finish_experiment without one returns None."""
    tracker = ExperimentTracker()
    with pytest.raises(RuntimeError, match="start_experiment"):
        tracker.log_result({"tokens_in": 1})
    assert tracker.finish_experiment() is None
    tracker.start_experiment(ExperimentConfig(experiment_name="x", strategy="s", provider="p"))
    assert tracker.finish_experiment() is not None
    with pytest.raises(RuntimeError, match="start_experiment"):
        tracker.log_result({"tokens_in": 1})
    assert tracker.finish_experiment() is None


def test_start_experiment_needs_an_experiment_config():
    """start_experiment refuses a plain dict with TypeError."""
    with pytest.raises(TypeError, match="ExperimentConfig"):
        ExperimentTracker().start_experiment({"experiment_name": "x", "strategy": "s", "provider": "p"})
    assert tracked.current_experiment() is None


def test_starting_again_finishes_the_previous_experiment():
    """A second start_experiment without finish closes the first one (finished, with its rows)."""
    tracker = ExperimentTracker()
    first = tracker.start_experiment(ExperimentConfig(experiment_name="first", strategy="single", provider="ollama"))
    tracker.log_result({"latency_s": 0.1, "tokens_in": 3, "tokens_out": 1, "cost_usd": 0.0})
    second = tracker.start_experiment(ExperimentConfig(experiment_name="second", strategy="debate", provider="ollama"))
    assert second != first
    stored = read_experiment(first)
    assert stored.summary["status"] == "finished"
    assert stored.summary["total/calls"] == 1
    tracker.log_result({"latency_s": 0.1, "tokens_in": 5, "tokens_out": 1, "cost_usd": 0.0})
    summary = tracker.finish_experiment()
    assert summary["name"] == "second"
    assert summary["total/tokens_in"] == 5


# --- with W&B ---------------------------------------------------------------------------------------------


def test_wandb_enabled_true_writes_a_hidden_layer_run(monkeypatch):
    """With WANDB_ENABLED=true the run goes to project hidden-layer with the config, a row per result, and totals."""
    monkeypatch.setenv("WANDB_ENABLED", "true")
    config = ExperimentConfig(
        experiment_name="debate_renewable_energy",
        strategy="debate",
        provider="ollama",
        model="llama3.2:latest",
        n_debaters=3,
    )
    tracker = get_tracker()
    assert tracker.use_wandb is True
    path = tracker.start_experiment(config)
    tracker.log_result(StrategyResult(0.75, 80, 40, 0.001, "no", {"accuracy": 0}))
    result = run_strategy("debate", "Should we invest in renewable energy?0", tokens_in=120, cost=0.003)
    tracker.log_result(result)
    summary = tracker.finish_experiment()

    assert summary["sinks"] == {"local": "ok", "wandb": "ok"}
    assert summary["wandb"]["mode"] == "offline"
    assert summary["wandb"]["project"] == "hidden-layer"
    run = read_wandb_run(summary["wandb"]["dir"])
    assert run.project == "hidden-layer"
    assert run.name == "debate_renewable_energy"
    assert {k: run.config[k] for k in ("strategy", "provider", "model", "temperature", "n_debaters")} == {
        "strategy": "debate",
        "provider": "ollama",
        "model": "llama3.2:latest",
        "temperature": None,
        "n_debaters": 3,
    }
    assert [row["call"] for row in run.rows()] == ["result", "result"]
    assert [row["llm_calls"] for row in run.rows()] == [0, 1]
    assert [row["tokens_in"] for row in run.rows()] == [80, 120]
    assert [row["metadata/accuracy"] for row in run.rows()] == [0, 1]
    assert run.rows()[1]["output"] == "debate: answer to Should we invest in renewable energy?0"
    assert run.summary["total/calls"] == 2
    assert run.summary["total/tokens_in"] == 200
    assert run.summary["total/cost_usd"] == pytest.approx(0.004)
    assert run.exit_code == 0
    assert read_experiment(path).summary["total/calls"] == 2  # the local store is written too


def test_guide_example_3_strategy_comparison(tmp_path):
    """The guide's "Example 3: Strategy Comparison" loop makes three experiments and three W&B runs in hidden-layer."""
    strategies = ["single", "debate", "self_consistency"]
    summaries = []
    for strategy in strategies:
        config = ExperimentConfig(experiment_name=f"comparison_{strategy}", strategy=strategy, provider="ollama")

        tracker = get_tracker(use_wandb=True)
        tracker.start_experiment(config)

        # Run experiments...
        result = run_strategy(strategy, "task0")
        tracker.log_result(result)

        summaries.append(tracker.finish_experiment())

    assert [s["name"] for s in summaries] == [f"comparison_{s}" for s in strategies]
    assert all(s["status"] == "finished" and s["total/calls"] == 1 for s in summaries)
    stored = sorted((tmp_path / "experiments").iterdir())
    assert len(stored) == 3
    assert sorted(read_experiment(p).config["config"]["strategy"] for p in stored) == sorted(strategies)

    # wandb reads WANDB_DIR once per process, so the runs are found through the summaries.
    run_dirs = {s["wandb"]["dir"] for s in summaries}
    assert len(run_dirs) == 3
    runs = [read_wandb_run(s["wandb"]["dir"]) for s in summaries]
    assert len({r.id for r in runs}) == 3
    for strategy, run in zip(strategies, runs, strict=True):
        assert run.project == "hidden-layer"
        assert run.name == f"comparison_{strategy}"
        assert run.config["strategy"] == strategy
        assert run.config["provider"] == "ollama"
        assert len(run.rows()) == 1
        assert run.rows()[0]["output"] == f"{strategy}: answer to task0"
        assert run.summary["total/calls"] == 1
        assert math.isclose(run.summary["total/cost_usd"], 0.002)
        assert run.exit_code == 0


def test_totals_recomputed_from_stored_rows_agree_with_the_summary(tmp_path):
    """Totals recomputed from stored rows (as `tracked compare` does) equal the summary: no LLM call invented."""
    from tracked._store import find_experiments, totals_of

    tracker = ExperimentTracker(use_wandb=False)
    tracker.start_experiment(ExperimentConfig(experiment_name="recount", strategy="single", provider="ollama"))
    tracker.log_result({"latency_s": 0.1, "tokens_in": 10, "tokens_out": 2, "cost_usd": 0.5})
    tracker.log_result({"latency_s": 0.1, "tokens_in": 10, "tokens_out": 2})
    result = run_strategy("single", "task0", tokens_in=100, cost=0.002)
    tracker.log_result(result)
    summary = tracker.finish_experiment()
    recomputed = totals_of(find_experiments(tmp_path / "experiments"))
    for key in ("calls", "llm_calls", "tokens_in", "tokens_out", "cost_usd", "unpriced_calls", "cost_complete"):
        assert recomputed[f"total/{key}"] == pytest.approx(summary[f"total/{key}"]), key
    assert summary["total/llm_calls"] == 1


def test_guide_wandb_log_after_log_result_lands_in_that_results_row(monkeypatch, tmp_path):
    """The guide's Example 2: `wandb.log({...})` and `wandb.save(...)` after `log_result` join that result's row."""
    import wandb

    monkeypatch.setenv("WANDB_ENABLED", "true")
    notes_file = tmp_path / "notes.txt"
    notes_file.write_text("layer 15 looks best")
    config = ExperimentConfig(
        experiment_name="introspection_happiness_layer15", strategy="introspection", provider="mlx",
        group="introspection", tags=["concept:happiness"], notes="Which layer?", job_type="probe", layer=15,
    )  # fmt: skip
    tracker = get_tracker(use_wandb=True)
    path = tracker.start_experiment(config)
    assert wandb.run is not None
    tracker.log_result(StrategyResult(0.2, 30, 5, 0.0, "I feel content", {"introspection_correct": 1}))
    wandb.log({"detection_accuracy": 1, "confidence": 0.8, "layer": 15})
    wandb.save(str(notes_file))
    (tmp_path / "out").mkdir()
    for name in ("a.json", "b.json"):
        (tmp_path / "out" / name).write_text(name)
    wandb.save("out/*.json")  # a glob, as wandb takes it
    wandb.save("nothing/*.bin")  # matching nothing is not an error
    tracker.log({"concept_score": 0.5})
    summary = tracker.finish_experiment()
    assert wandb.run is None  # no longer current once the experiment finished

    (row,) = read_experiment(path).rows
    assert (row["detection_accuracy"], row["confidence"], row["layer"], row["concept_score"]) == (1, 0.8, 15, 0.5)
    run = read_wandb_run(summary["wandb"]["dir"])
    (step,) = run.rows()
    assert step["detection_accuracy"] == 1 and step["concept_score"] == 0.5 and step["output"] == "I feel content"
    assert (run.group, run.tags, run.notes, run.job_type) == (
        "introspection",
        ["concept:happiness"],
        "Which layer?",
        "probe",
    )
    assert "group" not in run.config and run.config["layer"] == 15
    assert run.saved() == {"notes.txt": b"layer 15 looks best", "out/a.json": b"a.json", "out/b.json": b"b.json"}
    assert len(wandb_run_dirs(tmp_path)) == 1  # one run: the tracker's (not a second, empty one)
    assert run.summary["detection_accuracy/mean"] == 1


def test_tracker_log_before_any_result_is_a_row_of_its_own():
    """`tracker.log` with no result to join is a row of its own; outside an experiment it raises."""
    tracker = ExperimentTracker()
    with pytest.raises(RuntimeError, match="start_experiment"):
        tracker.log({"x": 1})
    path = tracker.start_experiment(ExperimentConfig(experiment_name="early", strategy="s", provider="p"))
    tracker.log({"warmup": 1})
    tracker.finish_experiment()
    assert [r.get("warmup") for r in read_experiment(path).rows] == [1]
