"""W&B's writer process: runs written outside the user's process, its death noticed, nothing lost.

Every other test writes W&B runs through the writer too (it is the default); these check what is
particular to it: the user's process never imports wandb, a killed writer warns once and leaves
`tracked sync` a complete local store, the user's process killed leaves the writer ending its runs,
and Ctrl-C sent to the whole process group does not take the writer down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import tracked
from helpers import child_env, run_python
from tracked import cli
from tracked.testing import read_experiment, read_wandb_run


def unpicklable_wandb_class(name: str) -> type:
    """A wandb object's class (its module is `wandb.custom`) whose instances hold a lock, so they
    cannot be pickled; instances repr as `<wandb.custom.NAME object at ...>`."""
    import wandb

    def init(self: Any) -> None:
        wandb.Histogram.__init__(self, [1, 2, 3])
        self.lock = threading.Lock()

    return type(name, (wandb.Histogram,), {"__init__": init, "__module__": "wandb.custom", "__qualname__": name})


def returned_rows(path: Path) -> list[int]:
    return [r["idx"] for r in read_experiment(path).rows]


def test_the_users_process_never_imports_wandb(tmp_path):
    """With the writer (the default), an experiment's W&B run is complete and `wandb` is never
    imported in the user's process: none of its per-row work runs there."""
    code = textwrap.dedent(
        """
        import json, sys
        import tracked

        @tracked.tracked
        def work(i):
            tracked.current_call().log({"idx": i})
            return {"tokens_in": 10, "tokens_out": 2, "model": "gpt-4o-mini"}

        with tracked.experiment("outside", config={"strategy": "single"}) as exp:
            for i in range(50):
                work(i)
        print(json.dumps({"wandb_imported": "wandb" in sys.modules, "wandb": exp.final_summary["wandb"],
                          "sinks": exp.final_summary["sinks"]}))
        """
    )
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["wandb_imported"] is False
    assert out["sinks"] == {"local": "ok", "wandb": "ok"}
    run = read_wandb_run(out["wandb"]["dir"])
    assert run.id == out["wandb"]["id"] and run.config["strategy"] == "single"
    assert [h["idx"] for h in run.history] == list(range(50))
    assert run.summary["total/calls"] == 50 and run.exit_code == 0


def test_one_writer_serves_every_run_of_a_process(tmp_path):
    """Two experiments one after the other and a parent with two children: one writer process,
    each run whole."""
    from tracked.sinks import _writer

    @tracked.tracked
    def work(i: int) -> int:
        tracked.current_call().log({"idx": i})
        return i

    pids = []
    with tracked.experiment("first", dir=tmp_path) as first:
        for i in range(3):
            work(i)
    pids.append(_writer.writer().process.pid)
    with tracked.experiment("study", dir=tmp_path) as study:
        for arm in ("a", "b"):
            with tracked.experiment(arm, config={"strategy": arm}):
                for i in range(4):
                    work(i)
        pids.append(_writer.writer().process.pid)
    assert pids[0] == pids[1]
    assert [h["idx"] for h in read_wandb_run(first.final_summary["wandb"]["dir"]).history] == [0, 1, 2]
    assert "id" not in study.final_summary["wandb"]  # a parent of grouped runs has none of its own
    runs = [read_wandb_run(next(tmp_path.glob(f"wandb/*-{c['wandb_id']}"))) for c in study.children]
    assert [r.config["strategy"] for r in runs] == ["a", "b"]
    assert runs[0].group and runs[0].group == runs[1].group
    assert all([h["idx"] for h in r.history] == [0, 1, 2, 3] for r in runs)


KILL_WRITER_CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, time, warnings
    import tracked
    from tracked.sinks import _writer

    @tracked.tracked
    def work(i):
        tracked.current_call().log({"idx": i})
        return {"tokens_in": 10, "tokens_out": 2, "model": "gpt-4o-mini"}

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracked.experiment("writer_killed") as exp:
            for i in range(200):
                work(i)
            writer = _writer.writer()
            deadline = time.monotonic() + 60  # its run started: there is a partial run to replace
            while not exp._sinks.background["wandb"].started and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(writer.process.pid, signal.SIGKILL)
            writer.process.wait()
            for i in range(200, 400):
                work(i)
    print(json.dumps({
        "warnings": [str(w.message) for w in caught if issubclass(w.category, tracked.TrackedWarning)],
        "sinks": exp.final_summary["sinks"], "path": str(exp.path), "writer": writer.process.pid,
    }))
    """
)


def test_a_killed_writer_is_noticed_and_sync_sends_the_rest(tmp_path, capsys):
    """The writer killed mid-run: one warning naming it, the W&B sink marked failed, every row in the
    local store, and `tracked sync` writes the whole run again (the cut-short one marked replaced)."""
    done = run_python(KILL_WRITER_CHILD, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    (message,) = out["warnings"]
    gone = f"the W&B writer process (pid {out['writer']}) ended (signal {int(signal.SIGKILL)})"
    assert gone in message and "the local store keeps everything" in message, message
    assert out["sinks"] == {"local": "ok", "wandb": f"WriterGone: {gone}"}
    path = Path(out["path"])
    # The end line says how to write the run again.
    assert f"W&B failed (WriterGone: {gone}): write its run with `tracked sync {path.parent}`" in done.stderr
    assert returned_rows(path) == list(range(400))
    code = cli.main(["sync", "--offline", str(path)])
    said = " ".join(capsys.readouterr().out.split())
    assert code == 0, said
    assert "(offline, 400 rows)" in said and "is replaced" in said
    state = json.loads((path / "wandb_sync.json").read_text())
    run = read_wandb_run(state["offline_dir"])
    ref = json.loads((path / "config.json").read_text())["refs"]["wandb"]
    assert run.id == ref["id"]  # the same run, whole
    assert [h["idx"] for h in run.history] == list(range(400))
    assert run.summary["total/calls"] == 400


KILLED_USER_CHILD = textwrap.dedent(
    """
    import sys, time
    import tracked
    from tracked.sinks import _writer

    @tracked.tracked
    def work(i):
        tracked.current_call().log({"idx": i})
        return i

    with tracked.experiment("user_killed") as exp:
        for i in range(300):
            work(i)
        deadline = time.monotonic() + 60
        while not exp._sinks.background["wandb"].started and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # the rows so far reach the writer
        with open(sys.argv[1], "w") as ready:
            ready.write(f"{_writer.writer().process.pid} {exp.path}")
        time.sleep(600)
    """
)


def test_the_writer_ends_the_runs_of_a_killed_user_process(tmp_path):
    """The user's process killed (SIGKILL) mid-experiment: the writer writes what reached it, ends
    the run with exit code 1 and exits; the local store has every returned row."""
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_USER_CHILD, str(ready)], cwd=tmp_path, env=child_env(tmp_path), text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), proc.poll()
    time.sleep(0.1)
    writer_pid, path = ready.read_text().split(" ", 1)
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{writer_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{writer_pid}").exists() or "Z" in Path(f"/proc/{writer_pid}/stat").read_text().split()[2]
    assert returned_rows(Path(path)) == list(range(300))
    ref = json.loads((Path(path) / "config.json").read_text())["refs"]["wandb"]
    (run_file,) = Path(ref["root"]).glob(f"wandb/*-{ref['id']}/*.wandb")
    run = read_wandb_run(run_file, wait_s=30)
    assert run.exit_code == 1
    # Every row that was complete: the last stays open for metrics joining it until the next
    # call begins or the experiment ends, so it was never sent (the local store has it).
    assert [h["idx"] for h in run.history] == list(range(299))


CTRL_C_CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, time
    import tracked

    @tracked.tracked
    def work(i):
        tracked.current_call().log({"idx": i})
        return i

    # argv: the signal, the calls before it, the wait before it (0: the writer is still starting)
    signame, calls, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    try:
        with tracked.experiment("ctrl_c") as exp:
            for i in range(calls):
                work(i)
            time.sleep(wait)
            os.killpg(os.getpgrp(), getattr(signal, signame))
            time.sleep(5)
    except KeyboardInterrupt:
        pass
    print(json.dumps({"wandb": exp.final_summary.get("wandb"), "sinks": exp.final_summary["sinks"],
                      "status": exp.final_summary["status"]}))
    """
)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_to_the_process_group_leaves_the_writer_to_write_the_run(tmp_path, sig):
    """SIGINT or SIGTERM to the whole process group (Ctrl-C in a terminal, Slurm's scancel): the
    experiment ends "interrupted" and its W&B run is complete (the writer ignores them)."""
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C_CHILD, sig, "100", "1.0"], cwd=tmp_path, env=child_env(tmp_path), text=True,
        capture_output=True, timeout=180, start_new_session=True,
    )  # fmt: skip
    # SIGINT: KeyboardInterrupt, caught; SIGTERM: the experiment finished, then the default action.
    assert done.returncode == (0 if sig == "SIGINT" else -signal.SIGTERM), done.stderr[-3000:]
    if sig == "SIGTERM":
        path = next((tmp_path / "experiments").glob("ctrl_c_*"))
        summary = json.loads((path / "summary.json").read_text())
        out = {"wandb": summary["wandb"], "sinks": summary["sinks"], "status": summary["status"]}
    else:
        out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["status"] == "interrupted" and out["sinks"] == {"local": "ok", "wandb": "ok"}
    run = read_wandb_run(out["wandb"]["dir"])
    assert [h["idx"] for h in run.history] == list(range(100))
    assert run.exit_code == 1 and run.summary["tracked/status"] == "interrupted"


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_the_run_is_the_same_from_either_writer(tmp_path, writer):
    """The same experiment written by the writer process and by a thread: the same history,
    summary keys and tables."""
    tracked.configure(wandb_writer=writer)

    @tracked.tracked
    def work(i: int) -> dict[str, object]:
        tracked.current_call().log({"accuracy": i % 2})
        return {"tokens_in": 10 + i, "tokens_out": 2, "model": "gpt-4o-mini"}

    with tracked.experiment("either", dir=tmp_path, tags=["t"], notes="n") as exp:
        for i in range(10):
            work(i)
        exp.notes = "changed"
    run = read_wandb_run(exp.final_summary["wandb"]["dir"])
    assert [h["tokens_in"] for h in run.history] == [10 + i for i in range(10)]
    assert run.summary["accuracy/mean"] == pytest.approx(0.5)
    assert run.summary["total/tokens_in"] == sum(10 + i for i in range(10))
    assert run.notes == "changed" and run.tags == ["t"]
    assert len(run.table("calls")) == 10 and len(run.table("tasks")) == 10


def test_wandb_writer_setting_is_checked(tmp_path):
    """`configure(wandb_writer=...)` takes "process" or "thread" only."""
    with pytest.raises(ValueError, match='"process" or "thread"'):
        tracked.configure(wandb_writer="fork")
    assert os.environ.get("TRACKED_WANDB_WRITER") is None


def test_a_run_that_fails_in_the_writer_is_reported_as_in_a_thread(tmp_path):
    """`wandb.init` failing in the writer (its directory is a file): one warning naming the error as
    a thread would, `sinks/wandb` says it, the local store complete, the writer serves the next run."""

    @tracked.tracked
    def work(i: int) -> int:
        tracked.current_call().log({"idx": i})
        return i

    (tmp_path / "wandb").write_text("not a directory")
    with pytest.warns(tracked.TrackedWarning) as record:
        with tracked.experiment("dir_is_a_file", dir=tmp_path) as exp:
            for i in range(5):
                work(i)
    (warning,) = [str(w.message) for w in record]
    assert "the wandb sink of experiment 'dir_is_a_file' failed (NotADirectoryError: " in warning, warning
    assert exp.final_summary["sinks"]["wandb"].startswith("NotADirectoryError: ")
    assert returned_rows(exp.path) == list(range(5))
    (tmp_path / "wandb").unlink()
    with tracked.experiment("next", dir=tmp_path) as after:
        work(0)
    assert after.final_summary["sinks"] == {"local": "ok", "wandb": "ok"}
    assert [h["idx"] for h in read_wandb_run(after.final_summary["wandb"]["dir"]).history] == [0]


def test_wandb_objects_in_a_row_reach_the_run_and_an_unpicklable_value_its_repr(tmp_path):
    """A `wandb.Image` logged with a row reaches the tasks table as a thread would write it; a wandb
    object that cannot be pickled reaches it as its repr, with one warning, and the row is whole."""
    import numpy as np
    import wandb

    Unpicklable = unpicklable_wandb_class("Unpicklable")

    @tracked.tracked
    def work(i: int) -> int:
        return i

    with pytest.warns(tracked.TrackedWarning, match="cannot be sent to W&B's writer process"):
        with tracked.experiment("media", dir=tmp_path) as exp:
            work(0)
            exp.log({"img": wandb.Image(np.zeros((4, 4, 3), dtype=np.uint8)), "odd": Unpicklable(), "n": 1})
    (row,) = read_wandb_run(exp.final_summary["wandb"]["dir"]).table("tasks")
    assert row["n"] == 1
    assert row["odd"].startswith("<wandb.custom.") and "Unpicklable object at" in row["odd"]
    tracked.configure(wandb_writer="thread")  # the image as a thread of this process writes it
    with tracked.experiment("media_thread", dir=tmp_path) as here:
        work(0)
        here.log({"img": wandb.Image(np.zeros((4, 4, 3), dtype=np.uint8)), "n": 1})
    (same,) = read_wandb_run(here.final_summary["wandb"]["dir"]).table("tasks")
    assert row["img"] == same["img"]


MAIN_CLASS_CHILD = textwrap.dedent(
    """
    import json, threading, warnings
    import wandb
    import tracked

    class Point:  # defined in __main__: the writer process cannot import it
        def __init__(self, x):
            self.x = x

    @tracked.tracked
    def work(i):
        tracked.current_call().log({"idx": i})
        return i

    def bystander():
        with tracked.experiment("bystander") as exp:
            for i in range(300):
                work(i)
        out["bystander"] = exp.final_summary["wandb"]

    out = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        side = threading.Thread(target=bystander)
        side.start()
        with tracked.experiment("odd") as exp:
            for i in range(20):
                work(i)
            exp.log({"points": wandb.Table(columns=["p"], data=[[Point(1)]], allow_mixed_types=True)})
        side.join()
    out["odd"] = exp.final_summary["wandb"]
    out["sinks"] = exp.final_summary["sinks"]
    out["warnings"] = [str(w.message) for w in caught if issubclass(w.category, tracked.TrackedWarning)]
    print(json.dumps(out))
    """
)


def test_a_class_the_writer_cannot_import_fails_nothing(tmp_path):
    """A row holding an instance of a class of the user's `__main__` (which the writer cannot
    import) reaches W&B as a stand-in with one warning; neither its run nor another experiment's
    running beside it is lost."""
    done = run_python(MAIN_CLASS_CHILD, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["sinks"] == {"local": "ok", "wandb": "ok"}
    assert any("cannot import __main__.Point" in w for w in out["warnings"]), out["warnings"]
    assert [h["idx"] for h in read_wandb_run(out["odd"]["dir"]).history] == list(range(20))
    assert [h["idx"] for h in read_wandb_run(out["bystander"]["dir"]).history] == list(range(300))


def test_a_call_metric_that_cannot_be_pickled_reaches_w_and_b_as_its_repr(tmp_path):
    """`current_call().log()` with a wandb object that cannot be pickled: one warning, the run whole,
    the calls table has the value's repr."""

    Locked = unpicklable_wandb_class("Locked")

    @tracked.tracked
    def work(i: int) -> int:
        tracked.current_call().log({"idx": i, "bad": Locked()})
        return i

    with pytest.warns(tracked.TrackedWarning, match="'bad' cannot be sent to W&B's writer process"):
        with tracked.experiment("call_metric", dir=tmp_path) as exp:
            for i in range(5):
                work(i)
    assert exp.final_summary["sinks"] == {"local": "ok", "wandb": "ok"}
    run = read_wandb_run(exp.final_summary["wandb"]["dir"])
    assert [h["idx"] for h in run.history] == list(range(5))
    calls = run.table("calls")
    assert len(calls) == 5 and all("Locked object at" in str(c["metrics/bad"]) for c in calls)


def test_a_stuck_writer_is_ended_and_the_next_experiment_gets_a_new_one(tmp_path, monkeypatch):
    """A writer that takes nothing more (stopped) while rows flow: the experiment finishes after
    the finish timeout with one warning, the writer is ended, and the next experiment opens at once
    with a new writer and a complete run."""
    from tracked import _dispatch
    from tracked.sinks import _writer

    monkeypatch.setattr(_dispatch, "FINISH_TIMEOUT_S", 3.0)

    @tracked.tracked
    def work(i: int) -> int:
        return i

    with pytest.warns(tracked.TrackedWarning, match="wandb sink"):
        with tracked.experiment("stuck", dir=tmp_path) as exp:
            stuck = _writer.writer().process
            work(0)
            deadline = time.monotonic() + 60
            while not exp._sinks.background["wandb"].started and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(stuck.pid, signal.SIGSTOP)
            for i in range(1, 30_000):  # more than the socket holds
                work(i)
    assert exp.final_summary["sinks"]["wandb"] != "ok"
    assert returned_rows_count(exp.path) == 30_000
    assert stuck.wait(10) == -signal.SIGKILL  # ended, not left stopped
    started = time.monotonic()
    with tracked.experiment("next", dir=tmp_path) as after:
        work(0)
    assert time.monotonic() - started < 30
    assert _writer.writer().process.pid != stuck.pid
    assert after.final_summary["sinks"] == {"local": "ok", "wandb": "ok"}
    assert len(read_wandb_run(after.final_summary["wandb"]["dir"]).history) == 1


def returned_rows_count(path: Path) -> int:
    return len(read_experiment(path).rows)


def test_ctrl_c_while_the_writer_starts_does_not_stop_it(tmp_path):
    """Ctrl-C to the process group as the first experiment opens (the writer still starting): the
    experiment ends "interrupted" with its W&B run complete."""
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C_CHILD, "SIGINT", "1", "0"], cwd=tmp_path, env=child_env(tmp_path), text=True,
        capture_output=True, timeout=180, start_new_session=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["status"] == "interrupted" and out["sinks"] == {"local": "ok", "wandb": "ok"}
    assert [h["idx"] for h in read_wandb_run(out["wandb"]["dir"]).history] == [0]


IMAGE_AT_EXIT_CHILD = textwrap.dedent(
    """
    import numpy as np
    import tracked

    @tracked.tracked
    def work(i):
        return i

    exp = tracked.experiment("at_exit").start()  # finished by the exit hook
    work(0)
    import wandb
    exp.log({"img": wandb.Image(np.zeros((4, 4, 3), dtype=np.uint8))})
    """
)


def test_an_image_of_an_experiment_finished_at_exit_reaches_the_run(tmp_path):
    """An experiment left open at exit with a `wandb.Image` in a row: it is finished before wandb's
    exit hooks remove the image's file, so its tasks table has the image (no warning)."""
    done = run_python(IMAGE_AT_EXIT_CHILD, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "could not be written" not in done.stderr, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    (row,) = read_wandb_run(run_dir).table("tasks")
    assert row["img"] == "Image"


def test_an_experiment_opened_just_after_the_writer_died_gets_a_new_one(tmp_path):
    """The writer killed between two experiments, the next opened at once: it starts a new writer
    and its run is complete."""
    from tracked.sinks import _writer

    @tracked.tracked
    def work(i: int) -> int:
        tracked.current_call().log({"idx": i})
        return i

    with tracked.experiment("before", dir=tmp_path):
        work(0)
    dead = _writer.writer().process
    dead.kill()
    dead.wait()
    with tracked.experiment("after", dir=tmp_path) as exp:
        for i in range(3):
            work(i)
    assert exp.final_summary["sinks"] == {"local": "ok", "wandb": "ok"}
    assert [h["idx"] for h in read_wandb_run(exp.final_summary["wandb"]["dir"]).history] == [0, 1, 2]
