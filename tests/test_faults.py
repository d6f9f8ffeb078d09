"""Fault injection: a W&B sink or a local store that fails must never reach the user's code.

Each fault is real (a module that cannot be imported, a `wandb.init` that raises or never
returns, a run whose `log`/`finish` raise, a directory that is a regular file or that vanishes,
a full file system, a file-size limit) and each test checks the same contract: the user's
functions return their own results, exactly one TrackedWarning names the fault and the fallback,
the other sink keeps every row, the final summary says which sink failed, and the failed sink is
not called again.

We run as root, so a read-only directory would not stop a write: faults come from a path whose
parent is a regular file, a removed directory, a 64 KiB tmpfs, and RLIMIT_FSIZE in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

import tracked
from helpers import run_python
from tracked import _config, _dispatch
from tracked._store import read_rows
from tracked.testing import read_experiment, read_wandb_run

N = 6  # calls per experiment


@tracked.tracked
def work(i: int, payload: object, **metrics: object) -> object:
    """A user function: its row carries its index, it returns the caller's own object."""
    tracked.current_call().log({"idx": i, **metrics})
    return payload


@tracked.tracked
def fails(i: int, error: BaseException) -> None:
    """A user function that raises the caller's own exception."""
    tracked.current_call().log({"idx": i})
    raise error


def call_all(indices, **metrics: object) -> None:
    """Call `work` for each index and check that every call returned the very object it was given."""
    for i in indices:
        payload = {"task": i}
        assert work(i, payload, **metrics) is payload


def call_failing(i: int) -> None:
    """Call `fails` and check that the user's own exception comes back unchanged."""
    error = ValueError(f"user error {i}")
    with pytest.raises(ValueError) as info:
        fails(i, error)
    assert info.value is error


def one_warning(record, *needles: str) -> str:
    """The single warning recorded, checked to be a TrackedWarning containing every needle."""
    messages = [f"{w.category.__name__}: {w.message}" for w in record]
    assert len(messages) == 1, messages
    assert issubclass(record[0].category, tracked.TrackedWarning), messages
    for needle in needles:
        assert needle in messages[0], messages[0]
    return messages[0]


def idx(rows) -> list:
    return [row.get("idx") for row in rows]


def assert_local_store_complete(path: Path, n: int, wandb_error: str) -> None:
    """The local store holds every row and call, a finished summary, and names the W&B failure."""
    stored = read_experiment(path)
    assert idx(stored.rows) == list(range(n))
    assert [r["error"] for r in stored.rows] == [0] * (n - 1) + [1]
    assert len(stored.calls) == n
    assert stored.summary["status"] == "finished"
    assert stored.summary["total/calls"] == n
    assert stored.summary["sinks"]["local"] == "ok"
    assert stored.summary["sinks"]["wandb"].startswith(wandb_error), stored.summary["sinks"]


def run_child(code: str, cwd: Path, *args: str, **env: str) -> dict:
    """Run `code` with `args` in a fresh interpreter (W&B offline, store in `cwd`); the JSON it prints last."""
    done = run_python(code, cwd, *args, **env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- W&B faults ---------------------------------------------------------------------------------

NO_WANDB_CHILD = textwrap.dedent(
    """
    import builtins, json, sys, warnings

    if sys.argv[1] == "shim":
        sys.modules["wandb"] = None  # `import wandb` raises ImportError
    attempts = []
    _import = builtins.__import__

    def counting_import(name, *args, **kwargs):
        level = kwargs.get("level", args[3] if len(args) > 3 else 0)
        if level == 0 and (name == "wandb" or name.startswith("wandb.")):  # (not tracked's own sinks.wandb)
            attempts.append(name)
        return _import(name, *args, **kwargs)

    builtins.__import__ = counting_import

    import tracked

    @tracked.tracked
    def work(i, payload):
        tracked.current_call().log({"idx": i})
        return payload

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracked.experiment("no_wandb") as exp:
            same = []
            for i in range(6):
                payload = {"task": i}
                same.append(work(i, payload) is payload)
            exp.log({"after": 1.0})
            exp.summary["note"] = "done"
    print(json.dumps({
        "same": same,
        "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
        "attempts": attempts,
        "path": str(exp.path),
        "sinks": exp.final_summary["sinks"],
        "has_wandb_info": "wandb" in exp.final_summary,
    }))
    """
)


@pytest.mark.parametrize(
    ("how", "writer"), [("shim", "thread"), ("broken_module", "thread"), ("broken_module", "process")]
)
def test_wandb_not_importable_falls_back_to_the_local_store(tmp_path, how, writer):
    """`wandb` not importable (a shim or a broken wandb.py), in this process or in W&B's writer
    process: one warning naming the import error, import tried once, local store complete."""
    env = {"TRACKED_WANDB_WRITER": writer}
    if how == "broken_module":
        shim = tmp_path / "shim"
        shim.mkdir()
        (shim / "wandb.py").write_text('raise ImportError("this wandb is broken")\n')
        # Put in front of this process's path, so that the child still imports the tracked under test.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")]))
    out = run_child(NO_WANDB_CHILD, tmp_path, how, **env)
    assert out["same"] == [True] * 6
    (message,) = out["warnings"]
    assert message.startswith("TrackedWarning: ")
    error = "ModuleNotFoundError" if how == "shim" else "ImportError: this wandb is broken"
    assert error in message and "the local store keeps everything" in message, message
    # Tried once, never again; with the writer, never in the user's process.
    assert out["attempts"] == (["wandb"] if writer == "thread" else [])
    assert not out["has_wandb_info"]
    assert out["sinks"]["local"] == "ok"
    assert error in out["sinks"]["wandb"]
    stored = read_experiment(out["path"])
    assert idx(stored.rows) == list(range(6))
    assert stored.rows[-1]["after"] == 1.0  # joined the last call's row
    assert len(stored.calls) == 6
    assert stored.summary["status"] == "finished"
    assert stored.summary["note"] == "done"
    assert error in stored.summary["sinks"]["wandb"]
    assert not (tmp_path / "wandb").exists()


def test_wandb_init_raising_falls_back_to_the_local_store(monkeypatch, tmp_path, wandb_in_thread):
    """A `wandb.init` that raises: one warning naming it, init never retried, local store complete."""
    import wandb

    inits = []

    def failing_init(*args, **kwargs):
        inits.append(kwargs)
        raise RuntimeError("init boom")

    monkeypatch.setattr(wandb, "init", failing_init)
    with pytest.warns(tracked.TrackedWarning) as record:
        with tracked.experiment("init_raises", dir=tmp_path) as exp:
            call_all(range(N - 1))
            call_failing(N - 1)
    one_warning(record, "wandb sink", "RuntimeError: init boom", "the local store keeps everything")
    assert len(inits) == 1
    assert "wandb" not in exp.final_summary
    assert exp.final_summary["sinks"] == {"local": "ok", "wandb": "RuntimeError: init boom"}
    assert_local_store_complete(exp.path, N, "RuntimeError: init boom")


class HangingInit:
    """A `wandb.init` that blocks until released, then raises; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, *args, **kwargs):
        self.calls += 1
        self.entered.set()
        self.release.wait(60)
        raise RuntimeError("init released")


def start_hanging_experiment(monkeypatch, tmp_path, name: str):
    """An experiment whose W&B sink (a thread of this process) is stuck in `wandb.init` (reached),
    with two rows already made."""
    import wandb

    tracked.configure(wandb_writer="thread")

    hang = HangingInit()
    monkeypatch.setattr(wandb, "init", hang)
    monkeypatch.setattr(_dispatch, "FINISH_TIMEOUT_S", 1.0)
    exp = tracked.experiment(name, dir=tmp_path).start()
    call_all(range(2))  # the second call closes the first row, which is sent to W&B
    assert hang.entered.wait(20), "the pump thread never called wandb.init"
    return exp, hang


def release_hang(exp, hang) -> list[str]:
    """Let the hanging init return and the pump thread end; the warnings it gives on the way."""
    _config.config.raise_internal_errors = False
    with warnings.catch_warnings(record=True) as late:
        warnings.simplefilter("always")
        hang.release.set()
        exp._sinks._threads["wandb"].thread.join(20)
    assert not exp._sinks._threads["wandb"].thread.is_alive()
    return [str(w.message) for w in late]


@pytest.mark.slow
def test_wandb_init_hanging_blocks_no_call_and_finish_is_bounded(monkeypatch, tmp_path):
    """A `wandb.init` that never returns blocks no call, finish gives up after FINISH_TIMEOUT_S, rows stay local."""
    with pytest.warns(tracked.TrackedWarning) as record:
        exp, hang = start_hanging_experiment(monkeypatch, tmp_path, "init_hangs")
        try:
            started = time.monotonic()
            call_all(range(2, N - 1))
            call_failing(N - 1)
            exp.log({"extra": 1.0})
            exp.notes = "changed while W&B hangs"
            exp.tags = ["hang"]
            exp.summary["key"] = "value"
            _ = exp.totals
            assert time.monotonic() - started < 1.0  # W&B holds them for 60 s otherwise
            started = time.monotonic()
            exp.finish()
            assert time.monotonic() - started < _dispatch.FINISH_TIMEOUT_S + 3.0
        finally:
            release_hang(exp, hang)
    one_warning(record, "wandb sink", "TimeoutError", "the local store keeps everything")
    assert hang.calls == 1
    assert exp.final_summary["sinks"]["wandb"].startswith("TimeoutError")
    stored = read_experiment(exp.path)
    assert idx(stored.rows) == list(range(N))
    assert stored.rows[-1]["extra"] == 1.0  # joined the last call's row
    assert stored.summary["status"] == "finished"
    assert stored.summary["key"] == "value"
    assert stored.summary["sinks"]["wandb"].startswith("TimeoutError")
    assert stored.config["notes"] == "changed while W&B hangs"


@pytest.mark.slow
def test_wandb_init_hanging_still_writes_every_call_to_calls_jsonl(monkeypatch, tmp_path):
    """A `wandb.init` that never returns does not keep call records out of the local store's calls.jsonl."""
    with pytest.warns(tracked.TrackedWarning):
        exp, hang = start_hanging_experiment(monkeypatch, tmp_path, "init_hangs_calls")
        try:
            call_all(range(2, N))
            exp.finish()
        finally:
            release_hang(exp, hang)
    assert len(read_experiment(exp.path).calls) == N


@pytest.mark.slow
def test_wandb_init_returning_after_the_finish_timeout_gives_no_late_warning(monkeypatch, tmp_path):
    """A hung `wandb.init` that returns after finish timed out causes no further warning and no further W&B call."""
    with pytest.warns(tracked.TrackedWarning) as record:
        exp, hang = start_hanging_experiment(monkeypatch, tmp_path, "init_hangs_late")
        try:
            call_all(range(2, N))
            exp.finish()
        finally:
            late = release_hang(exp, hang)
    one_warning(record, "TimeoutError")
    assert hang.calls == 1
    assert late == []


@pytest.fixture
def run_methods(monkeypatch, wandb_in_thread):
    """Counting wrappers around the real `wandb` Run.log and Run.finish; `fail_on` makes one of them raise."""
    from wandb.sdk import wandb_run

    real = {"log": wandb_run.Run.log, "finish": wandb_run.Run.finish}
    state = {"log": 0, "finish": 0, "fail_on": None, "runs": []}

    def wrap(name):
        def method(self, *args, **kwargs):
            state[name] += 1
            if self not in state["runs"]:
                state["runs"].append(self)
            if state["fail_on"] == (name, state[name]):
                raise RuntimeError(f"{name} boom")
            return real[name](self, *args, **kwargs)

        return method

    monkeypatch.setattr(wandb_run.Run, "log", wrap("log"))
    monkeypatch.setattr(wandb_run.Run, "finish", wrap("finish"))
    state["real"] = real
    yield state
    for run in state["runs"]:  # runs the failed sink left open
        if not getattr(run, "_is_finished", False):
            try:
                real["finish"](run)
            except Exception:
                pass


def test_run_log_raising_mid_run_turns_wandb_off_and_keeps_the_local_store(run_methods, tmp_path):
    """`run.log` raising on the third row: one warning, no further log or finish, local store complete."""
    run_methods["fail_on"] = ("log", 3)
    with pytest.warns(tracked.TrackedWarning) as record:
        with tracked.experiment("log_raises", dir=tmp_path) as exp:
            call_all(range(N - 1))
            call_failing(N - 1)
    one_warning(record, "wandb sink", "RuntimeError: log boom", "the local store keeps everything")
    assert run_methods["log"] == 3
    assert run_methods["finish"] == 0
    assert exp.final_summary["sinks"]["wandb"] == "RuntimeError: log boom"
    assert_local_store_complete(exp.path, N, "RuntimeError: log boom")
    (run,) = run_methods["runs"]
    run_methods["real"]["finish"](run)
    assert idx(read_wandb_run(Path(run.dir).parent).history) == [0, 1]  # what got there before


def test_run_finish_raising_is_reported_in_the_local_summary(run_methods, tmp_path):
    """`run.finish` raising: one warning, finish called once, the local summary names the failed W&B sink."""
    run_methods["fail_on"] = ("finish", 1)
    with pytest.warns(tracked.TrackedWarning) as record:
        with tracked.experiment("finish_raises", dir=tmp_path) as exp:
            call_all(range(N - 1))
            call_failing(N - 1)
    one_warning(record, "wandb sink", "RuntimeError: finish boom", "the local store keeps everything")
    assert run_methods["finish"] == 1
    assert run_methods["log"] == N
    assert_local_store_complete(exp.path, N, "RuntimeError: finish boom")
    (run,) = run_methods["runs"]
    run_methods["real"]["finish"](run)
    assert idx(read_wandb_run(Path(run.dir).parent).history) == list(range(N))


def test_wandb_directory_that_is_a_file_falls_back_to_the_local_store(monkeypatch, tmp_path, wandb_in_thread):
    """A W&B directory (`<dir>/wandb`) that is a regular file: one warning, init tried once, local store complete."""
    import wandb

    (tmp_path / "wandb").write_text("not a directory")
    real_init = wandb.init
    inits = []

    def counting_init(*args, **kwargs):
        inits.append(kwargs)
        return real_init(*args, **kwargs)

    monkeypatch.setattr(wandb, "init", counting_init)
    with pytest.warns(tracked.TrackedWarning) as record:
        with tracked.experiment("wandb_dir_is_a_file", dir=tmp_path) as exp:
            call_all(range(N - 1))
            call_failing(N - 1)
    one_warning(record, "wandb sink", "NotADirectoryError", "the local store keeps everything")
    assert len(inits) == 1
    assert exp.path.parent == tmp_path / "experiments"
    assert_local_store_complete(exp.path, N, "NotADirectoryError")
    assert (tmp_path / "wandb").read_text() == "not a directory"


# --- local store faults ----------------------------------------------------------------------


def assert_wandb_has_every_row_and_names_local(exp, n: int, error: str) -> None:
    """W&B kept every row, and both final summaries say the local sink failed with `error`."""
    assert exp.final_summary["sinks"]["wandb"] == "ok"
    assert exp.final_summary["sinks"]["local"].startswith(error), exp.final_summary["sinks"]
    assert exp.final_summary["sinks/local"] == f"failed: {exp.final_summary['sinks']['local']}"
    run = read_wandb_run(exp.final_summary["wandb"]["dir"])
    assert idx(run.history) == list(range(n))
    assert run.exit_code == 0
    assert run.summary["tracked/sinks/local"] == exp.final_summary["sinks/local"]
    assert run.summary["total/calls"] == n


def test_local_store_under_a_regular_file_warns_once_and_wandb_gets_every_row(monkeypatch, tmp_path):
    """TRACKED_DIR under a regular file (ENOTDIR): one warning, W&B keeps every row, both summaries name it."""
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    monkeypatch.setenv("TRACKED_DIR", str(blocker / "store"))
    with pytest.warns(tracked.TrackedWarning) as record:
        with tracked.experiment("local_enotdir") as exp:
            call_all(range(N - 1))
            call_failing(N - 1)
    one_warning(record, "local sink", "NotADirectoryError", "W&B keeps going")
    assert exp.path is None and exp.dir is None
    assert_wandb_has_every_row_and_names_local(exp, N, "NotADirectoryError")
    assert blocker.read_text() == "x"


def test_dir_argument_under_a_regular_file_does_not_reach_the_user(tmp_path):
    """`experiment(dir=<path under a regular file>)`: the block still runs and the summary names the local sink."""
    _config.config.raise_internal_errors = False
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.warns(tracked.TrackedWarning):
        with tracked.experiment("dir_enotdir", dir=blocker / "store") as exp:
            call_all(range(N))
    assert exp.status == "finished"
    assert exp.final_summary["sinks"]["local"].startswith("NotADirectoryError")


def test_vanished_directory_mid_run_warns_once_and_wandb_gets_every_row(tmp_path):
    """The experiment directory removed between calls: one warning about the local sink, W&B keeps every row."""
    with pytest.warns(tracked.TrackedWarning) as record:
        with tracked.experiment("vanished", dir=tmp_path) as exp:
            call_all(range(3))
            shutil.rmtree(exp.path)
            call_all(range(3, N - 1))
            call_failing(N - 1)
    one_warning(record, "local sink", "'vanished'", "W&B keeps going")
    assert not exp.path.exists()
    run = read_wandb_run(exp.final_summary["wandb"]["dir"])
    assert idx(run.history) == list(range(N))
    assert run.exit_code == 0


def test_vanished_directory_mid_run_is_named_in_both_final_summaries(tmp_path):
    """The experiment directory removed between calls: both final summaries say the local sink failed."""
    with pytest.warns(tracked.TrackedWarning):
        with tracked.experiment("vanished_summary", dir=tmp_path) as exp:
            call_all(range(3))
            shutil.rmtree(exp.path)
            call_all(range(3, N))
    assert exp.final_summary["sinks"]["local"] != "ok"
    assert exp.final_summary["sinks/local"].startswith("failed: ")
    run = read_wandb_run(exp.final_summary["wandb"]["dir"])
    assert run.summary["tracked/sinks/local"] == exp.final_summary["sinks/local"]


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 KiB tmpfs mounted in tmp_path (skipped where mounting is not permitted)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("no mount/umount command here")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(directory: Path) -> None:
    """Write a file in `directory` until the file system is full (ENOSPC)."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(OSError, match="No space left"):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


def test_disk_full_mid_run_warns_once_and_wandb_gets_every_row(monkeypatch, tiny_tmpfs):
    """A full file system mid-run (ENOSPC, 64 KiB tmpfs): one warning, W&B keeps every row, summaries name it."""
    monkeypatch.setenv("TRACKED_DIR", str(tiny_tmpfs))
    pad = "p" * 6000  # a row larger than a page: it cannot fit in what is left
    with pytest.warns(tracked.TrackedWarning) as record:
        with tracked.experiment("disk_full") as exp:
            call_all(range(3))
            fill(tiny_tmpfs)
            call_all(range(3, N - 1), pad=pad)
            call_failing(N - 1)
    one_warning(record, "local sink", "No space left on device", "W&B keeps going")
    assert_wandb_has_every_row_and_names_local(exp, N, "OSError: [Errno 28]")
    torn: list[str] = []
    kept = idx(read_rows(exp.path / "results.jsonl", warn=torn.append))
    assert kept[:3] == [0, 1, 2] and kept == list(range(len(kept)))
    assert len(torn) <= 1  # at most the one write the full disk cut short


FSIZE_CHILD = textwrap.dedent(
    """
    import json, os, resource, signal, warnings

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit, writes fail with EFBIG
    import wandb

    wandb.setup()  # W&B's service process starts before the limit: only this process is limited
    import tracked

    @tracked.tracked
    def work(i, payload, pad=""):
        tracked.current_call().log({"idx": i, "pad": pad})
        return payload

    same = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracked.experiment("too_big") as exp:
            for i in range(30):
                if i == 3:
                    size = os.path.getsize(exp.path / "results.jsonl")
                    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
                    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 20_000, hard))
                payload = {"task": i}
                same.append(work(i, payload, pad="p" * 3000) is payload)
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    print(json.dumps({
        "same": same,
        "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
        "path": str(exp.path),
        "final": {k: exp.final_summary.get(k) for k in ("sinks", "sinks/local", "wandb", "status")},
    }))
    """
)


@pytest.mark.slow
def test_file_too_big_mid_run_warns_once_and_wandb_gets_every_row(tmp_path):
    """RLIMIT_FSIZE reached mid-run (EFBIG, subprocess): one warning, W&B keeps every row, summaries name it."""
    out = run_child(FSIZE_CHILD, tmp_path)
    assert out["same"] == [True] * 30
    message, *tables = out["warnings"]
    assert message.startswith("TrackedWarning: ") and "File too large" in message and "W&B keeps going" in message
    # wandb writes its tables from this process too: they are left out, the run and its rows are not.
    assert all("W&B" in m and "tables could not be written" in m for m in tables)
    final = out["final"]
    assert final["status"] == "finished"
    assert final["sinks"]["wandb"] == "ok"
    assert final["sinks"]["local"].startswith("OSError: [Errno 27] File too large")
    assert final["sinks/local"] == f"failed: {final['sinks']['local']}"
    run = read_wandb_run(final["wandb"]["dir"])
    assert idx(run.history) == list(range(30))
    assert run.summary["tracked/sinks/local"] == final["sinks/local"]
    torn: list[str] = []
    kept = idx(read_rows(Path(out["path"]) / "results.jsonl", warn=torn.append))
    assert 3 <= len(kept) < 30 and kept == list(range(len(kept)))
    assert len(torn) <= 1
