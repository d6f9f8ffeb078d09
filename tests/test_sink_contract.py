"""The sink contract: one set of tests run against every sink, each read back from where it writes.

The local store is read from disk, W&B from its offline `.wandb` file, the in-memory sink from
memory. Each reader gives the same shapes, so each test states the contract once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tracked
from tracked import sinks as sinks_mod
from tracked.testing import capture, read_experiment, read_wandb_run

SINK_NAMES = [cls.name for cls in sinks_mod.SINKS]


@dataclass
class ReadBack:
    """What one sink holds of an experiment, in common shapes."""

    rows: list[dict[str, Any]]  # in step order, without the sink's own bookkeeping keys
    call_ids: list[str]
    notes: str | None
    tags: list[str]
    files: dict[str, bytes]
    summary: dict[str, Any]


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def read_local(exp: tracked.Experiment, captured: Any) -> ReadBack:
    stored = read_experiment(exp.path)
    files_dir = exp.path / "files"
    files = {p.name: p.read_bytes() for p in files_dir.iterdir()} if files_dir.is_dir() else {}
    return ReadBack(
        rows=[_public(r) for r in sorted(stored.rows, key=lambda r: r["_step"])],
        call_ids=[c["id"] for c in stored.calls],
        notes=stored.config["notes"],
        tags=stored.config["tags"],
        files=files,
        summary=stored.summary,
    )


def read_wandb(exp: tracked.Experiment, captured: Any) -> ReadBack:
    run = read_wandb_run(exp.final_summary["wandb"]["dir"])
    assert run.dir is not None
    files = run.saved()
    return ReadBack(
        rows=[_public(r) for r in sorted(run.rows(), key=lambda r: r["_step"])],
        call_ids=[c["id"] for c in run.table("calls")] if "calls" in run.summary else [],
        notes=run.notes,
        tags=run.tags,
        files=files,
        # W&B keeps the run's bookkeeping (status, times, sinks) under `tracked/`: read back as the others have it.
        summary={k.removeprefix("tracked/"): v for k, v in run.summary.items()},
    )


def read_memory(exp: tracked.Experiment, captured: Any) -> ReadBack:
    sink = captured[exp.name]
    return ReadBack(
        rows=[_public(r) for r in sink.rows],
        call_ids=[c["id"] for c in sink.calls],
        notes=sink.notes,
        tags=list(sink.tags),
        files=dict(sink.files),
        summary=sink.summary or {},
    )


READERS = {"local": read_local, "wandb": read_wandb, "memory": read_memory}


def test_every_registered_sink_has_a_reader_here():
    """The contract covers every registered sink."""
    assert sorted(READERS) == sorted(SINK_NAMES)


def test_every_registered_sink_follows_the_protocol():
    """Each registered sink class has the protocol's attributes and methods, and a `create` factory."""
    for cls in sinks_mod.SINKS:
        for attr in ("name", "durable", "label", "create", *_protocol_methods()):
            assert hasattr(cls, attr), (cls.__name__, attr)


def _protocol_methods() -> list[str]:
    return [n for n, v in vars(sinks_mod.Sink).items() if callable(v) and not n.startswith("_")]


@tracked.tracked
def work(i: int) -> dict[str, Any]:
    """A priced LLM call: i + 1 tokens in, 2 out, on gpt-4o-mini."""
    ids.append(tracked.current_call().id)
    return {"usage": {"prompt_tokens": i + 1, "completion_tokens": 2}, "model": "gpt-4o-mini"}


ids: list[str] = []


def run_scenario(tmp_path: Path) -> tuple[tracked.Experiment, Any]:
    """Five rows with a joined metric each, notes and tags changed mid-run, a saved file, a summary key."""
    ids.clear()
    data = tmp_path / "data.txt"
    data.write_text("version 1")
    with capture() as captured, tracked.experiment("contract", dir=tmp_path, notes="before", tags=["a"]) as exp:
        for i in range(5):
            work(i)
            exp.log({"score": i / 10})
            if i == 2:
                exp.notes = "after"
                exp.tags = ["a", "strategy:debate"]
        exp.save(data)
        data.write_text("version 2")  # changed after saving: the sinks keep version 1
        exp.summary["key_finding"] = "debate +12%"
    return exp, captured


@pytest.fixture
def scenario(tmp_path):
    return run_scenario(tmp_path)


@pytest.fixture(params=SINK_NAMES)
def back(request, scenario) -> ReadBack:
    exp, captured = scenario
    return READERS[request.param](exp, captured)


def test_rows_arrive_whole_and_in_step_order(back):
    """Every row is there, in step order, with its call's figures."""
    assert [r["call"] for r in back.rows] == ["work"] * 5
    assert [r["tokens_in"] for r in back.rows] == [1, 2, 3, 4, 5]
    assert [r["tokens_out"] for r in back.rows] == [2] * 5
    assert all(r["model"] == "gpt-4o-mini" and r["llm_calls"] == 1 for r in back.rows)


def test_metrics_logged_after_a_call_join_its_row(back):
    """`exp.log` right after a call adds its metrics to that call's row, not a row of their own."""
    assert [r["score"] for r in back.rows] == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_every_call_record_arrives(back):
    """Each call's record, with the id the call had while it ran, reaches the sink once."""
    assert sorted(back.call_ids) == sorted(ids)
    assert len(ids) == 5


def test_notes_and_tags_changed_while_running_are_the_final_ones(back):
    """Notes and tags set while the experiment ran are what the sink holds at the end."""
    assert back.notes == "after"
    assert back.tags == ["a", "strategy:debate"]


def test_a_saved_file_is_kept_as_it_was_when_saved(back):
    """`exp.save` keeps the file's content at the time of the call."""
    assert back.files["data.txt"] == b"version 1"


def test_the_summary_has_the_status_totals_and_the_users_keys(back):
    """The summary says finished, has the totals (equal to the rows' sums) and the user's keys."""
    summary = back.summary
    assert summary["status"] == "finished"
    assert summary["total/calls"] == 5
    assert summary["total/tokens_in"] == sum(r["tokens_in"] for r in back.rows) == 15
    assert summary["total/cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in back.rows), rel=1e-12)
    assert summary["key_finding"] == "debate +12%"
    assert summary["score/mean"] == pytest.approx(0.2)


def test_the_durable_sinks_have_each_row_before_the_call_returns(tmp_path):
    """The local store and the in-memory sink hold a row as soon as its call has returned."""
    seen: dict[str, list[int]] = {"local": [], "memory": []}
    with capture() as captured, tracked.experiment("durable", dir=tmp_path) as exp:
        for i in range(3):
            work(i)
            seen["local"].append(len(read_experiment(exp.path).rows))
            seen["memory"].append(len(captured["durable"].rows))
    assert seen == {"local": [1, 2, 3], "memory": [1, 2, 3]}


@pytest.mark.parametrize("failing", SINK_NAMES)
def test_a_failing_sink_is_switched_off_alone(tmp_path, monkeypatch, failing, wandb_in_thread):
    """A sink that raises is warned about once and switched off; the others get everything."""
    cls = next(c for c in sinks_mod.SINKS if c.name == failing)
    calls = {"n": 0}

    def boom(self, step, row):
        calls["n"] += 1
        raise RuntimeError(f"{failing} broke")

    monkeypatch.setattr(cls, "write_row", boom)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exp, captured = run_scenario(tmp_path)
    messages = [str(w.message) for w in caught if issubclass(w.category, tracked.TrackedWarning)]
    assert len(messages) == 1 and f"the {failing} sink" in messages[0], messages
    assert calls["n"] == 1  # never called again once it failed
    statuses = exp.final_summary["sinks"]
    assert statuses[failing] == f"RuntimeError: {failing} broke"
    for other in SINK_NAMES:
        if other == failing:
            continue
        assert statuses[other] == "ok"
        back = READERS[other](exp, captured)
        assert [r["tokens_in"] for r in back.rows] == [1, 2, 3, 4, 5]
        assert [r["score"] for r in back.rows] == [0.0, 0.1, 0.2, 0.3, 0.4]
        assert sorted(back.call_ids) == sorted(ids)
        # The durable sinks finish last, with every status; a background sink is told of a
        # durable one that failed before it finished.
        if next(c for c in sinks_mod.SINKS if c.name == other).durable:
            assert back.summary["sinks"][failing] == f"RuntimeError: {failing} broke"
        else:
            assert back.summary[f"sinks/{failing}"] == f"failed: RuntimeError: {failing} broke"


def test_the_in_memory_sink_is_off_and_unlisted_outside_capture(tmp_path):
    """Without `capture()` no in-memory sink is made, and `sinks` in the summary does not list it."""
    with tracked.experiment("plain", dir=tmp_path) as exp:
        work(0)
    assert exp.final_summary["sinks"] == {"local": "ok", "wandb": "ok"}


def test_capture_records_nested_experiments_and_names_them(tmp_path):
    """`capture()` records each experiment started inside it, children included, by name."""
    with capture() as captured:
        with tracked.experiment("parent", dir=tmp_path):
            with tracked.experiment("child"):
                work(0)
    assert [s.experiment_name for s in captured] == ["parent", "child"]
    assert captured["child"].rows[0]["tokens_in"] == 1
    assert captured["child"].run is not None and captured["child"].run.group == "parent"
    assert captured["parent"].summary["children"][0]["name"] == "child"
    with pytest.raises(KeyError, match="no experiment named 'other'"):
        captured["other"]
