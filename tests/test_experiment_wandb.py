"""What an experiment sends to W&B, read back from the real offline `.wandb` file of its run.

Two facts about `wandb` (0.31) shape these tests:
- wandb reads WANDB_DIR (and WANDB_SWEEP_ID) once per process, at its first `wandb.init`; tracked
  reads W&B's environment when each experiment starts and passes it to `wandb.init` explicitly, so
  the conftest's per-test WANDB_DIR holds for every run (tested below).
- wandb-core writes the offline `.wandb` file asynchronously: `run.finish()` can return before the
  file is complete, so `wandb_run()` waits (bounded) for the run's exit record to be on disk.
"""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

import tracked
from helpers import run_python, wandb_run
from helpers import wandb_run_dirs as run_dirs
from tracked.sinks import wandb as wandb_sink
from tracked.testing import read_experiment, read_wandb_run
from workloads import boom, llm, work


@tracked.tracked(name="strategy")
def strategy(n: int) -> int:
    return llm(n) + llm(n + 1)


def comparable(row: dict) -> dict:
    """A local row as W&B should have it: no timestamp, no None values."""
    return {k: v for k, v in row.items() if k not in ("_timestamp", "_join", "call_id") and v is not None}


# --- the run and its metadata ---------------------------------------------------------------


def test_run_has_name_project_group_job_type_tags_notes_config_and_exit_code_0(monkeypatch, tmp_path):
    """The W&B run gets the experiment's name, WANDB_PROJECT, group, job_type, tags, notes, config and `_tracked`."""
    monkeypatch.setenv("WANDB_PROJECT", "proj-from-env")
    with tracked.experiment(
        "meta_run",
        dir=tmp_path,
        config={"strategy": "debate", "temperature": 0.2, "nested": {"k": [1, 2]}},
        tags=["strategy:debate", "v1"],
        group="grp",
        job_type="eval",
        notes="first try",
    ) as exp:
        work(1)
    run = wandb_run(exp)
    assert run.name == "meta_run"
    assert run.project == "proj-from-env"
    assert run.group == "grp"
    assert run.job_type == "eval"
    assert run.tags == ["strategy:debate", "v1"]
    assert run.notes == "first try"
    assert run.exit_code == 0
    assert run.config["strategy"] == "debate"
    assert run.config["temperature"] == 0.2
    assert run.config["nested"] == {"k": [1, 2]}
    info = run.config["_tracked"]
    import genai_prices

    # W&B keeps what tells runs apart: versions (and git, parents); W&B records host and Python itself.
    assert info == {"version": tracked.__version__, "price_data": genai_prices.__version__}
    system = read_experiment(exp.path).config["system"]  # the local store keeps the rest
    assert system["python"] == ".".join(map(str, sys.version_info[:3]))
    assert system["host"] and system["platform"] and system["pid"] and system["argv"]
    assert exp.final_summary["wandb"]["mode"] == "offline"
    assert Path(exp.final_summary["wandb"]["dir"]).parent == tmp_path / "wandb"


def test_explicit_project_wins_over_wandb_project(monkeypatch):
    """`experiment(project=...)` names the W&B project even when WANDB_PROJECT is set."""
    monkeypatch.setenv("WANDB_PROJECT", "proj-from-env")
    with tracked.experiment("proj_run", project="explicit-proj") as exp:
        work(1)
    assert wandb_run(exp).project == "explicit-proj"
    assert exp.final_summary["wandb"]["project"] == "explicit-proj"


def test_config_records_git_commit_inside_a_git_repository(monkeypatch, tmp_path):
    """Inside a git repository, `_tracked.git` in the W&B config and config.json names the commit and dirty flag."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    (repo / "a.txt").write_text("a\n")
    subprocess.run([*git, "add", "a.txt"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], cwd=repo, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True)
    monkeypatch.chdir(repo)
    with tracked.experiment("git_run") as exp:
        work(1)
    info = wandb_run(exp).config["_tracked"]
    assert info["git_commit"] == commit.stdout.strip()
    assert info["git_dirty"] is False
    assert read_experiment(exp.path).config["system"]["git"]["commit"] == commit.stdout.strip()


# --- rows ------------------------------------------------------------------------------------


def test_every_row_is_one_whole_history_step_equal_to_the_local_row():
    """Each row (call, joined metrics, own rows) is exactly one W&B history step, equal to the local store's row."""
    with tracked.experiment("history") as exp:
        exp.log({"warmup": 1})
        for i in range(1, 4):
            result = work(i, tokens_out=2 * i, cost=0.001 * i)
            exp.log({"accuracy": result / 10})
            exp.log({"judge": result})
        strategy(5)
    run = wandb_run(exp)
    local = read_experiment(exp.path).rows
    assert len(run.history) == len(local) == 5
    assert [h["_step"] for h in run.history] == [0, 1, 2, 3, 4]
    assert not any(isinstance(v, str) for h in run.history for v in h.values())  # text is in the tasks table
    spent = 0.0
    for h, row in zip(run.rows(), local, strict=True):
        expected = comparable(row)
        own = {k: v for k, v in h.items() if not k.startswith(("running/", "call/"))}
        assert own.keys() == expected.keys()
        for key, value in expected.items():
            assert h[key] == pytest.approx(value), key
        spent += row.get("cost_usd") or 0.0
        assert h["running/cost_usd"] == pytest.approx(spent)  # running cost: accuracy against dollars spent
    assert run.history[1]["accuracy"] == pytest.approx(0.1) and run.history[1]["judge"] == 1
    assert run.history[3]["running/accuracy/mean"] == pytest.approx((0.1 + 0.2 + 0.3) / 3)
    assert run.rows()[4]["call"] == "strategy" and run.history[4]["llm_calls"] == 2
    # Each top-level call name's figures have keys of their own, from the first row.
    assert run.history[4]["call/strategy/llm_calls"] == 2 and run.history[1]["call/work/llm_calls"] == 1
    # Two names: each name's series are shown, the flat figures (strategy and work alternating) hidden.
    assert {"call/strategy/llm_calls", "call/work/cost_usd"} <= run.metrics.keys()
    assert not {k for k in run.hidden if k.startswith("call/")}
    assert {"latency_s", "cost_usd", "tokens_in", "llm_calls"} <= run.hidden
    assert not {"accuracy", "running/cost_usd"} & run.hidden


def test_with_one_call_name_its_figures_are_shown_flat_and_the_per_name_series_hidden():
    """One top-level call name: `cost_usd` and the rest are shown; the `call/<name>/...` copies are hidden."""
    with tracked.experiment("one_name") as exp:
        for i in range(3):
            work(i + 1)
    run = wandb_run(exp)
    assert "call/work/cost_usd" in run.hidden and "cost_usd" not in run.hidden


def _check_interleaved_history(exp: tracked.Experiment, n_threads: int, per_thread: int) -> None:
    run = wandb_run(exp)
    assert len(run.rows()) == n_threads * per_thread
    assert sorted(h["_step"] for h in run.rows()) == list(range(n_threads * per_thread))
    seen = set()
    for h in run.rows():
        task = h["tokens_in"]
        assert h["call"] == "work"
        assert h["task"] == task, h  # logged inside the call
        assert h["accuracy"] == task / 1000, h  # logged after the call, from the same thread
        assert h["judge"] == task, h
        seen.add(task)
    assert seen == {100 * t + j + 1 for t in range(n_threads) for j in range(per_thread)}
    local = {r["_step"]: r for r in read_experiment(exp.path).rows}
    for h in run.rows():
        assert local[h["_step"]]["accuracy"] == h["accuracy"]


def _interleaving_worker(exp: tracked.Experiment, barrier: threading.Barrier, t: int, per_thread: int) -> None:
    @tracked.tracked(name="work")
    def task_call(task: int) -> int:
        tracked.current_call().add_usage(tokens_in=task, tokens_out=1, model="test-model", cost_usd=0.0)
        tracked.current_call().log({"task": task})
        barrier.wait()  # every thread is inside a call at once
        return task

    for j in range(per_thread):
        task = 100 * t + j + 1
        task_call(task)
        barrier.wait()  # every thread's call has returned: all rows are open at once
        exp.log({"accuracy": task / 1000})
        barrier.wait()
        exp.log({"judge": task})


def test_rows_of_four_pool_threads_reach_wandb_whole_with_their_own_metrics():
    """With 4 tracked.ThreadPoolExecutor threads interleaving calls and logs, each W&B row has its own metrics."""
    n_threads, per_thread = 4, 5
    barrier = threading.Barrier(n_threads, timeout=30)
    with tracked.experiment("pool_threads") as exp:
        with tracked.ThreadPoolExecutor(n_threads) as pool:
            futures = [pool.submit(_interleaving_worker, exp, barrier, t, per_thread) for t in range(n_threads)]
            for f in futures:
                f.result()
    _check_interleaved_history(exp, n_threads, per_thread)


def test_rows_of_four_plain_threads_reach_wandb_whole_with_their_own_metrics():
    """With 4 plain threads interleaving calls and logs, each W&B row holds its own call's metrics."""
    n_threads, per_thread = 4, 5
    barrier = threading.Barrier(n_threads, timeout=30)
    errors: list[BaseException] = []

    def target(t: int) -> None:
        try:
            _interleaving_worker(exp, barrier, t, per_thread)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    with tracked.experiment("plain_threads") as exp:
        threads = [threading.Thread(target=target, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert errors == []
    _check_interleaved_history(exp, n_threads, per_thread)


# --- summary, calls table, notes, tags, files -------------------------------------------------------


def test_totals_and_user_summary_are_in_the_run_summary_and_summary_json():
    """At finish the run summary and summary.json hold the totals, per-name figures, metric means and exp.summary."""
    with tracked.experiment("summary_run") as exp:
        work(2, tokens_out=3, cost=0.5)
        exp.log({"accuracy": 1.0})
        strategy(4)
        exp.log({"accuracy": 0.0})
        with pytest.raises(ValueError):
            boom()
        exp.summary["best"] = "debate"
        live = exp.totals
    run = wandb_run(exp)
    local = read_experiment(exp.path).summary
    expected = {
        "total/calls": 3,
        "total/errors": 1,
        "total/llm_calls": 3,
        "total/tokens_in": 2 + 4 + 5,
        "total/tokens_out": 3 + 2,
        "total/cost_usd": 0.52,
        "total/unpriced_calls": 0,
        "work/calls": 1,
        "strategy/llm_calls": 2,
        "boom/errors": 1,
        "accuracy/mean": 0.5,
    }
    for key, value in expected.items():
        assert live[key] == pytest.approx(value), key
        assert run.summary[key] == pytest.approx(value), key
        assert local[key] == pytest.approx(value), key
    for key in ("latency_s/mean", "latency_s/p50", "latency_s/p95", "work/latency_s/p95"):
        assert run.summary[key] == pytest.approx(live[key]) == pytest.approx(local[key])
    assert run.summary["best"] == local["best"] == "debate"
    # Bookkeeping under tracked/ in W&B (which shows its own State, Name, Created, Runtime).
    assert run.summary["tracked/status"] == local["status"] == "finished"
    assert "status" not in run.summary and "started_at" not in run.summary


def test_calls_table_in_the_run_summary_lists_every_call_with_parent_ids():
    """The summary's `calls` table has every call (nested too) with id, parent_id, model, tokens, cost, error."""
    with tracked.experiment("table_run") as exp:
        strategy(1)
        with pytest.raises(ValueError):
            boom()
    table = wandb_run(exp).table()
    assert {"id", "parent_id", "name", "model", "tokens_in", "tokens_out", "cost_usd", "error"} <= table[0].keys()
    by_name: dict[str, list[dict]] = {}
    for row in table:
        by_name.setdefault(row["name"], []).append(row)
    assert sorted(by_name) == ["boom", "llm", "strategy"]
    (top,) = by_name["strategy"]
    assert top["parent_id"] is None
    assert [c["parent_id"] for c in by_name["llm"]] == [top["id"], top["id"]]
    assert sorted(c["tokens_in"] for c in by_name["llm"]) == [1, 2]
    assert all(c["model"] == "test-model" and c["cost_usd"] == pytest.approx(0.01) for c in by_name["llm"])
    assert top["tokens_in"] == 3 and top["cost_usd"] == pytest.approx(0.02)
    assert by_name["boom"][0]["error"] == "ValueError"
    local_ids = {c["id"] for c in read_experiment(exp.path).calls}
    assert {row["id"] for row in table} == local_ids


@pytest.mark.slow
def test_the_calls_table_is_let_go_once_the_run_has_ended():
    """After finish(), no calls table made by the experiment is alive (wandb's artifact cache held them),
    and the table is still in the run on disk."""
    import wandb

    def tables() -> set[int]:
        gc.collect()
        return {id(o) for o in gc.get_objects() if isinstance(o, wandb.Table)}

    before = tables()
    with tracked.experiment("table_memory") as exp:
        for i in range(50):
            strategy(i)
    assert tables() - before == set()
    assert len(wandb_run(exp).table()) == 150


def test_notes_and_tags_changed_while_running_reach_the_run_and_config_json():
    """`exp.notes = ...` and `exp.tags = [...]` set while rows are being sent are in the W&B run and config.json."""
    with tracked.experiment("notes_run", notes="before", tags=["old"]) as exp:
        exp.log({"warmup": 1})  # a row of its own, sent right away
        work(1)
        work(2)
        exp.notes = "after"
        exp.tags = ["new", "strategy:debate"]
        work(3)
    run = wandb_run(exp)
    assert run.notes == "after"
    assert run.tags == ["new", "strategy:debate"]
    config = read_experiment(exp.path).config
    assert config["notes"] == "after"
    assert config["tags"] == ["new", "strategy:debate"]


def test_notes_and_tags_changed_before_the_first_row_reach_the_run():
    """Notes and tags changed right after start (before the first row reached W&B) are in the W&B run at the end."""
    with tracked.experiment("notes_early", notes="before", tags=["old"]) as exp:
        exp.notes = "after"
        exp.tags = ["new"]
        work(1)
    assert read_experiment(exp.path).config["notes"] == "after"
    run = wandb_run(exp)
    assert run.notes == "after"
    assert run.tags == ["new"]


def test_saved_file_is_a_copy_in_local_files_and_in_the_wandb_run(tmp_path):
    """`exp.save(path)` stores a copy (not a link) in the local `files/` and the W&B run, unaffected by later edits."""
    src = tmp_path / "prompt.txt"
    src.write_text("version 1")
    with tracked.experiment("save_run") as exp:
        work(1)
        exp.save(src)
        src.write_text("version 2")
        work(2)
    local_copy = exp.path / "files" / "prompt.txt"
    assert local_copy.read_text() == "version 1"
    assert not local_copy.is_symlink()
    run = wandb_run(exp)
    assert run.saved() == {"prompt.txt": b"version 1"}  # in the run's files artifact
    assert not run.artifacts[f"run-{run.id}-files"]["prompt.txt"].is_symlink()
    assert src.read_text() == "version 2"


def test_saved_file_without_local_store_is_a_copy_in_the_wandb_run(tmp_path):
    """With `local=False`, `exp.save(path)` still gives the W&B run the content at the time of the save."""
    src = tmp_path / "notes.md"
    src.write_text("original")
    with tracked.experiment("save_wandb_only", local=False) as exp:
        exp.save(src)
        src.write_text("edited")
    run = wandb_run(exp)
    assert run.saved() == {"notes.md": b"original"}
    assert exp.path is None


def test_save_of_a_missing_file_is_a_file_not_found_error(tmp_path):
    """`exp.save()` of a path that is not a file raises FileNotFoundError at the call."""
    with tracked.experiment("save_missing", wandb=False) as exp:
        with pytest.raises(FileNotFoundError):
            exp.save(tmp_path / "nope.txt")


# --- W&B off ------------------------------------------------------------------------------------


def test_wandb_false_makes_no_run_and_still_writes_the_local_store(tmp_path):
    """`wandb=False` creates no W&B run directory, and the local store is still written."""
    with tracked.experiment("no_wandb", wandb=False, dir=tmp_path) as exp:
        work(1)
    assert not (tmp_path / "wandb").exists()
    assert "wandb" not in exp.final_summary
    assert exp.final_summary["sinks"] == {"local": "ok", "wandb": "off"}
    assert [r["tokens_in"] for r in read_experiment(exp.path).rows] == [1]


def test_wandb_mode_disabled_makes_no_run_and_still_writes_the_local_store(monkeypatch, tmp_path):
    """WANDB_MODE=disabled creates no W&B run directory, and the local store is still written."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with tracked.experiment("disabled", dir=tmp_path) as exp:
        work(2)
    assert not (tmp_path / "wandb").exists()
    assert "wandb" not in exp.final_summary
    assert [r["tokens_in"] for r in read_experiment(exp.path).rows] == [2]
    assert read_experiment(exp.path).summary["status"] == "finished"


def test_import_tracked_does_not_import_wandb(tmp_path):
    """`import tracked` alone does not import wandb (checked in a fresh interpreter)."""
    out = run_python("import sys, tracked; print('wandb' in sys.modules)", tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_experiment_with_wandb_false_does_not_import_wandb(tmp_path):
    """An experiment with `wandb=False`, with calls and logs, never imports wandb (checked in a fresh interpreter)."""
    code = """
import sys, tracked

@tracked.tracked
def work(n):
    tracked.current_call().add_usage(tokens_in=n, tokens_out=1, model="m", cost_usd=0.0)
    return n

with tracked.experiment("no_import", wandb=False) as exp:
    work(1)
    exp.log({"accuracy": 1.0})
    exp.summary["k"] = 1
print(exp.final_summary["total/calls"], 'wandb' in sys.modules)
"""
    out = run_python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1 False"
    assert len(list((tmp_path / "experiments").iterdir())) == 1


@pytest.mark.slow
def test_experiment_left_open_is_finished_at_interpreter_exit(tmp_path):
    """An experiment started with `.start()` and never finished is finished at interpreter exit, in W&B and on disk."""
    code = f"""
import tracked

@tracked.tracked
def work(n):
    tracked.current_call().add_usage(tokens_in=n, tokens_out=1, model="m", cost_usd=0.0)
    return n

exp = tracked.experiment("left_open", dir={str(tmp_path)!r}).start()
work(1)
exp.log({{"accuracy": 0.5}})
work(2)
print(exp.path)
"""
    out = run_python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    store = read_experiment(out.stdout.strip().splitlines()[-1])
    assert store.summary["status"] == "finished"
    assert store.summary["total/calls"] == 2
    (run_dir,) = run_dirs(tmp_path)
    run = read_wandb_run(run_dir)
    assert run.exit_code == 0
    assert [(h["tokens_in"], h.get("accuracy")) for h in run.history] == [(1, 0.5), (2, None)]


# --- leaving with an exception ------------------------------------------------------------------


def test_exception_exit_gives_exit_code_1_and_keeps_the_rows():
    """An exception leaving the block ends the W&B run with exit code 1, keeps its rows, and propagates unchanged."""
    error = RuntimeError("crash")
    with pytest.raises(RuntimeError) as info:
        with tracked.experiment("crash_run") as exp:
            work(1)
            exp.log({"accuracy": 0.25})
            work(2)
            raise error
    assert info.value is error
    run = wandb_run(exp)
    assert run.exit_code == 1
    assert [(h["tokens_in"], h.get("accuracy")) for h in run.history] == [(1, 0.25), (2, None)]
    assert run.summary["tracked/status"] == "failed"
    summary = json.loads((exp.path / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["total/calls"] == 2


# --- sweeps -----------------------------------------------------------------------------------------


def _start_sweep_run(monkeypatch, tmp_path):
    """What `wandb agent` leaves for the training function: an active run of a sweep, with its parameters.

    The sweep id is given both ways an agent gives it: WANDB_SWEEP_ID in the environment, and the
    run's settings (wandb reads the environment only at its first init in a process).
    """
    import wandb

    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep-abc123")
    return wandb.init(
        mode="offline",
        dir=str(tmp_path),
        config={"temperature": 0.3},
        settings=wandb.Settings(silent=True, console="off", sweep_id="sweep-abc123"),
    )


def test_experiment_adopts_an_active_sweep_run_and_takes_its_parameters(monkeypatch, tmp_path):
    """Under a sweep (an active run with a sweep id) the experiment uses that run and takes the sweep's params."""
    run = _start_sweep_run(monkeypatch, tmp_path)
    try:
        assert run.sweep_id == "sweep-abc123"
        assert wandb_sink.active_sweep_run() is run
        with tracked.experiment("swept", config={"temperature": 0.9, "strategy": "debate"}, dir=tmp_path) as exp:
            assert exp.config["temperature"] == 0.3  # the sweep's value wins
            assert exp.config["strategy"] == "debate"
            work(1)
            exp.log({"accuracy": 1.0})
        assert exp.final_summary["wandb"]["id"] == run.id
        assert len(run_dirs(tmp_path)) == 1
        assert read_experiment(exp.path).config["config"]["temperature"] == 0.3
    finally:
        run.finish()
    recorded = wandb_run(exp)
    assert recorded.id == run.id
    assert recorded.config["temperature"] == 0.3
    assert [(h["tokens_in"], h["accuracy"]) for h in recorded.history] == [(1, 1.0)]
    assert recorded.summary["total/calls"] == 1


def test_adopted_sweep_run_gets_the_experiments_config_and_tracked_info(monkeypatch, tmp_path):
    """An adopted sweep run's config gets the experiment's own config keys and `_tracked`, sweep values kept."""
    run = _start_sweep_run(monkeypatch, tmp_path)
    try:
        with tracked.experiment("swept_config", config={"temperature": 0.9, "strategy": "debate"}, dir=tmp_path):
            work(1)
    finally:
        run.finish()
    recorded = read_wandb_run(Path(run.dir).parent)
    assert recorded.config["temperature"] == 0.3
    assert recorded.config["strategy"] == "debate"
    assert "_tracked" in recorded.config


def test_active_sweep_run_needs_an_imported_wandb_with_a_run_that_has_a_sweep_id(monkeypatch):
    """`active_sweep_run()` returns `wandb.run` only when wandb is imported and that run has a sweep id."""
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    assert wandb_sink.active_sweep_run() is None
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(run=None))
    assert wandb_sink.active_sweep_run() is None
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(run=types.SimpleNamespace(sweep_id=None)))
    assert wandb_sink.active_sweep_run() is None
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(run=types.SimpleNamespace(sweep_id="")))
    assert wandb_sink.active_sweep_run() is None
    swept = types.SimpleNamespace(sweep_id="abc")
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(run=swept))
    assert wandb_sink.active_sweep_run() is swept


def test_no_sweep_run_is_adopted_without_a_sweep_id(tmp_path):
    """A plain active `wandb.run` without a sweep is not adopted: the experiment makes its own run."""
    import wandb

    outer = wandb.init(mode="offline", dir=str(tmp_path), settings=wandb.Settings(silent=True, console="off"))
    try:
        assert wandb_sink.active_sweep_run() is None
        with tracked.experiment("not_swept", dir=tmp_path) as exp:
            work(1)
    finally:
        outer.finish()
    assert exp.final_summary["wandb"]["id"] != outer.id
    assert len(run_dirs(tmp_path)) == 2


# --- values W&B cannot take -------------------------------------------------------------------


def test_unloggable_values_reach_wandb_as_repr_with_one_warning_per_type():
    """object() and bytes metric values reach W&B history as their repr, one TrackedWarning per type, W&B stays on."""
    obj = object()
    with tracked.experiment("repr_run") as exp:
        with pytest.warns(tracked.TrackedWarning) as record:
            work(1)
            exp.log({"obj": obj, "raw": b"\x00bytes"})
            work(2)
            exp.log({"obj": obj, "raw": b"more"})
    assert len(record) == 2
    assert exp.final_summary["sinks"]["wandb"] == "ok"
    run = wandb_run(exp)
    assert [h["obj"] for h in run.rows()] == [repr(obj), repr(obj)]
    assert [h["raw"] for h in run.rows()] == [repr(b"\x00bytes"), repr(b"more")]


def test_unloggable_values_logged_on_the_call_reach_wandb_as_repr():
    """An object() logged with `current_call().log()` reaches W&B as its repr with a TrackedWarning, W&B stays on."""
    obj = object()

    @tracked.tracked(name="odd")
    def odd() -> None:
        tracked.current_call().log({"obj": obj})

    with tracked.experiment("call_repr_run") as exp:
        with pytest.warns(tracked.TrackedWarning, match="repr"):
            odd()
            work(1)
    assert exp.final_summary["sinks"]["wandb"] == "ok"
    assert wandb_run(exp).rows()[0]["obj"] == repr(obj)


def test_nan_and_inf_reach_wandb_history_and_the_local_store():
    """NaN, inf and -inf metrics are kept in W&B history and in the local store."""
    with tracked.experiment("nan_run") as exp:
        work(1)
        exp.log({"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")})
    (h,) = wandb_run(exp).history
    assert math.isnan(h["nan"]) and h["inf"] == math.inf and h["ninf"] == -math.inf
    (row,) = read_experiment(exp.path).rows
    assert math.isnan(row["nan"]) and row["inf"] == math.inf and row["ninf"] == -math.inf
    assert exp.final_summary["sinks"]["wandb"] == "ok"


def test_wandb_environment_is_read_for_each_experiment(tmp_path, monkeypatch):
    """WANDB_DIR, WANDB_PROJECT and WANDB_ENTITY changed between two experiments in one process apply to the second."""
    seen = []
    for i in range(2):
        monkeypatch.setenv("WANDB_DIR", str(tmp_path / f"d{i}"))
        monkeypatch.setenv("WANDB_PROJECT", f"project{i}")
        monkeypatch.setenv("WANDB_ENTITY", f"entity{i}")
        with tracked.experiment(f"env{i}", local=False) as exp:
            strategy(1)
        info = exp.final_summary["wandb"]
        run = read_wandb_run(info["dir"])
        seen.append((Path(info["dir"]).parent.parent, run.project, run.entity))
    assert seen == [(tmp_path / "d0", "project0", "entity0"), (tmp_path / "d1", "project1", "entity1")]


def test_wandb_prints_no_weave_advertisement(tmp_path):
    """With a provider library imported, a run prints nothing of wandb's Weave suggestion on stderr."""
    code = """
        import openai, tracked
        with tracked.experiment("quiet", local=False) as exp:
            exp.log({"accuracy": 1})
        print("ran", exp.final_summary["sinks"]["wandb"])
    """
    done = run_python(code, tmp_path, WANDB_SILENT="false")  # as a user's shell has it
    assert done.returncode == 0, done.stderr
    assert "ran ok" in done.stdout
    assert "Weave" not in done.stderr and "Detected [" not in done.stderr


def test_every_history_key_is_defined_with_no_automatic_summary():
    """Every history key is defined with no automatic summary: the runs table shows only explicit aggregates."""
    with tracked.experiment("defined") as exp:
        for i in range(3):
            work(i + 1)
            exp.log({"accuracy": i % 2, "nested": {"x": i}, "is_ok": i == 1, "task_id": 7 + i, "label": f"t{i}"})
        strategy(1)  # a second call name: per-name keys too
    run = wandb_run(exp)
    keys = {k for h in run.history for k in h if not k.startswith("_")}
    assert {"accuracy", "nested/x", "running/cost_usd", "running/accuracy/mean", "call/strategy/llm_calls"} <= keys
    for key in keys:
        assert run.metrics.get(key, run.metrics.get(key.replace("/", "."))) == ["none"], key
    assert not keys & run.summary.keys()  # no last-row value stands for the run
    assert run.summary["accuracy/mean"] == pytest.approx(1 / 3)
    assert run.summary["accuracy/n"] == 3
    assert run.summary["accuracy/stderr"] == pytest.approx(math.sqrt((1 / 3) * (2 / 3) * 3 / 2 / 3))
    assert run.summary["is_ok/mean"] == pytest.approx(1 / 3)  # booleans as 0/1
    assert not any(k.startswith(("task_id/", "label/")) for k in run.summary)  # identifiers and strings: none
    assert run.summary["cost_usd/mean"] == pytest.approx(exp.final_summary["total/cost_usd"] / 4)
    assert run.summary["work/calls"] == 3 and run.summary["strategy/calls"] == 1


def test_the_calls_and_tasks_tables_read_as_a_researcher_needs(tmp_path):
    """The calls table's LLM rows sum to the totals; the tasks table has a row per task with its metrics and text."""
    tracked.configure(capture_io=True)

    @tracked.tracked(name="solve")
    def solve(task_id: int, question: str) -> str:
        strategy(task_id)  # two nested LLM calls
        tracked.current_call().log({"retries": task_id % 2})
        return f"answer {task_id}"

    with tracked.experiment("tables", dir=tmp_path) as exp:
        for i in range(3):
            solve(i, f"question {i}")
            exp.log({"task_id": 100 + i, "accuracy": i % 2})
    run = wandb_run(exp)
    summary = exp.final_summary
    calls = run.table("calls")
    llm_rows = [c for c in calls if c["llm"]]
    assert len(llm_rows) == summary["total/llm_calls"] == 6
    assert sum(c["tokens_in"] for c in llm_rows) == summary["total/tokens_in"]
    assert sum(c["cost_usd"] for c in llm_rows) == pytest.approx(summary["total/cost_usd"])
    assert sorted({c["depth"] for c in calls}) == [0, 1, 2]  # solve > strategy > llm
    assert all(c["depth"] == 2 for c in llm_rows)
    assert [c["metrics/retries"] for c in calls if c["name"] == "solve"] == [0, 1, 0]
    assert calls[0]["start_time"].startswith("20") and "T" in calls[0]["start_time"]  # a date, not epoch seconds
    tasks = run.table("tasks")
    assert [t["step"] for t in tasks] == [0, 1, 2]
    assert [t["task_id"] for t in tasks] == [100, 101, 102]
    assert [t["accuracy"] for t in tasks] == [0, 1, 0]
    assert [t["output"] for t in tasks] == ["answer 0", "answer 1", "answer 2"]
    assert all("question" in t["input"] for t in tasks)
    assert [t["llm_calls"] for t in tasks] == [2, 2, 2]
    assert [t["models"] for t in tasks] == ["test-model"] * 3  # the models of the LLM calls under each task


def test_a_top_level_experiment_ends_with_one_line_on_stderr_unless_quiet(tmp_path):
    """A top-level experiment ends with one stderr line: what it measured, where, how to upload; quiet turns it off."""
    code = """
        import tracked
        @tracked.tracked
        def ask():
            tracked.current_call().add_usage(tokens_in=10, tokens_out=5, model="gpt-4o-mini")
        with tracked.experiment("study"):
            with tracked.experiment("debate"), tracked.experiment("round_1"):  # a grandchild's run counts too
                ask()
            with tracked.experiment("single"):
                ask()
    """
    done = run_python(code, tmp_path, WANDB_SILENT="false")
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("tracked: study finished: 2 calls, 2 LLM calls, $0.0000")
    assert f"local store {tmp_path / 'experiments'}" in line
    assert "W&B 2 runs, offline" in line and f"tracked sync {tmp_path / 'experiments'}" in line
    quiet = run_python(code, tmp_path, TRACKED_QUIET="1")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_saved_files_keep_their_relative_paths_literally_and_apart_from_wandbs_own(tmp_path):
    """Two files of one name in two folders, a name with glob characters and a requirements.txt are kept as given."""
    for rel, text in (("a/notes.json", "A"), ("b/notes.json", "B"), ("happy[1].pkl", "P"), ("requirements.txt", "R")):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("O")
    with tracked.experiment("saving") as exp:
        for rel in ("a/notes.json", "b/notes.json", "happy[1].pkl", "requirements.txt"):
            exp.save(rel)
        exp.save(outside)
    want = {"a/notes.json": b"A", "b/notes.json": b"B", "happy[1].pkl": b"P", "requirements.txt": b"R",
            outside.resolve().relative_to("/").as_posix(): b"O"}  # fmt: skip
    run = wandb_run(exp)
    assert run.saved() == want
    for name, content in want.items():
        assert (exp.path / "files" / name).read_bytes() == content
    own = run.dir / "files" / "requirements.txt"  # W&B's own list of the environment's packages, untouched
    assert not own.exists() or own.read_bytes() != b"R"


def test_a_childs_run_starts_with_its_experiment_not_with_its_first_row():
    """A child run's Created is its experiment's start, even when its first row comes two seconds later."""
    import time

    with tracked.experiment("study"), tracked.experiment("slow_start") as exp:
        started = time.time()
        time.sleep(2.0)  # loading a benchmark, warming a model...
        work(1)
    run = wandb_run(exp)
    assert run.started_at is not None
    assert started - 0.1 <= run.started_at < started + 1.5  # well before the first row, 2 s in


def test_a_top_level_run_starts_with_its_first_call_not_when_that_call_ends(tmp_path):
    """A top-level run's Created is when its first call began, though that call (and so its row) ends 2 s later."""
    import time

    @tracked.tracked(name="slow_task")
    def slow_task() -> None:
        time.sleep(2.0)
        tracked.current_call().add_usage(tokens_in=3, tokens_out=1, model="test-model", cost_usd=0.0)

    import wandb  # noqa: F401  (imported already, as in any process after its first run)

    with tracked.experiment("top", dir=tmp_path) as exp:
        began = time.time()
        slow_task()
    run = wandb_run(exp)
    assert run.started_at is not None
    assert began - 0.1 <= run.started_at < began + 1.0  # not 2 s in, when the first row came


def test_a_parent_that_only_opens_children_after_a_pause_still_gets_no_run(tmp_path):
    """Set-up time before the first child does not give a parent of only children a run of its own."""
    import time

    with tracked.experiment("study", dir=tmp_path) as parent:
        time.sleep(0.4)  # past the start grace period
        with tracked.experiment("child", dir=tmp_path):
            work(1)
    assert parent.final_summary["wandb"] == {"mode": "offline"}  # never started
    assert len(run_dirs(tmp_path)) == 1


def test_metric_names_with_dots_and_stars_get_no_last_value_summary():
    """A metric named `acc.top1` or `f1*` is logged and defined like any other: no last-row value in the summary."""
    with tracked.experiment("odd_names") as exp:
        for i in range(3):
            work(i + 1)
            exp.log({"acc.top1": i, "f1*": i})
    run = wandb_run(exp)
    assert [h["acc.top1"] for h in run.history] == [0, 1, 2] and [h["f1*"] for h in run.history] == [0, 1, 2]
    assert "acc.top1" not in run.summary and "f1*" not in run.summary
    assert run.summary["acc.top1/mean"] == 1.0 and run.summary["f1*/mean"] == 1.0
    assert exp.final_summary["sinks"]["wandb"] == "ok"


def test_history_has_numbers_only_and_a_users_step_metric_leaves_the_tasks_step_alone():
    """Nested text and lists stay out of W&B history (the tasks table has them); a metric named `step` is the user's."""
    with tracked.experiment("numbers_only") as exp:
        for i in range(2):
            work(i + 1)
            exp.log({"nested": {"s": "text", "x": i}, "scores": [1, 2], "ok": True, "step": 100 + i})
    run = wandb_run(exp)
    for h in run.history:
        assert h["nested/x"] in (0, 1) and "nested/s" not in h and "scores" not in h and h["ok"] is True
    tasks = run.table("tasks")
    assert [t["step"] for t in tasks] == [0, 1]  # W&B's steps, not the user's metric
    assert [h["step"] for h in run.history] == [100, 101]
