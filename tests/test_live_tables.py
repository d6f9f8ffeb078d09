"""The W&B calls and tasks tables while a run goes on: sent as increments, read back from the `.wandb` file.

The live test drives the real OpenAI client against the loopback server and checks the tables,
read from the offline run both mid-run and at the end, against the server's ledger.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

import tracked
from helpers import wandb_run
from helpers import wandb_run_dirs as run_dirs
from tracked.sinks._tables import Tables
from tracked.testing import read_experiment, wandb_records


def _sent_along(run_dir: Path, key: str) -> list[tuple[int, int]]:
    """For each update of the `key` table in the run's record log: (history rows written before it,
    the table's rows then). The log is what W&B's server receives, in order: an update before the
    last history row was visible while the run went on. (An offline run's `.wandb` file is
    buffered until the run ends, so it is read afterwards.)"""
    rows, out = 0, []
    for record in wandb_records(next(run_dir.glob("*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            rows += 1
        elif kind == "summary":
            for item in record.summary.update:
                value = json.loads(item.value_json)
                if item.key == key and value.get("_type") == "incremental-table-file":
                    out.append((rows, value["nrows"]))
    return out


def _pause(root: Path, *, started: bool) -> None:
    """A little time for the sink's thread to keep up; with `started`, first until the run has
    started (a task's row reaches W&B when the next task starts, and the first row starts the run)."""
    deadline = time.monotonic() + 20
    while started and not run_dirs(root) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)


def test_tables_are_readable_while_the_run_goes_on_and_add_up_to_the_ledger(server, tmp_path):
    """Mid-run the tables hold the finished tasks; at the end their LLM rows equal the server's ledger."""
    tracked.configure(table_flush_s=0.001, capture_io=True)
    client = server.openai()
    tracked.instrument(client, provider="openai")  # (a loopback address would be "local", free)
    server.ledger.clear()

    @tracked.tracked(name="solve")
    def solve(i: int) -> str:
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"q{i}"}])
        return f"answer {i}"

    with tracked.experiment("live", dir=tmp_path) as exp:
        for i in range(4):
            solve(i)
            exp.log({"task_id": i, "accuracy": i % 2})
            _pause(tmp_path, started=i >= 1)
    run = wandb_run(exp)
    ledger = server.ledger.totals()
    assert run.summary["calls"]["_type"] == run.summary["tasks"]["_type"] == "incremental-table-file"
    assert len(run.increments["tasks"]) >= 2  # sent in parts, read as one
    # Sent while the run went on, before its last rows (a task's row is complete, and sent, when the
    # next one starts: `exp.log` may still join it).
    history_rows, table_rows = _sent_along(run.dir, "tasks")[0]
    assert history_rows < 4 and table_rows >= 1
    history_rows, table_rows = _sent_along(run.dir, "calls")[0]
    assert history_rows < 4 and table_rows >= 3
    tasks = run.table("tasks")
    assert [t["step"] for t in tasks] == [0, 1, 2, 3]
    assert [t["accuracy"] for t in tasks] == [0, 1, 0, 1]
    assert [t["output"] for t in tasks] == [f"answer {i}" for i in range(4)]
    assert [t["models"] for t in tasks] == ["gpt-4o-mini"] * 4
    llm_rows = [c for c in run.table("calls") if c["llm"]]
    assert len(llm_rows) == ledger["llm_calls"] == 8
    assert sum(c["tokens_in"] for c in llm_rows) == ledger["tokens_in"]
    assert sum(c["tokens_out"] for c in llm_rows) == ledger["tokens_out"]
    assert math.isclose(sum(c["cost_usd"] for c in llm_rows), ledger["cost_usd"], rel_tol=1e-9)
    assert {c["depth"] for c in llm_rows} == {1}
    assert sorted(c["id"] for c in run.table("calls")) == sorted(c["id"] for c in read_experiment(exp.dir).calls)


def test_a_column_that_first_appears_after_a_live_update_is_in_the_final_table(tmp_path):
    """A metric first logged after the tables were sent is a column of the table at the end, every row kept."""
    tracked.configure(table_flush_s=0.001)

    @tracked.tracked(name="solve")
    def solve(i: int) -> int:
        tracked.current_call().add_usage(tokens_in=i, tokens_out=1, model="test-model", cost_usd=0.01)
        if i == 2:
            tracked.current_call().log({"judge_notes": 1.5})
        return i

    with tracked.experiment("grows", dir=tmp_path) as exp:
        solve(0)
        exp.log({"accuracy": 1})
        solve(1)
        _pause(tmp_path, started=True)
        exp.log({"accuracy": 0, "late_metric": 7})
        solve(2)
    run = wandb_run(exp)
    assert run.increments["tasks"] and run.increments["calls"]  # sent while the run went on
    assert run.summary["tasks"]["_type"] == run.summary["calls"]["_type"] == "table-file"  # written whole again
    tasks = run.table("tasks")
    assert [t["late_metric"] for t in tasks] == [None, 7, None]
    assert [t["accuracy"] for t in tasks] == [1, 0, None]
    calls = run.table("calls")
    assert [c.get("metrics/judge_notes") for c in calls] == [None, None, 1.5]


def test_a_run_shorter_than_the_update_interval_writes_ordinary_tables_once(tmp_path):
    """With the default interval a short run's tables are ordinary tables, which every W&B server shows."""
    with tracked.experiment("short", dir=tmp_path) as exp:

        @tracked.tracked
        def one() -> None:
            tracked.current_call().add_usage(tokens_in=3, tokens_out=1, model="test-model", cost_usd=0.0)

        one()
    run = wandb_run(exp)
    assert run.summary["tasks"]["_type"] == run.summary["calls"]["_type"] == "table-file"
    assert run.increments == {}
    assert len(run.table("tasks")) == len(run.table("calls")) == 1


def test_table_flush_s_must_be_a_non_negative_number():
    """A negative, infinite or non-number interval is refused at configure()."""
    for bad in (-1, float("inf"), "10"):
        with pytest.raises(ValueError, match="table_flush_s"):
            tracked.configure(table_flush_s=bad)  # type: ignore[arg-type]


# --- the table rows, without W&B ----------------------------------------------------------------


def _rec(call_id: str, parent: str | None, **extra) -> dict:
    return {"id": call_id, "parent_id": parent, "name": call_id, **extra}


def test_calls_are_sent_once_their_depth_is_known_children_first():
    """A call whose parent's record has not come waits; the parent's record releases it with the right depth."""
    tables = Tables(100)
    tables.add_call(_rec("c", "b", llm=True, model="m1"))  # grandchild first, as records come
    tables.add_call(_rec("b2", "a", llm=True, model="m2"))
    assert tables.calls.rows == []
    tables.add_call(_rec("b", "a"))
    assert tables.calls.rows == []
    tables.add_call(_rec("a", None))
    assert {r["id"]: r["depth"] for r in tables.calls.rows} == {"a": 0, "b": 1, "b2": 1, "c": 2}
    tables.add_task(0, {"call": "a", "call_id": "a"})
    assert tables.tasks.rows[0]["models"] == "m1, m2"


def test_a_task_row_waits_for_its_call_record_and_the_end_releases_what_is_left():
    """A task whose call record has not come is sent after it; calls of a missing parent end at depth 0."""
    tables = Tables(100)
    tables.add_task(0, {"call": "a", "call_id": "a"})
    assert tables.tasks.rows == []
    tables.add_call(_rec("x", "gone", llm=True))  # its parent is in another process, or left out
    tables.add_call(_rec("y", "x"))
    tables.add_call(_rec("a", None))
    assert [t["step"] for t in tables.tasks.rows] == [0]
    tables.add_task(1, {"call": "b", "call_id": "b"})  # its record never comes
    tables.finish_rows()
    assert [t["step"] for t in tables.tasks.rows] == [0, 1]
    assert {r["id"]: r["depth"] for r in tables.calls.rows} == {"a": 0, "x": 0, "y": 1}


def test_the_row_cap_counts_waiting_rows_and_the_rest_are_left_out():
    """`table_max_rows` holds for each table, waiting rows included; the rest are counted as left out."""
    tables = Tables(2)
    for i in range(3):
        tables.add_call(_rec(f"k{i}", "p"))
    tables.add_task(0, {"call": "p", "call_id": "p"})
    tables.add_task(1, {"call": "q", "call_id": "q"})
    tables.add_task(2, {"call": "r", "call_id": "r"})
    tables.finish_rows()
    assert len(tables.calls.rows) == 2 and tables.calls.left_out == 1
    assert len(tables.tasks.rows) == 2 and tables.tasks.left_out == 1
