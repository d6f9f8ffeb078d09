"""`tracked sweep`: grid, random and bayes sweeps run here over the example program, resumed, ranked and stopped."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml

import tracked
from helpers import flat
from tracked import _sweep, cli
from tracked.testing import read_experiment, read_wandb_run

REPO = Path(__file__).parent.parent
PROGRAM = REPO / "examples" / "sweep_program.py"
STRATEGIES = ["single", "debate", "self_consistency"]
TEMPERATURES = [0.3, 0.9]


@pytest.fixture
def no_wandb(monkeypatch):
    """W&B off for the sweep and (by inheritance) its trials."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    for name in ("TRACKED_SWEEP_PARAMS", "TRACKED_SWEEP"):
        monkeypatch.delenv(name, raising=False)


def write_sweep(root: Path, name: str, body: dict, *, file: str | None = None) -> Path:
    """A sweep file `<root>/<file or name>.yaml` with `name: <name>` and the given keys."""
    path = root / f"{file or name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **body}, sort_keys=False))
    return path


def grid(name: str, root: Path, *, goal: str = "maximize", strategies=STRATEGIES, temperatures=TEMPERATURES) -> Path:
    """A grid sweep of the example program over strategies x temperatures, metric accuracy."""
    return write_sweep(
        root,
        name,
        {
            "program": str(PROGRAM),
            "method": "grid",
            "metric": {"name": "accuracy/mean", "goal": goal},
            "parameters": {"strategy": {"values": list(strategies)}, "temperature": {"values": list(temperatures)}},
        },
    )


def program(root: Path, name: str, source: str) -> Path:
    """A trial program written into `root`."""
    path = root / name
    path.write_text(textwrap.dedent(source))
    return path


def sweep(path: Path, root: Path, *args: str) -> int:
    """`tracked sweep <path> --dir <root> <args>`, in this process."""
    return cli.main(["sweep", str(path), "--dir", str(root), *args])


def sweep_dir(root: Path, name: str) -> Path:
    """The one state directory of the sweep named `name` (`sweeps/<name>-<digest of its file>`)."""
    (found,) = (root / "sweeps").glob(f"{name}-*")
    return found


def state(root: Path, name: str) -> dict:
    """The sweep's state file."""
    return json.loads((sweep_dir(root, name) / "state.json").read_text())


def experiment_dirs(root: Path) -> list[Path]:
    """Every experiment directory of the store."""
    base = root / "experiments"
    return sorted(p for p in base.iterdir() if p.is_dir()) if base.exists() else []


def label(params: dict) -> str:
    """The row label `tracked compare` gives a trial."""
    return " ".join(f"{k}={v}" for k, v in params.items())


def compare(capsys, root: Path, name: str) -> list[dict]:
    """`tracked compare <root> --group <the id of sweep name> --json`, parsed."""
    capsys.readouterr()
    assert cli.main(["compare", str(root), "--group", sweep_dir(root, name).name, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_grid_sweep_runs_each_combination_once_as_an_experiment_of_the_sweeps_group(tmp_path, no_wandb, capsys):
    """A 3x2 grid runs 6 trials whose experiments carry the parameters, the sweep meta and the group."""
    path = grid("g", tmp_path)
    assert sweep(path, tmp_path) == 0
    out = flat(capsys.readouterr().out)
    st = state(tmp_path, "g")
    assert st["name"] == "g" and st["method"] == "grid"
    assert st["id"] == sweep_dir(tmp_path, "g").name and st["id"].startswith("g-")
    assert "6/6" in out and "6 trials, 0 failed" in out and f"--group {st['id']}" in out
    trials = st["trials"]
    assert len(trials) == 6
    assert {(t["params"]["strategy"], t["params"]["temperature"]) for t in trials} == set(
        itertools.product(STRATEGIES, TEMPERATURES)
    )
    assert sorted(t["id"] for t in trials) == [f"{st['id']}-{i:04d}" for i in range(1, 7)]
    assert all(t["status"] == "finished" and t["exit_code"] == 0 for t in trials)

    dirs = experiment_dirs(tmp_path)
    assert len(dirs) == 6
    by_trial = {}
    for d in dirs:
        exp = read_experiment(d)
        sweep_meta = exp.config["sweep"]
        by_trial[sweep_meta["trial"]] = exp
        assert exp.config["group"] == st["id"]
        assert sweep_meta["name"] == "g"
        assert sweep_meta["metric"] == "accuracy/mean" and sweep_meta["goal"] == "maximize"
        # The parameters won over the code's defaults; the sweep's name and the trial are in the config.
        assert exp.config["config"] == {
            **sweep_meta["params"], "sweep_name": "g", "sweep_id": st["id"], "sweep_trial": sweep_meta["trial"]
        }  # fmt: skip
        assert exp.config["name"] == ",".join(f"{k}={v}" for k, v in sweep_meta["params"].items())
        assert exp.summary["status"] == "finished"
        # W&B's default command: ${env} ${interpreter} ${program} ${args}
        params = sweep_meta["params"]
        assert exp.config["system"]["argv"][1:] == [f"--{k}={v}" for k, v in params.items()]
    for t in trials:
        exp = by_trial[t["id"]]
        assert exp.config["sweep"]["params"] == t["params"]
        assert t["experiment"] == exp.path.name
        assert t["metric"] == exp.summary["accuracy/mean"]
    assert len({t["metric"] for t in trials}) > 1  # the trials really differ


@pytest.mark.slow
def test_second_run_of_a_finished_sweep_starts_no_process_and_adds_no_trial(tmp_path, no_wandb, monkeypatch):
    """Running a finished sweep again resumes it: no new experiment, no process started, the same trials."""
    path = grid("again", tmp_path, strategies=["single", "debate"], temperatures=[0.3])
    assert sweep(path, tmp_path) == 0
    before_dirs = experiment_dirs(tmp_path)
    before = state(tmp_path, "again")

    started = []
    real_popen = subprocess.Popen

    def counting_popen(*args, **kwargs):
        started.append(args)
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(_sweep.subprocess, "Popen", counting_popen)
    assert sweep(path, tmp_path) == 0
    assert started == []
    assert experiment_dirs(tmp_path) == before_dirs
    assert state(tmp_path, "again")["trials"] == before["trials"]


@pytest.mark.slow
def test_a_partly_run_grid_resumes_with_the_missing_combinations_only(tmp_path, no_wandb):
    """A grid stopped after 2 of 3 trials runs only the third on the next run, then nothing."""
    path = grid("part", tmp_path, strategies=STRATEGIES, temperatures=[0.3])
    assert sweep(path, tmp_path, "--count", "2") == 0
    first = state(tmp_path, "part")["trials"]
    assert len(first) == 2 and len(experiment_dirs(tmp_path)) == 2

    assert sweep(path, tmp_path) == 0
    trials = state(tmp_path, "part")["trials"]
    assert trials[:2] == first
    assert len(trials) == 3 and len(experiment_dirs(tmp_path)) == 3
    assert sorted(t["params"]["strategy"] for t in trials) == sorted(STRATEGIES)

    assert sweep(path, tmp_path) == 0
    assert len(state(tmp_path, "part")["trials"]) == 3 and len(experiment_dirs(tmp_path)) == 3


@pytest.mark.slow
def test_offline_grid_trials_are_wandb_runs_in_the_sweeps_group_with_the_parameters(tmp_path, monkeypatch):
    """With W&B offline, each trial's run has group == sweep name and the trial's parameters in its config."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    path = grid("wb", tmp_path)
    assert sweep(path, tmp_path, "--parallel", "3") == 0
    trials = state(tmp_path, "wb")["trials"]
    assert len(trials) == 6 and all(t["status"] == "finished" for t in trials)
    assert len({label(t["params"]) for t in trials}) == 6  # no combination twice while running 3 at a time
    run_ids = set()
    for t in trials:
        exp = read_experiment(tmp_path / "experiments" / t["experiment"])
        assert exp.summary["wandb"]["mode"] == "offline"
        run = read_wandb_run(exp.summary["wandb"]["dir"])
        assert run.group == sweep_dir(tmp_path, "wb").name  # the sweep's id, <name>-<digest>
        assert run.config["strategy"] == t["params"]["strategy"]
        assert run.config["temperature"] == t["params"]["temperature"]
        assert run.exit_code == 0
        run_ids.add(run.id)
    assert len(run_ids) == 6


@pytest.mark.slow
def test_random_sweep_with_count_samples_within_bounds_and_resumes_to_a_larger_count(tmp_path, no_wandb):
    """A random sweep runs exactly --count trials with temperatures in [min, max]; a larger count adds the rest."""
    path = write_sweep(
        tmp_path,
        "rnd",
        {
            "program": str(PROGRAM),
            "method": "random",
            "metric": {"name": "accuracy/mean", "goal": "maximize"},
            "parameters": {"strategy": {"values": ["single", "debate"]}, "temperature": {"min": 0.1, "max": 0.9}},
        },
    )
    assert sweep(path, tmp_path, "--count", "3") == 0
    trials = state(tmp_path, "rnd")["trials"]
    assert len(trials) == 3 and len(experiment_dirs(tmp_path)) == 3
    for t in trials:
        assert t["status"] == "finished" and t["metric"] is not None
        assert isinstance(t["params"]["temperature"], float)
        assert 0.1 <= t["params"]["temperature"] <= 0.9
        assert t["params"]["strategy"] in ("single", "debate")
    for d in experiment_dirs(tmp_path):
        exp = read_experiment(d)
        assert exp.config["group"] == sweep_dir(tmp_path, "rnd").name
        assert {k: exp.config["config"][k] for k in exp.config["sweep"]["params"]} == exp.config["sweep"]["params"]

    assert sweep(path, tmp_path, "--count", "3") == 0
    assert len(state(tmp_path, "rnd")["trials"]) == 3 and len(experiment_dirs(tmp_path)) == 3
    assert sweep(path, tmp_path, "--count", "4") == 0
    trials4 = state(tmp_path, "rnd")["trials"]
    assert trials4[:3] == trials and len(trials4) == 4 and len(experiment_dirs(tmp_path)) == 4


def test_bayes_sweep_reads_each_trials_metric_from_its_summary_with_the_files_goal(tmp_path, no_wandb, capsys):
    """A bayes sweep of 3 trials, 2 at a time, records metrics read from the trials' summaries and the file's goal."""
    path = write_sweep(
        tmp_path,
        "bay",
        {
            "program": str(PROGRAM),
            "method": "bayes",
            "metric": {"name": "accuracy/mean", "goal": "minimize"},
            "parameters": {"strategy": {"values": STRATEGIES}, "temperature": {"min": 0.1, "max": 0.9}},
        },
    )
    assert sweep(path, tmp_path, "--count", "3", "--parallel", "2") == 0
    assert "3/3" in flat(capsys.readouterr().out)
    trials = state(tmp_path, "bay")["trials"]
    assert len(trials) == 3
    for t in trials:
        assert t["status"] == "finished"
        assert t["metric"] is not None
        exp = read_experiment(tmp_path / "experiments" / t["experiment"])
        assert t["metric"] == exp.summary["accuracy/mean"]
        assert exp.config["sweep"]["goal"] == "minimize" and exp.config["sweep"]["metric"] == "accuracy/mean"
        assert exp.config["group"] == sweep_dir(tmp_path, "bay").name
        assert 0.1 <= exp.config["config"]["temperature"] <= 0.9


def test_parallel_runs_up_to_k_trials_at_a_time(tmp_path, no_wandb, monkeypatch):
    """With --parallel 2 two trials run at once, never more."""
    box = tmp_path / "box"
    box.mkdir()
    monkeypatch.setenv("PARALLEL_BOX", str(box))
    prog = program(
        tmp_path,
        "overlap.py",
        """
        import json, os, time
        from pathlib import Path
        box = Path(os.environ["PARALLEL_BOX"])
        trial = json.loads(os.environ["TRACKED_SWEEP"])["trial"]
        (box / f"{trial}.start").touch()
        running = lambda: len(list(box.glob("*.start"))) - len(list(box.glob("*.end")))
        seen = running()
        deadline = time.monotonic() + 5
        while seen < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
            seen = max(seen, running())
        time.sleep(0.2)
        seen = max(seen, running())
        (box / f"{trial}.seen").write_text(str(seen))
        (box / f"{trial}.end").touch()
        """,
    )
    path = write_sweep(
        tmp_path, "par", {"program": str(prog), "method": "grid", "parameters": {"i": {"values": [1, 2, 3, 4]}}}
    )
    assert sweep(path, tmp_path, "--parallel", "2") == 0
    trials = state(tmp_path, "par")["trials"]
    assert len(trials) == 4 and all(t["status"] == "finished" for t in trials)
    seen = [int((box / f"{t['id']}.seen").read_text()) for t in trials]
    assert max(seen) == 2, seen


@pytest.mark.parametrize(
    ("command", "expected_argv"),
    [
        (["${env}", "${interpreter}", "${program}", "${args_json_file}"], "json_file"),
        (
            ["${interpreter}", "-u", "${program}", "--mode", "custom", "${args_no_hyphens}", "${args_json}"],
            ["--mode", "custom", "strategy={s}", "temperature=0.5", '{{"strategy": "{s}", "temperature": 0.5}}'],
        ),
    ],
    ids=["args_json_file", "custom"],
)
def test_command_list_form_runs_each_trial_with_the_macros_expanded(
    tmp_path, no_wandb, monkeypatch, command, expected_argv
):
    """A `command:` list runs the program with its macros expanded, and exp.config still holds the parameters."""
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("CMD_OUT", str(out))
    prog = program(
        tmp_path,
        "cmd_program.py",
        """
        import json, os, sys
        from pathlib import Path
        from tracked import experiment
        with experiment("cmd_trial", config={"strategy": "none", "temperature": 0.0}) as exp:
            exp.log({"accuracy": 1.0 if exp.config["strategy"] == "single" else 0.5})
            record = {"argv": sys.argv[1:], "config": dict(exp.config)}
            if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
                record["file"] = json.loads(Path(sys.argv[1]).read_text())
            trial = json.loads(os.environ["TRACKED_SWEEP"])["trial"]
            Path(os.environ["CMD_OUT"], trial + ".json").write_text(json.dumps(record))
        """,
    )
    path = write_sweep(
        tmp_path,
        "cmd",
        {
            "program": str(prog),
            "method": "grid",
            "metric": {"name": "accuracy/mean", "goal": "maximize"},
            "command": command,
            "parameters": {"strategy": {"values": ["single", "debate"]}, "temperature": {"value": 0.5}},
        },
    )
    assert sweep(path, tmp_path) == 0
    trials = state(tmp_path, "cmd")["trials"]
    assert len(trials) == 2 and all(t["status"] == "finished" for t in trials)
    assert sorted(t["metric"] for t in trials) == [0.5, 1.0]
    for t in trials:
        record = json.loads((out / f"{t['id']}.json").read_text())
        params = t["params"]
        assert record["config"] == {
            **params, "sweep_name": "cmd", "sweep_id": sweep_dir(tmp_path, "cmd").name, "sweep_trial": t["id"]
        }  # fmt: skip
        if expected_argv == "json_file":
            assert record["file"] == params
        else:
            assert record["argv"] == [a.format(s=params["strategy"]) for a in expected_argv]


ARGV_PROGRAM = """
    import json, os, sys
    from pathlib import Path
    trial = json.loads(os.environ["TRACKED_SWEEP"])["trial"]
    Path(os.environ["CMD_OUT"], trial + ".json").write_text(json.dumps(sys.argv[1:]))
    """


def test_command_macro_args_no_boolean_flags_is_expanded_as_wandb_agent_does(tmp_path, no_wandb, monkeypatch):
    """`${args_no_boolean_flags}` gives `--flag` for true, nothing for false, `--k=v` else, as `wandb agent` does."""
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("CMD_OUT", str(out))
    prog = program(tmp_path, "argv.py", ARGV_PROGRAM)
    path = write_sweep(
        tmp_path,
        "flags",
        {
            "program": str(prog),
            "method": "grid",
            "command": ["${interpreter}", "${program}", "${args_no_boolean_flags}"],
            "parameters": {"strategy": {"value": "single"}, "fast": {"values": [True, False]}},
        },
    )
    assert sweep(path, tmp_path) == 0
    trials = state(tmp_path, "flags")["trials"]
    assert len(trials) == 2
    argv = {t["params"]["fast"]: json.loads((out / f"{t['id']}.json").read_text()) for t in trials}
    assert argv == {True: ["--strategy=single", "--fast"], False: ["--strategy=single"]}


def test_grid_over_nested_parameters_runs_every_combination(tmp_path, no_wandb, monkeypatch):
    """A grid whose parameter has nested `parameters:` runs the full product, each trial with a nested value."""
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("CMD_OUT", str(out))
    prog = program(tmp_path, "argv.py", ARGV_PROGRAM)
    path = write_sweep(
        tmp_path,
        "nested",
        {
            "program": str(prog),
            "method": "grid",
            "parameters": {
                "strategy": {"values": ["single", "debate"]},
                "opt": {"parameters": {"temperature": {"values": [0.3, 0.9]}}},
            },
        },
    )
    assert sweep(path, tmp_path) == 0
    trials = state(tmp_path, "nested")["trials"]
    assert sorted((t["params"]["strategy"], t["params"]["opt"]["temperature"]) for t in trials) == sorted(
        itertools.product(["single", "debate"], [0.3, 0.9])
    )


@pytest.mark.slow
@pytest.mark.parametrize(("goal", "descending"), [("maximize", True), ("minimize", False)])
def test_compare_group_ranks_the_trials_by_the_sweeps_metric_in_its_goals_direction(
    tmp_path, no_wandb, capsys, goal, descending
):
    """`tracked compare --group <sweep> --json` has one row per trial, ordered by accuracy as the goal says."""
    path = grid("rank", tmp_path, goal=goal, strategies=["single", "debate"], temperatures=TEMPERATURES)
    assert sweep(path, tmp_path) == 0
    trials = state(tmp_path, "rank")["trials"]
    rows = compare(capsys, tmp_path, "rank")
    assert sorted(r["trial"] for r in rows) == sorted(label(t["params"]) for t in trials)
    assert all(r["experiments"] == 1 for r in rows)
    metric_of = {label(t["params"]): t["metric"] for t in trials}
    assert all(r["accuracy_mean"] == metric_of[r["trial"]] for r in rows)
    values = [r["accuracy_mean"] for r in rows]
    assert len(set(values)) > 1
    assert values == sorted(values, reverse=descending)


@pytest.mark.slow
def test_repository_example_sweep_runs_via_python_m_tracked(tmp_path):
    """`python -m tracked sweep examples/sweep.yaml` runs the repository's example grid of 6 trials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKED_SWEEP")}
    env["WANDB_MODE"] = "disabled"
    result = subprocess.run(
        [sys.executable, "-m", "tracked", "sweep", str(REPO / "examples" / "sweep.yaml"), "--dir", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "6 trials, 0 failed" in flat(result.stdout)
    trials = state(tmp_path, "sweep")["trials"]
    assert len(trials) == 6 and all(t["status"] == "finished" and t["metric"] is not None for t in trials)
    groups = {read_experiment(d).config["group"] for d in experiment_dirs(tmp_path)}
    assert groups == {sweep_dir(tmp_path, "sweep").name}


def test_failed_trials_are_recorded_with_their_log_and_not_repeated(tmp_path, no_wandb):
    """A trial program that exits 1 makes failed trials with their output logged; a rerun does not repeat them."""
    prog = program(tmp_path, "fail.py", "import sys\nprint('boom-output')\nsys.exit(1)\n")
    path = write_sweep(
        tmp_path, "bad", {"program": str(prog), "method": "grid", "parameters": {"i": {"values": [1, 2]}}}
    )
    assert sweep(path, tmp_path) == 1
    trials = state(tmp_path, "bad")["trials"]
    assert [t["status"] for t in trials] == ["failed", "failed"]
    assert all(t["exit_code"] == 1 for t in trials)
    for t in trials:
        assert "boom-output" in (sweep_dir(tmp_path, "bad") / "logs" / f"{t['id']}.log").read_text()
    sweep(path, tmp_path)
    assert state(tmp_path, "bad")["trials"] == trials


BAD_FILES = [
    ("method", {"program": "{p}", "method": "hyperband", "parameters": {"s": {"values": [1]}}}, "method", "grid"),
    (
        "empty-param",
        {"program": "{p}", "method": "grid", "parameters": {"strategy": {}}},
        "parameters.strategy",
        "values",
    ),
    (
        "empty-values",
        {"program": "{p}", "method": "grid", "parameters": {"strategy": {"values": []}}},
        "parameters.strategy.values",
        "non-empty list",
    ),
    (
        "missing-program",
        {"program": "{missing}", "method": "grid", "parameters": {"s": {"values": [1]}}},
        "program",
        "existing file",
    ),
    ("no-program", {"method": "grid", "parameters": {"s": {"values": [1]}}}, "program", "script"),
    (
        "bayes-no-metric",
        {"program": "{p}", "method": "bayes", "parameters": {"t": {"min": 0.1, "max": 0.9}}},
        "metric",
        "name",
    ),
    (
        "grid-range",
        {"program": "{p}", "method": "grid", "parameters": {"temperature": {"min": 0.1, "max": 0.9}}},
        "parameters.temperature",
        "finite set",
    ),
    (
        "bad-goal",
        {"program": "{p}", "method": "grid", "metric": {"name": "a", "goal": "up"}, "parameters": {"s": {"value": 1}}},
        "metric.goal",
        "minimize or maximize",
    ),
    (
        "random-no-count",
        {"program": "{p}", "method": "random", "parameters": {"t": {"min": 0.1, "max": 0.9}}},
        "--count",
        "never ends",
    ),
]


@pytest.mark.parametrize(("case", "body", "key", "expected"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_invalid_sweep_file_exits_2_naming_the_file_the_key_and_what_was_expected(
    tmp_path, no_wandb, capsys, case, body, key, expected
):
    """A sweep file the command cannot run is refused with exit code 2, the file, the key and the expectation."""
    body = {
        k: (v.format(p=PROGRAM, missing=tmp_path / "missing.py") if isinstance(v, str) and "{" in v else v)
        for k, v in body.items()
    }
    path = write_sweep(tmp_path, "invalid", body, file=case)
    capsys.readouterr()
    assert sweep(path, tmp_path) == 2
    err = flat(capsys.readouterr().err)
    assert str(path) in err
    assert f"{key}:" in err or f"{key} " in err
    assert expected in err
    assert not (tmp_path / "sweeps").exists() and experiment_dirs(tmp_path) == []


BLOCKING = """
    import os, time
    from pathlib import Path
    from tracked import experiment
    with experiment("blocking_trial", config={"strategy": "none"}) as exp:
        block = os.environ.get("SWEEP_BLOCK")
        exp.log({"accuracy": 0.0 if block else 1.0})
        if block:
            Path(block + ".tmp").write_text(str(os.getpid()))
            os.replace(block + ".tmp", block)
            time.sleep(60)
    """


def interrupt(tmp_path: Path) -> tuple[Path, dict, int]:
    """Start a 2-trial grid in a `python -m tracked sweep` process, SIGINT it once the first trial blocks."""
    prog = program(tmp_path, "blocking.py", BLOCKING)
    path = write_sweep(
        tmp_path,
        "stop",
        {
            "program": str(prog),
            "method": "grid",
            "metric": {"name": "accuracy/mean", "goal": "maximize"},
            "parameters": {"strategy": {"values": ["a", "b"]}},
        },
    )
    ready = tmp_path / "ready"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKED_SWEEP")}
    env.update(WANDB_MODE="disabled", SWEEP_BLOCK=str(ready))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracked", "sweep", str(path), "--dir", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the trial never started"
            time.sleep(0.02)
        trial_pid = int(ready.read_text())
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert elapsed < 30
    assert proc.returncode == 130, (out, err)
    assert "run the same command again to resume" in flat(out)
    return path, state(tmp_path, "stop"), trial_pid


@pytest.mark.slow
def test_ctrl_c_stops_the_sweep_marks_the_trial_interrupted_and_a_rerun_completes_it(tmp_path, no_wandb):
    """SIGINT stops the sweep promptly with 130, the running trial is interrupted, and a rerun runs it to completion."""
    path, st, trial_pid = interrupt(tmp_path)
    assert [t["status"] for t in st["trials"]] == ["interrupted"]
    stopped = st["trials"][0]
    deadline = time.monotonic() + 5
    while True:  # the trial's process was stopped with the sweep, not left behind
        try:
            os.kill(trial_pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the interrupted trial's process is still running"
        time.sleep(0.02)
    (stopped_dir,) = experiment_dirs(tmp_path)
    assert read_experiment(stopped_dir).summary["status"] == "interrupted"

    assert sweep(path, tmp_path) == 0  # SWEEP_BLOCK is not set here: the trial runs fast
    trials = state(tmp_path, "stop")["trials"]
    assert [t["status"] for t in trials] == ["finished", "finished"]
    assert sorted(t["params"]["strategy"] for t in trials) == ["a", "b"]
    rerun = next(t for t in trials if t["params"] == stopped["params"])
    assert rerun["id"] != stopped["id"] and rerun["metric"] == 1.0


@pytest.mark.slow
def test_compare_after_a_resumed_sweep_ranks_only_the_trials_of_the_sweep(tmp_path, no_wandb, capsys):
    """After Ctrl-C and a rerun, each compare row is one trial of the sweep, with the re-run trial's metric."""
    path, _, _ = interrupt(tmp_path)
    assert sweep(path, tmp_path) == 0
    trials = state(tmp_path, "stop")["trials"]
    rows = compare(capsys, tmp_path, "stop")
    metric_of = {label(t["params"]): t["metric"] for t in trials}
    assert {r["trial"]: r["accuracy_mean"] for r in rows} == metric_of
    assert all(r["experiments"] == 1 for r in rows)


def test_a_sweep_leaves_no_open_descriptors_or_temporary_files_behind(tmp_path, no_wandb, monkeypatch):
    """Running trials does not leak file descriptors or `tracked-sweep-*.json` temporary files."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    prog = program(tmp_path, "noop.py", "pass\n")
    path = write_sweep(
        tmp_path, "leak", {"program": str(prog), "method": "grid", "parameters": {"i": {"values": [1, 2, 3, 4]}}}
    )
    fds = len(os.listdir("/proc/self/fd"))
    assert sweep(path, tmp_path) == 0
    assert len(state(tmp_path, "leak")["trials"]) == 4
    assert len(os.listdir("/proc/self/fd")) == fds
    assert list(tmp.glob("tracked-sweep-*")) == []


def test_experiment_under_sweep_env_takes_the_parameters_and_the_sweeps_group(tmp_path, monkeypatch):
    """TRACKED_SWEEP_PARAMS overrides the code's config, the group is the sweep's and config.json records the trial."""
    monkeypatch.setenv("TRACKED_SWEEP_PARAMS", '{"temperature": 0.1}')
    monkeypatch.setenv("TRACKED_SWEEP", '{"name":"s","trial":"t1","metric":"accuracy","goal":"maximize"}')
    with tracked.experiment("unit", config={"temperature": 0.7, "strategy": "single"}, wandb=False) as exp:
        assert exp.config["temperature"] == 0.1
        assert exp.config["strategy"] == "single"
        assert exp.group == "s"
        assert exp.name == "temperature=0.1"  # a trial is named by its parameters
    record = read_experiment(exp.path).config
    assert record["group"] == "s"
    assert record["config"] == {
        "temperature": 0.1, "strategy": "single", "sweep_name": "s", "sweep_id": "s", "sweep_trial": "t1"
    }  # fmt: skip
    assert record["sweep"] == {
        "name": "s",
        "trial": "t1",
        "metric": "accuracy",
        "goal": "maximize",
        "params": {"temperature": 0.1},
    }


def test_example_program_runs_alone_with_its_default_config(tmp_path):
    """`python examples/sweep_program.py` outside a sweep is one experiment with the code's config and no group."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKED_SWEEP")}
    env["WANDB_MODE"] = "disabled"
    result = subprocess.run(
        [sys.executable, str(PROGRAM)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    (d,) = experiment_dirs(tmp_path)
    exp = read_experiment(d)
    assert exp.config["config"] == {"strategy": "single", "temperature": 0.7}
    assert exp.config["group"] is None and "sweep" not in exp.config
    assert exp.summary["status"] == "finished"
    assert isinstance(exp.summary["accuracy/mean"], float)


@pytest.mark.slow
def test_a_per_row_metric_as_the_objective_warns_once(tmp_path, no_wandb):
    """A sweep file whose metric is logged per row warns that W&B would score each run by its best row."""
    path = write_sweep(tmp_path, "rowwise", {
        "program": str(PROGRAM), "method": "grid", "metric": {"name": "accuracy", "goal": "maximize"},
        "parameters": {"strategy": {"values": ["single", "debate"]}},
    })  # fmt: skip
    with pytest.warns(tracked.TrackedWarning, match="'accuracy' is logged per row") as caught:
        assert sweep(path, tmp_path) == 0
    assert len([w for w in caught if "logged per row" in str(w.message)]) == 1
    assert all(t["metric"] is not None for t in state(tmp_path, "rowwise")["trials"])  # read as its mean


@pytest.mark.slow
def test_an_edited_sweep_file_is_a_new_sweep(tmp_path, no_wandb, capsys):
    """Editing a finished sweep's file starts a new sweep (said so), which runs its whole new grid."""
    path = grid("edit", tmp_path, strategies=["single"], temperatures=[0.3, 0.9])
    assert sweep(path, tmp_path) == 0
    grid("edit", tmp_path, strategies=["single", "debate"], temperatures=[0.3, 0.9])  # same name, a new grid
    capsys.readouterr()
    assert sweep(path, tmp_path) == 0
    out = flat(capsys.readouterr().out)
    assert "differs from the file of the earlier sweep" in out and "4/4" in out
    (old, new) = sorted(
        (tmp_path / "sweeps").glob("edit-*"), key=lambda p: len(json.loads((p / "state.json").read_text())["trials"])
    )
    assert len(json.loads((old / "state.json").read_text())["trials"]) == 2
    assert len(json.loads((new / "state.json").read_text())["trials"]) == 4
    assert f"starting a new sweep, {new.name}" in out
    # Each sweep's trials are in a group of their own, with ids of their own: none is seen twice.
    groups: dict[str, list[str]] = {}
    for d in experiment_dirs(tmp_path):
        exp = read_experiment(d)
        groups.setdefault(exp.config["group"], []).append(exp.config["sweep"]["trial"])
    assert {g: len(ids) for g, ids in groups.items()} == {old.name: 2, new.name: 4}
    assert len({i for ids in groups.values() for i in ids}) == 6
