"""Crash safety: SIGKILL at random moments, SIGTERM and SIGINT, in real subprocesses.

The children run an experiment loop of tracked calls and, after each call has returned, append its
index to a side file (flushed and fsynced): that file is the ground truth of which calls returned.
A row of a returned call must always be in `results.jsonl`, however the process ends.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import tracked
from helpers import child_env
from tracked import cli
from tracked._store import load_experiment, read_rows
from tracked.testing import read_experiment, read_wandb_run

LOOP_CHILD = textwrap.dedent(
    """
    import os, sys, time
    side_path, n, use_wandb = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    ready_path = sys.argv[4] if len(sys.argv) > 4 else None
    import tracked

    @tracked.tracked
    def work(i):
        tracked.current_call().log({"idx": i})
        return i

    side = open(side_path, "a")
    with tracked.experiment("crash", wandb=use_wandb) as exp:
        for i in range(n):
            if work(i) != i:
                sys.exit(3)
            # The call has returned: only now is its index ground truth.
            side.write(f"{i}\\n")
            side.flush()
            os.fsync(side.fileno())
            if ready_path and i == 5:
                with open(ready_path, "w") as ready:
                    ready.write(str(exp.path))
    """
)

SIGNAL_CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    side_path, ready_path, use_wandb, user_handler = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
    import tracked

    if user_handler:
        def on_sigterm(signum, frame):
            with open(ready_path + ".marker", "w") as marker:
                marker.write("the user's handler ran")
            sys.exit(0)

        signal.signal(signal.SIGTERM, on_sigterm)

    @tracked.tracked
    def work(i):
        tracked.current_call().log({"idx": i})
        return i

    side = open(side_path, "a")
    with tracked.experiment("signalled", wandb=use_wandb) as exp:
        handler = signal.getsignal(signal.SIGTERM)
        i = 0
        while True:
            work(i)
            side.write(f"{i}\\n")
            side.flush()
            os.fsync(side.fileno())
            if i == 5:
                with open(ready_path, "w") as ready:
                    ready.write(f"{exp.path}\\n{getattr(handler, '__name__', repr(handler))}")
            i += 1
            time.sleep(0.005)
    """
)


def side_indices(path: Path) -> list[int]:
    """The indices of the calls that returned, from the side file."""
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> str:
    """The content of the ready file once the child has written it (the child must still be alive)."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert proc.poll() is None, f"the child died before it was ready: {proc.communicate()}"
        assert time.monotonic() < deadline, "the child never got ready"
        time.sleep(0.005)  # polling the handshake file, not guessing when the child is ready
    return path.read_text()


# --- SIGKILL at random moments ---------------------------------------------------------------------


def kill_trial(root: Path, n: int, wandb_on: bool, delay: float | None) -> tuple[str, list[int], list[int], list[str]]:
    """Run the loop child in `root`, SIGKILL it after `delay` s (None: let it finish).

    Returns what the kill hit (before the store / mid-run / after the summary / exited), the
    returned indices (side file), the row indices (results.jsonl) and the torn lines seen."""
    root.mkdir()
    side = root / "side.txt"
    args = [sys.executable, "-c", LOOP_CHILD, str(side), str(n), "1" if wandb_on else "0"]
    proc = subprocess.Popen(args, cwd=root, env=child_env(root, wandb_on), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    if delay is None:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-3000:]
    else:
        try:
            proc.wait(delay)
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.communicate(timeout=60)
    exited = proc.returncode == 0
    dirs = sorted((root / "experiments").glob("crash_*")) if (root / "experiments").is_dir() else []
    assert len(dirs) <= 1
    returned = side_indices(side)
    if not dirs:
        return ("exited" if exited else "before the store"), returned, [], []
    torn: list[str] = []
    rows = [r.get("idx") for r in read_rows(dirs[0] / "results.jsonl", warn=torn.append)]
    summary = dirs[0] / "summary.json"
    if exited:
        phase = "exited"
    elif summary.exists():
        phase = "after the summary"
        assert json.loads(summary.read_text())["total/calls"] == n  # written whole (write + rename)
    else:
        phase = "mid-run" if rows else "before the first row"
    return phase, returned, rows, torn


@pytest.mark.slow
@pytest.mark.parametrize(
    ("wandb_on", "kills", "n"), [(False, 30, 2000), (True, 4, 300)], ids=["wandb_off", "wandb_offline"]
)
def test_sigkill_at_random_moments_loses_no_row_of_a_returned_call(tmp_path, wandb_on, kills, n):
    """SIGKILL at random moments (start-up, mid-run, finish) never loses the row of a call that returned."""
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    # Calibrate: one whole run (after a warm-up), which must end with every row and a summary.
    durations = []
    for k in range(2):
        started = time.monotonic()
        phase, returned, rows, torn = kill_trial(tmp_path / f"control{k}", n, wandb_on, None)
        durations.append(time.monotonic() - started)
        assert (phase, returned, rows, torn) == ("exited", list(range(n)), list(range(n)), [])
    span = 1.2 * durations[-1]
    phases: dict[str, int] = {}
    lost_total, extra_total = 0, 0
    problems = []
    for k in range(kills):
        delay = (k + rng.random()) / kills * span  # spread over start-up, the loop and finishing
        phase, returned, rows, torn = kill_trial(tmp_path / f"kill{k}", n, wandb_on, delay)
        phases[phase] = phases.get(phase, 0) + 1
        lost = sorted(set(returned) - set(rows))
        lost_total += len(lost)
        extra_total += max(0, len(rows) - len(returned))
        if lost or torn or rows != list(range(len(rows))) or returned != list(range(len(returned))):
            problems.append((k, round(delay, 3), phase, lost[:10], torn, rows[-3:], returned[-3:]))
        elif not 0 <= len(rows) - len(returned) <= 1:  # at most the call killed between its row and the side file
            problems.append((k, round(delay, 3), phase, "rows", len(rows), "returned", len(returned)))
    print(
        f"\nSIGKILL ({'W&B offline' if wandb_on else 'W&B off'}): {kills} kills tried over 0-{span:.2f} s, "
        f"rows lost: {lost_total}, rows of calls killed before returning: {extra_total}, by phase: {phases}"
    )
    assert problems == []
    assert lost_total == 0
    if not wandb_on:
        assert phases.get("mid-run", 0) >= 3, phases  # the kills did land inside the loop


# --- a killed experiment afterwards: torn line, ls, sync -------------------------------------------


@pytest.fixture
def killed(tmp_path):
    """An experiment SIGKILLed mid-run (after its sixth call returned), with a torn last line appended by hand."""
    side = tmp_path / "side.txt"
    ready = tmp_path / "ready"
    args = [sys.executable, "-c", LOOP_CHILD, str(side), "100000000", "0", str(ready)]
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=child_env(tmp_path, False), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    path = Path(wait_for(ready, proc))
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    rows = read_rows(path / "results.jsonl")
    returned = side_indices(side)
    assert len(returned) >= 6 and set(returned) <= {r["idx"] for r in rows}
    assert not (path / "summary.json").exists()
    with open(path / "results.jsonl", "a") as f:
        f.write('{"_step": 999999, "call": "work", "latency_s": 0.1, "idx": 99')  # the write a crash cut short
    return path, rows


def test_torn_last_line_is_skipped_with_a_warning_by_load_experiment(killed):
    """`load_experiment` skips the torn last line with a warning naming it, and keeps every whole row."""
    path, rows = killed
    with pytest.warns(tracked.TrackedWarning, match=rf"results\.jsonl:{len(rows) + 1}: skipped a torn"):
        stored = load_experiment(path)
    assert [r["idx"] for r in stored.rows] == [r["idx"] for r in rows]
    assert stored.status == "crashed"


def test_torn_last_line_is_skipped_by_read_experiment(killed):
    """`tracked.testing.read_experiment` of a killed experiment keeps every whole row and drops the torn last line."""
    path, rows = killed
    with pytest.warns(tracked.TrackedWarning, match="torn"):
        stored = read_experiment(path)
    assert [r["idx"] for r in stored.rows] == list(range(len(rows)))
    assert stored.summary == {}


def test_torn_last_line_read_by_read_experiment_gives_a_warning(killed):
    """`tracked.testing.read_experiment` warns when it skips a torn line."""
    path, _ = killed
    with pytest.warns(tracked.TrackedWarning, match="torn"):
        read_experiment(path)


def test_ls_shows_the_killed_experiment_as_crashed(killed, capsys):
    """`tracked ls` shows the killed experiment as "crashed" with its whole rows counted."""
    path, rows = killed
    root = path.parent.parent
    with pytest.warns(tracked.TrackedWarning, match="torn"):
        code = cli.main(["ls", str(root), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    (listed,) = json.loads(out)
    assert (listed["name"], listed["status"], listed["calls"]) == ("crash", "crashed", len(rows))
    with pytest.warns(tracked.TrackedWarning, match="torn"):
        code = cli.main(["ls", str(root)])
    table = capsys.readouterr().out
    assert code == 0
    (line,) = [line for line in table.splitlines() if path.name in line]
    assert "crashed" in line and f" {len(rows):,} " in line


def test_sync_recovers_the_killed_experiment_into_an_offline_wandb_run(killed, capsys):
    """`tracked sync --offline` recovers the killed experiment into a W&B offline run with every whole row."""
    path, rows = killed
    with pytest.warns(tracked.TrackedWarning, match="torn"):
        code = cli.main(["sync", "--offline", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"(offline, {len(rows)} rows)" in " ".join(out.split())
    state = json.loads((path / "wandb_sync.json").read_text())
    run = read_wandb_run(state["offline_dir"])
    assert run.exit_code == 1
    assert run.name == "crash"
    assert [h["idx"] for h in run.history] == [r["idx"] for r in rows]
    assert run.summary["tracked/status"] == "crashed"
    assert run.summary["total/calls"] == len(rows)


# --- SIGTERM and SIGINT ----------------------------------------------------------------------------


def run_until_signalled(root: Path, sig: int, *, wandb_on: bool = False, user_handler: bool = False):
    """Start the signal child, wait for its ready file (inside the loop), send `sig`, wait for its end."""
    side = root / "side.txt"
    ready = root / "ready"
    args = [
        sys.executable,
        "-c",
        SIGNAL_CHILD,
        str(side),
        str(ready),
        "1" if wandb_on else "0",
        "1" if user_handler else "0",
    ]
    proc = subprocess.Popen(
        args, cwd=root, env=child_env(root, wandb_on), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    path_line, handler_name = wait_for(ready, proc).split("\n")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, Path(path_line), handler_name, side_indices(side)


def assert_rows_flushed(path: Path, returned: list[int], status: str) -> dict:
    """Every returned call has its row, the summary is written with `status`, and its totals match the rows."""
    rows = [r["idx"] for r in read_rows(path / "results.jsonl")]
    assert len(returned) >= 6
    assert rows == list(range(len(rows)))
    assert set(returned) <= set(rows)
    summary = json.loads((path / "summary.json").read_text())
    assert summary["status"] == status
    # The signal may land inside a call's bookkeeping: at most that one call is counted but not written.
    assert len(rows) <= summary["total/calls"] <= len(rows) + 1
    return summary


@pytest.mark.slow
@pytest.mark.parametrize("wandb_on", [False, True], ids=["wandb_off", "wandb_offline"])
def test_sigterm_finishes_as_interrupted_and_dies_of_sigterm(tmp_path, wandb_on):
    """SIGTERM in a `with experiment(...)` loop: exit by SIGTERM, status "interrupted", every row flushed."""
    code, err, path, handler, returned = run_until_signalled(tmp_path, signal.SIGTERM, wandb_on=wandb_on)
    assert code == -signal.SIGTERM, err[-3000:]
    assert handler == "_on_sigterm"  # tracked's handler, since the program had none
    summary = assert_rows_flushed(path, returned, "interrupted")
    if wandb_on:
        assert summary["sinks"] == {"local": "ok", "wandb": "ok"}
        run = read_wandb_run(summary["wandb"]["dir"])
        assert run.exit_code == 1
        assert run.summary["tracked/status"] == "interrupted"
        rows = [r["idx"] for r in read_rows(path / "results.jsonl")]
        assert [h["idx"] for h in run.history] == rows


def test_user_sigterm_handler_installed_before_the_experiment_is_left_alone(tmp_path):
    """A SIGTERM handler installed before the experiment stays in place and is the one that runs."""
    code, err, path, handler, returned = run_until_signalled(tmp_path, signal.SIGTERM, user_handler=True)
    assert code == 0, err[-3000:]
    assert handler == "on_sigterm"
    assert (tmp_path / "ready.marker").read_text() == "the user's handler ran"
    rows = [r["idx"] for r in read_rows(path / "results.jsonl")]
    assert set(returned) <= set(rows)
    summary = json.loads((path / "summary.json").read_text())  # the with-block ended it
    assert summary["total/calls"] == len(rows)


def test_sys_exit_0_inside_an_experiment_is_not_a_failure():
    """`sys.exit(0)` inside `with experiment(...)` propagates and the experiment is not recorded as failed."""
    with pytest.raises(SystemExit) as info:
        with tracked.experiment("exit0", wandb=False) as exp:
            sys.exit(0)
    assert info.value.code == 0
    assert exp.status != "failed"


def test_sigint_raises_keyboard_interrupt_and_finishes_as_interrupted(tmp_path):
    """SIGINT: KeyboardInterrupt propagates, status "interrupted", every row flushed."""
    code, err, path, _, returned = run_until_signalled(tmp_path, signal.SIGINT)
    assert code in (-signal.SIGINT, 130, 1), err[-3000:]
    assert "KeyboardInterrupt" in err
    assert_rows_flushed(path, returned, "interrupted")


# --- killed mid-study, then `tracked sync`: one W&B run per experiment ----------------------------

STUDY_CHILD = textwrap.dedent(
    """
    import sys, time
    import tracked

    @tracked.tracked
    def work(i):
        return {"tokens_in": 10, "tokens_out": 2, "cost_usd": 0.001}

    with tracked.experiment("study"):
        with tracked.experiment("arm_a", config={"strategy": "a"}):
            for i in range(20):
                work(i)
        with tracked.experiment("arm_b", config={"strategy": "b"}) as exp:
            for i in range(3000):
                work(i)
            # Killed once its W&B run exists (its rows may still be behind): there is a run to replace.
            import json, pathlib
            run_id = json.loads((exp.path / "config.json").read_text())["refs"]["wandb"]["id"]
            deadline = time.monotonic() + 60
            while not list(pathlib.Path("wandb").glob(f"*-{run_id}/*.wandb")) and time.monotonic() < deadline:
                time.sleep(0.05)
            with open(sys.argv[1], "w") as ready:
                ready.write(str(exp.path))
            time.sleep(600)  # killed here: 3,000 rows on disk, W&B's offline run maybe behind
    """
)


def would_sync(wandb_dir: Path) -> list[Path]:
    """The `.wandb` files the real `wandb sync <dir>` would upload (its `--dry-run` list), resolved."""
    done = subprocess.run(
        [sys.executable, "-m", "wandb", "sync", "--dry-run", str(wandb_dir)],
        cwd=wandb_dir.parent, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line.removeprefix("wandb:").strip() for line in (done.stdout + done.stderr).splitlines()]
    return sorted((wandb_dir.parent / line).resolve() for line in lines if line.endswith(".wandb"))


@pytest.mark.slow
def test_sigkill_mid_study_then_sync_gives_one_wandb_run_per_experiment(tmp_path, capsys):
    """Killed in its second child after 3,000 calls, then `tracked sync`: `wandb sync` would upload
    one run per experiment (none for the parent of only children), the killed child's with its
    3,000 rows under the id of the run it had started; `ls` counts the children in the parent."""
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", STUDY_CHILD, str(ready)], cwd=tmp_path, env=child_env(tmp_path, True),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    arm_b = Path(wait_for(ready, proc))
    proc.kill()
    proc.communicate(timeout=60)
    (study,) = (tmp_path / "experiments").glob("study_*")
    (arm_a,) = (tmp_path / "experiments").glob("arm_a_*")
    ids = {p: json.loads((p / "config.json").read_text())["refs"]["wandb"]["id"] for p in (study, arm_a, arm_b)}
    (original,) = (tmp_path / "wandb").glob(f"*-{ids[arm_b]}/*.wandb")  # the run the killed child wrote
    assert len(read_wandb_run(original, wait_s=0).history) <= 3000

    assert cli.main(["ls", str(tmp_path), "--json"]) == 0
    listed = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert [listed[n]["status"] for n in ("study", "arm_a", "arm_b")] == ["crashed", "finished", "crashed"]
    assert [listed[n]["calls"] for n in ("study", "arm_a", "arm_b")] == [3020, 20, 3000]
    assert listed["study"]["cost_usd"] == pytest.approx(3.02)

    assert cli.main(["sync", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    (arm_a_run,) = (tmp_path / "wandb").glob(f"*-{ids[arm_a]}")
    replay = Path(json.loads((arm_b / "wandb_sync.json").read_text())["offline_dir"])
    assert out.splitlines() == [
        f"skip {arm_a.name}: already has an offline W&B run; upload it with: wandb sync {arm_a_run}",
        f"synced {arm_b.name} -> W&B run {ids[arm_b]} (offline, 3000 rows)",
        f"  its run cut short, {original.parent}, is replaced: marked so that `wandb sync` skips it",
        f"skip {study.name}: no rows of its own (its children have their own runs)",
        f"1 offline W&B run written; once logged in (wandb login), upload with: wandb sync {tmp_path / 'wandb'}",
    ]

    uploads = would_sync(tmp_path / "wandb")
    runs = [read_wandb_run(f) for f in uploads]
    assert sorted(r.id for r in runs) == sorted([ids[arm_a], ids[arm_b]])  # one each; none for the study
    by_id = {r.id: r for r in runs}
    assert len(by_id[ids[arm_b]].history) == 3000
    assert by_id[ids[arm_b]].summary["total/calls"] == 3000
    assert by_id[ids[arm_b]].dir == replay
    assert len(by_id[ids[arm_a]].history) == 20

    # Again: nothing new is written, and the command is the same.
    assert cli.main(["sync", str(tmp_path)]) == 0
    again = capsys.readouterr().out.splitlines()
    assert again[-1] == (
        "nothing new to write; 2 offline W&B runs not uploaded yet: once logged in (wandb login), upload with: "
        f"wandb sync {tmp_path / 'wandb'}"
    )
    assert would_sync(tmp_path / "wandb") == uploads
